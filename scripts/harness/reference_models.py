"""The reference implementations on the trained digits models: each model's weights moved into the diffusers
class of the same architecture (FluxTransformer2DModel, WanTransformer3DModel), run by ComfyUI's samplers in
place of ComfyUI's own forward, with diffusers 0.39's cache hooks or cache-dit 1.5.3's DBCache on it. So a
reference method sees the same weights, cases, sampler, sigmas and cfg as CacheKit in scripts/bench_quality.py
and is measured the same way (block FLOPs, PSNR against ComfyUI's uncached output).

The diffusers model stands in through a DIFFUSION_MODEL wrapper on a clone of the ModelPatcher (ComfyUI's own
extension point; the ComfyUI forward is not called). ComfyUI batches cond and uncond into one call; the wrapper
runs them as two calls, cond first, as diffusers' pipelines do (`cache_context("cond")` / `("uncond")` for the
hooks; cache-dit's separate-CFG mode counts calls in that order). Hook state is dropped before every sampling
run (an OUTER_SAMPLE wrapper), as a pipeline does at the end of its call.

tests/comfy/test_bench_measures.py checks the conversion (the diffusers model's output against ComfyUI's on the same
inputs, both families) and that the route keeps cond and uncond in their own contexts.
"""
from __future__ import annotations

import contextlib
import functools

import torch



# --- weights: ComfyUI's layout -> diffusers' ---------------------------------------------------------------
def _flux_state(sd: dict, hidden: int) -> dict:
    """ComfyUI Flux keys (the BFL checkpoint layout) -> diffusers FluxTransformer2DModel keys. Fused qkv
    projections are split; the final AdaLN's (shift, scale) rows become diffusers' (scale, shift)."""
    out, used = {}, set()

    def take(key):
        used.add(key)
        return sd[key]

    def linear(dst, src):
        for p in ("weight", "bias"):
            out[f"{dst}.{p}"] = take(f"{src}.{p}")

    def split(dsts, src, sizes):
        for p in ("weight", "bias"):
            for dst, part in zip(dsts, take(f"{src}.{p}").split(sizes)):
                out[f"{dst}.{p}"] = part

    def qk_norm(dst, src):
        for d, norm in zip(dst, ("query_norm", "key_norm")):   # the RMSNorm's "scale" is "weight" after 0.3.75
            key = f"{src}.{norm}.scale"
            out[f"{d}.weight"] = take(key if key in sd else f"{src}.{norm}.weight")

    linear("x_embedder", "img_in")
    linear("context_embedder", "txt_in")
    for mlp, src in (("timestep_embedder", "time_in"), ("text_embedder", "vector_in")):
        linear(f"time_text_embed.{mlp}.linear_1", f"{src}.in_layer")
        linear(f"time_text_embed.{mlp}.linear_2", f"{src}.out_layer")
    doubles = sorted({int(k.split(".")[1]) for k in sd if k.startswith("double_blocks.")})
    singles = sorted({int(k.split(".")[1]) for k in sd if k.startswith("single_blocks.")})
    for i in doubles:
        b, d = f"double_blocks.{i}", f"transformer_blocks.{i}"
        linear(f"{d}.norm1.linear", f"{b}.img_mod.lin")
        linear(f"{d}.norm1_context.linear", f"{b}.txt_mod.lin")
        split([f"{d}.attn.to_q", f"{d}.attn.to_k", f"{d}.attn.to_v"], f"{b}.img_attn.qkv", hidden)
        split([f"{d}.attn.add_q_proj", f"{d}.attn.add_k_proj", f"{d}.attn.add_v_proj"], f"{b}.txt_attn.qkv", hidden)
        qk_norm((f"{d}.attn.norm_q", f"{d}.attn.norm_k"), f"{b}.img_attn.norm")
        qk_norm((f"{d}.attn.norm_added_q", f"{d}.attn.norm_added_k"), f"{b}.txt_attn.norm")
        linear(f"{d}.attn.to_out.0", f"{b}.img_attn.proj")
        linear(f"{d}.attn.to_add_out", f"{b}.txt_attn.proj")
        for ff, side in (("ff", "img"), ("ff_context", "txt")):
            linear(f"{d}.{ff}.net.0.proj", f"{b}.{side}_mlp.0")
            linear(f"{d}.{ff}.net.2", f"{b}.{side}_mlp.2")
    for i in singles:
        b, d = f"single_blocks.{i}", f"single_transformer_blocks.{i}"
        mlp = sd[f"{b}.linear1.weight"].shape[0] - 3 * hidden
        split([f"{d}.attn.to_q", f"{d}.attn.to_k", f"{d}.attn.to_v", f"{d}.proj_mlp"], f"{b}.linear1",
              [hidden, hidden, hidden, mlp])
        qk_norm((f"{d}.attn.norm_q", f"{d}.attn.norm_k"), f"{b}.norm")
        linear(f"{d}.proj_out", f"{b}.linear2")
        linear(f"{d}.norm.linear", f"{b}.modulation.lin")
    for p in ("weight", "bias"):
        shift, scale = take(f"final_layer.adaLN_modulation.1.{p}").chunk(2)
        out[f"norm_out.linear.{p}"] = torch.cat((scale, shift))
    linear("proj_out", "final_layer.linear")
    left = set(sd) - used
    if left:
        raise ValueError(f"Flux weights with no diffusers place: {sorted(left)}")
    return out


def to_diffusers(model, family: str, recipe=None) -> torch.nn.Module:
    """The diffusers model holding the same weights as the ComfyUI ModelPatcher `model` (fp32, eval), built
    from the digits recipe (the family's, unless another is given)."""
    from harness import digits_models as dm
    r = recipe or dm.RECIPES[family]
    family = r.family                   # the model's name (wan16, ...) -> its class's
    sd = {k: v.detach().clone() for k, v in model.model.diffusion_model.state_dict().items()}
    heads = max(1, r.width // 64)
    if family == "flux":
        from diffusers import FluxTransformer2DModel
        net = FluxTransformer2DModel(patch_size=1, in_channels=64, out_channels=64, num_layers=2,
                                     num_single_layers=r.blocks - 2, attention_head_dim=r.width // heads,
                                     num_attention_heads=heads, joint_attention_dim=r.text_dim,
                                     pooled_projection_dim=r.text_dim, guidance_embeds=False,
                                     axes_dims_rope=(16, 24, 24))
        state = _flux_state(sd, r.width)
    elif family == "wan":
        from diffusers import WanTransformer3DModel
        from diffusers.loaders.single_file_utils import convert_wan_transformer_to_diffusers
        net = WanTransformer3DModel(patch_size=(1, 2, 2), num_attention_heads=heads,
                                    attention_head_dim=r.width // heads,
                                    in_channels=16, out_channels=16, text_dim=r.text_dim, freq_dim=256,
                                    ffn_dim=r.width * 4, num_layers=r.blocks, cross_attn_norm=True,
                                    qk_norm="rms_norm_across_heads", eps=1e-6)
        state = convert_wan_transformer_to_diffusers(sd)
    else:
        raise ValueError(f"no diffusers class for {family!r}")
    net.load_state_dict(state, strict=True)
    return net.eval().requires_grad_(False)


# --- one ComfyUI call -> diffusers calls ---------------------------------------------------------------
def _flux_call(net, x, timestep, context, y):
    """Flux: 2x2 patches packed as ComfyUI's process_img does ((c, ph, pw) per token), ids (0, row, col)."""
    b, c, h, w = x.shape
    tokens = x.reshape(b, c, h // 2, 2, w // 2, 2).permute(0, 2, 4, 1, 3, 5).reshape(b, (h // 2) * (w // 2), c * 4)
    ids = torch.zeros(h // 2, w // 2, 3)
    ids[..., 1] = torch.arange(h // 2)[:, None]
    ids[..., 2] = torch.arange(w // 2)[None, :]
    out = net(hidden_states=tokens, encoder_hidden_states=context, pooled_projections=y, timestep=timestep,
              img_ids=ids.reshape(-1, 3), txt_ids=torch.zeros(context.shape[1], 3), return_dict=False)[0]
    return out.reshape(b, h // 2, w // 2, c, 2, 2).permute(0, 3, 1, 4, 2, 5).reshape(b, c, h, w)


def _wan_call(net, x, timestep, context, _y):
    return net(hidden_states=x, timestep=timestep, encoder_hidden_states=context, return_dict=False)[0]


CALLS = {"flux": _flux_call, "wan": _wan_call}


# what the family's diffusion model gets as its timestep, per unit of sigma (diffusers' pipelines' "t" is 1000 sigma)
TIMESTEP_PER_SIGMA = {"flux": 1.0, "wan": 1000.0}


class Denoiser(torch.nn.Module):
    """The diffusers model called with the latent as ComfyUI hands it, for hooks that work on the denoiser's
    output as an image (FasterCache's uncond estimate is an FFT over the last two dims; diffusers' Flux model
    takes and returns packed tokens). The model's block lists are registered here under their own names, so
    hooks find its attention modules by the names they look for."""

    def __init__(self, net, family: str):
        super().__init__()
        object.__setattr__(self, "net", net)          # not a child: the block names stay as on the model
        for name in ("blocks", "transformer_blocks", "single_transformer_blocks"):
            if hasattr(net, name):
                setattr(self, name, getattr(net, name))
        self.call = CALLS[family]

    def forward(self, hidden_states, timestep, encoder_hidden_states, pooled_projections=None):
        return self.call(self.net, hidden_states, timestep, encoder_hidden_states, pooled_projections)


def route(model, family: str, net, context_for=None, reset=None, batched=False, clock=None):
    """A clone of the ModelPatcher whose diffusion model calls are answered by `net` (a diffusers model, or a
    Denoiser around one).

    context_for(stream) -> the context one stream's call runs in ("cond" / "uncond"); reset() runs before every
    sampling run; batched: one call for the whole batch, as pipelines that batch cfg make it (PAB's hook keeps
    one state per module, not per context), "uncond_first" with the uncond rows first, as diffusers' pipelines
    concatenate them (FasterCache's hooks take the second half as cond); clock: a dict whose "t" is set to
    each call's 1000 sigma."""
    import comfy.patcher_extension as pe
    if isinstance(net, Denoiser):
        def call(x, timestep, context, y):   # by keyword: the hooks pick the batch-split inputs by name
            return net(hidden_states=x, timestep=timestep, encoder_hidden_states=context,
                       **({} if y is None else {"pooled_projections": y}))
    else:
        call = functools.partial(CALLS[family], net)

    def diffusion_model(_executor, x, timestep, context, *rest, **kwargs):
        options = rest[-1] if rest and isinstance(rest[-1], dict) else kwargs.get("transformer_options", {})
        y = rest[0] if family == "flux" else None
        if clock is not None:
            clock["t"] = float(timestep[0]) * 1000.0 / TIMESTEP_PER_SIGMA[family]
        kinds = options.get("cond_or_uncond") or [0]
        size = x.shape[0] // len(kinds)
        if batched == "uncond_first":
            order = sorted(range(len(kinds)), key=lambda i: -kinds[i])       # uncond (1) before cond (0)
            rows = torch.cat([torch.arange(i * size, (i + 1) * size) for i in order])
            out = call(x[rows], timestep[rows], context[rows], None if y is None else y[rows])
            return out[torch.argsort(rows)]
        if batched:
            return call(x, timestep, context, y)
        parts = {}
        for i in sorted(range(len(kinds)), key=lambda i: kinds[i]):   # cond (0) before uncond (1)
            rows = slice(i * size, (i + 1) * size)
            stream = "cond" if kinds[i] == 0 else "uncond"
            with context_for(stream) if context_for else contextlib.nullcontext():
                parts[i] = call(x[rows], timestep[rows], context[rows], None if y is None else y[rows])
        return torch.cat([parts[i] for i in range(len(kinds))])

    def outer_sample(executor, *args, **kwargs):
        if reset is not None:
            reset()
        return executor(*args, **kwargs)

    m = model.clone()
    m.add_wrapper_with_key(pe.WrappersMP.DIFFUSION_MODEL, "reference", diffusion_model)
    m.add_wrapper_with_key(pe.WrappersMP.OUTER_SAMPLE, "reference", outer_sample)
    return m


# --- the reference methods ------------------------------------------------------------------------------
class References:
    """diffusers' and cache-dit's methods on one family's trained model, each applied like a node: a setting
    in, a patched ModelPatcher out. One diffusers model is shared; applying a method removes the previous
    one's hooks first (the bench runs one setting at a time)."""

    def __init__(self, model, family: str, steps: int, recipe=None):
        from harness import diffusers_host as dh
        from harness import digits_models as dm
        recipe = recipe or dm.RECIPES[family]
        self.dh, self.model, self.family, self.steps = dh, model, recipe.family, steps
        self.net = to_diffusers(model, family, recipe)
        self._off = None
        self.clock = {"t": 1000.0}   # the current call's 1000 sigma, for PAB's timestep window

    def _clear(self):
        if self._off is not None:
            self._off()
            self._off = None

    def plain(self):
        """The diffusers model with no cache: the reference point for its own FLOPs."""
        self._clear()
        return route(self.model, self.family, self.net)

    def diffusers(self, config, after_call=None, batched=False):
        """A diffusers 0.39 hook config (FirstBlockCacheConfig, MagCacheConfig, TaylorSeerCacheConfig, ...)."""
        self._clear()
        net = self.net
        self.dh.enable_hooks(net, config)
        self._off = lambda: self.dh.disable_hooks(net)

        @contextlib.contextmanager
        def context(stream):
            with net.cache_context(stream):
                yield
                if after_call is not None:
                    after_call(stream)
        return route(self.model, self.family, net, None if batched else context, reset=net._reset_stateful_cache,
                     batched=batched, clock=self.clock)

    def cache_dit(self, **db):
        """cache-dit 1.5.3's DBCache (DBCacheConfig keywords), with separate cond and uncond calls."""
        import cache_dit
        from cache_dit import DBCacheConfig
        self._clear()
        net = self.net
        cache_dit.enable_cache(self.dh.cache_dit_adapter(net), cache_config=DBCacheConfig(
            **db, enable_separate_cfg=True, num_inference_steps=self.steps))
        self._off = lambda: cache_dit.disable_cache(net)
        return route(self.model, self.family, net,
                     reset=lambda: cache_dit.refresh_context(net, num_inference_steps=self.steps))

    def faster_cache(self, config):
        """diffusers' FasterCache (a FasterCacheConfig) on a Denoiser around the model, cfg batched uncond first."""
        from diffusers.hooks import HookRegistry
        from diffusers.hooks.faster_cache import (_FASTER_CACHE_BLOCK_HOOK, _FASTER_CACHE_DENOISER_HOOK,
                                                  apply_faster_cache)
        self._clear()
        denoiser = Denoiser(self.net, self.family)
        config._unconditional_conditional_input_kwargs_identifiers += ("pooled_projections",)   # Flux's
        apply_faster_cache(denoiser, config)
        registry = HookRegistry.check_if_exists_or_initialize(denoiser)

        def off():
            registry.remove_hook(_FASTER_CACHE_DENOISER_HOOK, recurse=True)
            registry.remove_hook(_FASTER_CACHE_BLOCK_HOOK, recurse=True)
        self._off = off
        return route(self.model, self.family, denoiser, reset=lambda: registry.reset_stateful_hooks(recurse=True),
                     batched="uncond_first", clock=self.clock)

    def mag_ratios(self, sample) -> list[float]:
        """diffusers' MagCache calibration (calibrate=True) of one uncached run `sample(patched)`: the cond
        context's ratios, as the hook prints them for the user to paste."""
        from diffusers.hooks import MagCacheConfig
        from diffusers.hooks.mag_cache import _MAG_CACHE_LEADER_BLOCK_HOOK
        ratios = []

        def keep(stream):
            if stream == "cond":
                state = self.dh.find_hook(self.net, _MAG_CACHE_LEADER_BLOCK_HOOK).state_manager.get_state()
                ratios[:] = list(state.calibration_ratios)
        # one step more than the run: at num_inference_steps the hook resets and drops what it recorded
        sample(self.diffusers(MagCacheConfig(calibrate=True, num_inference_steps=self.steps + 1), keep))
        self._clear()
        return ratios

    def methods(self, sample) -> dict:
        """name -> (knob, settings, apply(model, setting)), settings as CacheKit's rows of the same method."""
        import torch
        from diffusers.hooks import (FasterCacheConfig, FirstBlockCacheConfig, MagCacheConfig,
                                     PyramidAttentionBroadcastConfig, TaylorSeerCacheConfig)
        ratios = self.mag_ratios(sample)
        # CacheKit's MagCache rows keep the MagCache repository's recipe of the family: so do these
        from harness import pack
        retention = pack.load().nodes.magcache.recipe_retention("Flux" if self.family == "flux" else "Wan")
        # CacheKit's PAB window, start 0.1 to end 0.95 of the schedule, as diffusers' timestep range (1000 sigma)
        ms = self.model.get_model_object("model_sampling")
        window = tuple(1000.0 * float(ms.percent_to_sigma(p)) for p in (0.95, 0.1))

        def pab(v):
            return PyramidAttentionBroadcastConfig(
                spatial_attention_block_skip_range=v, cross_attention_block_skip_range=v + 2,
                spatial_attention_timestep_skip_range=window, cross_attention_timestep_skip_range=window,
                current_timestep_callback=lambda: self.clock["t"])
        blocks = [r"blocks\.\d+"] if self.family == "wan" else \
            [r"transformer_blocks\.\d+", r"single_transformer_blocks\.\d+"]
        return {
            "First Block Cache (diffusers)": ("threshold", (0.03, 0.06, 0.1, 0.15, 0.25), lambda m, v: self.diffusers(
                FirstBlockCacheConfig(threshold=v))),
            "MagCache (diffusers)": ("threshold", (0.01, 0.03, 0.06, 0.12, 0.18, 0.25), lambda m, v: self.diffusers(
                MagCacheConfig(threshold=v, max_skip_steps=5, retention_ratio=retention,
                               num_inference_steps=self.steps, mag_ratios=ratios))),
            "DBCache (cache-dit)": ("threshold", (0.03, 0.06, 0.1, 0.15, 0.25), lambda m, v: self.cache_dit(
                Fn_compute_blocks=1, Bn_compute_blocks=0, residual_diff_threshold=v, max_warmup_steps=2)),
            "TaylorSeer (diffusers)": ("interval", (2, 3, 4, 5, 6), lambda m, v: self.diffusers(
                TaylorSeerCacheConfig(cache_interval=v, disable_cache_before_step=2, max_order=1,
                                      taylor_factors_dtype=torch.float32, cache_identifiers=blocks))),
            # cfg batched into one call, as the pipelines PAB was written for make it (CogVideoX, Latte)
            "PAB (diffusers)": ("self interval", (2, 3, 4, 6, 8), lambda m, v: self.diffusers(pab(v), batched=True)),
            "FasterCache (diffusers)": ("uncond interval", (2, 3, 4, 6, 10), lambda m, v: self.faster_cache(
                FasterCacheConfig(unconditional_batch_skip_range=v, spatial_attention_block_skip_range=2,
                                  tensor_format="BCFHW" if self.family == "wan" else "BCHW",
                                  attention_weight_callback=lambda _: 0.5,
                                  current_timestep_callback=lambda: self.clock["t"]))),
        }
