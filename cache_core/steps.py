"""Which step of the sampler's schedule a model call belongs to, from the sigma it is called with.

Samplers call the model more than once per step and at sigmas off the schedule: DPM-2, DPM++ 2S/SDE and
SEEDS at midpoints, Heun at the next step's sigma (its corrector), SA-Solver PECE again at the same
sigma, heunpp2 even two steps ahead, DPM adaptive wherever its error control goes. Counting callbacks
or calls cannot tell these apart, the sigma can: step i is the noise interval from sigmas[i] (included)
down to sigmas[i+1]. A call at a midpoint stays in its step; a call at exactly sigmas[i+1] is evaluated
at step i+1's noise level and counts there (the convention ComfyUI-TeaCache and ComfyUI-MagCache use).
The fractional position (i at sigmas[i], linear in sigma between) is what forecasters extrapolate in.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Sequence

import torch

from .policy import StepInfo

SNAP = 1e-3   # a position this close below an integer is that step (sigma rounding in the samplers)


class StepClock:
    def __init__(self, sigmas: Sequence[float]):
        self.sigmas = [float(s) for s in sigmas]
        self.total = max(len(self.sigmas) - 1, 0)
        self._last = 0.0

    def position(self, sigma: float) -> float:
        """sigma as a fractional step index. A schedule that rises again (restarts) may hold a sigma in
        several steps: the one nearest the previous call wins, forward first."""
        s = self.sigmas
        found = [i + ((s[i] - sigma) / (s[i] - s[i + 1]) if s[i] != s[i + 1] else 0.0)
                 for i in range(self.total) if min(s[i], s[i + 1]) <= sigma <= max(s[i], s[i + 1])]
        if not found:   # outside the schedule (e.g. sigma_hat above sigma_max): the nearer end
            return 0.0 if abs(sigma - s[0]) <= abs(sigma - s[-1]) else float(self.total)
        return min(found, key=lambda p: (p < self._last - SNAP, abs(p - self._last)))

    def locate(self, sigma: float) -> StepInfo:
        sigma = float(sigma)
        if self.total == 0 or math.isnan(sigma):
            return StepInfo(0, self.total, sigma, 0.0)
        p = self.position(sigma)
        self._last = p
        return StepInfo(min(int(math.floor(p + SNAP)), self.total - 1), self.total, sigma, p)


class CallStep:
    """The step of one model call, found from its sigma when first asked for. A sigma still on the device is
    read in the same host transfer as the call's decision metric (span_cache reads both with one to_floats), so
    a deciding call costs one host sync, not two; a call that decides nothing reads it when its step is needed."""

    def __init__(self, clock: StepClock, sigma: float | torch.Tensor, grid: tuple[int, ...] = ()):
        self._clock, self._sigma, self._grid = clock, sigma, grid
        self._step: StepInfo | None = None

    @property
    def pending(self) -> torch.Tensor | None:
        """The sigma to read with the metrics (fp32 there: only a sigma that fp32 holds exactly rides along)."""
        s = self._sigma
        if self._step is None and torch.is_tensor(s) and s.dtype in (torch.float32, torch.float16, torch.bfloat16):
            return s
        return None

    def resolve(self, sigma: float | None = None) -> StepInfo:
        """The call's step; `sigma`: the pending sigma's value, read by the caller."""
        if self._step is None:
            value = float(self._sigma) if sigma is None else sigma
            self._step = dataclasses.replace(self._clock.locate(value), grid=self._grid)
        return self._step
