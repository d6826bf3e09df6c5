"""Apply MagCache and Calibrate MagCache (methods.md §1.3)."""
from __future__ import annotations

from ..cache_core import MagCache, MagCacheCalibration, presets
from ..cache_core.policies.magcache import split_interleaved
from . import common, validation
from .hooks import install

APPLY_NAME = "Apply MagCache"
CALIBRATE_NAME = "Calibrate MagCache"
RATIOS_TYPE = "MAGCACHE_RATIOS"
PRESETS = presets.names("magcache")


def preset_ratios(name: str) -> dict[str, list[float]]:
    p = presets.magcache(name)
    return split_interleaved(p["ratios"]) if p["interleaved"] else {"cond": p["ratios"]}


def check_calibration(node: str, calibration) -> dict[str, list[float]]:
    ok = (isinstance(calibration, dict) and calibration.get("format") == "cachekit.magcache_ratios"
          and isinstance(calibration.get("ratios"), dict) and calibration["ratios"]
          and all(isinstance(v, list) and v and all(isinstance(x, (int, float)) for x in v)
                  for v in calibration["ratios"].values()))
    if not ok:
        raise validation.CacheKitInputError(f"{node}: 'calibration' is not a MagCache calibration "
                                            f"(connect Calibrate MagCache), got {type(calibration).__name__}")
    return calibration["ratios"]


class ApplyMagCache(common.CacheNode):
    DESCRIPTION = ("Skips the whole transformer while the accumulated error predicted from the magnitude ratios "
                   "of successive residuals stays small, reusing the last computed residual. Ratios come from "
                   "a published preset or from Calibrate MagCache.")
    OPTIONAL = {"calibration": (RATIOS_TYPE, {"tooltip": "Output of Calibrate MagCache."})}

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
                "tooltip": "Magnitude ratios: 'auto' = the published preset for the detected model. "
                           "A connected calibration overrides this."}),
        }

    def apply(self, model, threshold, max_skips, retention_ratio, ratios, start_percent, end_percent,
              calibration=None, unique_id=None):
        thr = validation.number(APPLY_NAME, "threshold", threshold, 0.0)
        k = validation.number(APPLY_NAME, "max_skips", max_skips, 0, integer=True)
        r = validation.number(APPLY_NAME, "retention_ratio", retention_ratio, 0.0, 1.0)
        fields = common.window_fields(APPLY_NAME, start_percent, end_percent)
        if calibration is not None:
            gammas = check_calibration(APPLY_NAME, calibration)
        else:
            gammas = preset_ratios(common.resolve_preset(APPLY_NAME, "magcache", ratios, model, PRESETS))
        patched = install(model, fields, lambda: MagCache(gammas, thr, k, r), APPLY_NAME, unique_id)
        return (patched,)


class CalibrateMagCache(common.CalibrateNode):
    DESCRIPTION = ("Samples once with no reuse (like KSampler) and records, per condition stream and step, the "
                   "magnitude ratio of successive whole-stack residuals. Connect the calibration to Apply "
                   "MagCache; one prompt is enough (MagCache paper, Table 3).")
    NODE_NAME = CALIBRATE_NAME
    RETURN_TYPES = (RATIOS_TYPE, "LATENT")

    def recorder(self):
        return MagCacheCalibration()
