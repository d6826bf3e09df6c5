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
