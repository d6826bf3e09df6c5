"""Pyramid Attention Broadcast (diffusers `pyramid_attention_broadcast`; docs/methods.md §1.8).

Inside the schedule window, the attention output of each block is computed on one step in every N
and broadcast (reused) on the steps between, with a longer interval for less sensitive attention
types (the "pyramid": cross attention > self attention). diffusers counts calls per module, which
mixes cond and uncond under sequential CFG; here the count is the sampler step, per stream.
"""
from __future__ import annotations

from ..policy import ComponentPolicy, StepInfo

__all__ = ["PyramidAttentionBroadcast"]   # what cache_core exports (policies/__init__.py)


class PyramidAttentionBroadcast(ComponentPolicy):
    name = "PyramidAttentionBroadcast"

    def __init__(self, intervals: dict[str, int]):
        bad = {k: v for k, v in intervals.items() if int(v) < 1}
        if bad:
            raise ValueError(f"intervals must be >= 1, got {bad}")
        self.intervals = {k: int(v) for k, v in intervals.items()}
        self.seen: set[str] = set()      # the attention kinds this run's model called

    def observe(self, label: str, key, kind: str, out, step: StepInfo) -> None:
        self.seen.add(kind)

    def run_notes(self) -> list[str]:
        idle = [k for k, n in self.intervals.items() if n > 1 and k not in self.seen]
        return [f"this model makes no {k} attention call through ComfyUI's attention (text and image attend jointly, "
                f"or it computes that attention its own way): {k}_attention_interval {self.intervals[k]} had nothing "
                f"to act on" for k in idle] if self.seen else []

    def reuses(self, kind: str, block: int) -> bool:
        return self.intervals.get(kind, 1) > 1

    def component_reuse(self, kind: str, block: int, step: StepInfo) -> bool:
        n = self.intervals.get(kind, 1)
        return n > 1 and step.index % n != 0
