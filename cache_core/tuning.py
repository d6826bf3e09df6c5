"""Auto-tune: the threshold that makes a method compute a target fraction of its block evaluations.

Users ask for a saving, not a threshold (peer packs' thresholds are "10x off" from one model to the next).
One uncached run records what the method's decision looks at (TuningRecorder): per stream and step, the
relative L1 change of its probe against each of the previous steps (a window of them). Replaying the
method's own wants_reuse/commit over that record (replay) gives the fraction of block evaluations any
threshold would compute; a bisection finds the threshold for the target (threshold_for). Methods that
decide from no tensor (MagCache: its ratios and the step count only) replay without a record.

The replay follows the uncached trajectory; the cached run drifts from it, and a LoRA loaded since the tuning
moves it further. A run of the tuning's step count is kept on the replay's plan (tuning_scale.py), so the fraction
it measures lands near the target, not on it (the tests and the benchmark say how near).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Callable, Mapping, Sequence

import torch

from .calibration_data import THRESHOLD_TUNING
from .metrics import rel_l1
from .policy import CachePolicy, ReuseLimits, StepInfo, Tunable
from .span_cache import span_bounds
from .tuning_scale import TuningScaled

WINDOW = 64          # steps back a change is recorded against (a reference older than this forces a compute)
SAMPLE = 1 << 16     # probe values kept per step (strided), as ComfyUI's EasyCache subsamples its metric
UNREACHED = 0.02     # a replayed fraction this far above its target: the target cannot be reached, and the node says so
_PLACEHOLDER = torch.zeros(())   # stands for the probe in replayed commits (policies keep it as "seen")


@dataclass(frozen=True)
class Trace:
    """One stream of a tuning run: the steps it was called at (first call of each) and, per recorded step
    i, changes[i][k] = relL1(probe_i, probe_(i-1-k)) for k < min(i, WINDOW)."""
    steps: tuple[int, ...]
    sigmas: tuple[float, ...]
    changes: tuple[tuple[float, ...], ...] | None   # None: the method has no probe

    def change(self, i: int, ref: int | None) -> float | None:
        if self.changes is None or ref is None or not 0 <= i - 1 - ref < len(self.changes[i]):
            return None
        return self.changes[i][i - 1 - ref]


def replay(policy: CachePolicy, traces: Mapping[str, Trace], total: int, limits: ReuseLimits,
           n_blocks: int) -> float:
    """The fraction of block evaluations `policy` would run over the recorded steps, streams batched in
    one call per step as ComfyUI runs cond and uncond (the call reuses only when every stream agrees)."""
    start, end = span_bounds(policy.front_blocks, policy.back_blocks, n_blocks)
    reused_cost = n_blocks - (end - start)        # a reused call runs all but the span
    decisions = replayed(policy, traces, total, limits)
    return sum(reused_cost if reusing else n_blocks for _, reusing in decisions) / (len(decisions) * n_blocks)


def replayed(policy: CachePolicy, traces: Mapping[str, Trace], total: int,
             limits: ReuseLimits) -> list[tuple[int, bool]]:
    """(step index, reused) for each recorded step, as `policy` would decide over the record."""
    if not traces:
        raise ValueError("nothing recorded to replay")
    labels = list(traces)
    first = traces[labels[0]]
    states = {label: policy.new_state(label) for label in labels}
    last, consecutive, decisions = None, 0, []
    for i, (index, sigma) in enumerate(zip(first.steps, first.sigmas)):
        step = StepInfo(index, total, sigma)
        ref = i - 1 if policy.reference == "previous_call" else last
        metrics = {label: traces[label].change(i, ref) if i < len(traces[label].steps) else None for label in labels}
        reusing = last is not None and limits.allow(step, consecutive, policy) and all(
            policy.wants_reuse(states[label], metrics[label], step) for label in labels)
        for label in labels:
            policy.commit(states[label], reusing, _PLACEHOLDER, metrics[label], step)
        consecutive = consecutive + 1 if reusing else 0
        last = last if reusing else i
        decisions.append((index, reusing))
    return decisions


def threshold_for(make: Callable[[float], CachePolicy], target: float, fraction_at: Callable[[CachePolicy], float],
                  hi: float = 1e3, iterations: int = 60) -> tuple[float, float]:
    """(threshold, its replayed fraction): the largest threshold whose fraction stays >= target (more
    threshold = more reuse), or the next one up where that lands nearer the target. Bisection in log space
    between 1e-6 and `hi`; a fraction that never falls to the target returns the threshold at `hi`."""
    if not 0.0 < target <= 1.0:
        raise ValueError(f"target must be in (0, 1], got {target}")
    lo_t, hi_t = 1e-6, hi
    f_lo, f_hi = fraction_at(make(lo_t)), fraction_at(make(hi_t))
    if f_hi >= target:
        return hi_t, f_hi
    if f_lo < target:
        return lo_t, f_lo
    for _ in range(iterations):
        mid = math.sqrt(lo_t * hi_t)
        f = fraction_at(make(mid))
        if f >= target:
            lo_t, f_lo = mid, f
        else:
            hi_t, f_hi = mid, f
    return (lo_t, f_lo) if f_lo - target <= target - f_hi else (hi_t, f_hi)


def synthetic_traces(labels: Sequence[str], sigmas: Sequence[float]) -> dict[str, Trace]:
    """Steps with no record, for methods that decide from no tensor (their probe is None)."""
    steps = tuple(range(len(sigmas) - 1))
    return {label: Trace(steps, tuple(float(s) for s in sigmas[:-1]), None) for label in labels}


def traces_from(value: dict) -> dict[str, Trace]:
    """The traces of a checked tuning (calibration_data.threshold_tuning)."""
    return {label: Trace(tuple(t["steps"]), tuple(t["sigmas"]), tuple(tuple(c) for c in t["changes"]))
            for label, t in value["streams"].items()}


class _Samples(list):
    """A stream's record: (step index, sigma, strided probe sample or the method's own change) per step; for a
    method that conditions its probe, the method's own state too, to measure each change as the method does."""
    method_state = None


class TuningRecorder(CachePolicy):
    """The method as configured (its front/back blocks and probe) in a run that never reuses, keeping per
    stream a strided sample of the probe at the first call of each step, and the changes between them. A method
    that conditions its probe on the step (SeaCache: both tokens of a change through that step's filter) measures
    each step's change against the previous call itself, and only that change is recorded (such a method compares
    with the previous call only)."""
    name = "threshold tuning"

    def __init__(self, policy: CachePolicy):
        if not isinstance(policy, Tunable):
            raise ValueError(f"{policy.name} has no threshold to tune")
        if policy.probe is None:
            raise ValueError(f"{policy.name} decides from its schedule alone: it aims at a target without a tuning "
                             f"run (set target_compute on its node)")
        self.method = policy
        self.front_blocks, self.back_blocks, self.probe = policy.front_blocks, policy.back_blocks, policy.probe
        self.conditions_probe = policy.conditions_probe
        self.total = 0
        self.samples: dict[str, list[tuple[int, float, torch.Tensor]]] = {}

    def condition(self, probe, step, layout):
        return self.method.condition(probe, step, layout)

    def new_state(self, label: str) -> list:
        self.samples[label] = _Samples()
        if self.conditions_probe:
            self.samples[label].method_state = self.method.new_state(label)
        return self.samples[label]

    def measure(self, state: _Samples, probe, step: StepInfo | None = None):
        if state.method_state is None:
            return None
        return self.method.measure(state.method_state, probe, step=step)

    def wants_reuse(self, state, metric, step) -> bool:
        return False

    def commit(self, state: _Samples, reused: bool, probe, metric, step: StepInfo) -> None:
        self.total = step.total
        first = probe is not None and not (state and state[-1][0] >= step.index)
        if state.method_state is not None:
            self.method.commit(state.method_state, False, probe, metric, step)   # its reference follows every call
            if first:
                state.append((step.index, step.sigma, metric))
            return
        if not first:
            return
        flat = probe.detach().reshape(-1)
        stride = max(1, math.ceil(flat.numel() / SAMPLE))
        state.append((step.index, step.sigma, flat[::stride].float().cpu()))

    def result(self) -> dict:
        streams = {}
        for label, seen in self.samples.items():
            if len(seen) < 2:
                continue
            if seen.method_state is not None:                      # the method's own change, one back
                changes = [[] if i == 0 or seen[i][2] is None else [float(seen[i][2])] for i in range(len(seen))]
            else:
                changes = [[float(rel_l1(seen[i][2], seen[j][2]))
                            for j in range(i - 1, max(i - 1 - WINDOW, -1), -1)] for i in range(len(seen))]
            streams[label] = {"steps": [s for s, _, _ in seen], "sigmas": [g for _, g, _ in seen], "changes": changes}
        if not streams:
            raise ValueError("the run recorded fewer than 2 steps: tune with more steps")
        m = self.method
        return {"format": THRESHOLD_TUNING, "version": 1, "steps": self.total,
                "method": {"name": m.name, "probe": m.probe, "front_blocks": m.front_blocks,
                           "back_blocks": m.back_blocks, "reference": m.reference, **m.tuning_key()},
                "streams": streams}


@dataclass(frozen=True)
class Targeted:
    """A policy factory that sets its threshold at the start of each run so the run computes `target` of its
    block evaluations: from a tuning's traces (made at `total` steps), or, for a method with no probe, from
    the run's own schedule."""
    policy: CachePolicy            # a Tunable policy as its node configured it
    target: float
    traces: Mapping[str, Trace] | None = None
    total: int | None = None

    def __call__(self) -> CachePolicy:
        return self.policy.with_threshold(self.policy.threshold)

    def _limited_by(self, fraction_at: Callable[[ReuseLimits], float], limits: ReuseLimits, frac: float,
                    steps: int) -> str:
        """Which of the node's limits keeps the run above its target: each relaxed alone, the one that lowers the
        replayed fraction most; else the method's own first and last steps (or the span it leaves)."""
        relaxed = {"max_consecutive_skips": replace(limits, max_consecutive=-1),
                   "warmup_steps": replace(limits, warmup_steps=0),
                   "start_percent / end_percent": replace(limits, start_sigma=math.inf, end_sigma=-1.0)}
        gains = {name: frac - fraction_at(lim) for name, lim in relaxed.items()}
        name, gain = max(gains.items(), key=lambda kv: kv[1])
        if gain > UNREACHED / 2:
            return f"the node's {name} limits it (without that limit: {frac - gain:.1%})"
        first, last = self.policy.edges(steps)
        return (f"the method's own rule limits it (it computes its first {first} and last {last} of {steps} steps, "
                f"and a reused step still runs the blocks outside the cached span)")

    def at(self, sigmas: Sequence[float], limits: ReuseLimits, n_blocks: int) -> tuple[CachePolicy, str]:
        """The policy for a run over `sigmas`, and a note saying what was picked."""
        run_steps = max(len(sigmas) - 1, 0)
        if run_steps == 0 or (self.traces is not None and not any(t.steps for t in self.traces.values())):
            return self(), f"target {self.target:.0%}: no steps to aim over; the threshold as set is used"
        if self.traces is None:
            traces, total, source = synthetic_traces(("cond",), sigmas), run_steps, "its schedule"
        else:
            traces, total, source = self.traces, self.total, f"a {self.total}-step tuning"
        thr, frac = threshold_for(self.policy.with_threshold, self.target,
                                  lambda p: replay(p, traces, total, limits, n_blocks))
        picked = f"threshold {thr:.4g} (replaying {source} gives {frac:.1%})"
        note = f"target {self.target:.0%} of block evaluations: {picked}"
        if frac > self.target + UNREACHED:
            note = f"target {self.target:.0%} cannot be reached: {picked}; " + self._limited_by(
                lambda lim: replay(self.policy.with_threshold(thr), traces, total, lim, n_blocks), limits, frac, total)
        policy = self.policy.with_threshold(thr)
        if self.total is not None and self.total != run_steps:
            note += f"; this run has {run_steps} steps, the tuning {self.total}: tune at the run's step count"
        elif self.traces is not None:    # the run kept on the replay's course (tuning_scale.py)
            policy = TuningScaled(policy, replayed(policy, traces, total, limits))
        return policy, note
