"""Apply SeaCache: MODEL in, MODEL out (cache_core/policies/seacache.py)."""
from __future__ import annotations

from ..cache_core.policies.seacache import SeaCache
from . import common
from .examples import Case, Examples, Sweep, Template


class ApplySeaCache(common.CacheNode):
    NODE_NAME = "Apply SeaCache"
    THRESHOLD = "threshold"
    DESCRIPTION = ("Skips the whole transformer on steps where the first block's modulated image tokens, "
                   "spectrally weighted for the step's noise level, have changed little (accumulated relative "
                   "L1), reusing the last computed residual. TeaCache's rule with no per-model coefficients: "
                   "works on every family as it is (SeaCache, CVPR 2026).")

    @classmethod
    def own_inputs(cls):
        return {
            "threshold": ("FLOAT", {
                "default": 0.2, "min": 0.0, "max": 10.0, "step": 0.01,
                "tooltip": "Reuse while the accumulated filtered change stays below this. 0 = never reuse. "
                           "Published: Wan 2.1 0.1 (about 2x) and 0.2 (about 3x), HunyuanVideo 0.2, Flux 0.3."}),
            "spectral_power": ("FLOAT", {
                "default": 0.0, "min": 0.0, "max": 8.0, "step": 0.5,
                "tooltip": "p of the 1/|f|^p signal spectrum the filter assumes. 0 = the authors' choice: 3 for "
                           "video, 2 for images."}),
            "retention_steps": ("INT", {"default": 1, "min": 0, "max": 1000,
                                        "tooltip": "The first steps always compute."}),
            "final_steps": ("INT", {"default": 2, "min": 0, "max": 1000,
                                    "tooltip": "The last steps always compute: reusing them costs the most "
                                               "quality. Published: 1 (the last step)."}),
        }

    def method(self, model, v):
        args = dict(threshold=v["threshold"], power=v["spectral_power"] or None,
                    retention_steps=v["retention_steps"], final_steps=v["final_steps"])
        return (lambda: SeaCache(**args)), {}

    METHOD, RANK = "SeaCache", 9
    EXAMPLES = Examples(
        cases={"seacache": Case(off=dict(threshold=0.0, spectral_power=0.0), on=dict(threshold=0.5, spectral_power=0.0),
                                runs_on_reuse=0)},
        speed=(dict(threshold=1.0), dict(threshold=0.0)),
        sweeps={"SeaCache": Sweep("threshold", (0.1, 0.2, 0.4, 0.7, 1.2), lambda v, *_: dict(threshold=v))},
        note="Apply SeaCache: TeaCache's accumulate-until-threshold rule on a spectrally weighted change of block 0's "
             "image tokens, with no per-model coefficients.",
        templates={"flux_dev": Template("0.3 is the authors' Flux value.", dict(threshold=0.3)),
                   "*": Template("0.2 is the authors' Wan value (about 3x; 0.1 about 2x).", dict(threshold=0.2))})
