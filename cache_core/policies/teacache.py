"""TeaCache (ali-vilab/TeaCache, CVPR'25; docs/methods.md §1.2).

The indicator is block 0's timestep-modulated input. Per stream: acc += poly(relL1(F_t, F_prev));
reuse the whole-stack residual while acc < threshold, else compute and reset acc. F_prev follows
every call, reused or not. The first `retention_steps` and last `final_steps` steps always compute.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

from ..calibration_data import TEACACHE_COEFFICIENTS
from ..metrics import rel_l1, rel_l1_parts
from ..policy import CachePolicy, Tunable, StepInfo

__all__ = ["TeaCache", "TeaCacheCalibration"]   # what cache_core exports (policies/__init__.py)


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


class TeaCache(CachePolicy, Tunable):
    reference = "previous_call"    # F_prev follows every call, reused or not
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

    def edges(self, total_steps: int) -> tuple[int, int]:
        return self.retention_steps, self.final_steps

    def measure(self, state: _State, probe, step: StepInfo | None = None):
        if state.prev is None or state.prev.shape != probe.shape:
            return None
        return rel_l1_parts(probe, state.prev)

    def _accumulated(self, state: _State, metric: float) -> float:
        return state.acc + poly(self.coefficients, metric)

    def wants_reuse(self, state: _State, metric, step: StepInfo) -> bool:
        if self.threshold <= 0:   # 0 = off: an accumulator can be <= 0 (negative polynomial, gamma = 1)
            return False
        if metric is None:
            return False
        return self._accumulated(state, metric) < self.threshold

    def commit(self, state: _State, reused: bool, probe, metric, step) -> None:
        state.acc = self._accumulated(state, metric) if reused else 0.0
        state.prev = probe    # updated on every call, skipped ones included


@dataclass
class _CalState:
    label: str
    prev_input: torch.Tensor | None = None
    prev_output: torch.Tensor | None = None
    last_step: int = -1
    recording: bool = False          # this call is the first of its step: its pair is recorded
    input_change: float | None = None


class TeaCacheCalibration(CachePolicy):
    """A run that never reuses and records, per stream and step (its first call), the relative L1 change of
    block 0's modulated input and of the stack's output against the previous step: the pairs the rescaling
    polynomial maps one to the other (how the published coefficients were made, ali-vilab/TeaCache)."""
    name = "TeaCache calibration"
    front_blocks = 0
    back_blocks = 0
    probe = "modulated_input"

    def __init__(self, degree: int = 4):
        if degree < 1:
            raise ValueError(f"degree must be >= 1, got {degree}")
        self.degree = int(degree)
        self.steps = 0
        self.pairs: dict[str, list[tuple[float, float]]] = {}

    def new_state(self, label: str) -> _CalState:
        self.pairs[label] = []
        return _CalState(label)

    def measure(self, state: _CalState, probe):
        if state.prev_input is None or state.prev_input.shape != probe.shape:
            return None
        return rel_l1_parts(probe, state.prev_input)

    def wants_reuse(self, state, metric, step) -> bool:
        return False

    def commit(self, state: _CalState, reused: bool, probe, metric, step: StepInfo) -> None:
        self.steps = step.total
        state.recording = step.index > state.last_step
        if state.recording:
            state.prev_input, state.last_step, state.input_change = probe, step.index, metric

    def store(self, state: _CalState, residual, step: StepInfo, span_input) -> dict:
        if state.recording:
            key = next(iter(residual))
            out = span_input[key] + residual[key]
            prev = state.prev_output
            if state.input_change is not None and prev is not None and prev.shape == out.shape:
                self.pairs[state.label].append((state.input_change, float(rel_l1(out, prev))))
            state.prev_output, state.recording = out, False
        return residual

    def result(self) -> dict:
        points = [p for pairs in self.pairs.values() for p in pairs]
        if len(points) <= self.degree:
            raise ValueError(f"{len(points)} recorded steps are too few to fit a degree {self.degree} "
                             f"polynomial; calibrate with more steps")
        coefficients, rmse = fit_polynomial(points, self.degree)
        return {"format": TEACACHE_COEFFICIENTS, "version": 1, "steps": self.steps, "degree": self.degree,
                "coefficients": coefficients, "fit_rmse": rmse,
                "samples": {label: {"input": [x for x, _ in pairs], "output": [y for _, y in pairs]}
                            for label, pairs in self.pairs.items()}}


def fit_polynomial(points: Sequence[tuple[float, float]], degree: int) -> tuple[list[float], float]:
    """Least-squares polynomial y ~ poly(x) (coefficients highest degree first, as np.polyfit) and its RMS
    error, in float64."""
    x = torch.tensor([p[0] for p in points], dtype=torch.float64)
    y = torch.tensor([p[1] for p in points], dtype=torch.float64)
    vander = torch.stack([x ** k for k in range(degree, -1, -1)], dim=1)
    coef = torch.linalg.lstsq(vander, y.unsqueeze(1), driver="gelsd").solution.squeeze(1)
    rmse = float(((vander @ coef - y) ** 2).mean().sqrt())
    return [float(c) for c in coef], rmse
