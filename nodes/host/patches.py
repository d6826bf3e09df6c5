"""How a method reaches into the model: one route per ComfyUI extension point. Each installs itself on a
cloned ModelPatcher and hands what it intercepts to the live call, found through the spec (live.py):

  block routes (the family row names one)
    "replace"  patches_replace["dit"][(kind, index)]: the block's inputs arrive as a dict, its outputs
               leave as one (Flux, Wan, HunyuanVideo, Qwen-Image, LTXV, ...).
    "forward"  an object patch on each block module's `forward` (ModelPatcher.add_object_patch: weight keys,
               LoRA and offloading stay as they are), for families whose forward ignores patches_replace;
               the family's CallAdapter maps the block's call to the engine's dict and back. Every object
               patch calls the module it sits on: a clone onto another model instance rebinds them.
  attention    transformer_options["optimized_attention_override"], in place of every attention kernel;
               where a family's attention gets no transformer_options (PixArt, HunyuanDiT, Hunyuan3D 2.1),
               or where caching the module skips its projections too (Wan), an object patch on each
               attention module's `forward` instead.
  mlp          an object patch on each MLP module's `forward`.
  cfg          the CALC_COND_BATCH wrapper, around each sampler step's cond+uncond batch.

Nothing here decides: the engine (cache_core) does, through the live call.
"""
from __future__ import annotations

import copy
import inspect
from typing import TYPE_CHECKING

import torch

import comfy.ops
import comfy.utils

from ...cache_core import CfgCache, ComponentCall
from ...cache_core.cfg_batch import run_cfg_batch
from .live import SharedOnClone

if TYPE_CHECKING:
    from .adapters import CallAdapter, ReplaceAdapter
    from .families import Family
    from .spec import CacheSpec

ATTN_KEY = "optimized_attention_override"   # ComfyUI's attention-kernel hook in transformer_options


# --- block routes --------------------------------------------------------------------------------------
class _BlockPatch(SharedOnClone):
    """patches_replace entry for block position p: hands the block to the live call, if any."""
    def __init__(self, spec: CacheSpec, position: int, adapter: ReplaceAdapter | None = None):
        self.spec, self.position, self.adapter = spec, position, adapter

    def __call__(self, args: dict, extra: dict):
        call, original = self.spec.live.call, extra["original_block"]
        if call is None:   # sampled outside a CacheKit run (e.g. another wrapper bypassed ours)
            return original(args)
        if self.adapter is None:
            return call.run_block(self.position, args, original)
        a = self.adapter
        return a.result(call.run_block(self.position, a.to_engine(args), lambda d: a.call(original, d)))


def block_replace(m, spec: CacheSpec, family: Family, positions) -> None:
    for p, (kind, index) in enumerate(positions):
        m.set_model_patch_replace(_BlockPatch(spec, p, family.adapter_for(kind)), "dit", kind, index)



class _ModulePatch:
    """An object patch on a module's `forward` (ModelPatcher.add_object_patch), calling that module's own class
    forward: not an object patch already applied to it (a clone's), which would otherwise be called from inside the
    patch that replaces it. Another node's object patch registered on the same path before CacheKit's
    (`previous`, see object_patch) is called instead, so it still runs. ModelPatcher.clone() copies object patches
    by path; where the clone holds another instance of the model (newer ComfyUI: dynamic VRAM's non-dynamic
    delegate, TorchCompileModel, the multi-GPU deep clones), rebind_object_patches gives it copies bound to its
    modules."""
    previous = None

    def __init__(self, module):
        self.bind(module)

    def bind(self, module) -> None:
        self.module = module
        self.forward = self.previous if self.previous is not None else type(module).forward.__get__(module)

    def bound_to(self, module) -> "_ModulePatch":
        other = copy.copy(self)
        other.bind(module)
        return other


def object_patch(m, path: str, patch: _ModulePatch) -> None:
    """Register `patch` on `path`.forward. ComfyUI keeps one object patch per path, the last one added: another
    node's patch already there (an attention kernel swap, a LoRA-style linear, a quantizing op) would be dropped,
    so CacheKit's calls it in place of the module's forward. An earlier CacheKit node's is replaced: methods do not
    stack (install.py)."""
    key = f"{path}.forward"
    previous = m.object_patches.get(key)
    if previous is not None and not isinstance(previous, _ModulePatch):
        patch.previous = previous
        patch.bind(patch.module)
    m.add_object_patch(key, patch)
    patch.spec.live.object_patches[key] = isinstance(patch, _BlockForward)


def replaced_object_patches(model_patcher, spec: CacheSpec) -> tuple[list[str], list[str]]:
    """The paths where an object patch added after spec's node replaced CacheKit's (ComfyUI keeps the last one
    added): (block routes, component patches). A block that no longer routes through the engine would run on a
    reused step's stale input, so a run refuses it; a lost component patch only caches less."""
    lost = [k for k in sorted(spec.live.object_patches)
            if not (isinstance(p := model_patcher.object_patches.get(k), _ModulePatch) and p.spec is spec)]
    return [k for k in lost if spec.live.object_patches[k]], [k for k in lost if not spec.live.object_patches[k]]


def rebind_object_patches(parent, clone) -> None:
    """ON_CLONE callback: a clone holding another model instance gets CacheKit's object patches bound to its own
    modules (the path of each is its key, less ".forward")."""
    if clone.model is parent.model:
        return
    for key, patch in list(clone.object_patches.items()):
        if isinstance(patch, _ModulePatch):
            clone.object_patches[key] = patch.bound_to(comfy.utils.get_attr(clone.model, key.rsplit(".", 1)[0]))


class _BlockForward(_ModulePatch):
    """Object patch on block position p's `forward`."""
    def __init__(self, spec: CacheSpec, position: int, module, adapter: CallAdapter):
        self.spec, self.position, self.adapter = spec, position, adapter
        super().__init__(module)
        self.signature = inspect.signature(type(module).forward.__get__(module))   # another node's patch: (*a, **k)

    def __call__(self, *args, **kwargs):
        call = self.spec.live.call
        if call is None:
            return self.forward(*args, **kwargs)
        d = self.adapter.to_engine(self.signature, args, kwargs)
        out = call.run_block(self.position, d, lambda a: self.adapter.call(self.forward, a))
        return self.adapter.result(out)


def block_forward(m, spec: CacheSpec, family: Family, positions) -> None:
    for p, (kind, index) in enumerate(positions):
        path = family.block_path(kind, index)
        module = comfy.utils.get_attr(m.model, path)
        object_patch(m, path, _BlockForward(spec, p, module, family.adapter_for(kind)))


BLOCK_ROUTES = {"replace": block_replace, "forward": block_forward}


# --- attention -----------------------------------------------------------------------------------------
class _AttentionOverride(SharedOnClone):
    """ComfyUI calls it in place of the attention kernel; a component method's live call may return that
    attention's cached output instead. Chains to an override another node installed before; `front`: the copy a
    run put in front of one installed after (put_in_front)."""
    def __init__(self, spec: CacheSpec, previous=None, front: bool = False):
        self.spec, self.previous, self.front = spec, previous, front

    def __call__(self, func, *args, **kwargs):
        def compute():
            return self.previous(func, *args, **kwargs) if self.previous else func(*args, **kwargs)
        call = self.spec.live.call
        # reached again through the later node's override, which chained to it: the front copy has decided
        if not isinstance(call, ComponentCall) or (not self.front and self.spec.live.fronted):
            return compute()
        return call.attention(compute)


def put_in_front(to: dict, spec: CacheSpec) -> bool:
    """For one run's transformer_options: where another node's attention override, installed after CacheKit's,
    replaced it (ComfyUI's set_model_optimized_attention and the Sage nodes replace whatever was there), CacheKit's
    goes in front of it, and the other one computes every kernel CacheKit does not reuse. Returns whether it did."""
    if reaches_kernels(to, spec):
        return False
    to[ATTN_KEY] = _AttentionOverride(spec, to.get(ATTN_KEY), front=True)
    return True


def reaches_kernels(to: dict, spec: CacheSpec) -> bool:
    """Whether attention kernels called with these transformer_options go through spec's override (directly or
    chained from one installed after it by CacheKit's own rule)."""
    override = to.get(ATTN_KEY)
    while isinstance(override, _AttentionOverride):
        if override.spec is spec:
            return True
        override = override.previous
    return False


def attention(to: dict, spec: CacheSpec | None) -> None:
    """Install the override for spec (None: remove CacheKit's, keeping whatever it chained to)."""
    current = to.get(ATTN_KEY)
    previous = current.previous if isinstance(current, _AttentionOverride) else current
    if spec is not None:
        to[ATTN_KEY] = _AttentionOverride(spec, previous)
    elif previous is not None:
        to[ATTN_KEY] = previous
    else:
        to.pop(ATTN_KEY, None)


def attention_modules(m, spec: CacheSpec, family: Family, positions) -> None:
    """For families whose attention kernel gets no transformer_options (the override above never sees it): an
    object patch on each attention module's `forward`, in the block's call order."""
    for _, path, _ in family.module_paths(positions, family.attention_modules):
        _patch_module(m, path, comfy.utils.get_attr(m.model, path), spec, None, family.attention_tuple)


class _AttentionInput(_ModulePatch):
    """Object patch on a linear that computes an attention's q, k, v inline (the first `rows` outputs): when the
    live call will reuse that attention, the kernel never reads them, so they are not computed (zeros stand in);
    where the linear also feeds the MLP (Flux single blocks' linear1) the MLP's outputs still are. The block's
    forward runs as written."""
    def __init__(self, spec: CacheSpec, module, rows: int):
        self.spec, self.rows = spec, rows
        super().__init__(module)

    def __call__(self, x):
        call = self.spec.live.call
        if not (isinstance(call, ComponentCall) and self.spec.live.kernels_reached and call.attention_will_reuse()):
            return self.forward(x)
        m, features = self.module, self.module.weight.shape[0]
        if self.rows >= features:
            return x.new_zeros(*x.shape[:-1], features)
        if self.previous is not None or not _plain_linear(m):
            return self.forward(x)      # another node's patch, quantized or custom weights: not sliced
        weight, bias, offload = comfy.ops.cast_bias_weight(m, x, offloadable=True)
        rest = torch.nn.functional.linear(x, weight[self.rows:], None if bias is None else bias[self.rows:])
        comfy.ops.uncast_bias_weight(m, weight, bias, offload)
        return torch.cat((rest.new_zeros(*rest.shape[:-1], self.rows), rest), dim=-1)


def _plain_linear(m) -> bool:
    """A ComfyUI Linear whose weight is a plain float tensor cast the standard way (its rows can be sliced)."""
    base = comfy.ops.disable_weight_init.Linear
    return (isinstance(m, base) and type(m).forward_comfy_cast_weights is base.forward_comfy_cast_weights
            and type(m.weight) is torch.nn.Parameter and m.weight.dtype.is_floating_point)


def attention_inputs(m, spec: CacheSpec, family: Family, positions) -> None:
    for kind, index in positions:
        block = family.block(m.model.diffusion_model, kind, index)
        for name in family.attention_inputs.get(kind, ()):
            module = comfy.utils.get_attr(block, name)
            object_patch(m, f"{family.block_path(kind, index)}.{name}",
                         _AttentionInput(spec, module, 3 * block.hidden_size))


# --- MLPs ----------------------------------------------------------------------------------------------
class _ModuleForward(_ModulePatch):
    """Object patch on a component module's `forward` (an MLP, or an attention module where the kernel cannot be
    reached): the live component call may reuse its output. name: the MLP's name in its block (None: an attention
    module, kinded by its call order); as_tuple: the module returns a 1-tuple (HunyuanDiT's attention), cached as
    its tensor."""
    def __init__(self, spec: CacheSpec, module, name: str | None, as_tuple: bool = False):
        self.spec, self.name, self.as_tuple = spec, name, as_tuple
        super().__init__(module)

    def __call__(self, *args, **kwargs):
        call = self.spec.live.call
        if not isinstance(call, ComponentCall):
            return self.forward(*args, **kwargs)

        def compute():
            out = self.forward(*args, **kwargs)
            return out[0] if self.as_tuple else out
        out = (call.attention(compute) if self.name is None
               else call.component((call.block, self.name), "mlp", compute))
        return (out,) if self.as_tuple else out


def _patch_module(m, path: str, module, spec: CacheSpec, name: str | None, as_tuple: bool = False) -> None:
    object_patch(m, path, _ModuleForward(spec, module, name, as_tuple))


def mlps(m, spec: CacheSpec, family: Family, positions) -> None:
    for _, path, name in family.mlp_paths(positions):
        try:
            module = comfy.utils.get_attr(m.model, path)
        except AttributeError:
            continue   # a block without this MLP (SD3's last text block, Hunyuan3D 2.1's MoE blocks)
        _patch_module(m, path, module, spec, name)


# --- CFG -----------------------------------------------------------------------------------------------
def cfg_batch_wrapper(spec: CacheSpec, executor, model, conds, x_in, timestep, model_options, *args, **kwargs):
    """CALC_COND_BATCH wrapper for CFG-level methods (FasterCache): the engine decides whether the uncond branch
    runs (cache_core/cfg_batch.py); this forwards ComfyUI's batch to it."""
    run = spec.live.run
    if run is None or not isinstance(run.policy, CfgCache) or len(conds) != 2 or not conds[1]:
        return executor(model, conds, x_in, timestep, model_options, *args, **kwargs)

    def compute(both: bool):
        return executor(model, conds if both else [conds[0], None], x_in, timestep, model_options, *args, **kwargs)
    return run_cfg_batch(run, x_in, timestep, compute, [c.get("uuid") for c in conds[1]])
