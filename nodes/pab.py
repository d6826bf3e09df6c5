"""Apply Pyramid Attention Broadcast: MODEL in, MODEL out (docs/methods.md §1.8)."""
from __future__ import annotations

from ..cache_core.policies.pab import PyramidAttentionBroadcast
from . import common
from .examples import Case, Examples, Sweep, Template


_WHOLE = dict(start_percent=0.0, end_percent=1.0)   # the whole schedule

class ApplyPyramidAttentionBroadcast(common.CacheNode):
    NODE_NAME = "Apply Pyramid Attention Broadcast"
    DESCRIPTION = ("Inside the chosen part of the schedule, computes each attention on one step in every N and "
                   "reuses its output on the steps between; cross attention tolerates a longer interval than "
                   "self attention. Skips the attention module where the family's blocks have one (Wan, PixArt, "
                   "HunyuanDiT: its projections too), else the attention kernel (Flux, HunyuanVideo, ...: the "
                   "projections still run).")
    WINDOW = {"start_percent": 0.2, "end_percent": 0.9}   # diffusers' timestep range (100, 800) of 1000

    @classmethod
    def own_inputs(cls):
        return {
            "self_attention_interval": ("INT", {
                "default": 2, "min": 1, "max": 20,
                "tooltip": "Self (and joint image-text) attention computes one step in N. 1 = always. "
                           "Published: 2 (diffusers CogVideoX and Allegro)."}),
            "cross_attention_interval": ("INT", {
                "default": 6, "min": 1, "max": 50,
                "tooltip": "Cross attention (Wan, LTXV) computes one step in N. Published: 6 (Allegro)."}),
        }

    def method(self, model, v):
        intervals = {"self": v["self_attention_interval"], "cross": v["cross_attention_interval"]}
        return (lambda: PyramidAttentionBroadcast(intervals)), {}

    METHOD, SHORT, RANK = "Pyramid Attention Broadcast", "PAB", 6
    EXAMPLES = Examples(
        cases={"pab": Case(off=dict(self_attention_interval=1, cross_attention_interval=1, **_WHOLE),
                           on=dict(self_attention_interval=2, cross_attention_interval=3, **_WHOLE),
                           runs_on_reuse=None)},
        speed=(dict(self_attention_interval=3, cross_attention_interval=6, **_WHOLE),
               dict(self_attention_interval=1, cross_attention_interval=1)),
        sweeps={"PAB": Sweep("self interval", (2, 3, 4, 6, 8), lambda v, *_: dict(
            self_attention_interval=v, cross_attention_interval=v + 2, start_percent=0.1, end_percent=0.95),
            reference="PAB (diffusers)")},
        templates={"*": Template(
            "Apply Pyramid Attention Broadcast: inside 20-90% of the schedule, self attention is computed every 2nd "
            "step and cross attention every 6th; the projections still run, so the gain grows with the sequence "
            "length (long videos).", dict(self_attention_interval=2, cross_attention_interval=6))})
