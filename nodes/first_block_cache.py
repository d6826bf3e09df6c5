"""Apply First Block Cache: MODEL in, MODEL out (methods.md §1.1)."""
from __future__ import annotations

from ..cache_core import FirstBlockCache
from . import common, validation
from .hooks import install

NODE_NAME = "Apply First Block Cache"


class ApplyFirstBlockCache(common.CacheNode):
    DESCRIPTION = ("Runs the first transformer block every step and reuses the rest of the stack from the "
                   "last computed step while the first block's output barely changes. Put it between the "
                   "model loader and the sampler.")

    @classmethod
    def own_inputs(cls):
        return {
            "residual_diff_threshold": ("FLOAT", {
                "default": 0.08, "min": 0.0, "max": 1.0, "step": 0.005,
                "tooltip": "Reuse the cached blocks while the relative L1 change of the first block's "
                           "residual stays below this. 0 = never reuse (exact). Published: Flux 0.08 "
                           "(0.12 fp8), HunyuanVideo 0.06, Qwen-Image 0.2. Higher = faster, blurrier."}),
            "max_consecutive_skips": ("INT", {
                "default": 3, "min": -1, "max": 100,
                "tooltip": "Reuses in a row before a step is forced to compute. -1 = no limit."}),
            "warmup_steps": ("INT", {
                "default": 0, "min": 0, "max": 1000,
                "tooltip": "The first steps always compute (they lay out the composition)."}),
        }

    def apply(self, model, residual_diff_threshold, start_percent, end_percent, max_consecutive_skips,
              warmup_steps, unique_id=None):
        thr = validation.number(NODE_NAME, "residual_diff_threshold", residual_diff_threshold, 0.0)
        max_skips = validation.number(NODE_NAME, "max_consecutive_skips", max_consecutive_skips, -1, integer=True)
        warmup = validation.number(NODE_NAME, "warmup_steps", warmup_steps, 0, integer=True)
        fields = common.window_fields(NODE_NAME, start_percent, end_percent, warmup_steps=warmup,
                                      max_consecutive=max_skips)
        patched = install(model, fields, lambda: FirstBlockCache(thr), NODE_NAME, unique_id)
        return (patched,)
