"""The example settings an Apply node declares (its EXAMPLES): what the family x method tests, the benchmarks,
the example workflows and the coverage table run it with. They read them from the node classes, so a new method
is its policy, its node (with EXAMPLES) and its tests; nothing else names it (docs/architecture.md).

Plain data, in the node's own input names: no ComfyUI import."""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Callable


@dataclass(frozen=True)
class Case:
    """Two settings for the family x method tests (tiny random-weight models, 8 steps; harness/node_calls.py)."""
    off: dict                   # never reuses: bit-identical to the uncached model
    on: dict                    # reuses on those models
    runs_on_reuse: int | None   # blocks a reused call still runs (front + back); None: all (component methods)


@dataclass(frozen=True)
class Sweep:
    """A curve of the quality benchmark (scripts/bench_quality.py), from little to much saving.
    inputs(value, calibration, node) gives the node's inputs at one value; calibration is the benchmark's own
    calibration of this method on the trained model (None where it makes none), node(name, **inputs) runs a
    helper node (SmoothCache's schedule) and returns its first output."""
    knob: str                   # the table's column label
    values: tuple
    inputs: Callable[..., dict]
    reference: str | None = None   # the reference implementation's rows it is compared with


@dataclass(frozen=True)
class Template:
    """The example workflow of one family (scripts/make_workflows.py): its note (after the method's own opening,
    Examples.note), the node's inputs, and the sampler's inputs where they differ from the workflow's."""
    note: str = ""
    inputs: dict = field(default_factory=dict)
    sampler: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Examples:
    cases: dict[str, Case]                    # test id -> case ({} where a test file of its own covers it)
    speed: tuple[dict, dict] | None           # (reuses a lot on random weights, never reuses): scripts/bench_speed.py
    sweeps: dict[str, Sweep]                  # row label -> curve
    templates: dict[str, Template]            # family key ("flux_dev", "wan21_t2v_1.3B") or "*" -> template
    tested_as: tuple[str, ...] = ()           # the test ids the coverage table reads (default: the cases')
    note: str = ""                            # what every family's workflow note opens with

    def template(self, family: str) -> Template | None:
        """The family's template (or the "*" one), its note after the method's opening."""
        t = self.templates.get(family, self.templates.get("*"))
        return None if t is None else replace(t, note=" ".join(p for p in (self.note, t.note) if p))

    @property
    def test_ids(self) -> tuple[str, ...]:
        return self.tested_as or tuple(self.cases)
