"""One model call for methods that cache sub-block outputs (attention, MLP) instead of a span of blocks.

The host calls run_block(p, ...) in place of every block (which only notes the block), attention()
in place of every attention kernel call and component() in place of other hooked modules (MLPs).
The n-th attention call of a block has a kind from the layout (Wan: "self", "cross"); MLPs are kind
"mlp". The policy decides per component kind, block and step whether to reuse (or extrapolate) that
component's output from the steps that computed it. Outputs are kept per stream (slices of the
batch); a batched call reuses only if every stream in it has what the policy needs.
"""
from __future__ import annotations

from typing import Callable, Sequence, TYPE_CHECKING

import torch

from .layout import BlockLayout
from .policy import ReuseLimits, StepInfo
from .steps import CallStep

if TYPE_CHECKING:
    from .streams import StreamState


class ComponentCall:
    def __init__(self, policy, layout: BlockLayout, limits: ReuseLimits, streams: Sequence["StreamState"],
                 step: CallStep):
        self.policy, self.layout, self.limits = policy, layout, limits
        self.streams, self._when = list(streams), step
        self.block = -1
        self._attn_ordinal = 0
        self._shapes_checked = False
        self.blocks_run = 0
        self.components_run = 0
        self.components_reused = 0

    @property
    def step(self) -> StepInfo:
        return self._when.resolve()

    @property
    def reusing(self) -> bool:
        return self.components_reused > 0

    def run_block(self, p: int, args: dict, original: Callable[[dict], dict]) -> dict:
        if not self._shapes_checked:
            self._check_shapes(args, p)
        self._enter(p)
        out = original(args)
        self._enter(-1)   # attention between blocks (Wan VACE's own blocks) belongs to no block: computed
        return out

    @torch.compiler.disable
    def _check_shapes(self, args: dict, p: int) -> None:
        """The first block's hidden state, per stream: where its shape changed since the stream's outputs were
        cached (a node dropping tokens after the first call: Flux KV Cache drops the reference images'), none
        of them fits any more, so they are dropped."""
        self._shapes_checked = True
        n = len(self.streams)
        dim = self.layout.component_batch_dims.get("mlp", 0)   # the hidden state's batch axis, as its MLPs see it
        shapes = {k: tuple(d // n if i == dim else d for i, d in enumerate(args[k].shape))
                  for k in self.layout.stream_keys[self.layout.kinds[p]] if torch.is_tensor(args.get(k))}
        for st in self.streams:
            if st.anchor_shapes != shapes:
                st.components.clear()
                st.anchor_shapes = shapes

    @torch.compiler.disable
    def _enter(self, p: int) -> None:
        self.block, self._attn_ordinal = p, 0
        self.blocks_run += p >= 0

    def attention(self, compute: Callable[[], torch.Tensor]) -> torch.Tensor:
        key, kind = self._next_attention()
        return self.component(key, kind, compute)

    def component(self, key, kind: str | None, compute: Callable[[], torch.Tensor]) -> torch.Tensor:
        if key[0] < 0:
            kind = None   # a hooked module called outside any block (Wan-Animate-2's pose branch): computed, not cached
        if kind is not None and self._can_reuse(key, kind):
            return self._reused(key, kind)
        out = compute()
        self._store(key, kind, out)
        return out

    @torch.compiler.disable
    def attention_will_reuse(self) -> bool:
        """Whether the block's next attention call will reuse, asked ahead of it (it decides nothing): blocks
        that compute the q/k/v inline (Flux-style) skip those projections when it will."""
        key, kind = self._peek_attention()
        return kind is not None and self._can_reuse(key, kind)

    @torch.compiler.disable
    def _next_attention(self) -> tuple[tuple, str | None]:
        out = self._peek_attention()
        self._attn_ordinal += 1
        return out

    def _peek_attention(self) -> tuple[tuple, str | None]:
        ordinal = self._attn_ordinal
        kinds = self.layout.attention_kinds.get(self.layout.kinds[self.block], ()) if self.block >= 0 else ()
        return (self.block, "attn", ordinal), (kinds[ordinal] if ordinal < len(kinds) else None)

    @torch.compiler.disable
    def _can_reuse(self, key, kind: str) -> bool:
        return (all(st.components.get(key) for st in self.streams)
                and self.limits.allow(self.step, 0, self.policy)
                and self.policy.component_reuse(kind, key[0], self.step))

    @torch.compiler.disable
    def _reused(self, key, kind: str) -> torch.Tensor:
        self.components_reused += 1
        parts = [self.policy.component_value(kind, st.components[key], self.step) for st in self.streams]
        if self.policy.store_approximations:
            for st, part in zip(self.streams, parts):
                self._remember(st, key, part)
        # a copy: hosts update component outputs in place (HunyuanVideo's apply_mod on MLP outputs)
        if len(parts) == 1:
            return parts[0].clone()
        return torch.cat(parts, dim=self.layout.component_batch_dims.get(kind, 0))

    @torch.compiler.disable
    def _store(self, key, kind, out: torch.Tensor) -> None:
        self.components_run += 1
        n = len(self.streams)
        dim = self.layout.component_batch_dims.get(kind, 0)
        if kind is None or not torch.is_tensor(out) or out.ndim <= dim or out.shape[dim] % n:
            return   # unknown kind or not split by stream: always computed, never cached
        parts = out.chunk(n, dim=dim) if n > 1 else (out,)
        for st, part in zip(self.streams, parts):
            self.policy.observe(st.label, key, kind, part, self.step)
            if self.policy.keep > 0 and self.policy.reuses(kind, key[0]):
                # a copy: hosts update the output in place after it is returned (ComfyUI's attention output
                # patches, NAG's among them; HunyuanVideo's and Flux's gated apply_mod on MLP outputs)
                self._remember(st, key, part.clone())

    def _remember(self, st, key, part: torch.Tensor) -> None:
        """History per step: a second call in the same step (Heun, SA-Solver PECE) replaces the step's
        entry, so extrapolations always span distinct steps."""
        history = st.components.setdefault(key, [])
        if history and history[-1][0] == self.step.index:
            history.pop()
        history.append((self.step.index, part))
        del history[:-self.policy.keep]
