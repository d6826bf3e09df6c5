"""Spectrum (Adaptive Spectral Feature Forecasting, CVPR'26, arXiv 2603.01623; public code hanjq17/Spectrum;
docs/methods.md §1.9).

The block stack's output feature (what the final layer reads) is treated as a function of time and
forecast on skipped steps from every computed step (forecast.ChebyshevForecaster: Chebyshev ridge fit
blended with a first-order Taylor step). The schedule of computed steps: the first `warmup_steps`, then
gaps that widen, the k-th gap floor(gap_base + gap_growth * k) steps (2, 2, 3, 4, 5, ... by default),
and the last `final_steps` (the ComfyUI ports force 3; the authors' code none: 0 reproduces it). Time is the
step position from the sampler's sigmas mapped onto [-1, 1) as the authors map their step index. A stream
forecasts only once it has degree + 1 computed steps. Defaults are the authors' recommended run
(hanjq17/Spectrum README and scripts/run_mp_image.sh: w 0.5, lam 0.1, m 4, window 2, flex 0.75, warmup 5).
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass

from ..forecast import ChebyshevForecaster
from ..policy import CachePolicy, Hidden, StepInfo

__all__ = ["Spectrum"]   # what cache_core exports (policies/__init__.py)


@functools.lru_cache(maxsize=64)
def compute_steps(total: int, warmup: int, final: int, base: float, growth: float) -> frozenset[int]:
    """The steps that run the model out of `total`."""
    steps = set(range(min(warmup, total))) | set(range(max(total - final, 0), total))
    i, k = min(warmup, total) - 1, 0
    while True:
        i += max(1, math.floor(base + growth * k))
        k += 1
        if i >= total:
            return frozenset(steps)
        steps.add(i)


@dataclass
class _State:
    forecaster: ChebyshevForecaster


class Spectrum(CachePolicy):
    name = "Spectrum"
    front_blocks = 0
    back_blocks = 0
    probe = None

    def __init__(self, warmup_steps: int = 5, final_steps: int = 3, gap_base: float = 2.0, gap_growth: float = 0.75,
                 degree: int = 4, ridge: float = 0.1, blend: float = 0.5, history_on_cpu: bool = False):
        if warmup_steps < 0 or final_steps < 0 or gap_base < 1 or gap_growth < 0:
            raise ValueError(f"need warmup_steps >= 0, final_steps >= 0, gap_base >= 1, gap_growth >= 0; got "
                             f"{warmup_steps}, {final_steps}, {gap_base}, {gap_growth}")
        ChebyshevForecaster(degree, ridge, blend)     # checks the fit's settings
        self.warmup, self.final, self.base, self.growth = int(warmup_steps), int(final_steps), gap_base, gap_growth
        self.degree, self.ridge, self.blend = int(degree), float(ridge), float(blend)
        self.storage = "cpu" if history_on_cpu else None

    def new_state(self, label: str) -> _State:
        return _State(ChebyshevForecaster(self.degree, self.ridge, self.blend, self.storage))

    @staticmethod
    def tau(step: StepInfo) -> float:
        # the authors map step t of their 50-step runs to (t - 25) / 25; t / total generalizes it
        return 2.0 * step.position / max(step.total, 1) - 1.0

    def edges(self, total_steps: int) -> tuple[int, int]:
        return self.warmup, self.final     # also where compute_steps starts and ends its gaps

    def scheduled_compute(self, step: StepInfo) -> bool:
        return step.index in compute_steps(step.total, self.warmup, self.final, self.base, self.growth)

    def wants_reuse(self, state: _State, metric, step: StepInfo) -> bool:
        n = len(state.forecaster.taus)
        return state.forecaster.ready and n >= self.degree + 1 and not self.scheduled_compute(step)

    def store(self, state: _State, residual: Hidden, step: StepInfo, span_input: Hidden) -> Hidden:
        state.forecaster.update({k: span_input[k] + residual[k] for k in residual}, self.tau(step))
        return residual

    def reuse(self, state: _State, cached: Hidden, step: StepInfo, span_input: Hidden) -> Hidden:
        forecast = state.forecaster.predict(self.tau(step), like=cached)
        return {k: forecast[k] - span_input[k] for k in forecast}
