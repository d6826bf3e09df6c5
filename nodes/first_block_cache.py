"""Apply First Block Cache: MODEL in, MODEL out (docs/methods.md §1.1)."""
from __future__ import annotations

from ..cache_core import FirstBlockCache
from . import common


class ApplyFirstBlockCache(common.CacheNode):
    NODE_NAME = "Apply First Block Cache"
    SEARCH_ALIASES = ["cache", "fbcache", "first block cache"]   # the node to start with comes first for "cache"
    THRESHOLD = "residual_diff_threshold"
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

    def method(self, model, v):
        thr = v["residual_diff_threshold"]
        return (lambda: FirstBlockCache(thr)), dict(warmup_steps=v["warmup_steps"],
                                                     max_consecutive=v["max_consecutive_skips"])
