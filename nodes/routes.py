"""How a method reaches into the model: one route per ComfyUI extension point. Each installs itself on a
cloned ModelPatcher and hands what it intercepts to the live call, found through the spec (live.py):

  block routes (the family row names one)
    "replace"  patches_replace["dit"][(kind, index)]: the block's inputs arrive as a dict, its outputs
               leave as one (Flux, Wan, HunyuanVideo, Qwen-Image, LTXV, ...).
    "forward"  an object patch on each block module's `forward` (ModelPatcher.add_object_patch: weight keys,
               LoRA and offloading stay as they are), for families whose forward ignores patches_replace;
               the family's CallAdapter maps the block's call to the engine's dict and back.
  attention    transformer_options["optimized_attention_override"], in place of every attention kernel;
               where a family's attention gets no transformer_options (PixArt, HunyuanDiT), an object patch on
               each attention module's `forward` instead.
  mlp          an object patch on each MLP module's `forward`.
  cfg          the CALC_COND_BATCH wrapper, around each sampler step's cond+uncond batch.

Nothing here decides: the engine (cache_core) does, through the live call.
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable

import torch

import comfy.utils

from ..cache_core import CfgCache, ComponentCall
from .live import SharedOnClone

if TYPE_CHECKING:
    from .families import Family
    from .hooks import CacheSpec

ATTN_KEY = "optimized_attention_override"   # ComfyUI's attention-kernel hook in transformer_options


# --- block routes --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ReplaceAdapter:
    """A patches_replace entry whose forward passes the hidden state under its own name and takes it back bare
    (Hunyuan3D 2.1: {"x", "t", "cond", "skip"} in, the new x out): seen as the engine's {"img": ...} dict."""
    hidden: str = "x"

    def to_engine(self, args: dict) -> dict:
        return args | {"img": args[self.hidden]}

    def call(self, original: Callable, d: dict) -> dict:
        return {"img": original({k: v for k, v in d.items() if k != "img"} | {self.hidden: d["img"]})}

    def result(self, out: dict):
        return out["img"]


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


@dataclass(frozen=True)
class CallAdapter:
    """A block's own call, seen as the engine's dict: its arguments by parameter name, the hidden-state
    tensors also under the engine's keys, and its return value as {engine key: tensor}.
    hidden: engine key -> the forward's parameter holding it; returns: engine keys of what it returns
    (one key: a tensor; more: a tuple in that order)."""
    hidden: dict[str, str] = field(default_factory=lambda: {"img": "x"})
    returns: tuple[str, ...] = ("img",)

    def to_engine(self, signature: inspect.Signature, args, kwargs) -> dict:
        bound = dict(signature.bind(*args, **kwargs).arguments)
        return bound | {key: bound[param] for key, param in self.hidden.items()}

    def call(self, forward: Callable, d: dict) -> dict:
        params = {k: v for k, v in d.items() if k not in self.hidden}
        params |= {param: d[key] for key, param in self.hidden.items()}
        out = forward(**params)
        return dict(zip(self.returns, out if len(self.returns) > 1 else (out,)))

    def result(self, out: dict):
        return out[self.returns[0]] if len(self.returns) == 1 else tuple(out[k] for k in self.returns)


class _BlockForward:
    """Object patch on block position p's `forward`."""
    def __init__(self, spec: CacheSpec, position: int, forward: Callable, adapter: CallAdapter):
        self.spec, self.position, self.forward, self.adapter = spec, position, forward, adapter
        self.signature = inspect.signature(forward)

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
        forward = type(module).forward.__get__(module)   # the class's own, not an applied patch
        m.add_object_patch(f"{path}.forward", _BlockForward(spec, p, forward, family.adapter_for(kind)))


BLOCK_ROUTES = {"replace": block_replace, "forward": block_forward}


# --- attention -----------------------------------------------------------------------------------------
class _AttentionOverride(SharedOnClone):
    """ComfyUI calls it in place of the attention kernel; a component method's live call may return that
    attention's cached output instead. Chains to an override another node installed before."""
    def __init__(self, spec: CacheSpec, previous=None):
        self.spec, self.previous = spec, previous

    def __call__(self, func, *args, **kwargs):
        def compute():
            return self.previous(func, *args, **kwargs) if self.previous else func(*args, **kwargs)
        call = self.spec.live.call
        if not isinstance(call, ComponentCall):
            return compute()
        return call.attention(compute)


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


class _AttentionForward:
    """Object patch on an attention module's `forward`, for families whose attention kernel gets no
    transformer_options (the override above never sees it): the live component call may reuse the module's
    output. A module returning a 1-tuple (HunyuanDiT's) is cached as its tensor and handed back as a tuple;
    which it returns is learnt from its first call, which always computes (nothing is cached before it)."""
    def __init__(self, spec: CacheSpec, original):
        self.spec, self.original, self.tuple_out = spec, original, False

    def __call__(self, *args, **kwargs):
        call = self.spec.live.call
        if not isinstance(call, ComponentCall):
            return self.original(*args, **kwargs)

        def compute():
            out = self.original(*args, **kwargs)
            self.tuple_out = isinstance(out, tuple) and len(out) == 1
            return out[0] if self.tuple_out else out
        out = call.attention(compute)
        return (out,) if self.tuple_out else out


def attention_modules(m, spec: CacheSpec, family: Family, positions) -> None:
    for _, path, _ in family.module_paths(positions, family.attention_modules):
        module = comfy.utils.get_attr(m.model, path)
        m.add_object_patch(f"{path}.forward", _AttentionForward(spec, type(module).forward.__get__(module)))


# --- MLPs ----------------------------------------------------------------------------------------------
class _MlpForward:
    """Object patch on an MLP module's `forward`: the live component call may reuse its output. Object
    patches are shared by clones (ModelPatcher copies that dict shallowly)."""
    def __init__(self, spec: CacheSpec, original, name: str):
        self.spec, self.original, self.name = spec, original, name

    def __call__(self, *args, **kwargs):
        call = self.spec.live.call
        if not isinstance(call, ComponentCall):
            return self.original(*args, **kwargs)
        return call.component((call.block, self.name), "mlp", lambda: self.original(*args, **kwargs))


def mlps(m, spec: CacheSpec, family: Family, positions) -> None:
    for _, path, name in family.mlp_paths(positions):
        try:
            module = comfy.utils.get_attr(m.model, path)
        except AttributeError:
            continue
        forward = type(module).forward.__get__(module)
        m.add_object_patch(f"{path}.forward", _MlpForward(spec, forward, name))


# --- CFG -----------------------------------------------------------------------------------------------
def cfg_batch_wrapper(spec: CacheSpec, executor, model, conds, x_in, timestep, model_options, *args, **kwargs):
    """CALC_COND_BATCH wrapper for CFG-level methods (FasterCache): may run the cond branch alone and
    estimate the uncond output. ComfyUI returns denoised predictions here; the estimate works on the model
    output (x - x0) / sigma, which is what the reference hooks see, and converts back."""
    run = spec.live.run
    policy = run.policy if run is not None else None
    if not isinstance(policy, CfgCache) or len(conds) != 2 or not conds[1]:
        return executor(model, conds, x_in, timestep, model_options, *args, **kwargs)
    sigma = timestep.reshape(-1, *([1] * (x_in.ndim - 1))).to(x_in.dtype)
    step = run.step_at(float(timestep.max()))
    if _skip_uncond(policy, step):
        cond_out = executor(model, [conds[0], None], x_in, timestep, model_options, *args, **kwargs)[0]
        uncond_v = policy.estimate_uncond((x_in - cond_out) / sigma, step)
        for c in conds[1]:
            run.record_estimated(c.get("uuid"), "uncond", step, x_in.device)
        return [cond_out, x_in - sigma * uncond_v]
    outs = executor(model, conds, x_in, timestep, model_options, *args, **kwargs)
    _observe_cfg(policy, (x_in - outs[0]) / sigma, (x_in - outs[1]) / sigma)
    return outs


@torch.compiler.disable
def _skip_uncond(policy: CfgCache, step) -> bool:
    return policy.skip_uncond(step)


@torch.compiler.disable
def _observe_cfg(policy: CfgCache, cond_v, uncond_v) -> None:
    policy.observe_cfg(cond_v, uncond_v)
