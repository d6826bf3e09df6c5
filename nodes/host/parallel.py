"""Which processes a cache decision must agree over when one generation is split across GPUs.

raylight (Ray + xDiT) runs a ComfyUI ModelPatcher in every worker and applies ordinary ModelPatcher patches,
CacheKit's included, in each; its Ulysses/Ring forward still calls `patches_replace` per block on each rank's
shard of the tokens. The ranks that share one sequence are xDiT's sequence-parallel group; without xDiT, any
torch.distributed run of several processes agrees over the default group. One process: nothing to agree on.
"""
from __future__ import annotations

import logging

from ...cache_core.decision_sync import DecisionSync, DistributedSync

_log = logging.getLogger("CacheKit")


def decision_sync() -> DecisionSync:
    import torch.distributed as dist
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return DecisionSync()
    try:
        from xfuser.core.distributed import get_sp_group, model_parallel_is_initialized
        if model_parallel_is_initialized():
            group = get_sp_group()
            return DistributedSync(group.device_group) if group.world_size > 1 else DecisionSync()
    except ImportError:
        pass
    return DistributedSync(None)
