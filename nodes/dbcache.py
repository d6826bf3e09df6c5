"""Apply DBCache: MODEL in, MODEL out (cache-dit's dual block cache, methods.md §1.5)."""
from __future__ import annotations

from ..cache_core import DBCache
from . import common, validation
from .hooks import install

NODE_NAME = "Apply DBCache"


class ApplyDBCache(common.CacheNode):
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

    def apply(self, model, Fn_compute_blocks, Bn_compute_blocks, residual_diff_threshold, max_warmup_steps,
              warmup_interval, max_cached_steps, max_continuous_cached_steps, max_accumulated_residual_diff,
              taylorseer_order, start_percent, end_percent, unique_id=None):
        n = NODE_NAME
        args = dict(
            front_blocks=validation.number(n, "Fn_compute_blocks", Fn_compute_blocks, 1, integer=True),
            back_blocks=validation.number(n, "Bn_compute_blocks", Bn_compute_blocks, 0, integer=True),
            threshold=validation.number(n, "residual_diff_threshold", residual_diff_threshold, 0.0),
            warmup_steps=validation.number(n, "max_warmup_steps", max_warmup_steps, 0, integer=True),
            warmup_interval=validation.number(n, "warmup_interval", warmup_interval, 1, integer=True),
            max_cached_steps=validation.number(n, "max_cached_steps", max_cached_steps, -1, integer=True),
            max_continuous_cached_steps=validation.number(n, "max_continuous_cached_steps",
                                                          max_continuous_cached_steps, -1, integer=True),
            max_accumulated_diff=validation.number(n, "max_accumulated_residual_diff",
                                                   max_accumulated_residual_diff, 0.0),
            taylorseer_order=validation.number(n, "taylorseer_order", taylorseer_order, 0, 4, integer=True),
        )
        fields = common.window_fields(n, start_percent, end_percent)
        return (install(model, fields, lambda: DBCache(**args), n, unique_id),)
