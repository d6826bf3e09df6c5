"""One model call for methods that cache sub-block outputs (attention) instead of a span of blocks.

The host calls run_block(p, ...) in place of every block (which only notes the block) and
attention(compute) in place of every attention kernel call inside it. The n-th attention call of a
block has a kind from the layout (e.g. Wan: "self", "cross"); the policy decides per kind and step
whether to reuse that call's output from the last step that computed it. Outputs are cached per
stream (slices of the batch); a batched call reuses only if every stream in it has the output.
"""
from __future__ import annotations

from typing import Callable, Sequence, TYPE_CHECKING

import torch

from .layout import BlockLayout
from .policy import ReuseLimits, StepInfo

if TYPE_CHECKING:
    from .run import StreamState


class ComponentCall:
    def __init__(self, policy, layout: BlockLayout, limits: ReuseLimits, streams: Sequence["StreamState"],
                 step: StepInfo):
        self.policy, self.layout, self.limits = policy, layout, limits
        self.streams, self.step = list(streams), step
        self.block = -1
        self._ordinal = 0
        self.blocks_run = 0
        self.components_run = 0
        self.components_reused = 0

    @property
    def reusing(self) -> bool:
        return self.components_reused > 0

    def run_block(self, p: int, args: dict, original: Callable[[dict], dict]) -> dict:
        self._enter(p)
        return original(args)

    @torch.compiler.disable
    def _enter(self, p: int) -> None:
        self.block, self._ordinal = p, 0
        self.blocks_run += 1

    def attention(self, compute: Callable[[], torch.Tensor]) -> torch.Tensor:
        key, kind = self._next()
        if kind is not None and self._can_reuse(key, kind):
            return self._cached(key)
        out = compute()
        self._store(key, kind, out)
        return out

    @torch.compiler.disable
    def _next(self) -> tuple[tuple[int, int], str | None]:
        key = (self.block, self._ordinal)
        self._ordinal += 1
        kinds = self.layout.attention_kinds.get(self.layout.kinds[self.block], ()) if self.block >= 0 else ()
        return key, (kinds[key[1]] if key[1] < len(kinds) else None)

    @torch.compiler.disable
    def _can_reuse(self, key, kind: str) -> bool:
        return (all(key in st.components for st in self.streams)
                and self.limits.allow(self.step, 0)
                and self.policy.component_reuse(kind, self.step))

    @torch.compiler.disable
    def _cached(self, key) -> torch.Tensor:
        self.components_reused += 1
        parts = [st.components[key] for st in self.streams]
        return parts[0] if len(parts) == 1 else torch.cat(parts, dim=0)

    @torch.compiler.disable
    def _store(self, key, kind, out: torch.Tensor) -> None:
        self.components_run += 1
        if kind is None:
            return
        n = len(self.streams)
        if out.shape[0] % n:
            return   # not batch-first: never cached, always computed
        for st, part in zip(self.streams, out.chunk(n, dim=0) if n > 1 else (out,)):
            st.components[key] = part
