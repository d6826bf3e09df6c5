"""Apply First Block Cache: MODEL in, MODEL out (docs/methods.md §1.1)."""
from __future__ import annotations

from ..cache_core.policies.first_block import FirstBlockCache
from . import common
from .examples import Examples, Sweep, Template


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

    METHOD, RANK = "First Block Cache", 1
    EXAMPLES = Examples(
        cases={}, tested_as=("fbc",),       # tests/comfy/test_first_block_cache.py runs it on every family
        speed=(dict(residual_diff_threshold=0.6, max_consecutive_skips=3), dict(residual_diff_threshold=0.0)),
        sweeps={
            "First Block Cache": Sweep("threshold", (0.03, 0.06, 0.1, 0.15, 0.25), lambda v, *_: dict(
                residual_diff_threshold=v, max_consecutive_skips=5), reference="First Block Cache (diffusers)"),
            # diffusers' rule exactly (no forced computes): the same decisions as its hook
            "First Block Cache (no skip limit)": Sweep("threshold", (0.03, 0.06, 0.1, 0.15, 0.25), lambda v, *_: dict(
                residual_diff_threshold=v, max_consecutive_skips=-1), reference="First Block Cache (diffusers)")},
        templates={"*": Template(
            "Apply First Block Cache: block 0 runs every step; the other blocks are reused while block 0's residual "
            "changes by less than the threshold. 0.08 is ParaAttention's Flux value; raise it for speed, lower it "
            "for fidelity.", dict(residual_diff_threshold=0.08, max_consecutive_skips=3))})
