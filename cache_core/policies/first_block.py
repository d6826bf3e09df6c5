"""First Block Cache (ParaAttention / diffusers `first_block_cache`, docs/methods.md §1.1).

Block 0 always runs. The rest of the stack is reused when the relative L1 change of block 0's
residual, against the residual of the last *computed* call, is below the threshold.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..metrics import rel_l1_parts
from ..policy import CachePolicy, Tunable, StepInfo

__all__ = ["FirstBlockCache"]   # what cache_core exports (policies/__init__.py)


@dataclass
class _State:
    prev_probe: torch.Tensor | None = None


class FirstBlockCache(CachePolicy, Tunable):
    name = "FirstBlockCache"
    front_blocks = 1
    back_blocks = 0

    def __init__(self, threshold: float):
        if threshold < 0:
            raise ValueError(f"threshold must be >= 0, got {threshold}")
        self.threshold = float(threshold)

    def new_state(self, label: str) -> _State:
        return _State()

    def measure(self, state: _State, probe):
        if probe is None or state.prev_probe is None or state.prev_probe.shape != probe.shape:
            return None
        return rel_l1_parts(probe, state.prev_probe)

    def wants_reuse(self, state: _State, metric, step: StepInfo) -> bool:
        # strict '<': threshold 0 never reuses, so the output stays bit-identical
        return metric is not None and metric < self.threshold

    def commit(self, state: _State, reused: bool, probe, metric, step) -> None:
        if not reused:
            state.prev_probe = probe   # only computed calls refresh the reference (not skipped ones)
