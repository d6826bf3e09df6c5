"""target_compute on a model that moved since its tuning: the run kept on the course its tuning planned.

A tuning (tuning.py) records how much the method's probe changes per step on the model as it was then, and
target_compute picks the threshold whose replay over that record computes the target. A LoRA loaded since (or
another prompt) changes those changes: on the digits Flux model a LoRA made First Block Cache's larger, and a
target of 70% computed 80.6% (docs/bench/lora.md). TuningScaled compares the run, step by step, with the replay's
plan at that threshold: each step computed beyond the plan so far scales the threshold up by exp(GAIN), each one
short of it scales it down (the metric is divided by the scale instead, so every Tunable method gets it unchanged).
The method still picks which steps to compute from what it measures; the count follows the target.

Scaling the metric from the changes themselves (the run's over the record's, step by step) was tried first and
missed more: a LoRA changes some steps' changes more than others, and a 50% target computed 33-42% on the tests'
model (docs/bench/notes.md).
"""
from __future__ import annotations

import math
from typing import Any, Sequence

from .policy import CachePolicy, StepInfo

GAIN = 0.3       # log-scale per step computed off the plan
SHOWN = 0.35     # a scale this far from 1 in log terms (x1.42 or /1.42) at some step is worth a note on the run


class TuningScaled(CachePolicy):
    """`policy` (a Tunable method with its threshold picked from a tuning) kept on `plan`: (step index, reused) per
    step, as the replay decided at that threshold. Steps not in the plan count as planned."""

    def __init__(self, policy: CachePolicy, plan: Sequence[tuple[int, bool]]):
        self.policy = policy
        self.plan = {index: not reused for index, reused in plan}     # step index -> planned to compute
        self.name, self.components = policy.name, policy.components
        self.front_blocks, self.back_blocks = policy.front_blocks, policy.back_blocks
        self.probe, self.conditions_probe = policy.probe, policy.conditions_probe
        self.reference, self.threshold = policy.reference, policy.threshold
        self.decided: dict[int, bool] = {}      # step index -> computed, as the run decided (its first call)

    def new_state(self, label: str) -> Any:
        return self.policy.new_state(label)      # the method's own: only the metric it is handed changes

    def _ahead(self, before: float = math.inf) -> list[int]:
        """Steps computed beyond the plan, after each decided step before `before`."""
        ahead, out = 0, []
        for index in sorted(i for i in self.decided if i < before):
            ahead += self.decided[index] - self.plan.get(index, self.decided[index])
            out.append(ahead)
        return out

    def _scaled(self, metric, step: StepInfo):
        """The metric over the scale the steps before this one set (every stream of a call and every call of a
        step see the same)."""
        if metric is None:
            return None
        ahead = self._ahead(step.index)
        return metric / math.exp(GAIN * ahead[-1]) if ahead else metric

    # --- the decision: the method's own, on the rescaled metric -------------------------------------------------
    def wants_reuse(self, state, metric, step: StepInfo) -> bool:
        return self.policy.wants_reuse(state, self._scaled(metric, step), step)

    def commit(self, state, reused: bool, probe, metric, step: StepInfo) -> None:
        self.policy.commit(state, reused, probe, self._scaled(metric, step), step)
        self.decided.setdefault(step.index, not reused)

    def run_notes(self) -> list[str]:
        notes = self.policy.run_notes()
        widest = max((abs(a) for a in self._ahead()), default=0)
        if GAIN * widest > SHOWN:
            notes.append(f"the run drifted up to {widest} steps off the tuning's plan, and the threshold moved by "
                         f"up to x{math.exp(GAIN * widest):.2f} to keep the target: the model changes differently "
                         f"from when it was tuned (a LoRA loaded since, another prompt or resolution?)")
        return notes

    # --- everything else is the method's ----------------------------------------------------------------------
    def edges(self, total_steps: int) -> tuple[int, int]:
        return self.policy.edges(total_steps)

    def prepare(self, total_steps: int) -> list[str]:
        return self.policy.prepare(total_steps)

    def condition(self, probe, step, layout):
        return self.policy.condition(probe, step, layout)

    def measure(self, state, probe, step: StepInfo | None = None):
        return self.policy.measure(state, probe, **({"step": step} if step is not None else {}))

    def store(self, state, residual, step: StepInfo, span_input):
        return self.policy.store(state, residual, step, span_input)

    def reuse(self, state, cached, step: StepInfo, span_input):
        return self.policy.reuse(state, cached, step, span_input)
