"""What the engine needs to know about a model's block stack, independent of any framework."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Mapping

import torch

Hidden = dict[str, torch.Tensor]


@dataclass(frozen=True)
class BlockLayout:
    """The block sequence of one model, as the engine walks it.

    kinds[p] names the kind of block at position p (e.g. "double_block", "single_block").
    stream_keys[kind] are the hidden-state tensors a block of that kind takes and returns
    (e.g. ("img", "txt")); every one has the batch on dim 0.
    convert re-lays a hidden state of one kind as the input of a later kind (Flux concatenates
    txt and img before its single blocks), given the later block's call arguments (where the model says how
    it joined them); identity when the kinds match.
    """
    kinds: tuple[str, ...]
    stream_keys: Mapping[str, tuple[str, ...]]
    primary: str = "img"
    convert: Callable[[Hidden, str, str, Mapping], Hidden] | None = field(default=None, compare=False)
    # block 0's timestep-modulated input from its args (TeaCache's indicator); None if unknown
    modulated_input: Callable[[dict], torch.Tensor] | None = field(default=None, compare=False)
    # block 0's modulated *image tokens* where they differ from modulated_input (Wan: TeaCache reads e0)
    modulated_image: Callable[[dict], torch.Tensor] | None = field(default=None, compare=False)
    # whether block 0's input starts with the image tokens in grid order (false where text comes first)
    image_first: bool = field(default=True, compare=False)
    # where a later kind's hidden state that convert joined starts its image tokens, from that block's call args (the
    # model may say: ComfyUI's img_slice; None: the image ends the sequence); None: as image_first
    joined_image_start: Callable[[Mapping], int | None] | None = field(default=None, compare=False)
    # kind of the n-th attention call inside a block of each kind, e.g. {"double_block": ("self", "cross")}
    attention_kinds: Mapping[str, tuple[str, ...]] = field(default_factory=dict, compare=False)
    # the batch axis of a component kind's outputs where it is not the first (Cosmos 1's MLPs see its tokens laid
    # out time first, batch 4th: {"mlp": 3}); component caches split and join the streams along it
    component_batch_dims: Mapping[str, int] = field(default_factory=dict, compare=False)
    # hidden streams besides the primary that the decision measures on their own (LTX-2's audio tokens): a call
    # reuses only where each of them agrees, so a modality that changes fast is never served the other's decision
    decided: tuple[str, ...] = ()

    @property
    def measured(self) -> tuple[str, ...]:
        return (self.primary, *self.decided)

    def __len__(self) -> int:
        return len(self.kinds)

    def hidden(self, tensors: Mapping[str, torch.Tensor], p: int) -> Hidden:
        return {k: tensors[k] for k in self.stream_keys[self.kinds[p]]}

    def image_start_at(self, p: int, args: Mapping) -> int | None:
        """Where block p's primary hidden state starts its image tokens, block p called with args (None: the image
        ends the sequence, after text of a length the layout does not know)."""
        if self.joined_image_start is not None and self.kinds[p] != self.kinds[0]:
            return self.joined_image_start(args)
        return 0 if self.image_first else None

    def relayout(self, hidden: Hidden, from_p: int, to_p: int, args: Mapping) -> Hidden:
        """hidden, taken at block from_p, as block to_p (called with args) takes it."""
        a, b = self.kinds[from_p], self.kinds[to_p]
        if a == b or self.convert is None:
            return hidden
        return self.convert(hidden, a, b, args)
