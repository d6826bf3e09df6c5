"""Apply SpeCa Cache: MODEL in, MODEL out (cache_core/policies/speca.py, docs/methods.md §1.12)."""
from __future__ import annotations

from ..cache_core.policies.speca import MEASURES, SpeCa
from . import common
from .examples import Case, Examples, Sweep, Template


_TEST = dict(decay=1.0, min_threshold=0.0, warmup_steps=2, unverified_drafts=1, max_drafts=3, max_order=1,
             error_measure="relative_l1", final_steps=0)   # the tests' fixed inputs

class ApplySpeCaCache(common.CacheNode):
    NODE_NAME = "Apply SpeCa Cache"
    DESCRIPTION = ("Forecast, then verify (SpeCa, ACM MM 2025): after a computed step the transformer's later blocks "
                   "are drafted by a Taylor series over the computed steps; the first block runs every step and its "
                   "output, compared with its own forecast, accepts the draft or makes the step compute. Holds "
                   "2 x (max_order + 1) fp32 tensors per stream (the forecast factors of the first block's and of "
                   "the later blocks' residual, each of the hidden state's size) and one cached residual.")

    @classmethod
    def own_inputs(cls):
        return {
            "threshold": ("FLOAT", {
                "default": 0.1, "min": 0.0, "max": 10000.0, "step": 0.005,
                "tooltip": "A checked draft is accepted while the first block's forecast error (relative L1 against "
                           "its real output) is below this, scaled by the decay over the run. 0 = never draft "
                           "(exact). Higher = faster."}),
            "decay": ("FLOAT", {
                "default": 0.3, "min": 0.001, "max": 1.0, "step": 0.01,
                "tooltip": "The threshold at the end of the run is threshold x decay (the authors' schedule "
                           "threshold x decay^(step/steps)); 1 = the same all run. Published: Flux 0.3, "
                           "HunyuanVideo 0.1."}),
            "min_threshold": ("FLOAT", {
                "default": 0.0, "min": 0.0, "max": 10.0, "step": 0.005,
                "tooltip": "The decayed threshold never goes under this (the authors: 0.1 on their own error "
                           "scale; 0 = no floor)."}),
            "warmup_steps": ("INT", {"default": 3, "min": 0, "max": 1000,
                                     "tooltip": "The first steps always compute (published: 3)."}),
            "final_steps": ("INT", {
                "default": 2, "min": 0, "max": 1000,
                "tooltip": "The last steps always compute: a flow model's output changes most there, and an unchecked "
                           "draft of them costs the most (on the benchmark models 11-20 dB at 50% of the blocks). "
                           "0 = the authors' rule."}),
            "unverified_drafts": ("INT", {
                "default": 3, "min": 0, "max": 100,
                "tooltip": "Drafts right after a computed step taken without the check (the authors' "
                           "min_taylor_steps + 1: Flux 3, HunyuanVideo 5). 0 = check every draft."}),
            "max_drafts": ("INT", {"default": 8, "min": 0, "max": 100,
                                   "tooltip": "Drafts in a row before a step is forced to compute (published: Flux "
                                              "8, HunyuanVideo 12). 0 = off."}),
            "max_order": ("INT", {"default": 2, "min": 0, "max": 4,
                                  "tooltip": "Taylor order of the drafts (published: Flux 2, HunyuanVideo 1)."}),
            "error_measure": (list(MEASURES), {
                "default": "relative_l1",
                "tooltip": "relative_l1: sum|forecast - real| / sum|real|. pointwise: the authors' mean of "
                           "|forecast - real| / |real| per element, which near-zero values inflate (its thresholds "
                           "are far higher)."}),
        }

    def method(self, model, v):
        args = {k: v[k] for k in ("threshold", "decay", "min_threshold", "warmup_steps", "unverified_drafts",
                                  "max_drafts", "max_order", "error_measure", "final_steps")}
        return (lambda: SpeCa(**args)), {}

    METHOD, SHORT, RANK = "SpeCa", "SpeCa", 11
    EXAMPLES = Examples(
        cases={"speca": Case(off=dict(_TEST, threshold=0.0), on=dict(_TEST, threshold=1.0), runs_on_reuse=1)},
        speed=(dict(threshold=1.0, decay=1.0, warmup_steps=2, unverified_drafts=3, max_drafts=6, max_order=1),
               dict(threshold=0.0)),
        sweeps={"SpeCa": Sweep("threshold", (0.02, 0.05, 0.1, 0.2, 0.4), lambda v, *_: dict(
            threshold=v, decay=0.3, warmup_steps=3, unverified_drafts=1, max_drafts=8, max_order=1, final_steps=2))},
        note="Apply SpeCa Cache: block 0 runs every step; the later blocks are drafted by a Taylor forecast, kept "
             "while block 0's own forecast matches its real output.",
        templates={
            "flux_dev": Template("Order 2, 3 unchecked drafts, at most 8 and decay 0.3 are the authors' Flux "
                                 "setting; the threshold is on CacheKit's error scale.",
                                 dict(threshold=0.1, decay=0.3, warmup_steps=3, unverified_drafts=3, max_drafts=8,
                                      max_order=2)),
            "*": Template("Order 1, 5 unchecked drafts, at most 12 and decay 0.1 are the authors' HunyuanVideo "
                          "setting (it computes only its first step before drafting: 3 here); the threshold is on "
                          "CacheKit's error scale.",
                          dict(threshold=0.1, decay=0.1, warmup_steps=3, unverified_drafts=5, max_drafts=12,
                               max_order=1))})
