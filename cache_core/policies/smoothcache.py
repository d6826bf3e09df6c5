"""SmoothCache (Roblox/SmoothCache, CVPR-W'25; methods.md §1.7).

Calibration: one run with no reuse records, per component kind (self/cross attention, MLP) and
lookahead j = 1..n, the error e_j[s] = |Y_s - Y_{s+j}|_1 / |Y_{s+j}|_1 of every component output,
averaged over blocks and streams. The schedule: from step 0, greedily take the largest j with
e_j[i] <= alpha, compute at i and reuse for the next j steps; if none qualifies compute and move on;
first and last steps always compute. Applying it reuses component outputs where the schedule has 0.
"""
from __future__ import annotations

from collections import defaultdict

import torch

from ..calibration_data import SMOOTHCACHE_ERRORS, SMOOTHCACHE_SCHEDULE
from ..policy import ComponentPolicy, StepInfo


class SmoothCacheCalibration(ComponentPolicy):
    name = "SmoothCache calibration"
    components = ("attention", "mlp")
    keep = 0          # nothing is reused; observe() keeps its own window

    def __init__(self, lookahead: int = 3):
        if lookahead < 1:
            raise ValueError(f"lookahead must be >= 1, got {lookahead}")
        self.lookahead = int(lookahead)
        self.steps = 0
        self._window: dict = defaultdict(list)                      # (stream, key) -> [(step, Y)]
        self._sums: dict = defaultdict(lambda: defaultdict(float))  # kind -> (j, s) -> sum of errors
        self._counts: dict = defaultdict(lambda: defaultdict(int))

    def component_reuse(self, kind, block, step) -> bool:
        return False

    def observe(self, label: str, key, kind: str, out: torch.Tensor, step: StepInfo) -> None:
        self.steps = step.total
        window = self._window[(label, key)]
        if window and step.index <= window[-1][0]:
            return                                   # only the first call of each step counts
        y = out.detach().float()
        denom = y.abs().sum().clamp_min(1e-12)
        for s, prev in window:
            j = step.index - s
            if 1 <= j <= self.lookahead:
                self._sums[kind][(j, s)] += float((prev - y).abs().sum() / denom)
                self._counts[kind][(j, s)] += 1
        window.append((step.index, y))
        del window[:-self.lookahead]

    def result(self) -> dict:
        errors = {}
        for kind, sums in self._sums.items():
            per_j = {}
            for j in range(1, self.lookahead + 1):
                per_j[str(j)] = [sums[(j, s)] / self._counts[kind][(j, s)] if self._counts[kind][(j, s)] else None
                                 for s in range(max(self.steps - j, 0))]
            errors[kind] = per_j
        return {"format": SMOOTHCACHE_ERRORS, "version": 1, "steps": self.steps, "lookahead": self.lookahead,
                "errors": errors}


def make_schedule(calibration: dict, alpha: float) -> dict:
    """Greedy schedule from calibration errors: {"format", "steps", "schedule": {kind: [1, 0, ...]}}."""
    steps, n = calibration["steps"], calibration["lookahead"]
    schedule = {}
    for kind, per_j in calibration["errors"].items():
        row = [0] * steps
        i = 0
        while i < steps:
            row[i] = 1
            skip = 0
            for j in range(n, 0, -1):
                errs = per_j.get(str(j), [])
                if i < len(errs) and errs[i] is not None and errs[i] <= alpha:
                    skip = j
                    break
            i += skip + 1
        if steps:
            row[0] = row[-1] = 1
        schedule[kind] = row
    return {"format": SMOOTHCACHE_SCHEDULE, "version": 1, "steps": steps, "schedule": schedule}


class SmoothCache(ComponentPolicy):
    name = "SmoothCache"
    components = ("attention", "mlp")

    def __init__(self, schedule: dict[str, list[int]]):
        self.schedule = {k: [int(v) for v in row] for k, row in schedule.items()}
        lengths = {len(row) for row in self.schedule.values()}
        if len(lengths) != 1:
            raise ValueError(f"schedule rows must all have one length, got {sorted(lengths)}")
        self.steps = lengths.pop()

    def check_steps(self, total: int) -> None:
        if total != self.steps:
            raise ValueError(f"the schedule is for {self.steps} steps but this run has {total}; "
                             f"calibrate for this step count")

    def component_reuse(self, kind: str, block: int, step: StepInfo) -> bool:
        if step.total != self.steps:
            return False
        names = (kind, "attn") if kind == "self" else (kind,)   # "attn": the published schedules' name
        row = next((self.schedule[k] for n in names for k in (f"{n}-{block}", n) if k in self.schedule), None)
        return row is not None and row[step.index] == 0    # a per-block row wins over the component's
