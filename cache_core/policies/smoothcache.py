"""SmoothCache (Roblox/SmoothCache, CVPR-W'25; docs/methods.md §1.7).

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

__all__ = ["SmoothCache", "SmoothCacheCalibration", "make_schedule"]   # what cache_core exports (policies/__init__.py)


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
    """Greedy schedule from calibration errors: {"format", "steps", "schedule": {kind: [1, 0, ...]}}. It keeps
    the errors and alpha it was made from, so a run with another step count can make its own."""
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
    errors = {k: v for k, v in calibration.items() if k != "file"}
    out = {"format": SMOOTHCACHE_SCHEDULE, "version": 1, "steps": steps, "schedule": schedule,
           "alpha": alpha, "errors": errors}
    for key in ("model", "sampling"):
        if key in calibration:
            out[key] = calibration[key]
    return out


def resample_errors(calibration: dict, steps: int) -> dict:
    """The calibration's errors for a run of another step count. Step s of that run sits at position
    s (T-1)/(T'-1) of the calibrated run and a gap of j of its steps spans j (T-1)/(T'-1) calibrated steps;
    the error there is interpolated linearly in position and in gap (a gap of 0 has error 0). Where that
    reaches past what was recorded (gaps beyond the lookahead, steps past the end) it is unknown: None."""
    old, n = calibration["steps"], calibration["lookahead"]
    if steps == old:
        return calibration
    scale = (old - 1) / (steps - 1) if steps > 1 and old > 1 else 1.0

    def at(per_j: dict, u: float, g: float) -> float | None:
        if g > n + 1e-9 or u + g > old - 1 + 1e-9:
            return None
        total = 0.0
        for gi, wg in _split(g):
            errs = per_j.get(str(gi), [])
            for ui, wu in _split(u):
                value = 0.0 if gi == 0 else (errs[ui] if ui < len(errs) else None)
                if value is None:
                    return None
                total += value * wg * wu
        return total

    new_n = max(int(n / scale + 1e-9), 1)
    errors = {kind: {str(j): [at(per_j, s * scale, j * scale) for s in range(max(steps - j, 0))]
                     for j in range(1, new_n + 1)} for kind, per_j in calibration["errors"].items()}
    return {**calibration, "steps": steps, "lookahead": new_n, "errors": errors}


def _split(x: float) -> list[tuple[int, float]]:
    """x as the two integers around it and their linear weights."""
    lo = int(x + 1e-9)
    frac = max(x - lo, 0.0)
    return [(lo, 1.0 - frac), (lo + 1, frac)] if frac > 1e-9 else [(lo, 1.0)]


class SmoothCache(ComponentPolicy):
    name = "SmoothCache"
    components = ("attention", "mlp")

    def __init__(self, schedule: dict[str, list[int]], source: tuple[dict, float] | None = None):
        """schedule: rows per component; source: the (errors calibration, alpha) it was made from, if known."""
        self.schedule = {k: [int(v) for v in row] for k, row in schedule.items()}
        lengths = {len(row) for row in self.schedule.values()}
        if len(lengths) != 1:
            raise ValueError(f"schedule rows must all have one length, got {sorted(lengths)}")
        self.steps = lengths.pop()
        self.source = source

    def prepare(self, total_steps: int) -> list[str]:
        if total_steps == self.steps:
            return []
        if self.source is None:
            raise ValueError(f"the schedule is for {self.steps} steps but this run has {total_steps}, and it "
                             f"carries no calibration errors to rebuild it from; calibrate for this step count")
        errors, alpha = self.source
        made_for = self.steps
        self.schedule = make_schedule(resample_errors(errors, total_steps), alpha)["schedule"]
        self.steps = total_steps
        return [f"schedule made for {made_for} steps rebuilt for {total_steps} from its calibration errors "
                f"(alpha {alpha:g}; errors interpolated linearly in schedule position and gap)"]

    def _row(self, kind: str, block: int) -> list[int] | None:
        names = (kind, "attn") if kind == "self" else (kind,)   # "attn": the published schedules' name
        return next((self.schedule[k] for n in names for k in (f"{n}-{block}", n) if k in self.schedule), None)

    def reuses(self, kind: str, block: int) -> bool:
        row = self._row(kind, block)
        return row is not None and 0 in row

    def component_reuse(self, kind: str, block: int, step: StepInfo) -> bool:
        if step.total != self.steps:
            return False
        row = self._row(kind, block)
        return row is not None and row[step.index] == 0    # a per-block row wins over the component's
