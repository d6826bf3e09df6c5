"""Apply TeaCache: MODEL in, MODEL out (docs/methods.md §1.2)."""
from __future__ import annotations

import logging
import math

from ..cache_core import calibration_data, presets
from ..cache_core.policies.teacache import TeaCache, TeaCacheCalibration
from . import common
from .examples import Case, Examples, Sweep, Template
from .host.calibration_files import SOCKET_TYPES

PRESETS = presets.names("teacache")
_log = logging.getLogger("CacheKit")


def parse_coefficients(text: str) -> list[float]:
    """'a, b, c' -> [a, b, c], highest degree first; ValueError saying what is wrong."""
    parts = [p.strip() for p in text.replace(";", ",").split(",") if p.strip()]
    try:
        values = [float(p) for p in parts]
    except ValueError:
        raise ValueError(f"must be numbers separated by commas, got {text!r}") from None
    if not values:
        raise ValueError("is empty; give e.g. '1.0, 0.0'")
    if not all(math.isfinite(c) for c in values):
        raise ValueError(f"must be finite numbers, got {text!r}")
    return values


COEFFICIENTS_TYPE = SOCKET_TYPES[calibration_data.TEACACHE_COEFFICIENTS]


_IDENTITY = dict(coefficients="custom", custom_coefficients="1.0, 0.0")   # the tests' and benchmark's: no model's

class ApplyTeaCache(common.CacheNode):
    NODE_NAME = "Apply TeaCache"
    THRESHOLD = "rel_l1_thresh"
    DESCRIPTION = ("Skips the whole transformer on steps where the timestep-modulated input of the first block "
                   "has changed little (accumulated, polynomial-rescaled relative L1), reusing the last computed "
                   "residual. Calibrated coefficients per model family, or your own from Calibrate TeaCache.")
    OPTIONAL = {"calibration": (COEFFICIENTS_TYPE, {"tooltip": "Output of Calibrate TeaCache or Load Cache "
                                                               "Calibration; overrides 'coefficients'."})}

    @classmethod
    def own_inputs(cls):
        return {
            "rel_l1_thresh": ("FLOAT", {
                "default": -1.0, "min": -1.0, "max": 10.0, "step": 0.01,
                "tooltip": "Reuse while the accumulated rescaled change stays below this. -1 = the published "
                           "'slow' value of the preset (Flux 0.25, HunyuanVideo 0.1, LTXV 0.03, Wan 1.3B 0.05, "
                           "Wan 14B 0.1, Wan I2V 0.2). 0 = never reuse. Faster: Flux 0.4-0.6, HunyuanVideo "
                           "0.15, LTXV 0.05, Wan 1.3B 0.1, Wan 14B 0.2, Wan I2V 0.3."}),
            "coefficients": (["auto", *PRESETS, "custom"], {
                "default": "auto",
                "tooltip": "Rescaling polynomial: 'auto' = the published one for the detected model, else "
                           "the newest saved Calibrate TeaCache file made on this model; 'custom' = "
                           "custom_coefficients."}),
            "custom_coefficients": ("STRING", {
                "default": "1.0, 0.0",
                "tooltip": "Used with coefficients = custom: polynomial coefficients, highest degree first "
                           "('1.0, 0.0' = plain relative L1)."}),
        }

    def method(self, model, v):
        fmt = calibration_data.TEACACHE_COEFFICIENTS
        thr, retention, final, suggested = v["rel_l1_thresh"], 1, 1, None
        if v.get("calibration") is not None:
            coefs = self.calibration(fmt, v["calibration"], model)
        elif v["coefficients"] == "custom":
            try:
                coefs = parse_coefficients(v["custom_coefficients"])
            except ValueError as e:
                self.fail(f"custom_coefficients {e}")
        elif (name := self.resolve_preset("teacache", v["coefficients"], model)) is not None:
            preset = presets.teacache(name)
            coefs, retention, final = preset["coefficients"], preset["retention_steps"], preset["final_steps"]
            suggested = next(iter(preset["thresholds"].values()))
        else:
            coefs = calibration_data.teacache_coefficients(self.saved_calibration(fmt, model, "Calibrate TeaCache"))
        if thr < 0:
            if suggested is None:
                self.fail(f"rel_l1_thresh -1 picks a preset's published value, and these coefficients have none: "
                          f"set it (published values run from 0.03 for LTXV to 0.6 for Flux at its fastest), "
                          f"got {thr}")
            thr = suggested
        return (lambda: TeaCache(thr, coefs, retention, final)), {}

    METHOD, RANK = "TeaCache", 2
    EXAMPLES = Examples(
        cases={"teacache": Case(off=dict(rel_l1_thresh=0.0, **_IDENTITY), on=dict(rel_l1_thresh=0.5, **_IDENTITY),
                                runs_on_reuse=0)},
        speed=(dict(rel_l1_thresh=1.0, **_IDENTITY), dict(rel_l1_thresh=0.0, **_IDENTITY)),
        sweeps={"TeaCache (calibrated)": Sweep("rel_l1_thresh", (0.01, 0.02, 0.04, 0.07, 0.12),
                                               lambda v, cal, _: dict(rel_l1_thresh=v, calibration=cal))},
        note="Apply TeaCache: 'auto' picks the published coefficients for this model and threshold -1 their "
             "published 'slow' value",
        templates={
            "flux_dev": Template("(Flux 0.25; 0.4 / 0.6 are faster, ali-vilab/TeaCache).",
                                 dict(rel_l1_thresh=-1.0, coefficients="auto")),
            "*": Template("(Wan 1.3B 0.05; 0.10 is faster, ali-vilab/TeaCache).",
                          dict(rel_l1_thresh=-1.0, coefficients="auto"))})


class CalibrateTeaCache(common.CalibrateNode):
    DESCRIPTION = ("Samples once with no reuse (like KSampler), records per step the relative L1 change of the "
                   "first block's modulated input and of the transformer's output, and fits the rescaling "
                   "polynomial between them (as the published TeaCache coefficients were made). Feed it to "
                   "Apply TeaCache or save it.")
    NODE_NAME = "Calibrate TeaCache"
    RETURN_TYPES = (COEFFICIENTS_TYPE, "LATENT")

    @classmethod
    def own_inputs(cls):
        return {"degree": ("INT", {"default": 4, "min": 1, "max": 6,
                                   "tooltip": "Polynomial degree (the published coefficients use 4)."})}

    def recorder(self, v, model):
        return TeaCacheCalibration(v["degree"])

    def calibrate(self, model, positive, negative, latent_image, **inputs):
        out = super().calibrate(model, positive, negative, latent_image, **inputs)
        result = out["result"][0]
        _log.info("%s: fitted %s from %d steps, RMS error %.4g", self.NODE_NAME,
                  ", ".join(f"{c:.6g}" for c in result["coefficients"]),
                  sum(len(s["input"]) for s in result["samples"].values()), result["fit_rmse"])
        return out
