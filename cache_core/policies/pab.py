"""Pyramid Attention Broadcast (diffusers `pyramid_attention_broadcast`; methods.md §1.8).

Inside the schedule window, the attention output of each block is computed on one step in every N
and broadcast (reused) on the steps between, with a longer interval for less sensitive attention
types (the "pyramid": cross attention > self attention). diffusers counts calls per module, which
mixes cond and uncond under sequential CFG; here the count is the sampler step, per stream.
"""
from __future__ import annotations

from ..policy import ComponentPolicy, StepInfo


class PyramidAttentionBroadcast(ComponentPolicy):
    name = "PyramidAttentionBroadcast"

    def __init__(self, intervals: dict[str, int]):
        bad = {k: v for k, v in intervals.items() if int(v) < 1}
        if bad:
            raise ValueError(f"intervals must be >= 1, got {bad}")
        self.intervals = {k: int(v) for k, v in intervals.items()}

    def component_reuse(self, kind: str, block: int, step: StepInfo) -> bool:
        n = self.intervals.get(kind, 1)
        return n > 1 and step.index % n != 0
