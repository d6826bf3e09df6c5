"""Install a CacheKit method on a cloned ComfyUI MODEL through ComfyUI's own extension points only:

  OUTER_SAMPLE wrapper     once per sampling run: creates the CacheRun, makes it the spec's live run,
                           and drops every cached tensor in `finally`.
  CALC_COND_BATCH wrapper  once per CFG step: FasterCache may run cond alone and estimate uncond.
  DIFFUSION_MODEL wrapper  once per model call: tells the run which cond streams are in the batch.
  patches_replace "dit"    every transformer block: the live call's run_block decides compute/pass/apply.
  optimized_attention_override, object patches on MLP `forward`
                           component methods (PAB, SmoothCache, FasterCache) reuse those outputs.

Every hook holds the node's CacheSpec and finds the live run through it (`spec.live`). ModelPatcher.clone()
deep-copies model_options: the spec and the hooks kept there copy as themselves (SharedOnClone), so
clones made after the node (LoRA loaders, ModelSampling*, TorchCompileModel) share the one spec and
copy no module. The model's own forward is never replaced, so a ComfyUI update that keeps these
points keeps CacheKit.
"""
from __future__ import annotations

import functools
import logging
import math
from dataclasses import dataclass, field
from typing import Callable

import torch

import comfy.model_management
import comfy.utils
from comfy.patcher_extension import WrappersMP

from ..cache_core import CachePolicy, CacheRun, ReuseLimits
from . import stats_feed
from .families import Family, UnsupportedModelError, detect
from .validation import CacheKitInputError

SPEC_KEY = "cachekit_spec"   # transformer_options: the installed method's settings (marks the MODEL as cached)
WRAPPER_KEY = "cachekit"
ATTN_KEY = "optimized_attention_override"   # ComfyUI's attention-kernel hook in transformer_options
_COND_KINDS = {0: "cond", 1: "uncond"}
_log = logging.getLogger("CacheKit")


class SharedOnClone:
    """ModelPatcher.clone() deep-copies model_options. Objects CacheKit puts there (and the hooks that
    point at them) are immutable or shared on purpose, so a copy is the object itself: cloning a
    cached MODEL copies no module, no weight and no run, and every clone's hooks reach the same run."""
    def __deepcopy__(self, memo):
        return self

    def __copy__(self):
        return self


class LiveRuns(SharedOnClone):
    """The run a spec's hooks act on while a sampler runs it: the one way every hook finds its run.
    A stack, so a sampling run nested inside another (a node sampling inside a sampler) ends cleanly."""
    def __init__(self):
        self._stack: list[CacheRun] = []

    @property
    def run(self) -> CacheRun | None:
        return self._stack[-1] if self._stack else None

    @property
    def call(self):
        run = self.run
        return run.current if run is not None else None

    def push(self, run: CacheRun) -> None:
        self._stack.append(run)

    def pop(self, run: CacheRun) -> None:
        self._stack = [r for r in self._stack if r is not run]   # by identity: runs hold tensors


@dataclass(frozen=True, eq=False)
class CacheSpec(SharedOnClone):
    """What a node installed: settings only. The block layout (and block 0, which TeaCache's probe
    reads) is resolved from the model each run, so weight patches added after the node (LoRA) count."""
    node_name: str
    node_id: str | None
    family: Family
    make_policy: Callable[[], CachePolicy]
    start_percent: float = 0.0
    end_percent: float = 1.0
    warmup_steps: int = 0
    max_consecutive: int = -1
    replaces: tuple[tuple[str, str | None], ...] = ()   # (node name, node id) of CacheKit nodes before this one
    live: LiveRuns = field(default_factory=LiveRuns)

    def new_run(self, model_patcher, sigmas: torch.Tensor) -> CacheRun:
        # get_model_object: what the sampler will run, object patches (ModelSamplingSD3, ...) included;
        # they are applied only when the model loads, after this wrapper starts
        layout, _ = self.family.layout(model_patcher.get_model_object("diffusion_model"))
        ms = model_patcher.get_model_object("model_sampling")
        start = math.inf if self.start_percent <= 0.0 else float(ms.percent_to_sigma(self.start_percent))
        end = -1.0 if self.end_percent >= 1.0 else float(ms.percent_to_sigma(self.end_percent))
        limits = ReuseLimits(start_sigma=start, end_sigma=end, warmup_steps=self.warmup_steps,
                             max_consecutive=self.max_consecutive)
        return CacheRun(self.make_policy(), layout, sigmas.tolist(), limits)


def install(model, spec_fields: dict, make_policy: Callable[[], CachePolicy], node_name: str,
            node_id: str | None = None):
    """Return a clone of `model` with the method installed; `model` itself is left untouched."""
    family = detect(model, node_name)
    m = model.clone()
    layout, positions = family.layout(m.model.diffusion_model)
    policy = make_policy()
    if policy.probe == "modulated_input" and layout.modulated_input is None:
        raise UnsupportedModelError(f"{node_name}: no timestep-modulated input is known for {family.name}")
    if policy.front_blocks + policy.back_blocks >= len(layout):
        raise CacheKitInputError(
            f"{node_name}: {policy.front_blocks} front + {policy.back_blocks} back blocks always computed "
            f"leave nothing to cache in this {family.name} model ({len(layout)} blocks)")
    to = m.model_options["transformer_options"]
    earlier: CacheSpec | None = to.get(SPEC_KEY)
    replaces = ((earlier.node_name, earlier.node_id), *earlier.replaces) if earlier is not None else ()
    if earlier is not None:
        # Methods do not stack: they would each own the same blocks. The later node wins, visibly.
        _log.warning("%s (node %s) replaces %s (node %s) on this MODEL: CacheKit methods do not stack, only the "
                     "last one before the sampler runs.", node_name, node_id, earlier.node_name, earlier.node_id)
    spec = CacheSpec(node_name=node_name, node_id=node_id, family=family, make_policy=make_policy,
                     replaces=replaces, **spec_fields)
    _set_attention_override(to, spec if "attention" in policy.components else None)
    if "mlp" in policy.components:
        for _, path in family.mlp_paths(positions):
            module = comfy.utils.get_attr(m.model, path)
            forward = type(module).forward.__get__(module)   # the class's own, not an applied patch
            m.add_object_patch(f"{path}.forward", _MlpForward(spec, forward, path.rsplit(".", 1)[1]))
    to[SPEC_KEY] = spec
    for wrapper_type, fn in ((WrappersMP.OUTER_SAMPLE, _outer_sample_wrapper),
                             (WrappersMP.CALC_COND_BATCH, _calc_cond_batch_wrapper),
                             (WrappersMP.DIFFUSION_MODEL, _diffusion_model_wrapper)):
        m.remove_wrappers_with_key(wrapper_type, WRAPPER_KEY)
        m.add_wrapper_with_key(wrapper_type, WRAPPER_KEY, functools.partial(fn, spec))
    for p, (kind, index) in enumerate(positions):
        m.set_model_patch_replace(_BlockPatch(spec, p), "dit", kind, index)
    return m


class _AttentionOverride(SharedOnClone):
    """transformer_options["optimized_attention_override"]: ComfyUI calls it in place of the attention
    kernel; a component method's live call may return that attention's cached output instead.
    Chains to an override another node installed before (e.g. a different attention kernel)."""
    def __init__(self, spec: CacheSpec, previous=None):
        self.spec, self.previous = spec, previous

    def __call__(self, func, *args, **kwargs):
        def compute():
            return self.previous(func, *args, **kwargs) if self.previous else func(*args, **kwargs)
        call = self.spec.live.call
        if call is None or not hasattr(call, "attention"):
            return compute()
        return call.attention(compute)


def _set_attention_override(to: dict, spec: CacheSpec | None) -> None:
    current = to.get(ATTN_KEY)
    previous = current.previous if isinstance(current, _AttentionOverride) else current
    if spec is not None:
        to[ATTN_KEY] = _AttentionOverride(spec, previous)
    elif previous is not None:
        to[ATTN_KEY] = previous
    else:
        to.pop(ATTN_KEY, None)


class _MlpForward:
    """Object patch on an MLP module's `forward`: the live component call may reuse its output. The
    module itself stays in place, so weight keys (LoRA, offloading) are unchanged. Object patches are
    shared by clones (ModelPatcher copies that dict shallowly)."""
    def __init__(self, spec: CacheSpec, original, name: str):
        self.spec, self.original, self.name = spec, original, name

    def __call__(self, *args, **kwargs):
        call = self.spec.live.call
        if call is None or not hasattr(call, "component"):
            return self.original(*args, **kwargs)
        return call.component((call.block, self.name), "mlp", lambda: self.original(*args, **kwargs))


class _BlockPatch(SharedOnClone):
    """patches_replace entry for block position p: hands the block to the live call, if any."""
    def __init__(self, spec: CacheSpec, position: int):
        self.spec, self.position = spec, position

    def __call__(self, args: dict, extra: dict) -> dict:
        call = self.spec.live.call
        if call is None:   # sampled outside a CacheKit run (e.g. another wrapper bypassed ours)
            return extra["original_block"](args)
        return call.run_block(self.position, args, extra["original_block"])


def _outer_sample_wrapper(spec: CacheSpec, executor, *args, **kwargs):
    guider = executor.class_obj
    if guider.model_options.get("transformer_options", {}).get(SPEC_KEY) is not spec:
        return executor(*args, **kwargs)   # a later CacheKit node replaced this one
    # args: (noise, latent_image, sampler, sigmas, denoise_mask, callback, disable_pbar, seed)
    run = spec.new_run(guider.model_patcher, args[3])
    try:
        for note in run.policy.prepare(run.stats.total_steps):
            _log.info("%s: %s", spec.node_name, note)
    except ValueError as e:
        raise CacheKitInputError(f"{spec.node_name}: {e}") from None
    spec.live.push(run)
    status = "error"
    try:
        out = executor(*args, **kwargs)
        status = "finished"
        return out
    except comfy.model_management.InterruptProcessingException:
        status = "interrupted"
        raise
    finally:
        spec.live.pop(run)
        stats = run.close(status)
        stats_feed.publish(stats, spec.node_id, spec.family.name, spec.node_name, spec.replaces)


def _calc_cond_batch_wrapper(spec: CacheSpec, executor, model, conds, x_in, timestep, model_options, *args,
                             **kwargs):
    """CFG-level methods (FasterCache): may run the cond branch alone and estimate the uncond output.
    ComfyUI returns denoised predictions here; the estimate works on the model output (x - x0) / sigma,
    which is what the reference hooks see, and converts back."""
    run = spec.live.run
    policy = run.policy if run is not None else None
    if policy is None or not hasattr(policy, "skip_uncond") or len(conds) != 2 or not conds[1]:
        return executor(model, conds, x_in, timestep, model_options, *args, **kwargs)
    sigma = timestep.reshape(-1, *([1] * (x_in.ndim - 1))).to(x_in.dtype)
    step = run.step_at(float(timestep.max()))
    if _skip_uncond(policy, step):
        cond_out = executor(model, [conds[0], None], x_in, timestep, model_options, *args, **kwargs)[0]
        uncond_v = policy.estimate_uncond((x_in - cond_out) / sigma, step)
        for c in conds[1]:
            run.record_estimated(c.get("uuid"), "uncond", step)
        return [cond_out, x_in - sigma * uncond_v]
    outs = executor(model, conds, x_in, timestep, model_options, *args, **kwargs)
    _observe_cfg(policy, (x_in - outs[0]) / sigma, (x_in - outs[1]) / sigma)
    return outs


@torch.compiler.disable
def _skip_uncond(policy, step) -> bool:
    return policy.skip_uncond(step)


@torch.compiler.disable
def _observe_cfg(policy, cond_v, uncond_v) -> None:
    policy.observe_cfg(cond_v, uncond_v)


def _transformer_options(args, kwargs) -> dict:
    # Its position differs by family (last for Flux/Wan/Qwen, before keyframe_idxs for LTXV).
    to = kwargs.get("transformer_options")
    if isinstance(to, dict):
        return to
    return next((a for a in reversed(args) if isinstance(a, dict) and SPEC_KEY in a), {})


@torch.compiler.disable
def _begin_call(run: CacheRun, x: torch.Tensor, to: dict):
    sigmas = to.get("sigmas")
    sigma = float(sigmas.max()) if torch.is_tensor(sigmas) else float("nan")
    cond_or_uncond = to.get("cond_or_uncond") or [0]
    uuids = to.get("uuids") or [f"chunk{i}" for i in range(len(cond_or_uncond))]
    kinds = [_COND_KINDS.get(c, f"cond{c}") for c in cond_or_uncond]
    return run.begin_call(x, sigma, uuids, kinds)


def _diffusion_model_wrapper(spec: CacheSpec, executor, *args, **kwargs):
    run = spec.live.run
    if run is None:
        return executor(*args, **kwargs)
    call = _begin_call(run, args[0], _transformer_options(args, kwargs))
    try:
        return executor(*args, **kwargs)
    finally:
        _end_call(run, call)


@torch.compiler.disable
def _end_call(run: CacheRun, call) -> None:
    run.end_call(call)

