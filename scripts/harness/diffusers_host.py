"""A minimal diffusers host for cache_core, used to compare CacheKit's policies with diffusers' own
cache hooks on exactly the same model, inputs and sampler.

Both sides run the same tiny seeded `FluxTransformer2DModel` through the same Euler flow-matching
loop (`sample`); they differ only in what wraps each model call:

  run_cachekit   cache_core drives the blocks: for one run, every block's `forward` is replaced (on the
                 instance, never in diffusers' source) by a shim that hands the block to
                 `SpanCall.run_block`, as the ComfyUI host does with its "dit" block patches.
  run_diffusers  diffusers' reference hook (`transformer.enable_cache(config)`) drives the blocks; a
                 *recorder* reads the hook's state after every call to learn whether that call reused.

Adding another method later means passing another policy to run_cachekit and another config (plus a
recorder, see `Recorder`) to run_diffusers; nothing else changes.

Nothing here imports ComfyUI.
"""
from __future__ import annotations

import contextlib
from typing import Callable, ContextManager, Iterator, Sequence

import torch
from diffusers import FluxTransformer2DModel
from diffusers.hooks import FirstBlockCacheConfig, HookRegistry, ModelHook
from diffusers.hooks.first_block_cache import _FBC_LEADER_BLOCK_HOOK   # the head block hook's registry name

from harness import pack

pack.load_core()   # cache_core as a top-level package; the repo root on sys.path would shadow ComfyUI's nodes
from cache_core import BlockLayout, CachePolicy, CacheRun, ReuseLimits  # noqa: E402

# The tiny model: 2 double + 2 single blocks, inner dim 2 heads x 16 = 32; rope axes sum to the head dim.
TINY_FLUX = dict(patch_size=1, in_channels=16, num_layers=2, num_single_layers=2, attention_head_dim=16,
                 num_attention_heads=2, joint_attention_dim=32, pooled_projection_dim=32, axes_dims_rope=(4, 6, 6))

STREAM = "cond"   # one stream, no CFG batch: the name of both cache_core's stream and diffusers' context


# --- model and inputs ---------------------------------------------------------------------------
def fill_weights(model: torch.nn.Module, seed: int, scale: float = 0.05) -> None:
    """Deterministic weights from one seeded generator (independent of torch's global RNG and of the
    default init, which could change between diffusers versions)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in sorted(model.named_parameters()):
            if p.ndim >= 2:
                p.copy_(torch.randn(p.shape, generator=g) * scale)
            elif "norm" in name and name.endswith("weight"):
                p.fill_(1.0)      # RMSNorm gains (q/k norms): 1, their own init
            else:
                p.copy_(torch.randn(p.shape, generator=g) * 0.02)   # biases: small but non-zero


def tiny_flux(seed: int = 0, **overrides) -> FluxTransformer2DModel:
    """A seeded tiny FluxTransformer2DModel in eval mode, float32 (overrides change TINY_FLUX entries,
    e.g. guidance_embeds=True)."""
    model = FluxTransformer2DModel(**{**TINY_FLUX, **overrides})   # built in float32 (torch's default)
    fill_weights(model, seed)
    return model.eval()


def flux_inputs(seed: int = 0, config=None, height: int = 8, width: int = 8, txt_len: int = 8,
                guidance: float = 3.5) -> dict:
    """Fixed model inputs for a model with `config` (a transformer's .config or a TINY_FLUX-like dict).

    hidden_states is the packed latent (1, height*width, in_channels) and is the sampler's starting
    noise. guidance is passed only when the config has a guidance embedder: the embedder without one
    takes no guidance argument (as in FluxPipeline, which passes None then)."""
    cfg = dict(TINY_FLUX if config is None else config)
    g = torch.Generator().manual_seed(seed)
    img_ids = torch.zeros(height, width, 3)
    img_ids[..., 1] = torch.arange(height)[:, None]     # Flux ids: (0, row, col) per image token
    img_ids[..., 2] = torch.arange(width)[None, :]
    inputs = dict(
        hidden_states=torch.randn(1, height * width, cfg["in_channels"], generator=g),
        encoder_hidden_states=torch.randn(1, txt_len, cfg["joint_attention_dim"], generator=g),
        pooled_projections=torch.randn(1, cfg["pooled_projection_dim"], generator=g),
        img_ids=img_ids.reshape(height * width, 3),
        txt_ids=torch.zeros(txt_len, 3),
    )
    if cfg.get("guidance_embeds", False):
        inputs["guidance"] = torch.full((1,), guidance)
    return inputs


def linear_sigmas(steps: int) -> list[float]:
    """Flow-matching schedule 1 -> 0 in `steps` Euler steps (steps + 1 sigmas, the last one 0)."""
    return torch.linspace(1.0, 0.0, steps + 1, dtype=torch.float64).tolist()


# --- the sampler both sides share ---------------------------------------------------------------
# on_call(step, x, sigma) returns the context one model call runs in (a cache context, a cache_core
# call); whatever it does after its `yield` sees the finished call.
OnCall = Callable[[int, torch.Tensor, float], ContextManager]


@torch.no_grad()
def sample(transformer: torch.nn.Module, inputs: dict, sigmas: Sequence[float],
           on_call: OnCall | None = None) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Euler flow matching: x_{i+1} = x_i + (sigma_{i+1} - sigma_i) * v(x_i, sigma_i).

    One model call per step, so a step index is also a call index. Returns the final x and the model
    output of every step."""
    x = inputs["hidden_states"]
    cond = {k: v for k, v in inputs.items() if k != "hidden_states"}
    outputs = []
    for i in range(len(sigmas) - 1):
        sigma = float(sigmas[i])
        ctx = on_call(i, x, sigma) if on_call is not None else contextlib.nullcontext()
        with ctx:
            # diffusers multiplies the timestep by 1000 itself: pass sigma, as FluxPipeline does (t / 1000)
            v = transformer(hidden_states=x, timestep=torch.full((x.shape[0],), sigma, dtype=x.dtype),
                            return_dict=False, **cond)[0]
        outputs.append(v)
        x = x + (float(sigmas[i + 1]) - sigma) * v
    return x, outputs


# --- CacheKit side ------------------------------------------------------------------------------
def block_list(transformer) -> list[torch.nn.Module]:
    """The blocks in execution order: Flux runs every double block, then every single block."""
    return [*transformer.transformer_blocks, *transformer.single_transformer_blocks]


def flux_layout(transformer) -> BlockLayout:
    # diffusers 0.39 keeps txt and img apart at the single blocks' interface (they concatenate inside
    # the block), so both kinds carry the same streams and no `convert` is needed (unlike ComfyUI Flux).
    n_double, n_single = len(transformer.transformer_blocks), len(transformer.single_transformer_blocks)
    keys = ("img", "txt")
    return BlockLayout(kinds=("double",) * n_double + ("single",) * n_single,
                       stream_keys={"double": keys, "single": keys}, primary="img")


_MISSING = object()


def _shim(block: torch.nn.Module, p: int, run: CacheRun):
    """The forward that replaces block p: pack its inputs, let the live cache_core call decide."""
    forward = block.forward   # what would have run: the class forward, or a forward already set on it

    def original(args: dict) -> dict:
        encoder_hidden_states, hidden_states = forward(
            hidden_states=args["img"], encoder_hidden_states=args["txt"], temb=args["temb"],
            image_rotary_emb=args["image_rotary_emb"], joint_attention_kwargs=args["joint_attention_kwargs"])
        return {"img": hidden_states, "txt": encoder_hidden_states}

    def patched(hidden_states, encoder_hidden_states, temb, image_rotary_emb=None, joint_attention_kwargs=None):
        args = {"img": hidden_states, "txt": encoder_hidden_states, "temb": temb,
                "image_rotary_emb": image_rotary_emb, "joint_attention_kwargs": joint_attention_kwargs}
        call = run.current
        out = original(args) if call is None else call.run_block(p, args, original)
        return out["txt"], out["img"]   # diffusers' block order: (encoder_hidden_states, hidden_states)

    return patched


@contextlib.contextmanager
def cache_core_blocks(transformer, run: CacheRun) -> Iterator[None]:
    """For the duration of one run, route every block through `run.current` (the call in flight).

    Only instance attributes are set, and the previous state (no instance `forward`, or the one a
    diffusers hook left behind) is put back in `finally`, so the model is unchanged afterwards even on
    an error."""
    if getattr(transformer, "is_cache_enabled", False):
        raise RuntimeError("a diffusers cache hook is active on this transformer: disable it first")
    blocks = block_list(transformer)
    saved = [block.__dict__.get("forward", _MISSING) for block in blocks]
    try:
        for p, block in enumerate(blocks):
            block.forward = _shim(block, p, run)
        yield
    finally:
        for block, prev in zip(blocks, saved):
            if prev is _MISSING:
                block.__dict__.pop("forward", None)
            else:
                block.forward = prev


def log_metrics(policy: CachePolicy) -> list[tuple[int, float | None]]:
    """Record (step, metric) each time `policy` is asked whether to reuse (the engine asks only once a
    cache exists and the limits allow). Tests use it to check that no threshold sits so close to an
    observed metric that float noise, or '<' against '<=', could flip a decision."""
    log: list[tuple[int, float | None]] = []
    wants_reuse = policy.wants_reuse

    def logged(state, metric, step):
        log.append((step.index, metric))
        return wants_reuse(state, metric, step)

    policy.wants_reuse = logged   # on this policy object only
    return log


def run_cachekit(transformer, inputs: dict, sigmas: Sequence[float], policy: CachePolicy,
                 limits: ReuseLimits | None = None) -> tuple[torch.Tensor, list[torch.Tensor], list[bool], dict]:
    """One cached sampling run driven by cache_core. Returns (final x, per-step outputs, per-step
    reused flags, run stats as a dict)."""
    run = CacheRun(policy, flux_layout(transformer), sigmas=sigmas, limits=limits or ReuseLimits())
    reused: list[bool] = []

    @contextlib.contextmanager
    def on_call(step, x, sigma):
        call = run.begin_call(x, sigma, stream_keys=[STREAM], stream_kinds=[STREAM])
        yield
        run.end_call(call)            # not reached on an error: the run is closed below either way
        reused.append(call.reusing)    # one call per step, at the step's sigma

    status = "error"
    try:
        with cache_core_blocks(transformer, run):
            x, outputs = sample(transformer, inputs, sigmas, on_call)
        status = "finished"
    finally:
        stats = run.close(status)
    return x, outputs, reused, stats.to_dict()


# --- diffusers side -----------------------------------------------------------------------------
# A recorder is called after every model call, still inside `transformer.cache_context(STREAM)` (the
# hooks' StateManager only hands out state while a context is set), and says whether that call reused.
# Stateful recorders (e.g. one that compares a step counter with a schedule) can be closures/objects.
Recorder = Callable[[torch.nn.Module], bool]


def find_hook(transformer: torch.nn.Module, name: str) -> ModelHook:
    """The first hook registered under `name` on the transformer or any submodule, in module order
    (diffusers keeps one HookRegistry per hooked module, as `module._diffusers_hook`)."""
    for module in transformer.modules():
        registry: HookRegistry | None = getattr(module, "_diffusers_hook", None)
        hook = registry.get_hook(name) if registry is not None else None
        if hook is not None:
            return hook
    raise LookupError(f"no diffusers hook named {name!r} on {type(transformer).__name__}")


def fbc_reused(transformer: torch.nn.Module) -> bool:
    """First Block Cache: the head block's hook stores its decision in the shared state
    (`should_compute`; True on the first call of a context, since there is nothing to compare with)."""
    state = find_hook(transformer, _FBC_LEADER_BLOCK_HOOK).state_manager.get_state()
    return not state.should_compute


# Default recorder per config type; later methods add their entry here (or pass `recorder=`).
RECORDERS: dict[type, Recorder] = {FirstBlockCacheConfig: fbc_reused}


def run_diffusers(transformer, inputs: dict, sigmas: Sequence[float], hook_config,
                  recorder: Recorder | None = None) -> tuple[torch.Tensor, list[torch.Tensor], list[bool]]:
    """One sampling run with diffusers' own cache hook. Returns (final x, per-step outputs, per-step
    reused flags). The hook is removed and its state dropped afterwards, so the model can be reused."""
    recorder = recorder or RECORDERS[type(hook_config)]
    reused: list[bool] = []

    @contextlib.contextmanager
    def on_call(step, x, sigma):
        # As FluxPipeline does; the hooks' state is kept per context name.
        with transformer.cache_context(STREAM):
            yield
            reused.append(bool(recorder(transformer)))

    enable_hooks(transformer, hook_config)
    try:
        x, outputs = sample(transformer, inputs, sigmas, on_call)
    finally:
        disable_hooks(transformer)
    return x, outputs, reused


def enable_hooks(transformer, hook_config) -> None:
    """diffusers' cache hook on the transformer, ready for its next cache_context."""
    transformer.enable_cache(hook_config)
    # The root registry caches the list of its children's registries the first time a cache_context is
    # entered and never refreshes it. Registries created since (by this enable_cache, on a model that
    # already ran a context, or by a config hooking other submodules than the last one, e.g. TaylorSeer's
    # attention modules after FBC's blocks) would never get the context name, and their hooks fail with
    # "No context is set". Drop the cached list so the next context rebuilds it.
    HookRegistry.check_if_exists_or_initialize(transformer)._child_registries_cache = None


def disable_hooks(transformer) -> None:
    """The pipeline's end-of-call reset (maybe_free_model_hooks): drops every context's state. Then remove
    the hooks, which restores each block's forward (diffusers leaves it as an instance attribute, a bound
    method of the class forward, which behaves as before)."""
    transformer._reset_stateful_cache()
    transformer.disable_cache()


def cache_dit_adapter(transformer):
    """cache-dit's BlockAdapter for a diffusers Flux or Wan transformer: Flux's double and single blocks as
    one list behind cache-dit's Flux patch functor (its forward computes the same as diffusers'), Wan's
    blocks as they are, as cache-dit's own adapters for those pipelines set them up."""
    from cache_dit import BlockAdapter, ForwardPattern
    if hasattr(transformer, "single_transformer_blocks"):
        from cache_dit.caching.patch_functors import FluxPatchFunctor
        return BlockAdapter(
            transformer=transformer, blocks=transformer.transformer_blocks + transformer.single_transformer_blocks,
            blocks_name="transformer_blocks", dummy_blocks_names=["single_transformer_blocks"],
            patch_functor=FluxPatchFunctor(), forward_pattern=ForwardPattern.Pattern_1)
    return BlockAdapter(transformer=transformer, blocks=transformer.blocks, forward_pattern=ForwardPattern.Pattern_2,
                        has_separate_cfg=True)
