"""LeMiCa (Lexicographic Minimax Path Caching, NeurIPS 2025, arXiv 2511.00090; github:UnicomAI/LeMiCa, whose
ComfyUI node applies published step lists; docs/methods.md §1.14).

A static schedule searched offline: one calibration run of the uncached model records, per stream, the error of
reusing step i's whole-stack residual at every later step k (LeMiCaCalibration); the schedule that computes B of the
T steps is the lexicographic minimax path over those errors (schedule_search.py), solved once when the node installs.
The run then computes on the schedule's steps and reuses the last computed residual elsewhere (as the authors' node
does), or forecasts it: to first order (TaylorForecaster) or by FoCa's predictor-corrector (FoCaForecaster). No
probe, nothing measured, nothing data-dependent decides.
Cond and uncond share the schedule (the node solves it on the worse stream's errors).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ..calibration_data import LEMICA_ERRORS, LEMICA_MAX_STEPS
from ..forecast import FoCaForecaster, TaylorForecaster
from ..metrics import rel_l1_parts
from ..policy import CachePolicy, Hidden, ResidualRecorder, StepInfo

__all__ = ["LeMiCa", "LeMiCaCalibration"]   # what cache_core exports (policies/__init__.py)

FORECASTS = ("reuse", "taylor", "foca")


@dataclass
class _State:
    forecaster: TaylorForecaster | FoCaForecaster | None


class LeMiCa(CachePolicy):
    name = "LeMiCa"
    front_blocks = 0
    back_blocks = 0
    probe = None

    def __init__(self, computed_steps, steps: int, forecast: str = "reuse", final_steps: int = 0):
        computed = sorted({int(s) for s in computed_steps})
        if steps < 1 or not computed or computed[0] != 0 or computed[-1] >= steps:
            raise ValueError(f"computed steps must start at step 0 and lie below {steps}, got {computed}")
        if forecast not in FORECASTS:
            raise ValueError(f"forecast must be one of {FORECASTS}, got {forecast!r}")
        if final_steps < 0:
            raise ValueError(f"final_steps must be >= 0, got {final_steps}")
        self.computed, self.steps = frozenset(computed), int(steps)
        self.forecast, self.final_steps = forecast, int(final_steps)

    def prepare(self, total_steps: int) -> list[str]:
        if total_steps != self.steps:
            raise ValueError(f"the schedule was searched from a calibration of {self.steps} steps and this run has "
                             f"{total_steps}: calibrate (Calibrate LeMiCa) with {total_steps} steps")
        return []

    def new_state(self, label: str) -> _State:
        if self.forecast == "reuse":
            return _State(None)
        return _State(TaylorForecaster(1) if self.forecast == "taylor" else FoCaForecaster())

    def edges(self, total_steps: int) -> tuple[int, int]:
        return 1, self.final_steps

    def wants_reuse(self, state: _State, metric, step: StepInfo) -> bool:
        return step.index not in self.computed

    def store(self, state: _State, residual: Hidden, step: StepInfo, span_input: Hidden) -> Hidden:
        if state.forecaster is not None:
            state.forecaster.update(residual, step.position)
        return residual

    def reuse(self, state: _State, cached: Hidden, step: StepInfo, span_input: Hidden) -> Hidden:
        if state.forecaster is None:
            return cached
        return state.forecaster.predict(step.position, like=cached)


@dataclass
class _CalState:
    label: str
    index: torch.Tensor | None = None                            # the sampled elements, the same at every step
    size: int | None = None
    rows: dict[int, torch.Tensor] = field(default_factory=dict)  # step -> its sampled residual (fp32)


class LeMiCaCalibration(ResidualRecorder):
    """A run that never reuses and records, per stream, E[i][k] = rel_l1(r_k, r_i) = sum|r_k - r_i| / sum|r_i| for
    every pair of steps i < k, r = the whole-stack residual of the step's first call (every stream key of the
    residual, flattened). Keeping every step's residual whole costs T times the hidden state per stream; only
    `samples` elements of it are kept, drawn uniformly (with replacement, fixed seed) once per stream, the same
    elements at every step: both sums become unbiased estimates from `samples` terms, so the ratio's relative error
    is about 1/sqrt(samples) where the elements' differences are not dominated by a few (0.4 % at 65536). A step no
    call landed in (DPM fast) has no row: its errors are None, and the search avoids edges over it."""
    name = "LeMiCa calibration"
    state_type = _CalState

    def __init__(self, samples: int = 65536, seed: int = 0):
        if samples < 1:
            raise ValueError(f"samples must be >= 1, got {samples}")
        super().__init__()
        self.samples, self.seed = int(samples), int(seed)

    def prepare(self, total_steps: int) -> list[str]:
        if total_steps > LEMICA_MAX_STEPS:
            raise ValueError(f"steps must be at most {LEMICA_MAX_STEPS} (the schedule search grows with the steps "
                             f"squared), got {total_steps}")
        return []

    def record(self, state: _CalState, residual: Hidden, step: StepInfo) -> None:
        if step.index in state.rows:
            return
        flat = torch.cat([residual[k].detach().reshape(-1) for k in sorted(residual)])
        if state.size is None:
            state.size = flat.numel()
            if state.size > self.samples:
                gen = torch.Generator().manual_seed(self.seed)
                state.index = torch.randint(0, state.size, (self.samples,), generator=gen).to(flat.device)
        if flat.numel() == state.size:
            state.rows[step.index] = (flat if state.index is None else flat[state.index]).float().clone()

    def _errors(self, rows: dict[int, torch.Tensor]) -> list[list[float | None]]:
        out = []
        for i in range(self.steps - 1):
            row = [None] * (self.steps - 1 - i)
            if i in rows:
                later = [k for k in range(i + 1, self.steps) if k in rows]
                if later:
                    parts = torch.stack([rel_l1_parts(rows[k], rows[i]) for k in later])
                    values = (parts[:, 0] / parts[:, 1].clamp_min(1e-12)).cpu().tolist()
                    for k, v in zip(later, values):
                        row[k - i - 1] = float(v)
            out.append(row)
        return out

    def result(self) -> dict:
        if not self.streams:
            raise ValueError("the calibration run made no model call")
        return {"format": LEMICA_ERRORS, "version": 1, "steps": self.steps,
                "samples": min(self.samples, max(st.size or 0 for st in self.streams.values())),
                "errors": {label: self._errors(st.rows) for label, st in self.streams.items()}}
