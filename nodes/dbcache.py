"""Apply DBCache: MODEL in, MODEL out (cache-dit's dual block cache, docs/methods.md §1.5)."""
from __future__ import annotations

from ..cache_core import DBCache
from . import common


class ApplyDBCache(common.CacheNode):
    NODE_NAME = "Apply DBCache"
    THRESHOLD = "residual_diff_threshold"
    DESCRIPTION = ("Always runs the first Fn and last Bn blocks; reuses the middle blocks' residual while the "
                   "first blocks' residual barely changes (cache-dit DBCache). Bn > 0 lets the last blocks "
                   "correct the approximation; TaylorSeer can forecast the middle residual.")

    @classmethod
    def own_inputs(cls):
        return {
            "Fn_compute_blocks": ("INT", {"default": 8, "min": 1, "max": 128,
                                          "tooltip": "Front blocks always computed; their residual is the "
                                                     "probe. cache-dit default 8; 1 = First Block Cache."}),
            "Bn_compute_blocks": ("INT", {"default": 0, "min": 0, "max": 128,
                                          "tooltip": "Back blocks always computed, on the approximation."}),
            "residual_diff_threshold": ("FLOAT", {
                "default": 0.08, "min": 0.0, "max": 1.0, "step": 0.005,
                "tooltip": "Reuse the middle while the Fn residual's relative L1 change is below this. 0 = "
                           "never; 1 = always (static). cache-dit: 0.08 (F8B0), Flux DrawBench S: F4 0.12, "
                           "M: F1 0.24."}),
            "max_warmup_steps": ("INT", {"default": 8, "min": 0, "max": 1000,
                                         "tooltip": "Steps range(0, W, interval) always compute."}),
            "warmup_interval": ("INT", {"default": 1, "min": 1, "max": 100,
                                        "tooltip": "Inside the warmup, only every Nth step is forced."}),
            "max_cached_steps": ("INT", {"default": -1, "min": -1, "max": 1000,
                                         "tooltip": "Most reused steps in a run; -1 = no limit."}),
            "max_continuous_cached_steps": ("INT", {"default": -1, "min": -1, "max": 1000,
                                                    "tooltip": "Most reused steps in a row; -1 = no limit."}),
            "max_accumulated_residual_diff": ("FLOAT", {
                "default": 0.0, "min": 0.0, "max": 100.0, "step": 0.01,
                "tooltip": "Once the measured diffs of the run add up to this, every later step computes. "
                           "0 = off."}),
            "taylorseer_order": ("INT", {"default": 0, "min": 0, "max": 4,
                                         "tooltip": "0 = reuse the middle residual as cached; 1-4 = forecast "
                                                    "it with a Taylor series of this order (cache-dit: 1)."}),
        }

    def method(self, model, v):
        args = dict(front_blocks=v["Fn_compute_blocks"], back_blocks=v["Bn_compute_blocks"],
                    threshold=v["residual_diff_threshold"], warmup_steps=v["max_warmup_steps"],
                    warmup_interval=v["warmup_interval"], max_cached_steps=v["max_cached_steps"],
                    max_continuous_cached_steps=v["max_continuous_cached_steps"],
                    max_accumulated_diff=v["max_accumulated_residual_diff"], taylorseer_order=v["taylorseer_order"])
        return (lambda: DBCache(**args)), {}
