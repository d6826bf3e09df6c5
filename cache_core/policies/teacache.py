"""TeaCache (ali-vilab/TeaCache, CVPR'25; methods.md §1.2).

The indicator is block 0's timestep-modulated input. Per stream: acc += poly(relL1(F_t, F_prev));
reuse the whole-stack residual while acc < threshold, else compute and reset acc. F_prev follows
every call, reused or not. The first `retention_steps` and last `final_steps` steps always compute.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

from ..metrics import rel_l1
from ..policy import CachePolicy, StepInfo


def poly(coefficients: Sequence[float], x: float) -> float:
    """np.poly1d semantics: coefficients highest degree first (Horner)."""
    y = 0.0
    for c in coefficients:
        y = y * x + c
    return y


@dataclass
class _State:
    prev: torch.Tensor | None = None
    acc: float = 0.0


class TeaCache(CachePolicy):
    name = "TeaCache"
    front_blocks = 0
    back_blocks = 0
    probe = "modulated_input"

    def __init__(self, threshold: float, coefficients: Sequence[float], retention_steps: int = 1,
                 final_steps: int = 1):
        if threshold < 0:
            raise ValueError(f"threshold must be >= 0, got {threshold}")
        if not coefficients:
            raise ValueError("coefficients must not be empty")
        self.threshold = float(threshold)
        self.coefficients = [float(c) for c in coefficients]
        self.retention_steps, self.final_steps = int(retention_steps), int(final_steps)

    def new_state(self, label: str) -> _State:
        return _State()

    def forced(self, step: StepInfo) -> bool:
        return step.index < self.retention_steps or step.index >= step.total - self.final_steps

    def measure(self, state: _State, probe):
        if state.prev is None or state.prev.shape != probe.shape:
            return None
        return rel_l1(probe, state.prev)

    def _accumulated(self, state: _State, metric: float) -> float:
        return state.acc + poly(self.coefficients, metric)

    def wants_reuse(self, state: _State, metric, step: StepInfo) -> bool:
        if self.threshold <= 0:   # 0 = off: an accumulator can be <= 0 (negative polynomial, gamma = 1)
            return False
        if metric is None or self.forced(step):
            return False
        return self._accumulated(state, metric) < self.threshold

    def commit(self, state: _State, reused: bool, probe, metric, step) -> None:
        state.acc = self._accumulated(state, metric) if reused else 0.0
        state.prev = probe    # updated on every call, skipped ones included
