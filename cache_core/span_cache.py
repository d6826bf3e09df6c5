"""One model call through a block stack whose middle span may be reused.

The block stack is split as [front | span | back]:
  front  (policy.front_blocks) always runs; its residual is the probe (First Block Cache: block 0).
  span   is computed, or skipped: its blocks pass their input through and the last one adds the
         span residual cached on the stream's last computed call.
  back   (policy.back_blocks) always runs (DBCache's Bn blocks).
The host calls run_block(p, args, original) in place of every block p. Only the last span block
applies the residual, so it is added exactly once (pitfall 4 in docs/methods.md).

Cond and uncond that arrive batched in one call each keep their own state and decision; the call
reuses only when every stream in it agrees, otherwise the whole batch computes and every stream is
refreshed with the fresh result. A model with another modality in its blocks (LTX-2's audio) has it
measured the same way, with a state of its own: the call reuses only where both modalities agree.
"""
from __future__ import annotations

import dataclasses
from typing import Callable, Sequence, TYPE_CHECKING

import torch

from .layout import BlockLayout, Hidden
from .decision_sync import DecisionSync
from .metrics import ratio, to_floats
from .policy import CachePolicy, ReuseLimits, StepInfo
from .steps import CallStep

if TYPE_CHECKING:
    from .streams import StreamState

_RUN, _PASS, _APPLY = 0, 1, 2


def span_bounds(front_blocks: int, back_blocks: int, n: int) -> tuple[int, int]:
    """[start, end): the positions of the reusable span between the always-computed front and back blocks."""
    start = min(front_blocks, n)
    return start, max(n - back_blocks, start)


def _chunks(t: torch.Tensor, n: int) -> tuple[torch.Tensor, ...]:
    return t.chunk(n, dim=0) if n > 1 else (t,)


class SpanCall:
    def __init__(self, policy: CachePolicy, layout: BlockLayout, limits: ReuseLimits,
                 streams: Sequence["StreamState"], step: CallStep, must_compute: bool = False,
                 sync: DecisionSync | None = None):
        self.policy, self.layout, self.limits = policy, layout, limits
        self.sync = sync or DecisionSync()
        self.streams, self._when = list(streams), step
        self.must_compute = must_compute
        self.start, self.end = span_bounds(policy.front_blocks, policy.back_blocks, len(layout))
        self.reusing = False
        self.declined: float | None = None
        self.blocks_run = 0
        self._stack_in: Hidden | None = None
        self._anchor: Hidden | None = None
        self._anchor_pos = 0

    @property
    def step(self) -> StepInfo:
        return self._when.resolve()

    def _step_at(self, p: int, args: dict) -> StepInfo:
        """The call's step, saying where block p's hidden state holds the image tokens (FreqCa splits on their grid)."""
        step = self.step
        start = self.layout.image_start_at(p, args)
        return step if start == step.image_start else dataclasses.replace(step, image_start=start)

    # --- the data path: one block ---------------------------------------------------------------
    def run_block(self, p: int, args: dict, original: Callable[[dict], dict]) -> dict:
        plan = self._before(p, args)
        if plan == _PASS:
            return self.layout.hidden(args, p)
        if plan == _APPLY:
            return self._apply_residual(args, p)
        out = original(args)
        self._after(p, args, out)
        return out

    @torch.compiler.disable
    def _before(self, p: int, args: dict) -> int:
        if self.start >= self.end:            # nothing between front and back: plain run
            self.blocks_run += 1
            return _RUN
        if p == 0 and self.start == 0:       # no front blocks: decide before the stack runs
            self._decide(self._input_probe(args), self.layout.hidden(args, 0), 0)
        elif p == 0:
            # Blocks update their inputs in place (Flux `img +=`, LTXV `addcmul_`): keep a copy of what
            # the front residual is measured against.
            whole = self.layout.kinds[self.start - 1] != self.layout.kinds[0]
            keep = self.layout.hidden(args, 0) if whole else {k: args[k] for k in self.layout.measured}
            self._stack_in = {k: v.clone() for k, v in keep.items()}
        if self.reusing and self.start <= p < self.end:
            return _APPLY if p == self.end - 1 else _PASS
        self.blocks_run += 1
        return _RUN

    @torch.compiler.disable
    def _after(self, p: int, args: dict, out: dict) -> None:
        if self.start >= self.end:
            return
        if p == self.start - 1:
            before = self.layout.relayout(self._stack_in, 0, p, args)
            probe = {k: out[k] - before[k] for k in self.layout.measured if out[k].numel()}
            self._decide(probe, self.layout.hidden(out, p), p)
        if p == self.end - 1 and not self.reusing:
            self._store_residual(args, out, p)

    # --- decision ------------------------------------------------------------------------------
    def _input_probe(self, args: dict) -> torch.Tensor | None:
        kind, lay = self.policy.probe, self.layout
        if kind == "modulated_image" and lay.modulated_image is not None:
            return lay.modulated_image(args)
        return lay.modulated_input(args) if kind in ("modulated_input", "modulated_image") else None

    def _decide(self, probe: torch.Tensor | dict | None, anchor: Hidden, anchor_pos: int) -> None:
        """probe: the primary's, or {modality: probe} where the layout measures more than one (an empty one is
        absent: LTX-2 sampled without audio)."""
        n, primary = len(self.streams), self.layout.primary
        probes = dict(probe) if isinstance(probe, dict) else {primary: probe}
        if self.policy.conditions_probe and primary in probes:   # SeaCache's filter, on the image tokens only
            probes[primary] = self.policy.condition(probes[primary], self.step, self.layout)
        shapes = [{k: tuple(c.shape) for k, c in zip(anchor, parts)}
                  for parts in zip(*(_chunks(v, n) for v in anchor.values()))]
        at = {"step": self.step} if self.policy.conditions_probe else {}   # read already, for condition()
        measured = []   # per modality: (each stream's probe, state, metric)
        for key, pr in probes.items():
            parts = _chunks(pr, n) if pr is not None else (None,) * n
            states = [st.policy_state if key == primary else self._side_state(st, key) for st in self.streams]
            metrics = self._metrics([self.policy.measure(s, c, **at) for s, c in zip(states, parts)], pr)
            measured.append((parts, states, metrics))
        offered = [st.residual is not None and st.anchor_shapes == shp
                   and self.limits.allow(self.step, st.consecutive_reuses, self.policy)
                   for st, shp in zip(self.streams, shapes)]
        wants = [ok and all([self.policy.wants_reuse(states[i], metrics[i], self.step)
                             for _, states, metrics in measured]) for i, ok in enumerate(offered)]
        # the smallest metric (the primary's where measured) of a stream that could have reused and whose method said
        # no: the run says it when a threshold let nothing through
        metrics_of = dict(zip(probes, (metrics for _, _, metrics in measured)))
        first = metrics_of.get(primary) or next(iter(metrics_of.values()), [])
        self.declined = min((m for ok, w, m in zip(offered, wants, first) if ok and not w and m is not None),
                            default=None)
        self.reusing = bool(wants) and all(wants) and not self.must_compute
        if self.sync.collective and self.policy.probe is not None:   # every rank reuses, or none does
            device = next(v.device for v in probes.values() if v is not None)
            self.reusing = self.sync.all_agree(self.reusing, device)
        for parts, states, metrics in measured:
            for pr, state, m in zip(parts, states, metrics):
                self.policy.commit(state, self.reusing, pr, m, self.step)
        for st, shp in zip(self.streams, shapes):
            st.consecutive_reuses = st.consecutive_reuses + 1 if self.reusing else 0
            if not self.reusing:
                st.anchor_shapes = shp
        if not self.reusing:   # the span's blocks will update the anchor in place: keep a copy
            self._anchor = {k: v.clone() for k, v in anchor.items()}
            self._anchor_pos = anchor_pos

    def _side_state(self, stream: "StreamState", key: str):
        if key not in stream.side_states:
            stream.side_states[key] = self.policy.new_state(f"{stream.label}:{key}")
        return stream.side_states[key]

    def _metrics(self, parts: list, probe: torch.Tensor | None) -> list[float | None]:
        """Each stream's metric from its partial sums: added over the ranks first where the run is split
        (one collective for all streams; a stream counts as measured only where every rank measured it)."""
        sigma = self._when.pending if probe is not None else None   # read with the metrics: one transfer
        if probe is None or not self.sync.collective:
            values = to_floats([None if p is None else ratio(p) for p in parts] + [sigma])
            self._resolve_with(values.pop())
            return values
        rows = [torch.cat((p.float(), p.new_ones(1))) if p is not None else probe.new_zeros(3, dtype=torch.float32)
                for p in parts]
        total = self.sync.sum(torch.stack(rows))
        values = to_floats([ratio(r[:2]) for r in total] + [total[:, 2].min(), sigma])
        self._resolve_with(values.pop())
        return [v if values[-1] >= self.sync.ranks else None for v in values[:-1]]

    def _resolve_with(self, sigma: float | None) -> None:
        if sigma is not None:
            self._when.resolve(sigma)

    # --- residual cache ------------------------------------------------------------------------
    def _store_residual(self, args: dict, out: dict, p: int) -> None:
        base = self.layout.relayout(self._anchor, self._anchor_pos, p, args)
        n = len(self.streams)
        # a stream a block does not return (SD3's last block drops the text) has no residual
        keys = [k for k in self.layout.stream_keys[self.layout.kinds[p]] if out.get(k) is not None]
        res = {k: _chunks(out[k] - base[k], n) for k in keys}
        inp = {k: _chunks(base[k], n) for k in keys}
        step = self._step_at(p, args)
        for i, st in enumerate(self.streams):
            st.residual = self.policy.store(st.policy_state, {k: c[i] for k, c in res.items()}, step,
                                            {k: c[i] for k, c in inp.items()})

    @torch.compiler.disable
    def _apply_residual(self, args: dict, p: int) -> dict:
        every = self.layout.stream_keys[self.layout.kinds[p]]
        keys = [k for k in every if k in self.streams[0].residual]
        n = len(self.streams)
        inp = [dict(zip(keys, parts)) for parts in zip(*(_chunks(args[k], n) for k in keys))]
        step = self._step_at(p, args)
        per_stream = [self.policy.reuse(st.policy_state, st.residual, step, x) for st, x in zip(self.streams, inp)]
        out = {k: args[k] for k in every if k not in keys}   # a stream the block drops passes as it came
        for k in keys:
            r = per_stream[0][k] if n == 1 else torch.cat([res[k] for res in per_stream], dim=0)
            out[k] = args[k] + r
        return out
