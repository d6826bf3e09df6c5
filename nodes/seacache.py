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
                "default": 0.07, "min": 0.0, "max": 10.0, "step": 0.01,
                "tooltip": "Reuse while the accumulated change (both tokens through the step's filter) stays below "
                           "this. 0 = never reuse. On the benchmark's five trained models 0.07 computed about half of "
                           "the block work, 0.1 about 40%, 0.2 about a quarter. The authors' values (Wan 0.1-0.2, Flux "
                           "0.3) were for a change that also counted the filter's own move between steps, and reuse "
                           "far more here (docs/methods.md §1.4)."}),
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
        sweeps={"SeaCache": Sweep("threshold", (0.02, 0.04, 0.07, 0.1, 0.2, 0.4), lambda v, *_: dict(threshold=v))},
        note="Apply SeaCache: TeaCache's accumulate-until-threshold rule on a spectrally weighted change of block 0's "
             "image tokens, with no per-model coefficients.",
        templates={"*": Template("0.07 computed about half of the block work on the benchmark's models (the authors' "
                                 "0.1-0.3 measured another change: docs/methods.md §1.4).", dict(threshold=0.07))})
