"""Apply TeaCache: MODEL in, MODEL out (methods.md §1.2)."""
from __future__ import annotations

import math

from ..cache_core import TeaCache, presets
from . import common

PRESETS = presets.names("teacache")


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


class ApplyTeaCache(common.CacheNode):
    NODE_NAME = "Apply TeaCache"
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

    def method(self, model, v):
        thr, retention, final, suggested = v["rel_l1_thresh"], 1, 1, None
        if v["coefficients"] == "custom":
            try:
                coefs = parse_coefficients(v["custom_coefficients"])
            except ValueError as e:
                self.fail(f"custom_coefficients {e}")
        else:
            preset = presets.teacache(self.resolve_preset("teacache", v["coefficients"], model, PRESETS))
            coefs, retention, final = preset["coefficients"], preset["retention_steps"], preset["final_steps"]
            suggested = next(iter(preset["thresholds"].values()))
        if thr < 0:
            if suggested is None:
                self.fail(f"rel_l1_thresh -1 (auto) needs a preset; with custom coefficients set it explicitly, "
                          f"got {thr}")
            thr = suggested
        return (lambda: TeaCache(thr, coefs, retention, final)), {}
