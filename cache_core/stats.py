"""Per-run, per-stream bookkeeping: which steps were computed or reused, and block evaluations done
against what an uncached run would have done. Plain Python data only (no tensors), so a finished
run's stats can be logged, sent to the web UI, or kept after the run's tensors are gone."""
from __future__ import annotations

from dataclasses import dataclass, field


def readable_bytes(n: int) -> str:
    """Bytes in binary units, three figures at most: 512 B, 9.5 KiB, 48 MiB, 2.3 GiB."""
    value, unit = float(n), "B"
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            break
        value /= 1024
    return f"{n} B" if unit == "B" else f"{value:.1f} {unit}" if value < 9.95 else f"{value:.0f} {unit}"


@dataclass
class StreamStats:
    label: str
    computed_calls: int = 0
    reused_calls: int = 0
    block_evals: int = 0
    block_evals_full: int = 0
    resets: int = 0
    components_run: int = 0       # attention calls computed / reused (component methods: PAB)
    components_reused: int = 0
    held_bytes: int = 0           # tensor bytes the stream's cache held when the run ended
    # step index -> [computed calls, reused calls] in that step (a Heun step has two calls)
    steps: dict[int, list[int]] = field(default_factory=dict)
    estimated: set[int] = field(default_factory=set)   # steps whose call the method skipped and estimated

    def record(self, step: int, computed: bool, blocks_run: int, blocks_total: int, estimated: bool = False) -> None:
        if estimated:
            self.estimated.add(step)
        per_step = self.steps.setdefault(step, [0, 0])
        per_step[0 if computed else 1] += 1
        if computed:
            self.computed_calls += 1
        else:
            self.reused_calls += 1
        self.block_evals += blocks_run
        self.block_evals_full += blocks_total

    @property
    def computed_steps(self) -> list[int]:
        """Steps in which at least one model call ran the full stack."""
        return sorted(s for s, (c, _) in self.steps.items() if c)

    @property
    def reused_steps(self) -> list[int]:
        """Steps in which every model call reused the cache."""
        return sorted(s for s, (c, r) in self.steps.items() if r and not c)

    def timeline(self, total: int) -> str:
        """One letter per step: C computed, R reused, E estimated (the call skipped), - not called."""
        def letter(i):
            if i in self.estimated:
                return "E"
            c, r = self.steps.get(i, (0, 0))
            return "C" if c else ("R" if r else "-")
        return "".join(letter(i) for i in range(max(total, max(self.steps, default=-1) + 1)))

    def to_dict(self, total: int = 0) -> dict:
        return {
            "label": self.label,
            "timeline": self.timeline(total),
            "steps_seen": len(self.steps),
            "computed_steps": self.computed_steps,
            "reused_steps": self.reused_steps,
            "computed_calls": self.computed_calls,
            "reused_calls": self.reused_calls,
            "block_evals": self.block_evals,
            "block_evals_full": self.block_evals_full,
            "resets": self.resets,
            "components_run": self.components_run,
            "components_reused": self.components_reused,
            "held_bytes": self.held_bytes,
            "calls_per_step": [[step, c, r] for step, (c, r) in sorted(self.steps.items())],
        }


@dataclass
class RunStats:
    method: str
    total_steps: int
    streams: dict[str, StreamStats] = field(default_factory=dict)
    block_evals: int = 0          # block forwards actually run (a batched cond+uncond call counts once)
    block_evals_full: int = 0     # what the same calls would have run without caching
    status: str = "running"       # "finished", "error" or "interrupted" once the run ends
    forced: dict[str, int] = field(default_factory=dict)   # reason -> model calls that had to compute
    notes: list[str] = field(default_factory=list)          # what the user should know about this run
    wall_s: float | None = None   # the sampling run's wall time, as the host measured it

    def stream(self, label: str) -> StreamStats:
        return self.streams.setdefault(label, StreamStats(label))

    @property
    def saved_fraction(self) -> float:
        return 1.0 - self.block_evals / self.block_evals_full if self.block_evals_full else 0.0

    def summary(self) -> str:
        """One line for the node: steps computed per stream, blocks saved, the most one stream's cache held,
        wall time."""
        parts = [f"{s.label} {len(s.computed_steps)}/{len(s.steps)}" for s in self.streams.values()]
        held = max((s.held_bytes for s in self.streams.values()), default=0)
        wall = f" · {self.wall_s:.2f} s" if self.wall_s is not None else ""
        return (f"{' · '.join(parts)} steps computed · {self.saved_fraction:.0%} blocks saved · "
                f"{readable_bytes(held)} held per stream{wall}")

    def log_lines(self) -> list[str]:
        lines = [f"CacheKit {self.method}: {note}" for note in self.notes]
        lines += [f"CacheKit {self.method}: {n} model calls computed because {reason}"
                  for reason, n in self.forced.items()]
        for s in self.streams.values():
            if s.components_run or s.components_reused:
                total = s.components_run + s.components_reused
                lines.append(f"CacheKit {self.method} [{s.label}]: attention computed {s.components_run}/{total} "
                             f"({s.components_reused / total:.0%} reused) over {len(s.steps)} steps")
                continue
            saved = 1.0 - s.block_evals / s.block_evals_full if s.block_evals_full else 0.0
            lines.append(
                f"CacheKit {self.method} [{s.label}]: computed {len(s.computed_steps)}/{len(s.steps)} steps "
                f"({s.computed_calls}/{s.computed_calls + s.reused_calls} calls), "
                f"block evaluations {s.block_evals}/{s.block_evals_full} ({saved:.0%} saved)")
        return lines

    def to_dict(self) -> dict:
        return {
            "method": self.method,
            "status": self.status,
            "total_steps": self.total_steps,
            "block_evals": self.block_evals,
            "block_evals_full": self.block_evals_full,
            "saved_fraction": round(self.saved_fraction, 4),
            "streams": {k: v.to_dict(self.total_steps) for k, v in self.streams.items()},
            "wall_s": None if self.wall_s is None else round(self.wall_s, 3),
            "forced": dict(self.forced),
            "notes": list(self.notes),
        }
