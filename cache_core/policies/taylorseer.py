"""TaylorSeer (Shenyi-Z/TaylorSeer, ICCV'25; diffusers `taylorseer_cache`; docs/methods.md §1.6).

A static schedule: the first `warmup_steps` steps compute, then one step in every `interval`
(diffusers' rule: compute when (step - warmup - 1) % interval == 0), and the last `final_steps` (0 is
diffusers' schedule: where the interval lands decides whether the last steps, where a flow model's
residual changes most, are forecast, which made quality rise again at wider intervals); the steps between are forecast
by a Taylor series in the step position from the computed steps (a sampler's midpoint call sits
between two steps: it follows its step's schedule and is forecast at its own position). What is
forecast (`target`):
  "residual"  the whole-stack residual, added to the current stack input (light: one tensor per stream)
  "output"    the stack's output features themselves, which is what hooking every block with diffusers'
              TaylorSeer amounts to (a forecast block ignores its input, so only the last one counts)
How it is forecast (`forecaster`, cache_core/forecast.py):
  "taylor"   the Taylor series (TaylorSeer's own rule)
  "hermite"  HiCache (arXiv 2508.16984): the same factors weighted by scaled Hermite polynomials (§1.10)
  "foca"     FoCa (arXiv 2508.16211): a Heun step from the last computed step with a recursive window of the
             last two values; max_order does not apply (§1.11)
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..forecast import FoCaForecaster, HermiteForecaster, TaylorForecaster
from ..policy import CachePolicy, Hidden, StepInfo

__all__ = ["TaylorSeer"]   # what cache_core exports (policies/__init__.py)

TARGETS = ("residual", "output")
FORECASTERS = ("taylor", "hermite", "foca")


@dataclass
class _State:
    forecaster: TaylorForecaster | FoCaForecaster


class TaylorSeer(CachePolicy):
    name = "TaylorSeer"
    front_blocks = 0
    back_blocks = 0
    probe = None

    def __init__(self, interval: int = 5, warmup_steps: int = 3, max_order: int = 1, target: str = "residual",
                 factors_dtype: torch.dtype | None = torch.float32, final_steps: int = 0,
                 forecaster: str = "taylor"):
        if interval < 1:
            raise ValueError(f"interval must be >= 1, got {interval}")
        if final_steps < 0:
            raise ValueError(f"final_steps must be >= 0, got {final_steps}")
        if target not in TARGETS:
            raise ValueError(f"target must be one of {TARGETS}, got {target!r}")
        if forecaster not in FORECASTERS:
            raise ValueError(f"forecaster must be one of {FORECASTERS}, got {forecaster!r}")
        self.interval, self.warmup_steps, self.max_order = int(interval), int(warmup_steps), int(max_order)
        self.target, self.factors_dtype, self.final_steps = target, factors_dtype, int(final_steps)
        self.forecaster = forecaster

    def new_state(self, label: str) -> _State:
        if self.forecaster == "foca":
            return _State(FoCaForecaster(self.factors_dtype))
        kind = HermiteForecaster if self.forecaster == "hermite" else TaylorForecaster
        return _State(kind(self.max_order, self.factors_dtype))

    def edges(self, total_steps: int) -> tuple[int, int]:
        return self.warmup_steps, self.final_steps

    def scheduled_compute(self, step: StepInfo) -> bool:
        return step.at_edge(*self.edges(step.total)) or (step.index - self.warmup_steps - 1) % self.interval == 0

    def wants_reuse(self, state: _State, metric, step: StepInfo) -> bool:
        return state.forecaster.ready and not self.scheduled_compute(step)

    def store(self, state: _State, residual: Hidden, step: StepInfo, span_input: Hidden) -> Hidden:
        values = residual if self.target == "residual" else {k: span_input[k] + residual[k] for k in residual}
        state.forecaster.update(values, step.position)
        return residual

    def reuse(self, state: _State, cached: Hidden, step: StepInfo, span_input: Hidden) -> Hidden:
        forecast = state.forecaster.predict(step.position, like=cached)
        if self.target == "residual":
            return forecast
        return {k: forecast[k] - span_input[k] for k in forecast}
