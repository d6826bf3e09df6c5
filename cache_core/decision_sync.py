"""The same cache decision on every rank when one generation is split across processes.

Under sequence parallelism (raylight / xDiT Ulysses or Ring attention) each rank holds a shard of the tokens,
so a change metric measured on the shard differs from rank to rank; if one rank then skips blocks whose
attention another rank enters, the collectives inside pair up wrongly or hang. A DecisionSync makes the
decision global: the metric's partial sums are added over the ranks (so the ratio is the one-GPU ratio,
whatever the shard sizes) and the verdict is the minimum over ranks (reuse only where every rank may).

The engine calls it on every decision of a method that decides from tensors, on every rank, with nothing
rank-dependent before the call (no early return on one rank only). Fixed-schedule methods (TaylorSeer,
Spectrum, PAB, SmoothCache, FasterCache) and MagCache (its ratios and the step only) decide alike on every
rank without it.
"""
from __future__ import annotations

import torch


class DecisionSync:
    """One process: nothing to agree on."""
    collective = False
    ranks = 1

    def sum(self, partials: torch.Tensor) -> torch.Tensor:
        return partials

    def all_agree(self, verdict: bool, device: torch.device) -> bool:
        return verdict


class DistributedSync(DecisionSync):
    """torch.distributed, over `group` (None = the default group): one SUM all-reduce of the stacked partial
    sums and one MIN all-reduce of the verdict per decision."""
    collective = True

    def __init__(self, group=None):
        import torch.distributed as dist
        self.group = group
        self.ranks = dist.get_world_size(group)

    def sum(self, partials: torch.Tensor) -> torch.Tensor:
        import torch.distributed as dist
        out = partials.clone()
        dist.all_reduce(out, op=dist.ReduceOp.SUM, group=self.group)
        return out

    def all_agree(self, verdict: bool, device: torch.device) -> bool:
        import torch.distributed as dist
        flag = torch.tensor([1 if verdict else 0], dtype=torch.int32, device=device)
        dist.all_reduce(flag, op=dist.ReduceOp.MIN, group=self.group)
        return bool(flag.item())
