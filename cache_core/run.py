"""One sampling run: step tracking, per-stream state and stats, created at begin and dropped at end.

A run object is created by the host's per-run hook (ComfyUI: the OUTER_SAMPLE wrapper) and closed in
its `finally`, so nothing survives an error or an interrupt. Streams are keyed by the host's
condition id (one per cond/uncond/extra cond) and the device of the call, and carry the per-chunk shape
and dtype of the model input: a change of either starts that stream afresh. Model copies on several
devices calling from their own threads (a CFG or batch split over GPUs) therefore never share a stream, and
each thread has its own call in progress.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Hashable, Sequence

import torch

from .component_cache import ComponentCall
from .decision_sync import DecisionSync
from .layout import BlockLayout
from .policy import CachePolicy, ComponentPolicy, ReuseLimits, StepInfo, Tunable
from .span_cache import SpanCall
from .stats import RunStats
from .steps import CallStep, StepClock
from .streams import StreamState, held_bytes


@dataclass
class CacheRun:
    policy: CachePolicy | ComponentPolicy
    layout: BlockLayout
    sigmas: Sequence[float]
    limits: ReuseLimits = field(default_factory=ReuseLimits)
    sync: DecisionSync = field(default_factory=DecisionSync)   # the ranks a split run decides with
    streams: dict[Hashable, StreamState] = field(default_factory=dict)
    closed: bool = False

    def __post_init__(self):
        self.sigmas = [float(s) for s in self.sigmas]
        self.clock = StepClock(self.sigmas)
        self.stats = RunStats(method=self.policy.name, total_steps=self.clock.total)
        self._labels: dict[Hashable, str] = {}
        self._thread = threading.local()       # the call in progress, per calling thread
        self._lock = threading.Lock()          # streams and stats shared by the threads
        self._declined: float | None = None    # the smallest metric a method turned down where it could reuse

    @property
    def current(self) -> SpanCall | ComponentCall | None:
        return getattr(self._thread, "call", None)

    @current.setter
    def current(self, call) -> None:
        self._thread.call = call

    @staticmethod
    def key(stream: Hashable, device) -> tuple:
        return stream, str(device)

    # --- streams -------------------------------------------------------------------------------
    def _label(self, key: Hashable, kind: str) -> str:
        if key not in self._labels:
            n = sum(1 for lab in self._labels.values() if lab.split("#")[0] == kind)
            self._labels[key] = kind if n == 0 else f"{kind}#{n + 1}"
        return self._labels[key]

    def _stream(self, key: Hashable, kind: str, meta: tuple) -> StreamState:
        st = self.streams.get(key)
        if st is not None and st.meta == meta:
            return st
        label = self._label(key, kind)
        stats = self.stats.stream(label)
        if st is not None:
            stats.resets += 1   # shape/dtype/device changed: nothing cached may be reused
        st = StreamState(label, meta, self.policy.new_state(label), stats)
        self.streams[key] = st
        return st

    # --- one model call ------------------------------------------------------------------------
    def begin_call(self, x: torch.Tensor, sigma: float | torch.Tensor, stream_keys: Sequence[Hashable],
                   stream_kinds: Sequence[str], must_compute: str | None = None) -> SpanCall | ComponentCall:
        """sigma: the call's (largest) sigma, a float or a 0-d tensor the step is read from when first needed
        (steps.CallStep). must_compute: why this call may not reuse a span (the host adds hints between blocks
        on it, which a cached span residual would replay from its own step); counted in the stats, once per
        reason."""
        if self.closed:
            raise RuntimeError("CacheKit: model call on a closed run")
        n = max(len(stream_keys), 1)
        if x.shape[0] % n:
            raise ValueError(f"CacheKit: batch {x.shape[0]} does not split into {n} condition chunks")
        meta = ((x.shape[0] // n, *x.shape[1:]), x.dtype, x.device)
        with self._lock:
            streams = [self._stream(self.key(k, x.device), kind, meta) for k, kind in zip(stream_keys, stream_kinds)]
        # a rank of a sequence-parallel run holds a shard of the tokens, never the latent's whole grid
        grid = () if self.sync.collective else tuple(x.shape[2:])
        step = CallStep(self.clock, sigma, grid)
        if isinstance(self.policy, ComponentPolicy):
            self.current = ComponentCall(self.policy, self.layout, self.limits, streams, step)
        else:
            self.current = SpanCall(self.policy, self.layout, self.limits, streams, step, must_compute is not None,
                                    self.sync)
            if must_compute is not None:
                self.stats.forced[must_compute] = self.stats.forced.get(must_compute, 0) + 1
        return self.current

    def step_at(self, sigma: float) -> StepInfo:
        """The step a model call at this sigma belongs to (steps.py)."""
        return self.clock.locate(sigma)

    def record_estimated(self, key: Hashable, kind: str, step: StepInfo, device) -> None:
        """A stream whose model call was skipped and estimated by the method (FasterCache's uncond)."""
        with self._lock:
            self.stats.stream(self._label(self.key(key, device), kind)).record(step.index, False, 0, len(self.layout),
                                                                               estimated=True)

    def end_call(self, call: SpanCall, record: bool = True) -> None:
        """record=False: the call failed; its stats are left out (the run ends with the error)."""
        if record:
            with self._lock:
                self._record(call, len(self.layout))
        self.current = None

    def _record(self, call, n: int) -> None:
        for st in call.streams:
            st.stats.record(call.step.index, not call.reusing, call.blocks_run, n)
            if isinstance(call, ComponentCall):
                st.stats.components_run += call.components_run
                st.stats.components_reused += call.components_reused
        self.stats.block_evals += call.blocks_run
        self.stats.block_evals_full += n
        declined = getattr(call, "declined", None)
        if declined is not None:
            self._declined = declined if self._declined is None else min(self._declined, declined)

    def close(self, status: str = "finished") -> RunStats:
        """Drop every tensor the run holds; return its stats (with what each stream's cache held at the end)."""
        for st in self.streams.values():
            st.stats.held_bytes = held_bytes((st.policy_state, st.residual, st.components))
        if isinstance(self.policy, (CachePolicy, ComponentPolicy)):
            self.stats.notes += self.policy.run_notes()
        threshold = self.policy.threshold if isinstance(self.policy, Tunable) else 0.0
        reused = any(s.reused_calls for s in self.stats.streams.values())
        if self._declined is not None and threshold > 0 and not reused:
            self.stats.notes.append(
                f"reused no step at threshold {threshold:.4g}: the method turned down every step it could reuse "
                f"(the smallest change it measured there: {self._declined:.4g}; a LoRA loaded since the threshold was "
                f"chosen can do that). Raise the threshold, or set target_compute")
        self.closed = True
        self.current = None
        self.streams.clear()
        self.stats.status = status
        return self.stats
