"""Install a CacheKit method on a cloned ComfyUI MODEL, and the run around every sampling:

  OUTER_SAMPLE wrapper   once per sampling run: creates the CacheRun, makes it the spec's live run (every
                         hook finds it there, live.py), and drops every cached tensor in `finally`.
  APPLY_MODEL wrapper    once per model call, for every family: tells the run which cond streams are in
                         the batch and at which sigma (the step, cache_core/steps.py).
  patches (patches.py)   where the method reaches into the model: the family's block route, and the
                         attention, MLP and CFG routes the method's components need.
  ON_CLONE callback      a clone holding another instance of the model gets the object patches bound to its modules.

The model's own forward is never replaced, so a ComfyUI update that keeps these points keeps CacheKit.
"""
from __future__ import annotations

import functools
import logging
import time
from typing import Callable

import torch

import comfy.model_management
from comfy.patcher_extension import CallbacksMP, WrappersMP

from ...cache_core import CachePolicy, CacheRun, CfgCache, ComponentPolicy
from . import patches, stats_feed
from .families import Family, UnsupportedModelError, detect
from .spec import CacheSpec
from .validation import CacheKitInputError

SPEC_KEY = "cachekit_spec"   # transformer_options: the installed method's settings (marks the MODEL as cached)
WRAPPER_KEY = "cachekit"
_COND_KINDS = {0: "cond", 1: "uncond"}
KERNELS_CHAINED = ("another node's attention override (an attention kernel such as Sage), installed after this node, "
                   "replaced CacheKit's: for this run CacheKit's runs in front of it, and it computes every attention "
                   "CacheKit does not reuse")
KERNELS_TAKEN = ("another node's attention override, set on some model calls after the run began, took the attention "
                 "kernels: attention caching did nothing on those calls; put this node after that one")
FEW_STEPS = 8     # runs this short are distilled (schnell, Turbo, Lightning, lightx2v): warn, see README
# what scripts/bench_few_steps.py measured on such runs (BENCHMARKS.md, few steps)
FEW_STEPS_EXPECT = ("few-step (distilled) models gain little from caching and lose quality fast at high thresholds: "
                    "on the benchmark's trained models the best settings held 30 dB PSNR while saving about a fifth "
                    "of the block compute at 4 steps and up to half at 6 to 8 (docs/bench/few_steps.md);")
_log = logging.getLogger("CacheKit")


def install(model, spec_fields: dict, make_policy: Callable[[], CachePolicy], node_name: str,
            node_id: str | None = None, replacing: bool = True, node_class: str | None = None):
    """Return a clone of `model` with the method installed; `model` itself is left untouched. A calibration
    run passes replacing=False: it runs instead of an earlier CacheKit node on purpose."""
    family = detect(model, node_name)
    m = model.clone()
    layout, positions = family.layout(m.model.diffusion_model)
    policy = make_policy()
    if family.injects and not isinstance(policy, ComponentPolicy):
        raise UnsupportedModelError(
            f"{node_name}: {family.name} {family.injects}. Use a method that caches inside the blocks (Apply "
            f"Pyramid Attention Broadcast, Apply SmoothCache, Apply FasterCache)")
    if policy.probe in ("modulated_input", "modulated_image") and layout.modulated_input is None:
        raise UnsupportedModelError(f"{node_name}: no timestep-modulated input is known for {family.name}")
    if policy.front_blocks + policy.back_blocks >= len(layout):
        raise CacheKitInputError(
            f"{node_name}: {policy.front_blocks} front + {policy.back_blocks} back blocks always computed "
            f"leave nothing to cache in this {family.name} model ({len(layout)} blocks)")
    _check_long_skips(family, len(layout), policy, node_name)
    if family.cfg_pairs and isinstance(policy, CfgCache):
        raise UnsupportedModelError(
            f"{node_name}: {family.name} {family.cfg_pairs}: the CFG cache, which runs the cond half alone, cannot "
            f"apply. Apply Pyramid Attention Broadcast reuses attention as this node would")
    earlier: CacheSpec | None = m.model_options["transformer_options"].get(SPEC_KEY)
    replaces = (((earlier.node_name, earlier.node_id, earlier.node_class), *earlier.replaces)
                if earlier is not None and replacing else ())
    if earlier is not None and replacing:
        # Methods do not stack: they would each own the same blocks. The later node wins, visibly.
        _log.warning("%s (node %s) replaces %s (node %s) on this MODEL: CacheKit methods do not stack, only the "
                     "last one before the sampler runs.", node_name, node_id, earlier.node_name, earlier.node_id)
    by_module = "attention" in policy.components and bool(family.attention_modules)
    spec = CacheSpec(node_name=node_name, node_id=node_id, node_class=node_class, family=family,
                     make_policy=make_policy, replaces=replaces,
                     kernel_override="attention" in policy.components and not by_module, **spec_fields)
    patches.BLOCK_ROUTES[family.route](m, spec, family, positions)
    if "mlp" in policy.components:
        patches.mlps(m, spec, family, positions)
    if by_module:
        patches.attention_modules(m, spec, family, positions)
    elif "attention" in policy.components and family.attention_inputs:
        patches.attention_inputs(m, spec, family, positions)
    to = m.model_options["transformer_options"]   # after the block routes: set_model_patch_replace copies it
    patches.attention(to, spec if spec.kernel_override else None)
    to[SPEC_KEY] = spec
    wrappers = [(WrappersMP.OUTER_SAMPLE, _outer_sample_wrapper), (WrappersMP.APPLY_MODEL, _apply_model_wrapper),
                (WrappersMP.CALC_COND_BATCH, patches.cfg_batch_wrapper if isinstance(policy, CfgCache) else None)]
    for wrapper_type, fn in wrappers:
        m.remove_wrappers_with_key(wrapper_type, WRAPPER_KEY)
        if fn is not None:
            m.add_wrapper_with_key(wrapper_type, WRAPPER_KEY, functools.partial(fn, spec))
    m.remove_callbacks_with_key(CallbacksMP.ON_CLONE, WRAPPER_KEY)
    m.add_callback_with_key(CallbacksMP.ON_CLONE, WRAPPER_KEY, patches.rebind_object_patches)
    return m


def _check_long_skips(family: Family, depth: int, policy, node_name: str) -> None:
    """A block computed after a reused span (DBCache's back blocks) must take its long skip from a block that
    computed on that step, not from one inside the span."""
    if family.long_skips is None or not policy.back_blocks:
        return
    pairs = family.long_skips(depth)
    for block in range(depth - policy.back_blocks, depth):
        source = pairs.get(block)
        if source is not None and source >= policy.front_blocks:
            raise CacheKitInputError(
                f"{node_name}: {policy.back_blocks} back blocks with {policy.front_blocks} front blocks: in "
                f"{family.name} block {block} takes block {source}'s output as a long skip, and block {source} "
                f"sits in the cached span; use at least {source + 1} front blocks or fewer back blocks")


def few_steps_note(run) -> str | None:
    """What a short run can expect (scripts/bench_few_steps.py measured it): nothing, where the steps every run
    computes (the method's first and last, the node's warmup) cover the whole run; else little, for 8 steps or
    fewer."""
    total = run.stats.total_steps
    first, last = run.limits.edges(total, run.policy)
    if 0 < total <= first + last:
        return (f"{total} steps: this method computes the first {first} and the last {last} steps of every run, so "
                f"none of these {total} can be reused: the run is uncached (fewer warmup steps, or more steps, "
                f"leave it steps to reuse)")
    if 0 < total <= FEW_STEPS:
        return (f"{total} steps: {FEW_STEPS_EXPECT} the node's settings are used as given (README: few-step models)")
    return None


def _outer_sample_wrapper(spec: CacheSpec, executor, *args, **kwargs):
    guider = executor.class_obj
    if guider.model_options.get("transformer_options", {}).get(SPEC_KEY) is not spec:
        return executor(*args, **kwargs)   # a later CacheKit node replaced this one
    # args: (noise, latent_image, sampler, sigmas, denoise_mask, callback, disable_pbar, seed)
    lost_blocks, lost_components = patches.replaced_object_patches(guider.model_patcher, spec)
    if lost_blocks:
        raise CacheKitInputError(
            f"{spec.node_name}: another node added after it replaced CacheKit's patch on "
            f"{_paths(lost_blocks)}, so those blocks would run on a reused step's stale input; put "
            f"{spec.node_name} after that node (ComfyUI keeps one object patch per module, the last one added)")
    run = spec.new_run(guider.model_patcher, args[3])
    if lost_components:
        note = (f"another node added after this one replaced CacheKit's patch on {_paths(lost_components)}: those "
                f"modules compute on every step; put this node after that one to cache them")
        run.stats.notes.append(note)
        _log.warning("%s: %s", spec.node_name, note)
    for note in run.stats.notes:
        _log.info("%s: %s", spec.node_name, note)
    try:
        for note in run.policy.prepare(run.stats.total_steps):
            _log.info("%s: %s", spec.node_name, note)
    except ValueError as e:
        raise CacheKitInputError(f"{spec.node_name}: {e}") from None
    note = few_steps_note(run)
    if note:
        run.stats.notes.append(note)
        _log.warning("%s: %s", spec.node_name, note)
    spec.live.push(run)
    # the run's own copy of the options (the guider cloned them): the MODEL's are left as they are
    if spec.kernel_override and patches.put_in_front(guider.model_options.setdefault("transformer_options", {}), spec):
        spec.live.put_in_front(run)
        run.stats.notes.append(KERNELS_CHAINED)
        _log.info("%s: %s", spec.node_name, KERNELS_CHAINED)
    status, started = "error", time.perf_counter()
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
        stats.wall_s = time.perf_counter() - started
        stats_feed.publish(stats, spec)


def _paths(keys: list[str]) -> str:
    shown = ", ".join(k.removeprefix("diffusion_model.").removesuffix(".forward") for k in keys[:3])
    return shown + (f" and {len(keys) - 3} more" if len(keys) > 3 else "")


def hints_between_blocks(control, to: dict) -> str | None:
    """Why this call adds hints into the hidden state between blocks, if it does: ComfyUI adds ControlNet
    residuals (and Qwen-Image's model patches) after blocks, in place, outside the block call. A reused span
    would replay the hints of the step it was computed on, so such calls compute."""
    if control:
        return "a ControlNet hint was active (a reused span would replay the last computed step's hints)"
    if (to.get("patches") or {}).get("double_block"):
        return "block patches added between blocks (a reused span would replay the last computed step's)"
    return None


@torch.compiler.disable
def _begin_call(run: CacheRun, x: torch.Tensor, to: dict, control=None):
    sigmas = to.get("sigmas")
    # left on the device: the run reads it with the call's decision metric, in one host transfer
    sigma = sigmas.max() if torch.is_tensor(sigmas) else float("nan")
    cond_or_uncond = to.get("cond_or_uncond") or [0]
    uuids = to.get("uuids") or [f"chunk{i}" for i in range(len(cond_or_uncond))]
    kinds = [_COND_KINDS.get(c, f"cond{c}") for c in cond_or_uncond]
    return run.begin_call(x, sigma, uuids, kinds, hints_between_blocks(control, to))


def _apply_model_wrapper(spec: CacheSpec, executor, x, t, c_concat, c_crossattn, control, transformer_options,
                         **kwargs):
    """BaseModel.apply_model, which every family goes through: one model call of the run."""
    run = spec.live.run
    if run is None:
        return executor(x, t, c_concat, c_crossattn, control, transformer_options, **kwargs)
    call = _begin_call(run, x, transformer_options, control)
    spec.live.kernels_reached = patches.reaches_kernels(transformer_options, spec)
    if spec.kernel_override and not spec.live.kernels_reached and KERNELS_TAKEN not in run.stats.notes:
        run.stats.notes.append(KERNELS_TAKEN)
    done = False
    try:
        out = executor(x, t, c_concat, c_crossattn, control, transformer_options, **kwargs)
        done = True
        return out
    finally:   # a failed call records nothing: reading its sigma could raise again and hide the first error
        _end_call(run, call, done)


@torch.compiler.disable
def _end_call(run: CacheRun, call, record: bool) -> None:
    run.end_call(call, record)
