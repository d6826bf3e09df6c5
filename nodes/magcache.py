"""Apply MagCache and Calibrate MagCache (docs/methods.md §1.3)."""
from __future__ import annotations

from ..cache_core import calibration_data, presets
from ..cache_core.policies.magcache import MagCache, MagCacheCalibration, split_interleaved
from . import common
from .examples import Case, Examples, Sweep, Template
from .host.calibration_files import SOCKET_TYPES

RATIOS_TYPE = SOCKET_TYPES[calibration_data.MAGCACHE_RATIOS]
PRESETS = presets.names("magcache")


def preset_ratios(name: str) -> dict[str, list[float]]:
    p = presets.magcache(name)
    return split_interleaved(p["ratios"]) if p["interleaved"] else {"cond": p["ratios"]}


_TEST = dict(max_skips=3, retention_ratio=0.2, ratios="flux_dev", calibration=None)   # the tests' fixed inputs


def recipe_retention(family: str | None) -> float:
    """The MagCache repository's retention ratio for a family (its row name): its Flux recipe computes the first 10%
    of the steps, its Wan recipe, taken for every other family, 20% (the templates below). On the benchmark's Flux
    models 20% spent a third of the computed steps at 50% where reusing costs little (docs/bench/notes.md,
    2026-12-07)."""
    return ApplyMagCache.EXAMPLES.templates["flux_dev" if family == "Flux" else "*"].inputs["retention_ratio"]


class ApplyMagCache(common.CacheNode):
    NODE_NAME = "Apply MagCache"
    THRESHOLD = "threshold"
    DESCRIPTION = ("Skips the whole transformer while the accumulated error predicted from the magnitude ratios "
                   "of successive residuals stays small, reusing the last computed residual. Ratios come from "
                   "a published preset or from Calibrate MagCache.")
    # optional: workflows saved before final_steps existed still load (and get the default)
    OPTIONAL = {"calibration": (RATIOS_TYPE, {"tooltip": "Output of Calibrate MagCache or Load Cache Calibration; "
                                                         "another step count is resampled."}),
                "final_steps": ("INT", {"default": 2, "min": 0, "max": 1000,
                                        "tooltip": "The last steps always compute: reusing them costs the most "
                                                   "quality. 0 = the published rule (diffusers, the authors)."})}

    @classmethod
    def own_inputs(cls):
        return {
            "threshold": ("FLOAT", {
                "default": 0.06, "min": 0.0, "max": 2.0, "step": 0.005,
                "tooltip": "Accumulated error allowed before a step computes (delta). 0 = never reuse. "
                           "Published: 0.06 (diffusers, by the author); paper 0.06-0.12; repo recipes "
                           "Flux 0.24 (K 5, r 0.1), Wan 0.12 (K 2-4), Qwen-Image 0.06 (K 2)."}),
            "max_skips": ("INT", {"default": 3, "min": 0, "max": 20,
                                  "tooltip": "K: most steps reused in a row."}),
            "retention_ratio": ("FLOAT", {"default": 0.2, "min": 0.0, "max": 1.0, "step": 0.01,
                                          "tooltip": "This share of the first steps always computes."}),
            "ratios": (["auto", *PRESETS], {
                "default": "auto",
                "tooltip": "Magnitude ratios: 'auto' = the published preset for the detected model, else "
                           "the newest saved calibration made on this model. A connected calibration "
                           "overrides this."}),
        }

    def method(self, model, v):
        fmt = calibration_data.MAGCACHE_RATIOS
        if v.get("calibration") is not None:
            gammas = self.calibration(fmt, v["calibration"], model)
        elif (preset := self.resolve_preset("magcache", v["ratios"], model)) is not None:
            gammas = preset_ratios(preset)
        else:
            gammas = calibration_data.magcache_ratios(self.saved_calibration(fmt, model, "Calibrate MagCache"))
        args = (gammas, v["threshold"], v["max_skips"], v["retention_ratio"], v["final_steps"])
        return (lambda: MagCache(*args)), {}

    METHOD, RANK = "MagCache", 3
    EXAMPLES = Examples(
        cases={"magcache": Case(off=dict(threshold=0.0, **_TEST), on=dict(threshold=0.3, **_TEST), runs_on_reuse=0)},
        speed=(dict(threshold=0.3, max_skips=3, ratios="wan2.1_t2v_1.3B"),
               dict(threshold=0.0, ratios="wan2.1_t2v_1.3B")),
        sweeps={"MagCache (calibrated)": Sweep(
            "threshold", (0.01, 0.03, 0.06, 0.12, 0.18, 0.25), lambda v, cal, _: dict(
                threshold=v, max_skips=5, final_steps=2, calibration=cal,
                retention_ratio=recipe_retention(((cal or {}).get("model") or {}).get("family"))),
            reference="MagCache (diffusers)")},
        note="Apply MagCache: 'auto' uses the published magnitude ratios of this model. Settings: the MagCache "
             "repository's recipe for",
        templates={
            "flux_dev": Template("Flux (0.24, K 5, retention 0.1).",
                                 dict(threshold=0.24, max_skips=5, retention_ratio=0.1, ratios="auto")),
            "*": Template("Wan (0.12, K 3, retention 0.2).",
                          dict(threshold=0.12, max_skips=3, retention_ratio=0.2, ratios="auto"))})


class CalibrateMagCache(common.CalibrateNode):
    DESCRIPTION = ("Samples once with no reuse (like KSampler) and records, per condition stream and step, the "
                   "magnitude ratio of successive whole-stack residuals. Connect the calibration to Apply "
                   "MagCache; one prompt is enough (MagCache paper, Table 3).")
    NODE_NAME = "Calibrate MagCache"
    RETURN_TYPES = (RATIOS_TYPE, "LATENT")

    def recorder(self, v, model):
        return MagCacheCalibration()
