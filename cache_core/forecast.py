"""Forecasters: predict a cached feature at a later step from its values at computed steps.

Kept apart from the decision policies so any method can forecast instead of reusing stale values
(TaylorSeer; DBCache's calibrator)."""
from __future__ import annotations

import math

import torch


class TaylorForecaster:
    """Taylor series in the step position (TaylorSeer, ICCV'25; methods.md §1.6).

    At a computed step s with value Y, Δ = s - s_prev:  d0 = Y,  d_{i+1} = (d_i - d_i_old) / Δ  (up to
    max_order, and only as far as the previous update had orders). At step s + k the forecast is
    Σ_i d_i k^i / i!.  Factors are kept in `dtype` (None = the feature's own dtype).
    Positions may be fractional (a sampler's midpoint call). Only the first value at a position counts:
    a second one there (Heun's corrector, SA-Solver PECE) or one for an earlier position (heunpp2 looks
    ahead, then back) changes nothing, so differences always span distinct positions.
    """

    def __init__(self, max_order: int = 1, dtype: torch.dtype | None = torch.float32):
        if max_order < 0:
            raise ValueError(f"max_order must be >= 0, got {max_order}")
        self.max_order, self.dtype = int(max_order), dtype
        self.factors: dict[str, list[torch.Tensor]] = {}
        self.last_step: float | None = None

    def update(self, values: dict[str, torch.Tensor], step: float) -> None:
        if self.last_step is not None and step <= self.last_step:
            return
        delta = None if self.last_step is None else step - self.last_step
        for key, value in values.items():
            new = [value]
            old = self.factors.get(key, []) if delta is not None else []
            for i in range(min(self.max_order, len(old))):
                new.append((new[i] - old[i].to(value.dtype)) / delta)
            self.factors[key] = [f.to(self.dtype) if self.dtype is not None else f for f in new]
        self.last_step = step

    @property
    def ready(self) -> bool:
        return self.last_step is not None

    def predict(self, step: float, like: dict[str, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
        k = step - self.last_step
        out = {}
        for key, factors in self.factors.items():
            dtype = like[key].dtype if like is not None else factors[0].dtype
            acc = torch.zeros_like(factors[0], dtype=dtype)
            for i, f in enumerate(factors):
                acc = acc + f.to(dtype) * ((k ** i) / math.factorial(i))
            out[key] = acc
        return out
