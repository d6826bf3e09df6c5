"""What the engine keeps per condition stream within one run (cond, uncond, extra conds): the method's own
state, the cached span residual or component outputs, and the stream's stats."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from .stats import StreamStats


@dataclass
class StreamState:
    label: str
    meta: tuple
    policy_state: Any
    stats: StreamStats
    residual: dict[str, torch.Tensor] | None = None   # cached span residual, this stream's slice
    anchor_shapes: dict[str, tuple] | None = None      # span-input shapes the residual belongs to
    consecutive_reuses: int = 0
    components: dict = field(default_factory=dict)     # (block, n-th attention) -> this stream's output
    side_states: dict = field(default_factory=dict)    # the policy's state for each other measured modality


def held_bytes(obj, seen: set | None = None) -> int:
    """Bytes of the distinct tensors reachable from obj (dicts, sequences, dataclasses and plain objects
    followed): what a stream's cache holds. A stream's slice of a batched tensor counts as its own slice."""
    seen = set() if seen is None else seen
    if isinstance(obj, torch.Tensor):
        key = (obj.device, obj.data_ptr(), tuple(obj.shape), obj.stride())
        if key in seen:
            return 0
        seen.add(key)
        return obj.numel() * obj.element_size()
    if id(obj) in seen or callable(obj):
        return 0            # modules (weights) and code are the model's, not the cache's
    seen.add(id(obj))
    if isinstance(obj, dict):
        return sum(held_bytes(k, seen) + held_bytes(v, seen) for k, v in obj.items())
    if isinstance(obj, (list, tuple, set)):
        return sum(held_bytes(v, seen) for v in obj)
    fields = getattr(obj, "__dict__", None)
    if fields is None and hasattr(obj, "__slots__"):
        fields = {n: getattr(obj, n, None) for n in obj.__slots__}
    return held_bytes(fields, seen) if fields else 0
