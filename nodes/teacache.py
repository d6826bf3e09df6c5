"""Apply TeaCache: MODEL in, MODEL out (methods.md §1.2)."""
from __future__ import annotations

from ..cache_core import TeaCache, presets
from . import common, validation
from .hooks import install

NODE_NAME = "Apply TeaCache"
PRESETS = presets.names("teacache")


def parse_coefficients(node: str, text: str) -> list[float]:
    try:
        values = [float(v) for v in text.replace(";", ",").split(",") if v.strip()]
    except ValueError:
        raise validation.CacheKitInputError(
            f"{node}: custom_coefficients must be numbers separated by commas, got {text!r}") from None
    if not values:
        raise validation.CacheKitInputError(f"{node}: custom_coefficients is empty; give e.g. '1.0, 0.0'")
    return values


class ApplyTeaCache(common.CacheNode):
    DESCRIPTION = ("Skips the whole transformer on steps where the timestep-modulated input of the first block "
                   "has changed little (accumulated, polynomial-rescaled relative L1), reusing the last computed "
                   "residual. Calibrated coefficients per model family.")

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
                "tooltip": "Rescaling polynomial: 'auto' = the published one for the detected model; "
                           "'custom' = custom_coefficients."}),
            "custom_coefficients": ("STRING", {
                "default": "1.0, 0.0",
                "tooltip": "Used with coefficients = custom: polynomial coefficients, highest degree first "
                           "('1.0, 0.0' = plain relative L1)."}),
        }

    def apply(self, model, rel_l1_thresh, coefficients, custom_coefficients, start_percent, end_percent,
              unique_id=None):
        thr = validation.number(NODE_NAME, "rel_l1_thresh", rel_l1_thresh, -1.0)
        fields = common.window_fields(NODE_NAME, start_percent, end_percent)
        retention, final, suggested = 1, 1, None
        if coefficients == "custom":
            coefs = parse_coefficients(NODE_NAME, custom_coefficients)
        else:
            preset = presets.teacache(common.resolve_preset(NODE_NAME, "teacache", coefficients, model, PRESETS))
            coefs, retention, final = preset["coefficients"], preset["retention_steps"], preset["final_steps"]
            suggested = next(iter(preset["thresholds"].values()))
        if thr < 0:
            if suggested is None:
                raise validation.CacheKitInputError(
                    f"{NODE_NAME}: rel_l1_thresh -1 (auto) needs a preset; with custom coefficients set it "
                    f"explicitly, got {rel_l1_thresh}")
            thr = suggested
        patched = install(model, fields, lambda: TeaCache(thr, coefs, retention, final), NODE_NAME, unique_id)
        return (patched,)
