"""DBCache, cache-dit's dual block cache (vipshop/cache-dit; docs/methods.md §1.5).

The first Fn blocks always run and give the probe (their residual on the image stream); the last Bn
blocks always run, on the approximation when the middle is reused, which lets them correct it. The
middle span is reused when relL1(Fn residual, Fn residual of the last computed step) < R, after
cache-dit's checks in its order: warmup (steps range(0, W, I) compute), max cached steps, max
consecutive cached steps, max accumulated diff; R <= 0 never reuses, R >= 1 always does.
Optionally the middle residual is forecast instead of reused as it was: cache-dit's calibrators, TaylorSeer
(`taylorseer_order` > 0) or FoCa (`calibrator="foca"`, forecast.FoCaForecaster; docs/methods.md §1.11).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..forecast import FoCaForecaster, TaylorForecaster
from ..metrics import rel_l1_parts
from ..policy import CachePolicy, Tunable, Hidden, StepInfo

__all__ = ["DBCache"]   # what cache_core exports (policies/__init__.py)

CALIBRATORS = ("taylorseer", "foca")


@dataclass
class _State:
    prev_probe: torch.Tensor | None = None
    cached_steps: int = 0
    continuous: int = 0
    acc_diff: float = 0.0
    forecaster: TaylorForecaster | FoCaForecaster | None = None


class DBCache(CachePolicy, Tunable):
    name = "DBCache"
    probe = "front_residual"

    def __init__(self, front_blocks: int = 8, back_blocks: int = 0, threshold: float = 0.08,
                 warmup_steps: int = 8, warmup_interval: int = 1, max_cached_steps: int = -1,
                 max_continuous_cached_steps: int = -1, max_accumulated_diff: float = 0.0,
                 taylorseer_order: int = 0, calibrator: str = "taylorseer"):
        if front_blocks < 1 or back_blocks < 0 or warmup_interval < 1:
            raise ValueError(f"need front_blocks >= 1, back_blocks >= 0, warmup_interval >= 1; got "
                             f"{front_blocks}, {back_blocks}, {warmup_interval}")
        if calibrator not in CALIBRATORS:
            raise ValueError(f"calibrator must be one of {CALIBRATORS}, got {calibrator!r}")
        self.front_blocks, self.back_blocks = int(front_blocks), int(back_blocks)
        self.threshold = float(threshold)
        self.warmup = range(0, int(warmup_steps), int(warmup_interval))
        self.max_cached, self.max_continuous = int(max_cached_steps), int(max_continuous_cached_steps)
        self.max_accumulated = float(max_accumulated_diff)
        self.taylorseer_order, self.calibrator = int(taylorseer_order), calibrator

    def new_state(self, label: str) -> _State:
        if self.calibrator == "foca":
            return _State(forecaster=FoCaForecaster())
        fc = TaylorForecaster(self.taylorseer_order) if self.taylorseer_order > 0 else None
        return _State(forecaster=fc)

    def measure(self, state: _State, probe):
        if state.prev_probe is None or state.prev_probe.shape != probe.shape:
            return None
        return rel_l1_parts(probe, state.prev_probe)

    def _blocked(self, state: _State, step: StepInfo) -> bool:
        """cache-dit's checks before the similarity test (CacheManager.can_cache)."""
        return (step.index in self.warmup
                or 0 <= self.max_cached <= state.cached_steps
                or 0 <= self.max_continuous <= state.continuous
                or 0 < self.max_accumulated <= state.acc_diff
                or self.threshold <= 0 or state.prev_probe is None)

    def wants_reuse(self, state: _State, metric, step: StepInfo) -> bool:
        if self._blocked(state, step):
            return False
        if self.threshold >= 1.0:
            return True
        return metric is not None and metric < self.threshold

    def commit(self, state: _State, reused: bool, probe, metric, step: StepInfo) -> None:
        measured = not self._blocked(state, step) and self.threshold < 1.0 and metric is not None
        if measured and metric > 0:
            state.acc_diff += metric      # every measured diff counts, computed steps too
        if reused:
            state.cached_steps += 1
            state.continuous += 1
        else:
            state.continuous = 0
            state.prev_probe = probe

    def store(self, state: _State, residual: Hidden, step: StepInfo, span_input: Hidden) -> Hidden:
        if state.forecaster is not None:
            state.forecaster.update(residual, step.position)
        return residual

    def reuse(self, state: _State, cached: Hidden, step: StepInfo, span_input: Hidden) -> Hidden:
        if state.forecaster is not None and state.forecaster.ready:
            return state.forecaster.predict(step.position, like=cached)
        return cached
