"""SpeCa, speculative feature caching (arXiv 2509.11628, ACM MM 2025; public code Shenyi-Z/Cache4Diffusion,
`flux/speca-flux`, `dit/speca-dit`, `hunyuan_video/speca-hunyuan_video`; docs/methods.md §1.12).

Forecast, then verify. After a computed step the span's residual is drafted by a Taylor series in the step
position (TaylorSeer's forecaster) instead of computed. Block 0 always runs (front_blocks = 1): its residual is
forecast by the same series, and a draft is accepted only while the relative error between block 0's real
residual and its forecast is below a threshold that moves with the step,
    threshold(step) = max(threshold * decay ** (step / steps), min_threshold);
a rejected draft computes the whole stack on that very step. The first `unverified_drafts` drafts after a
computed step are accepted unchecked, and at most `max_drafts` drafts run in a row (the authors'
max(min_taylor_steps, 1) + 1 and max_taylor_steps: see "verified on" below); the first `warmup_steps` steps compute
(their first_enhance).

Where it differs from the authors' code, and why:
  verified on  The authors run their last block in full on a drafted step and compare it with its forecast; the
               error decides the *next* step (a draft is never recomputed). Here the engine decides before the
               span runs, so the check is block 0, and it decides the step it was measured on: a rejected draft
               is computed, as the paper describes. With errors all below or all above the threshold the
               computed steps are the authors' (tests/engine/test_speca.py); in general a decision sees the error
               one step sooner.
  error        "relative_l1" (default) is CacheKit's sum|f - y| / sum|y| (docs/methods.md §0). The authors'
               mean(|f - y| / (|y| + 1e-10)) is "pointwise": exact zeros in the real residual make it huge, and
               its scale differs, so its thresholds (Flux 7.0 with decay 0.3) do not carry over to the other.
  forecast     One series for the whole span's residual, not one per block branch.
The forecast needs the call's position, which `measure` does not get: it forecasts at the position the stream's
last calls predict (one step on, or the same spacing; the same position again where the stream has seen the sampler
call each position twice, as Heun's corrector and the next step share a sigma), so the error travels with the
engine's one host transfer per call (and adds up over the ranks of a split sequence); a call elsewhere (a sampler's
irregular call) is measured again in wants_reuse at its real position, with a host read of its own.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ..forecast import TaylorForecaster
from ..metrics import ratio, rel_l1_parts
from ..policy import CachePolicy, Hidden, StepInfo

__all__ = ["SpeCa", "pointwise_rel_l1"]   # what cache_core exports (policies/__init__.py)

MEASURES = ("relative_l1", "pointwise")
_PROBE = "probe"     # the key block 0's residual is forecast under


def pointwise_parts(forecast: torch.Tensor, real: torch.Tensor, eps: float = 1e-10) -> torch.Tensor:
    """The authors' relative L1 as partial sums [sum of |forecast - real| / (|real| + eps), elements], in fp32."""
    f, y = forecast.float(), real.float()
    count = y.new_full((), float(y.numel()))      # filled on the device: no copy from the host
    return torch.stack(((f - y).abs().div(y.abs() + eps).sum(), count))


def pointwise_rel_l1(forecast: torch.Tensor, real: torch.Tensor, eps: float = 1e-10) -> torch.Tensor:
    """The authors' relative L1: the mean over elements of |forecast - real| / (|real| + eps)."""
    return ratio(pointwise_parts(forecast, real, eps))


@dataclass
class _State:
    probe_fc: TaylorForecaster          # block 0's residual at the computed steps
    span_fc: TaylorForecaster           # the span's residual at the computed steps
    drafts: int = 0                     # drafted steps since the last computed one
    draft_index: int = -1               # the step of the latest draft (a step's further calls repeat it)
    computed_index: int = -1
    positions: tuple = ()               # the last two distinct call positions: where the next call is expected
    calls_at: tuple = ()                # how many calls each of those positions had
    guess: float | None = None          # the position measure() forecast this call at
    pending: torch.Tensor | None = None     # this call's block-0 residual, until the decision is made
    checked: dict = field(default_factory=dict)   # {position: error} of this call's verification


class SpeCa(CachePolicy):
    name = "SpeCa"
    front_blocks = 1
    back_blocks = 0
    probe = "front_residual"

    def __init__(self, threshold: float = 0.1, decay: float = 0.3, min_threshold: float = 0.0,
                 warmup_steps: int = 3, unverified_drafts: int = 3, max_drafts: int = 8, max_order: int = 2,
                 error_measure: str = "relative_l1", final_steps: int = 0):
        if threshold < 0 or min_threshold < 0 or not 0 < decay <= 1:
            raise ValueError(f"need threshold >= 0, min_threshold >= 0 and decay in (0, 1]; got {threshold}, "
                             f"{min_threshold}, {decay}")
        if min(warmup_steps, unverified_drafts, max_drafts, max_order, final_steps) < 0:
            raise ValueError(f"need warmup_steps, unverified_drafts, max_drafts, max_order, final_steps >= 0; got "
                             f"{warmup_steps}, {unverified_drafts}, {max_drafts}, {max_order}, {final_steps}")
        if error_measure not in MEASURES:
            raise ValueError(f"error_measure must be one of {MEASURES}, got {error_measure!r}")
        self.threshold, self.decay, self.min_threshold = float(threshold), float(decay), float(min_threshold)
        self.warmup, self.unverified, self.max_drafts = int(warmup_steps), int(unverified_drafts), int(max_drafts)
        self.max_order, self.error_measure, self.final = int(max_order), error_measure, int(final_steps)
        self.verified = self.rejected = 0    # this run's counts, for its notes

    def new_state(self, label: str) -> _State:
        return _State(TaylorForecaster(self.max_order), TaylorForecaster(self.max_order))

    def edges(self, total_steps: int) -> tuple[int, int]:
        return self.warmup, self.final     # final 0: the authors' rule, which may draft the last steps

    def step_threshold(self, step: StepInfo) -> float:
        """The authors' schedule: decays from `threshold` by `decay` over the run, never under the floor."""
        return max(self.threshold * self.decay ** (step.position / max(step.total, 1)), self.min_threshold)

    def draft_number(self, state: _State, step: StepInfo) -> int:
        """Which draft since the last computed step this call would be (1 = the first)."""
        return state.drafts + (step.index != state.draft_index)

    def error_parts(self, state: _State, real: torch.Tensor, position: float) -> torch.Tensor:
        """[numerator, denominator] of block 0's forecast error at `position` (no host read)."""
        guess = state.probe_fc.predict(position, like={_PROBE: real})[_PROBE]
        return rel_l1_parts(guess, real) if self.error_measure == "relative_l1" else pointwise_parts(guess, real)

    def expected_position(self, state: _State) -> float:
        """The next call's position: the last one again while it had fewer calls than the one before (a sampler
        that calls each position twice, as Heun's corrector at sigma_{i+1} and step i+1's own call), else one
        step on, or the same spacing."""
        p, n = state.positions, state.calls_at
        if len(p) > 1 and n[-1] < n[-2]:
            return p[-1]
        return p[-1] + (p[-1] - p[-2] if len(p) > 1 else 1.0)

    @staticmethod
    def seen_at(state: _State, position: float) -> None:
        """Counts a call at `position` in the stream's recent positions (a call behind the last one is left out)."""
        if not state.positions or position > state.positions[-1]:
            state.positions, state.calls_at = (*state.positions[-1:], position), (*state.calls_at[-1:], 1)
        elif position == state.positions[-1]:
            state.calls_at = (*state.calls_at[:-1], state.calls_at[-1] + 1)

    def draft_error(self, state: _State, metric: float | None, step: StepInfo) -> float:
        """The check's error at this call: the engine's metric where measure() forecast at this very position,
        else measured here (one host read)."""
        if metric is not None and state.guess == step.position:
            err = metric
        else:
            err = float(ratio(self.error_parts(state, state.pending, step.position)))
        state.checked = {step.position: err}     # for the run's counts (commit)
        return err

    # --- the engine's contract -----------------------------------------------------------------------
    def measure(self, state: _State, probe):
        state.pending, state.guess = probe, None
        if (probe is None or self.threshold == 0 or self.max_drafts == 0 or not state.probe_fc.ready
                or not state.positions
                or state.drafts + 1 <= self.unverified              # this call's draft, if any, goes unchecked
                or probe.shape != state.probe_fc.factors[_PROBE][0].shape):
            return None
        state.guess = self.expected_position(state)
        return self.error_parts(state, probe, state.guess)

    def wants_reuse(self, state: _State, metric, step: StepInfo) -> bool:
        if self.threshold == 0 or self.max_drafts == 0:      # off: every step computes, bit-identical
            return False
        # the span's series is ready wherever the engine holds a residual; a modality measured on its own
        # (LTX-2's audio) has only its probe's
        if not state.probe_fc.ready or state.pending is None:
            return False
        if step.index == state.computed_index:                # a computed step's further calls compute too
            return False
        n = self.draft_number(state, step)
        if n > self.max_drafts:
            return False
        if n <= self.unverified:
            return True
        if state.pending.shape != state.probe_fc.factors[_PROBE][0].shape:
            return False
        return self.draft_error(state, metric, step) < self.step_threshold(step)   # strict: threshold 0 never

    def commit(self, state: _State, reused: bool, probe, metric, step: StepInfo) -> None:
        if step.position in state.checked:
            self.verified += 1
            self.rejected += not reused
        if reused:
            state.drafts = self.draft_number(state, step)
            state.draft_index = step.index
        else:
            if probe is not None:
                state.probe_fc.update({_PROBE: probe}, step.position)
            state.drafts, state.computed_index = 0, step.index
        self.seen_at(state, step.position)
        state.pending, state.guess, state.checked = None, None, {}

    def store(self, state: _State, residual: Hidden, step: StepInfo, span_input: Hidden) -> Hidden:
        state.span_fc.update(residual, step.position)
        return residual

    def reuse(self, state: _State, cached: Hidden, step: StepInfo, span_input: Hidden) -> Hidden:
        return state.span_fc.predict(step.position, like=cached)

    def run_notes(self) -> list[str]:
        if not self.verified:
            return []
        return [f"SpeCa: {self.verified} drafts checked at block 0, {self.rejected} rejected and computed"]
