"""MagCache (Zehong-Ma/MagCache, NeurIPS'25; diffusers `mag_cache`; docs/methods.md §1.3).

Per stream, per step t past the retention steps: acc_ratio *= gamma_t, acc_steps += 1,
acc_err += |1 - acc_ratio|; reuse the whole-stack residual while acc_err <= threshold and
acc_steps <= K, else compute and reset (1, 0, 0). gamma comes from a published preset or a
calibration run (MagCacheCalibration), resampled to the run's step count by nearest index.
The last `final_steps` steps always compute (0, the reference's rule, lets the accumulator reuse the last step,
where the output changes most: on the trained Flux digits model that alone cost 7 dB in one case, BENCHMARKS.md).
The error model is per step: a stream's further calls within a step it already decided (Heun's
corrector, SA-Solver PECE, heunpp2 looking back) repeat that decision and accumulate nothing.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ..calibration_data import MAGCACHE_RATIOS
from ..policy import CachePolicy, Hidden, ResidualRecorder, StepInfo, Tunable

__all__ = ["MagCache", "MagCacheCalibration"]   # what cache_core exports (policies/__init__.py)


def resample(values: list[float], steps: int) -> list[float]:
    """Nearest-index resampling: idx = round(i*(L-1)/(T-1)), half to even (as the reference code)."""
    if steps <= 0:
        return []
    if steps == 1:
        return values[-1:]
    scale = (len(values) - 1) / (steps - 1)
    return [values[round(i * scale)] for i in range(steps)]


def split_interleaved(values: list[float]) -> dict[str, list[float]]:
    """Wan/Qwen lists alternate cond (even) and uncond (odd) calls."""
    return {"cond": list(values[0::2]), "uncond": list(values[1::2])}


def stream_kind(label: str) -> str:
    return label.split("#")[0]


@dataclass
class _State:
    ratios: dict[int, list[float]] = field(default_factory=dict)   # per run length, resampled once
    source: list[float] = field(default_factory=list)
    acc_ratio: float = 1.0
    acc_steps: int = 0
    acc_err: float = 0.0
    decided_step: int = -1       # the latest step this stream decided, and whether it reused there
    decided_reuse: bool = False

    def gamma(self, step: StepInfo) -> float:
        if step.total not in self.ratios:
            self.ratios[step.total] = resample(self.source, step.total)
        seq = self.ratios[step.total]
        return seq[step.index] if step.index < len(seq) else 1.0


class MagCache(CachePolicy, Tunable):
    name = "MagCache"
    front_blocks = 0
    back_blocks = 0
    probe = None

    def __init__(self, ratios: dict[str, list[float]], threshold: float = 0.06, max_skips: int = 3,
                 retention_ratio: float = 0.2, final_steps: int = 0):
        if threshold < 0:
            raise ValueError(f"threshold must be >= 0, got {threshold}")
        if final_steps < 0:
            raise ValueError(f"final_steps must be >= 0, got {final_steps}")
        if not ratios or not all(len(v) >= 1 for v in ratios.values()):
            raise ValueError("ratios must hold at least one value per stream")
        self.ratios = {k: [float(x) for x in v] for k, v in ratios.items()}
        self.threshold, self.max_skips = float(threshold), int(max_skips)
        self.retention_ratio, self.final_steps = float(retention_ratio), int(final_steps)

    def prepare(self, total_steps: int) -> list[str]:
        lengths = sorted({len(v) for v in self.ratios.values()} - {total_steps})
        if not lengths:
            return []
        return [f"ratios for {'/'.join(map(str, lengths))} steps resampled to {total_steps} by nearest index "
                f"(as diffusers' MagCache does)"]

    def new_state(self, label: str) -> _State:
        source = self.ratios.get(stream_kind(label)) or self.ratios.get("cond") or next(iter(self.ratios.values()))
        return _State(source=source)

    def edges(self, total_steps: int) -> tuple[int, int]:
        return int(self.retention_ratio * total_steps + 0.5), self.final_steps

    def retained(self, step: StepInfo) -> bool:
        return step.index < self.edges(step.total)[0]

    def _tentative(self, state: _State, step: StepInfo) -> tuple[float, int, float]:
        ratio = state.acc_ratio * state.gamma(step)
        return ratio, state.acc_steps + 1, state.acc_err + abs(1.0 - ratio)

    def wants_reuse(self, state: _State, metric, step: StepInfo) -> bool:
        if self.threshold <= 0:   # 0 = off: an accumulator can be <= 0 (negative polynomial, gamma = 1)
            return False
        if step.index <= state.decided_step:
            return state.decided_reuse
        _, n, err = self._tentative(state, step)
        return err <= self.threshold and n <= self.max_skips

    def commit(self, state: _State, reused: bool, probe, metric, step: StepInfo) -> None:
        repeat = step.index <= state.decided_step
        state.decided_step, state.decided_reuse = max(step.index, state.decided_step), reused
        if self.retained(step) or (repeat and reused):
            return
        if reused:
            state.acc_ratio, state.acc_steps, state.acc_err = self._tentative(state, step)
        else:
            state.acc_ratio, state.acc_steps, state.acc_err = 1.0, 0, 0.0


@dataclass
class _CalState:
    label: str
    norms: dict[int, torch.Tensor] = field(default_factory=dict)   # step -> per-token |r| of its first call


class MagCacheCalibration(ResidualRecorder):
    """A run that never reuses and records gamma_t = mean_tokens(|r_t| / |r_{t-1}|) per stream and step,
    r = whole-stack residual of `key` (per-token L2 over the hidden dim, fp32), gamma_0 = 1.0. The first
    call of each step counts; a step no call landed in (DPM fast takes fewer calls than steps) gets 1.0
    and the next step's ratio spans the gap."""
    name = "MagCache calibration"
    state_type = _CalState

    def __init__(self, key: str = "img"):
        super().__init__()
        self.key = key

    def record(self, state: _CalState, residual: Hidden, step: StepInfo) -> None:
        if step.index not in state.norms:
            state.norms[step.index] = residual[self.key].float().norm(dim=-1)

    def _ratios(self, norms: dict[int, torch.Tensor]) -> list[float]:
        ratios, prev = [], None
        for i in range(self.steps):
            cur = norms.get(i)
            if cur is None or prev is None or cur.shape != prev.shape:
                ratios.append(1.0)
            else:
                ratios.append(float((cur / (prev + 1e-8)).mean()))
            prev = cur if cur is not None else prev
        return ratios

    def result(self) -> dict:
        return {"format": MAGCACHE_RATIOS, "version": 1, "steps": self.steps,
                "ratios": {label: self._ratios(st.norms) for label, st in self.streams.items()}}
