"""Change metrics used by the cache decisions. All reductions run in fp32 whatever the model dtype."""
from __future__ import annotations

import torch


def rel_l1(current: torch.Tensor, previous: torch.Tensor) -> torch.Tensor:
    """mean|current - previous| / mean|previous| as a 0-d fp32 tensor (no host sync): the ratio of
    rel_l1_parts, so a tuning records the very metric the decisions use.

    The previous tensor is the denominator, as in every reference implementation (docs/methods.md §0).
    """
    return ratio(rel_l1_parts(current, previous))


def rel_l1_parts(current: torch.Tensor, previous: torch.Tensor) -> torch.Tensor:
    """[sum|current - previous|, sum|previous|] in fp32 (no host sync): relative L1 as the partial sums it is
    made of, so shards of a sequence split over processes add up to the whole sequence's ratio."""
    cur = current.float()
    prev = previous.float()
    return torch.stack(((cur - prev).abs().sum(), prev.abs().sum()))


def ratio(parts: torch.Tensor) -> torch.Tensor:
    """The metric of partial sums [numerator, denominator] (0-d tensor)."""
    return parts[..., 0] / parts[..., 1].clamp_min(1e-12)


def to_floats(values: list[torch.Tensor | None]) -> list[float | None]:
    """Bring a list of 0-d tensors to the host with one sync instead of one per tensor."""
    present = [v for v in values if v is not None]
    if not present:
        return [None] * len(values)
    device = present[0].device
    host = iter(torch.stack([v.detach().float().reshape(()).to(device) for v in present]).cpu().tolist())
    return [next(host) if v is not None else None for v in values]
