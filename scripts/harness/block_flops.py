"""The FLOPs a run spent inside a model's transformer blocks, counted op by op as they run.

Counts what torch's FlopCounterMode counts (its own per-op formulas: matrix products, attention kernels), inside
the block modules, at a fraction of its cost: FlopCounterMode tracks every module of the model and looks every
aten op up, which made a 30-step sample of the digits models 4x slower. Here forward hooks on the block modules
push a dispatch mode while a block runs (ops outside the blocks, the sampler's and the caches' own, never go
through it), and the mode counts the ops torch has a formula for, each formula evaluated once per op and argument
shapes (the formulas depend on those only, and evaluating them walks the arguments as pytrees, which cost as much
as the small models' ops themselves).
What a cache skipped never runs, so it is never counted: whole blocks (span methods), attention kernels or
modules (PAB, FasterCache), MLPs (SmoothCache), the uncond half of a batch (FasterCache).
tests/comfy/test_bench_measures.py holds the count equal to FlopCounterMode's (`reference_count`).
"""
from __future__ import annotations

import re

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import flop_registry

# ComfyUI's block containers (Wan, Flux) and diffusers' (Wan, Flux's double and single blocks)
BLOCK = re.compile(r"(^|\.)(blocks|double_blocks|single_blocks|transformer_blocks|single_transformer_blocks)\.\d+$")


def _shape_key(value):
    """A hashable stand-in for an op's argument: a tensor by its shape, containers by their items."""
    if isinstance(value, torch.Tensor):
        return ("T", tuple(value.shape))
    if isinstance(value, (list, tuple)):
        return tuple(_shape_key(v) for v in value)
    if isinstance(value, dict):
        return tuple(sorted((k, _shape_key(v)) for k, v in value.items()))
    return value


class _Counter(TorchDispatchMode):
    def __init__(self, by_block: dict | None = None):
        super().__init__()
        self.total = 0
        self.block, self.by_block = None, by_block   # the running block's name; FLOPs per block name, if asked
        self._flops: dict = {}                        # (op, argument shapes) -> its formula's FLOPs

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        formula = flop_registry.get(func._overloadpacket)
        if formula is not None:
            key = (func, _shape_key(args), _shape_key(kwargs), _shape_key(out))
            flops = self._flops.get(key)
            if flops is None:
                flops = self._flops[key] = formula(*args, **kwargs, out_val=out)
            self.total += flops
            if self.by_block is not None:
                self.by_block[self.block] = self.by_block.get(self.block, 0) + flops
        return out


def block_flops(run, net: torch.nn.Module, by_block: dict | None = None) -> tuple[object, int]:
    """(run()'s result, the FLOPs it spent inside `net`'s transformer blocks); by_block, if given, gets them per
    block name."""
    counter = _Counter(by_block)
    inside = []                  # the blocks running, innermost last (they do not nest; a guard all the same)

    def enter(name):
        if not inside:
            counter.__enter__()
        inside.append(name)
        counter.block = name

    def leave(*_):
        inside.pop()
        if not inside:
            counter.__exit__(None, None, None)

    blocks = [(name, m) for name, m in net.named_modules() if BLOCK.search(name)]
    handles = [h for name, m in blocks for h in (m.register_forward_pre_hook(lambda *_, n=name: enter(n)),
                                                m.register_forward_hook(leave))]
    try:
        out = run()
    finally:
        for h in handles:
            h.remove()
        if inside:               # a block raised (an interrupt): its forward hook never ran
            counter.__exit__(None, None, None)
    return out, counter.total


def reference_count(run) -> int:
    """FlopCounterMode's count of the same: its FLOPs attributed to block modules (the check's reference)."""
    from torch.utils.flop_counter import FlopCounterMode
    with FlopCounterMode(display=False) as counter:
        run()
    return sum(sum(ops.values()) for name, ops in counter.get_flop_counts().items() if BLOCK.search(name))
