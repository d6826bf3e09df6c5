"""Tiny, seeded instances of the real ComfyUI model classes, one per supported DiT family.

ComfyUI's ops skip weight init, so every parameter is filled from a seeded generator.
Each builder returns (ModelPatcher, latent, positive, negative) ready for comfy.sample.sample.
"""
from __future__ import annotations

from pathlib import Path

import torch

from harness.comfy_runtime import COMFY_DIR, with_fields_since


def fill_weights(model, seed: int, scale: float = 0.05):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in sorted(model.named_parameters()):
            if name.endswith("scale_shift_table"):
                p.copy_(torch.randn(p.shape, generator=g) * 0.1)
            elif p.ndim >= 2:
                p.copy_(torch.randn(p.shape, generator=g) * (scale if p.shape[-1] > 16 else 0.2))
            elif "norm" in name and "weight" in name or name.endswith(".scale"):
                p.fill_(1.0)
            else:
                p.copy_(torch.randn(p.shape, generator=g) * 0.02)


_FILLED: dict = {}   # (class, seed) -> filled weights, for builders too big to fill on every call (ACE-Step)


def patcher(family_cls, unet_config, seed, keep_weights=False):
    import comfy.model_management
    import comfy.model_patcher
    cfg = family_cls(unet_config)
    cfg.set_inference_dtype(torch.float32, None)
    model = cfg.get_model({})
    key = (family_cls.__name__, seed)
    if keep_weights and key in _FILLED:
        model.diffusion_model.load_state_dict(_FILLED[key])
    else:
        fill_weights(model.diffusion_model, seed)
        if keep_weights:
            _FILLED[key] = {k: v.clone() for k, v in model.diffusion_model.state_dict().items()}
    model.eval()
    return comfy.model_patcher.ModelPatcher(model, load_device=comfy.model_management.get_torch_device(),
                                            offload_device=comfy.model_management.unet_offload_device())


def resolve(obj, dotted: str):
    """The attribute at a dotted path (Stable Audio keeps its blocks at transformer.layers)."""
    import comfy.utils
    return comfy.utils.get_attr(obj, dotted)


def _modules(container):
    """A block container's blocks (Cosmos 1 keeps them in a ModuleDict)."""
    return container.values() if isinstance(container, torch.nn.ModuleDict) else container


def conditioning(ctx, **extra):
    return [[ctx, dict(extra)]]


def flux(seed=0, batch=1, size=16):
    import comfy.supported_models as sm
    cfg = dict(image_model="flux", in_channels=16, out_channels=16, vec_in_dim=32, context_in_dim=32,
               hidden_size=64, mlp_ratio=2.0, num_heads=2, depth=2, depth_single_blocks=2,
               axes_dim=[8, 12, 12], theta=10000, patch_size=2, qkv_bias=True, guidance_embed=True)
    m = patcher(sm.Flux, with_fields_since("comfy.ldm.flux.model:FluxParams", cfg, txt_ids_dims=[]), seed)
    g = torch.Generator().manual_seed(seed + 1)
    pos = conditioning(torch.randn(1, 8, 32, generator=g), pooled_output=torch.randn(1, 32, generator=g), guidance=3.5)
    neg = conditioning(torch.randn(1, 8, 32, generator=g), pooled_output=torch.randn(1, 32, generator=g), guidance=3.5)
    return m, torch.zeros(batch, 16, size, size), pos, neg


def chroma(seed=0, batch=1, size=16):
    import comfy.supported_models as sm
    cfg = dict(image_model="chroma", in_channels=64, out_channels=64, context_in_dim=32, hidden_size=64,
               mlp_ratio=2.0, num_heads=2, depth=2, depth_single_blocks=2, axes_dim=[8, 12, 12], theta=10000,
               patch_size=2, qkv_bias=True, in_dim=64, out_dim=64, hidden_dim=64, n_layers=2)
    cfg = with_fields_since("comfy.ldm.chroma.model:ChromaParams", cfg, txt_ids_dims=[], vec_in_dim=None)
    m = patcher(sm.Chroma, cfg, seed)
    g = torch.Generator().manual_seed(seed + 1)
    # Chroma has no pooled text vector, but its model_base still reads the key.
    pos = conditioning(torch.randn(1, 8, 32, generator=g), pooled_output=torch.zeros(1, 32))
    neg = conditioning(torch.randn(1, 8, 32, generator=g), pooled_output=torch.zeros(1, 32))
    return m, torch.zeros(batch, 16, size, size), pos, neg


def wan(seed=0, batch=1, size=16, frames=1):
    import comfy.supported_models as sm
    cfg = dict(image_model="wan2.1", model_type="t2v", patch_size=(1, 2, 2), text_len=16, in_dim=16, dim=64,
               ffn_dim=128, freq_dim=32, text_dim=32, out_dim=16, num_heads=2, num_layers=4)
    m = patcher(sm.WAN21_T2V, cfg, seed)
    g = torch.Generator().manual_seed(seed + 1)
    pos = conditioning(torch.randn(1, 8, 32, generator=g))
    neg = conditioning(torch.randn(1, 8, 32, generator=g))
    return m, torch.zeros(batch, 16, frames, size, size), pos, neg


def qwen_image(seed=0, batch=1, size=16):
    import comfy.supported_models as sm
    cfg = dict(image_model="qwen_image", patch_size=2, in_channels=64, out_channels=16, num_layers=4,
               attention_head_dim=32, num_attention_heads=2, joint_attention_dim=32, axes_dims_rope=(8, 12, 12))
    m = patcher(sm.QwenImage, cfg, seed)
    g = torch.Generator().manual_seed(seed + 1)
    pos = conditioning(torch.randn(1, 8, 32, generator=g))
    neg = conditioning(torch.randn(1, 8, 32, generator=g))
    return m, torch.zeros(batch, 16, 1, size, size), pos, neg


def hunyuan_video(seed=0, batch=1, size=16, frames=1):
    import comfy.supported_models as sm
    cfg = dict(image_model="hunyuan_video", in_channels=16, out_channels=16, vec_in_dim=32, context_in_dim=32,
               hidden_size=64, mlp_ratio=2.0, num_heads=2, depth=2, depth_single_blocks=2, axes_dim=[8, 12, 12],
               theta=256, patch_size=[1, 2, 2], qkv_bias=True, guidance_embed=True, byt5=False, meanflow=False,
               use_cond_type_embedding=False, vision_in_dim=None)
    cfg = with_fields_since("comfy.ldm.hunyuan_video.model:HunyuanVideoParams", cfg, meanflow_sum=False)
    m = patcher(sm.HunyuanVideo, cfg, seed)
    g = torch.Generator().manual_seed(seed + 1)
    pos = conditioning(torch.randn(1, 8, 32, generator=g), pooled_output=torch.randn(1, 32, generator=g), guidance=6.0)
    neg = conditioning(torch.randn(1, 8, 32, generator=g), pooled_output=torch.randn(1, 32, generator=g), guidance=6.0)
    return m, torch.zeros(batch, 16, frames, size, size), pos, neg


def ltxv(seed=0, batch=1, size=4, frames=2):
    import comfy.supported_models as sm
    cfg = dict(image_model="ltxv", in_channels=128, cross_attention_dim=128, attention_head_dim=64,
               num_attention_heads=2, caption_channels=64, num_layers=4)
    m = patcher(sm.LTXV, cfg, seed)
    g = torch.Generator().manual_seed(seed + 1)
    mask = torch.ones(1, 8, dtype=torch.long)
    pos = conditioning(torch.randn(1, 8, 64, generator=g), attention_mask=mask, frame_rate=25)
    neg = conditioning(torch.randn(1, 8, 64, generator=g), attention_mask=mask, frame_rate=25)
    return m, torch.zeros(batch, 128, frames, size, size), pos, neg


def flux2(seed=0, batch=1, size=8, guidance_embed=True):
    """Flux 2's layout (one global modulation, no biases, 4 rope axes, 128 latent channels) in the Flux class;
    guidance_embed=False: Klein's (distilled, no guidance input)."""
    import comfy.supported_models as sm
    cfg = dict(image_model="flux2", in_channels=128, out_channels=128, vec_in_dim=None, context_in_dim=32,
               hidden_size=64, mlp_ratio=3.0, num_heads=2, depth=2, depth_single_blocks=2, axes_dim=[8, 8, 8, 8],
               theta=2000, patch_size=1, qkv_bias=False, guidance_embed=guidance_embed, global_modulation=True,
               mlp_silu_act=True, ops_bias=False, default_ref_method="index", ref_index_scale=10.0)
    m = patcher(sm.Flux2, with_fields_since("comfy.ldm.flux.model:FluxParams", cfg, txt_ids_dims=[3]), seed)
    g = torch.Generator().manual_seed(seed + 1)
    pos = conditioning(torch.randn(1, 8, 32, generator=g), guidance=4.0, pooled_output=None)
    neg = conditioning(torch.randn(1, 8, 32, generator=g), guidance=4.0, pooled_output=None)
    return m, torch.zeros(batch, 128, size, size), pos, neg


def chroma_radiance(seed=0, batch=1, size=16):
    """Chroma's blocks on pixel-space input (3 channels, 16x16 -> 16 tokens with patch 4)."""
    import comfy.supported_models as sm
    cfg = dict(image_model="chroma_radiance", in_channels=3, out_channels=3, context_in_dim=32, hidden_size=64,
               mlp_ratio=2.0, num_heads=2, depth=2, depth_single_blocks=2, axes_dim=[8, 12, 12], theta=10000,
               patch_size=4, qkv_bias=True, in_dim=64, out_dim=64, hidden_dim=64, n_layers=2, nerf_hidden_size=16,
               nerf_mlp_ratio=2, nerf_depth=2, nerf_max_freqs=4, nerf_tile_size=512, nerf_final_head_type="conv",
               nerf_embedder_dtype=torch.float32)
    cfg = with_fields_since("comfy.ldm.chroma_radiance.model:ChromaRadianceParams", cfg, txt_ids_dims=[],
                            vec_in_dim=None, use_x0=False, use_sequential_txt_ids=False)
    m = patcher(sm.ChromaRadiance, cfg, seed)
    g = torch.Generator().manual_seed(seed + 1)
    pos = conditioning(torch.randn(1, 8, 32, generator=g), pooled_output=None)
    neg = conditioning(torch.randn(1, 8, 32, generator=g), pooled_output=None)
    return m, torch.zeros(batch, 3, size, size), pos, neg


def hunyuan_video15(seed=0, batch=1, size=4, frames=2):
    """HunyuanVideo 1.5's configuration (vision and byT5 tokens, cond type embedding) in the HunyuanVideo class."""
    import types
    import comfy.supported_models as sm
    cfg = dict(image_model="hunyuan_video", in_channels=65, out_channels=32, vec_in_dim=None, context_in_dim=32,
               hidden_size=64, mlp_ratio=2.0, num_heads=2, depth=2, depth_single_blocks=2, axes_dim=[8, 12, 12],
               theta=256, patch_size=[1, 1, 1], qkv_bias=True, guidance_embed=False, byt5=True, meanflow=False,
               use_cond_type_embedding=True, vision_in_dim=48)
    cfg = with_fields_since("comfy.ldm.hunyuan_video.model:HunyuanVideoParams", cfg, meanflow_sum=True)
    m = patcher(sm.HunyuanVideo15, cfg, seed)
    g = torch.Generator().manual_seed(seed + 1)
    extra = lambda: dict(pooled_output=None, conditioning_byt5small=torch.randn(1, 3, 1472, generator=g),  # noqa
                         clip_vision_output=types.SimpleNamespace(last_hidden_state=torch.randn(1, 4, 48, generator=g)))
    pos = conditioning(torch.randn(1, 8, 32, generator=g), **extra())
    neg = conditioning(torch.randn(1, 8, 32, generator=g), **extra())
    return m, torch.zeros(batch, 32, frames, size, size), pos, neg


def wan_vace(seed=0, batch=1, size=8, frames=2):
    """Wan VACE: 4 blocks, VACE hints after blocks 0 and 2, a VACE control in both conds."""
    import comfy.supported_models as sm
    cfg = dict(image_model="wan2.1", model_type="vace", patch_size=(1, 2, 2), text_len=16, in_dim=16, dim=64,
               ffn_dim=128, freq_dim=32, text_dim=32, out_dim=16, num_heads=2, num_layers=4, vace_layers=2,
               vace_in_dim=96)
    m = patcher(sm.WAN21_Vace, cfg, seed)
    g = torch.Generator().manual_seed(seed + 1)
    vace = lambda: dict(vace_frames=[torch.randn(1, 32, frames, size, size, generator=g)],  # noqa: E731
                        vace_mask=[torch.ones(1, 64, frames, size, size)], vace_strength=[1.0])
    pos = conditioning(torch.randn(1, 8, 32, generator=g), **vace())
    neg = conditioning(torch.randn(1, 8, 32, generator=g), **vace())
    return m, torch.zeros(batch, 16, frames, size, size), pos, neg



def sample(model, latent, pos, neg, *, steps=8, cfg=1.0, seed=0, sampler="euler", scheduler="simple", denoise=1.0,
           callback=None):
    """One run through ComfyUI's own sampling path; returns the latent (fp32, CPU)."""
    import comfy.sample
    noise = comfy.sample.prepare_noise(latent, seed)
    out = comfy.sample.sample(model, noise, steps, cfg, sampler, scheduler, pos, neg, latent,
                              denoise=denoise, seed=seed, disable_pbar=True, callback=callback)
    return packed(out).float().cpu()


def lora_on(model, names, *, seed: int, scale: float, rank: int = 4, strength: float = 1.0):
    """`model` with a seeded rank-`rank` LoRA on the Linears at `names` (paths in its diffusion model), in the generic
    key format and loaded as Load LoRA loads one (comfy.sd.load_lora_for_models: weight patches on a clone of its
    patcher). Each module's lora_up, then lora_down, is drawn from one generator and scaled by `scale`."""
    import comfy.sd
    dm = model.model.diffusion_model
    g = torch.Generator().manual_seed(seed)
    sd = {}
    for name in names:
        lin, key = dm.get_submodule(name), f"diffusion_model.{name}"
        sd[f"{key}.lora_up.weight"] = torch.randn(lin.out_features, rank, generator=g) * scale
        sd[f"{key}.lora_down.weight"] = torch.randn(rank, lin.in_features, generator=g) * scale
    return comfy.sd.load_lora_for_models(model, None, sd, strength, 0.0)[0]


def packed(latent):
    """A latent of several streams (audio and video) as one tensor, as ComfyUI packs it to sample; others as is."""
    import comfy.utils
    return comfy.utils.pack_latents(latent.unbind())[0] if latent.is_nested else latent


def unpack(out, latent):
    """sample()'s packed output of a latent of several streams (video, audio), as those streams."""
    import comfy.utils
    return comfy.utils.unpack_latents(out, [t.shape for t in latent.unbind()])


def sd3(seed=0, batch=1, size=8):
    """SD3.5's MMDiT: hidden 64*depth (128), 4 joint blocks, RMS qk-norm, an extra image self attention in
    block 0 (SD3.5 medium), the last block dropping the text stream."""
    import comfy.supported_models as sm
    cfg = dict(in_channels=16, out_channels=16, patch_size=2, depth=2, num_blocks=4, adm_in_channels=32,
               context_embedder_config={"target": "torch.nn.Linear",
                                        "params": {"in_features": 32, "out_features": 128}},
               pos_embed_max_size=32, num_patches=1024, pos_embed_scaling_factor=None, qk_norm="rms",
               x_block_self_attn_layers=[0])
    m = patcher(sm.SD3, cfg, seed)
    from comfy.ldm.modules.diffusionmodules.mmdit import get_2d_sincos_pos_embed
    with torch.no_grad():   # a buffer the checkpoint brings, not a parameter: left empty by the build
        m.model.diffusion_model.pos_embed.copy_(torch.from_numpy(get_2d_sincos_pos_embed(128, 32))[None])
    g = torch.Generator().manual_seed(seed + 1)
    pos = conditioning(torch.randn(1, 8, 32, generator=g), pooled_output=torch.randn(1, 32, generator=g))
    neg = conditioning(torch.randn(1, 8, 32, generator=g), pooled_output=torch.randn(1, 32, generator=g))
    return m, torch.zeros(batch, 16, size, size), pos, neg


def omnigen2(seed=0, batch=1, size=16):
    """OmniGen2: its model_base reads the token count from an attention mask in the cond."""
    import comfy.supported_models as sm
    cfg = dict(image_model="omnigen2", patch_size=2, in_channels=16, out_channels=None, hidden_size=64, num_layers=4,
               num_refiner_layers=1, num_attention_heads=2, num_kv_heads=1, multiple_of=16, ffn_dim_multiplier=None,
               norm_eps=1e-5, axes_dim_rope=[8, 12, 12], axes_lens=[64, 16, 16], text_feat_dim=32,
               timestep_scale=1000.0)
    m = patcher(sm.Omnigen2, cfg, seed)
    g = torch.Generator().manual_seed(seed + 1)
    mask = torch.ones(1, 8, dtype=torch.long)
    pos = conditioning(torch.randn(1, 8, 32, generator=g), attention_mask=mask)
    neg = conditioning(torch.randn(1, 8, 32, generator=g), attention_mask=mask)
    return m, torch.zeros(batch, 16, size, size), pos, neg


def cosmos_predict2(seed=0, batch=1, size=8, frames=1):
    import comfy.supported_models as sm
    cfg = dict(image_model="cosmos_predict2", max_img_h=64, max_img_w=64, max_frames=16, in_channels=16,
               out_channels=16, patch_spatial=2, patch_temporal=1, concat_padding_mask=True, model_channels=64,
               num_blocks=4, num_heads=2, crossattn_emb_channels=32, pos_emb_cls="rope3d", pos_emb_learnable=True,
               pos_emb_interpolation="crop", min_fps=1, max_fps=30, use_adaln_lora=True, adaln_lora_dim=16,
               extra_per_block_abs_pos_emb=False, rope_enable_fps_modulation=False)
    m = patcher(sm.CosmosT2IPredict2, cfg, seed)
    g = torch.Generator().manual_seed(seed + 1)
    pos = conditioning(torch.randn(1, 8, 32, generator=g))
    neg = conditioning(torch.randn(1, 8, 32, generator=g))
    return m, torch.zeros(batch, 16, frames, size, size), pos, neg


def auraflow(seed=0, batch=1, size=16):
    import comfy.supported_models as sm
    cfg = dict(in_channels=4, out_channels=4, patch_size=2, dim=64, n_layers=4, n_double_layers=2, n_heads=2,
               global_conddim=64, cond_seq_dim=32, max_seq=64)
    m = patcher(sm.AuraFlow, cfg, seed)
    g = torch.Generator().manual_seed(seed + 1)
    return m, torch.zeros(batch, 4, size, size), conditioning(torch.randn(1, 8, 32, generator=g)), \
        conditioning(torch.randn(1, 8, 32, generator=g))


def mochi(seed=0, batch=1, size=8, frames=2):
    """Mochi's asymmetric DiT (hidden_size_x * mlp_ratio_x must be 12288 in ComfyUI's class)."""
    import comfy.supported_models as sm
    cfg = dict(image_model="mochi_preview", depth=4, patch_size=2, num_heads=2, hidden_size_x=64, hidden_size_y=32,
               mlp_ratio_x=192.0, mlp_ratio_y=2.0, learn_sigma=False, in_channels=12, qk_norm=True, qkv_bias=False,
               out_bias=True, attn_drop=0.0, patch_embed_bias=True, posenc_preserve_area=True,
               timestep_mlp_bias=True, attend_to_padding=False, timestep_scale=1000.0, use_t5=True, t5_feat_dim=32,
               t5_token_length=8, rope_theta=10000.0)
    m = patcher(sm.GenmoMochi, cfg, seed)
    g = torch.Generator().manual_seed(seed + 1)
    mask = torch.ones(1, 8, dtype=torch.long)
    pos = conditioning(torch.randn(1, 8, 32, generator=g), attention_mask=mask)
    neg = conditioning(torch.randn(1, 8, 32, generator=g), attention_mask=mask)
    return m, torch.zeros(batch, 12, frames, size, size), pos, neg


def hunyuan3d(seed=0, batch=1, tokens=32):
    """Hunyuan3D 2.0's DiT (Flux blocks) on shape latents: (batch, 64 channels, tokens)."""
    import comfy.supported_models as sm
    cfg = dict(image_model="hunyuan3d2", in_channels=64, context_in_dim=32, hidden_size=64, mlp_ratio=2.0,
               num_heads=2, depth=2, depth_single_blocks=2, qkv_bias=True, guidance_embed=False)
    m = patcher(sm.Hunyuan3Dv2, cfg, seed)
    g = torch.Generator().manual_seed(seed + 1)
    return m, torch.zeros(batch, 64, tokens), conditioning(torch.randn(1, 8, 32, generator=g)), \
        conditioning(torch.randn(1, 8, 32, generator=g))


def cosmos1(seed=0, batch=1, size=8, frames=2):
    """Cosmos 1's GeneralDIT as ComfyUI detects the 7B (extra per-block positional embedding, T H W B D tokens)."""
    import comfy.supported_models as sm
    cfg = dict(image_model="cosmos", max_img_h=64, max_img_w=64, max_frames=16, in_channels=16, out_channels=16,
               patch_spatial=2, patch_temporal=1, concat_padding_mask=True, model_channels=64, block_config="FA-CA-MLP",
               num_blocks=4, num_heads=2, crossattn_emb_channels=32, pos_emb_cls="rope3d", pos_emb_learnable=False,
               pos_emb_interpolation="crop", block_x_format="THWBD", affline_emb_norm=True, use_adaln_lora=True,
               adaln_lora_dim=16, extra_per_block_abs_pos_emb=True, extra_per_block_abs_pos_emb_type="learnable",
               rope_t_extrapolation_ratio=2.0)
    m = patcher(sm.CosmosT2V, cfg, seed)
    g = torch.Generator().manual_seed(seed + 1)
    return m, torch.zeros(batch, 16, frames, size, size), conditioning(torch.randn(1, 8, 32, generator=g)), \
        conditioning(torch.randn(1, 8, 32, generator=g))


def wan_s2v(seed=0, batch=1, size=8, frames=1):
    """Wan 2.2 S2V: audio features (25 layers of an audio encoder, 4 per latent frame) injected after some blocks."""
    import comfy.supported_models as sm
    cfg = dict(image_model="wan2.1", model_type="s2v", patch_size=(1, 2, 2), text_len=16, in_dim=16, dim=64,
               ffn_dim=128, freq_dim=32, text_dim=32, out_dim=16, num_heads=2, num_layers=4, audio_dim=32,
               num_audio_token=4, cond_dim=16, audio_inject_layers=[0, 2])
    m = patcher(sm.WAN22_S2V, cfg, seed)
    g = torch.Generator().manual_seed(seed + 1)
    audio = torch.randn(1, 25, 32, 4 * frames, generator=g)
    return (m, torch.zeros(batch, 16, frames, size, size),
            conditioning(torch.randn(1, 8, 32, generator=g), audio_embed=audio),
            conditioning(torch.randn(1, 8, 32, generator=g), audio_embed=torch.zeros_like(audio)))


def sd15_unet(seed=0):
    """A tiny SD1.5 UNet (a real UNetModel), for the message that block methods do not serve UNets."""
    import comfy.supported_models as sm
    cfg = dict(use_checkpoint=False, image_size=32, out_channels=4, use_spatial_transformer=True, legacy=False,
               adm_in_channels=None, in_channels=4, model_channels=32, num_res_blocks=[1], transformer_depth=[1],
               channel_mult=[1], transformer_depth_middle=1, use_linear_in_transformer=False, context_dim=32,
               num_head_channels=16, transformer_depth_output=[1, 1], use_temporal_attention=False,
               use_temporal_resblock=False)
    return patcher(sm.SD15, cfg, seed)


def lumina2(seed=0, batch=1, size=16):
    """Lumina 2 / Z-Image's NextDiT (its forward ignores patches_replace: reached by the "forward" route)."""
    import comfy.supported_models as sm
    cfg = dict(image_model="lumina2", patch_size=2, in_channels=16, dim=64, n_layers=4, n_refiner_layers=1,
               n_heads=2, n_kv_heads=2, axes_dims=[8, 12, 12], axes_lens=[16, 16, 16], cap_feat_dim=32,
               qk_norm=True)
    m = patcher(sm.Lumina2, cfg, seed)
    g = torch.Generator().manual_seed(seed + 1)
    pos = conditioning(torch.randn(1, 8, 32, generator=g))
    neg = conditioning(torch.randn(1, 8, 32, generator=g))
    return m, torch.zeros(batch, 16, size, size), pos, neg


def z_image(seed=0, batch=1, size=16):
    """Z-Image's NextDiT (its modulation, captions and image padded to a multiple of 32 tokens), in the Lumina 2 row;
    its modulation takes a 256-wide time embedding, so the model is 256 wide."""
    import comfy.supported_models as sm
    cfg = dict(image_model="lumina2", patch_size=2, in_channels=16, dim=256, n_layers=4, n_refiner_layers=1,
               n_heads=2, n_kv_heads=2, axes_dims=[32, 48, 48], axes_lens=[64, 16, 16], cap_feat_dim=32,
               qk_norm=True, z_image_modulation=True, pad_tokens_multiple=32, time_scale=1000.0)
    m = patcher(sm.ZImage, cfg, seed)
    g = torch.Generator().manual_seed(seed + 1)
    return m, torch.zeros(batch, 16, size, size), conditioning(torch.randn(1, 8, 32, generator=g)), \
        conditioning(torch.randn(1, 8, 32, generator=g))


def hidream(seed=0, batch=1, size=16):
    """HiDream-I1: double then single stream blocks, each fed its own slice of the Llama hidden states
    (conditioning_llama3 holds one per block: num_layers + num_single_layers of them)."""
    import comfy.supported_models as sm
    cfg = dict(image_model="hidream", patch_size=2, in_channels=16, out_channels=16, num_layers=2,
               num_single_layers=2, attention_head_dim=32, num_attention_heads=2, caption_channels=[32, 32],
               text_emb_dim=32, num_routed_experts=2, num_activated_experts=1, axes_dims_rope=(8, 12, 12),
               max_resolution=(32, 32), llama_layers=[0, 1, 2, 3])
    m = patcher(sm.HiDream, cfg, seed)
    g = torch.Generator().manual_seed(seed + 1)

    def cond():
        return conditioning(torch.randn(1, 8, 32, generator=g), pooled_output=torch.randn(1, 32, generator=g),
                     conditioning_llama3=torch.randn(1, 4, 6, 32, generator=g))
    pos, neg = cond(), cond()
    return m, torch.zeros(batch, 16, size, size), pos, neg


def pixart(seed=0, batch=1, size=40):
    """PixArt Sigma's PixArtMS (eps prediction); latents under 40 wide round its position-embedding base to 0."""
    import comfy.supported_models as sm
    cfg = dict(image_model="pixart_sigma", input_size=size, patch_size=2, in_channels=4, hidden_size=64, depth=4,
               num_heads=2, caption_channels=32, model_max_length=8, micro_condition=False, pred_sigma=True,
               pe_interpolation=None)
    m = patcher(sm.PixArtSigma, cfg, seed)
    g = torch.Generator().manual_seed(seed + 1)
    return m, torch.zeros(batch, 4, size, size), conditioning(torch.randn(1, 8, 32, generator=g)), \
        conditioning(torch.randn(1, 8, 32, generator=g))


def hunyuan_dit(seed=0, batch=1, size=8):
    """HunyuanDiT: CLIP and mT5 tokens, long skip connections from the first half of the blocks to the second."""
    import comfy.supported_models as sm
    cfg = dict(image_model="hydit", input_size=size, patch_size=2, in_channels=4, hidden_size=64, depth=6,
               num_heads=2, mlp_ratio=2.0, text_states_dim=32, text_states_dim_t5=48, text_len=8, text_len_t5=8,
               size_cond=False, use_style_cond=False, learn_sigma=True)
    m = patcher(sm.HunyuanDiT, cfg, seed)
    g = torch.Generator().manual_seed(seed + 1)

    def cond():
        return conditioning(torch.randn(1, 8, 32, generator=g), attention_mask=torch.ones(1, 8),
                     conditioning_mt5xl=torch.randn(1, 8, 48, generator=g), attention_mask_mt5xl=torch.ones(1, 8))
    return m, torch.zeros(batch, 4, size, size), cond(), cond()


def hunyuan3d21(seed=0, batch=2, tokens=32):
    """Hunyuan3D 2.1's HunYuanDiTPlain: long skips, MoE MLPs in the last blocks. Its forward splits every batch
    into two halves (cond and uncond), so a batch of one cannot run it: two latents by default."""
    import comfy.supported_models as sm
    cfg = dict(image_model="hunyuan3d2_1", in_channels=64, hidden_size=64, context_dim=32, depth=6, num_heads=2,
               num_moe_layers=2, num_experts=2, moe_top_k=1, guidance_cond_proj_dim=None)
    m = patcher(sm.Hunyuan3Dv2_1, cfg, seed)
    g = torch.Generator().manual_seed(seed + 1)
    return m, torch.zeros(batch, 64, tokens), conditioning(torch.randn(1, 8, 32, generator=g)), \
        conditioning(torch.randn(1, 8, 32, generator=g))


def ace_step(seed=0, batch=1, length=16):
    """ACE-Step: a linear-attention DiT on (batch, 8, 16, length) latents; text, lyric tokens and a (zero) speaker
    embedding are its conditioning. Its lyric encoder is fixed by the class at 1024 wide, 6 conformer blocks."""
    import comfy.supported_models as sm
    cfg = dict(audio_model="ace", in_channels=8, out_channels=8, num_layers=4, inner_dim=64, attention_head_dim=32,
               num_attention_heads=2, mlp_ratio=2.0, text_embedding_dim=32, lyric_encoder_vocab_size=64,
               lyric_hidden_size=1024, ssl_latent_dims=[16, 16], ssl_encoder_depths=[1, 1], patch_size=[16, 1],
               max_height=16, max_width=64)
    m = patcher(sm.ACEStep, cfg, seed, keep_weights=True)   # 84M parameters: filled once per process
    g = torch.Generator().manual_seed(seed + 1)

    def cond():
        return conditioning(torch.randn(1, 8, 32, generator=g),
                            conditioning_lyrics=torch.randint(0, 64, (1, 6), generator=g))
    return m, torch.zeros(batch, 8, 16, length), cond(), cond()


def _audio_dit_patcher(config, weights: dict, seed: int, unit_gammas: bool = False):
    """A seeded Stable Audio transformer (Open or 3) as a ModelPatcher. `weights`: the seconds conditioners' (the
    model builder reads them from the checkpoint); the RoPE frequencies, a checkpoint buffer, are the usual ones;
    unit_gammas: the norms' scales (.gamma, which fill_weights takes for biases) at 1, as Stable Audio 3's RMS norms
    need them."""
    import comfy.model_management
    import comfy.model_patcher
    model = config.get_model(weights)
    fill_weights(model.diffusion_model, seed)
    with torch.no_grad():
        for name, p in model.diffusion_model.named_parameters():
            if unit_gammas and name.endswith(".gamma"):
                p.fill_(1.0)
        inv_freq = model.diffusion_model.transformer.rotary_pos_emb.inv_freq   # a checkpoint buffer
        inv_freq.copy_(1.0 / 10000 ** (torch.arange(0, 2 * len(inv_freq), 2).float() / (2 * len(inv_freq))))
    model.eval()
    return comfy.model_patcher.ModelPatcher(model, load_device=comfy.model_management.get_torch_device(),
                                            offload_device=comfy.model_management.unet_offload_device())


def stable_audio(seed=0, batch=1, length=16):
    """Stable Audio Open's AudioDiffusionTransformer on (batch, 64, length) latents; its seconds embedders are
    seeded here (the real ones come from the checkpoint)."""
    import comfy.supported_models as sm
    import comfy.ldm.audio.embedders as emb
    # project_cond_tokens: the 768-wide text and seconds tokens are projected to the tiny width (the real model
    # attends them at 768 with twice the query heads: a narrower model would get no key heads)
    cfg = sm.StableAudio(dict(audio_model="dit1.0", embed_dim=64, depth=4, num_heads=2, project_cond_tokens=True))
    cfg.set_inference_dtype(torch.float32, None)
    number = emb.NumberConditioner(768, min_val=0, max_val=512).state_dict()
    g = torch.Generator().manual_seed(seed + 2)
    weights = {f"conditioner.conditioners.{k}.{n}": torch.randn(v.shape, generator=g)
               for k in ("seconds_start", "seconds_total") for n, v in number.items()}
    m = _audio_dit_patcher(cfg, weights, seed)
    g = torch.Generator().manual_seed(seed + 1)
    return m, torch.zeros(batch, 64, length), conditioning(torch.randn(1, 8, 768, generator=g)), \
        conditioning(torch.randn(1, 8, 768, generator=g))


# --- the classes only the current line ships (ComfyUI 0.33): each builder registers itself with what the tests
# need to know of it; FAMILIES / COMPONENT_ONLY get those the running ComfyUI has (a file check: this module is
# imported before ComfyUI is) ---

_CURRENT: dict = {}


def current_line(key: str, label: str, module: str, *, site=None, block_io=None, component_only=False,
                 cfg_pairs=False, fixed_size=False):
    """Register a tiny builder of a class `module` ("comfy.ldm.x.model", or "...:Class" where older lines have the
    module without the class) holds. site: where block 0 consumes its
    modulated input (MODULATED_SITE); block_io: (args, kwargs) -> block 0's hidden input, output -> its hidden
    output (the first-block probe test); component_only: the model adds into the hidden state between blocks
    (the span methods refuse it); cfg_pairs: FasterCache refuses it (a call cannot run without the uncond half);
    fixed_size: the model takes one latent size only (TripoSplat's position anchors), so no other resolution runs."""
    def register(build):
        _CURRENT[key] = dict(build=build, label=label, module=module, site=site, block_io=block_io,
                             component_only=component_only, cfg_pairs=cfg_pairs, fixed_size=fixed_size)
        return build
    return register


def ships(key: str, comfy_dir: Path = COMFY_DIR) -> bool:
    """Whether the ComfyUI tree at comfy_dir has the class of builder `key` (the older families: every line)."""
    row = _CURRENT.get(key)
    return row is None or ships_module(row["module"], comfy_dir)


def ships_module(module: str, comfy_dir: Path = COMFY_DIR) -> bool:
    """Whether the ComfyUI tree at comfy_dir has the module ("comfy.ldm.x.model"), and where a class is named
    ("comfy.ldm.x.model:Class", for a class added to a module older lines have too), that class in it."""
    module, _, cls = module.partition(":")
    path = comfy_dir / (module.replace(".", "/") + ".py")
    return path.is_file() and (not cls or f"class {cls}(" in path.read_text())


# --- current line: Wan variants ---

_WAN_TINY = dict(image_model="wan2.1", patch_size=(1, 2, 2), text_len=16, dim=64, ffn_dim=128, freq_dim=32,
                 text_dim=32, out_dim=16, num_heads=2, num_layers=4)
_WAN_SITE = (lambda b: b, lambda a, k: k["e"])             # block 0 takes e0 as its `e`
_WAN_BLOCK0 = (lambda a, k: a[0], lambda o: o)              # block(x, ...) -> x


def _clip_vision(g, tokens=4):
    """A CLIP vision output as WAN21's extra_conds reads it (I2V cross attention: image tokens before the text)."""
    import types
    return types.SimpleNamespace(penultimate_hidden_states=torch.randn(1, tokens, 1280, generator=g))


def _scail_conds(g, frames, size, scail2):
    """SCAIL's pose video at half resolution (its rope stretches it over the frame); SCAIL-2's identity masks for it
    and replacement mode (ref_mask_flag False: the pose placed by spatial rope shifts). The reference image (time
    concatenated, so it must match the latent's size) is what with_scail_reference adds."""
    extra = dict(pose_video_latent=torch.randn(1, 16, frames, size // 2, size // 2, generator=g),
                 clip_vision_output=_clip_vision(g))
    if scail2:
        extra |= dict(driving_mask_28ch=(torch.rand(1, frames, 28, size // 2, size // 2, generator=g) > 0.5).float(),
                      ref_mask_flag=False)
    return extra


def _scail(cls_name, scail2, seed, batch, size, frames):
    import comfy.supported_models as sm
    cfg = dict(_WAN_TINY, model_type="scail2" if scail2 else "scail", in_dim=20)
    m = patcher(getattr(sm, cls_name), cfg, seed)
    g = torch.Generator().manual_seed(seed + 1)
    pos = conditioning(torch.randn(1, 8, 32, generator=g), **_scail_conds(g, frames, size, scail2))
    neg = conditioning(torch.randn(1, 8, 32, generator=g), **_scail_conds(g, frames, size, scail2))
    return m, torch.zeros(batch, 16, frames, size, size), pos, neg


@current_line("wan_scail", "Wan SCAIL", "comfy.ldm.wan.model:SCAILWanModel", site=_WAN_SITE, block_io=_WAN_BLOCK0)
def wan_scail(seed=0, batch=1, size=8, frames=2):
    """SCAIL-Preview: Wan 2.1 I2V with pose tokens appended to the video's (their own patch embedding)."""
    return _scail("WAN21_SCAIL", False, seed, batch, size, frames)


@current_line("wan_scail2", "Wan SCAIL-2", "comfy.ldm.wan.model:SCAIL2WanModel", site=_WAN_SITE, block_io=_WAN_BLOCK0)
def wan_scail2(seed=0, batch=1, size=8, frames=2):
    """SCAIL-2: SCAIL with identity masks added to the pose tokens at their patch embedding."""
    return _scail("WAN21_SCAIL2", True, seed, batch, size, frames)


def with_scail_reference(build, **kw):
    """A SCAIL model with two reference images (frames in front of the video, time concatenated) and, for SCAIL-2,
    their identity masks (one frame per reference, zeros over the video)."""
    m, lat, pos, neg = build(**kw)
    g = torch.Generator().manual_seed(7)
    refs = [torch.randn(1, 16, 1, *lat.shape[-2:], generator=g) for _ in range(2)]

    def add(cond):
        extra = {"reference_latents": refs}
        if "driving_mask_28ch" in cond[0][1]:
            mask = torch.zeros(1, len(refs) + lat.shape[2], 28, *lat.shape[-2:])
            mask[:, :len(refs)] = (torch.rand(1, len(refs), 28, *lat.shape[-2:], generator=g) > 0.5).float()
            extra |= {"ref_mask_28ch": mask}
        return [[cond[0][0], cond[0][1] | extra]]
    return m, lat, add(pos), add(neg)


@current_line("wan_animate2", "Wan-Animate-2", "comfy.ldm.wan.model_animate2",
              site=(lambda b: b.self_attn.q, lambda a, k: a[0]), block_io=(*_WAN_BLOCK0, "forward_gen"))
def wan_animate2(seed=0, batch=1, size=8, frames=3, pose=False):
    """Wan-Animate-2: Wan 2.1 I2V blocks with a pose branch beside them (frame 0 is the reference image's slot).
    pose: the pose video's latents (one frame fewer than the latent); without them (the node's pose window closed)
    the pose branch does not run."""
    import comfy.supported_models as sm
    m = patcher(sm.WAN_Animate2, dict(_WAN_TINY, model_type="animate2", in_dim=36), seed)
    g = torch.Generator().manual_seed(seed + 1)
    text, other = torch.randn(1, 8, 32, generator=g), torch.randn(1, 8, 32, generator=g)
    # as WanAnimate2ToVideo sets them: one image and one pose video for both conds, the pose branch on the positive text
    extra = dict(clip_vision_output=_clip_vision(g))
    if pose:
        extra |= dict(pose_video_latent=torch.randn(1, 16, frames - 1, size, size, generator=g), cross_attn_pose=text)
    return m, torch.zeros(batch, 16, frames, size, size), conditioning(text, **extra), conditioning(other, **extra)


@current_line("wandancer", "WanDancer", "comfy.ldm.wan.model_wandancer", component_only=True)
def wandancer(seed=0, batch=1, size=8, frames=2):
    """WanDancer: music features (35 per video frame) encoded and injected after blocks 0 and 2."""
    import comfy.supported_models as sm
    cfg = dict(_WAN_TINY, model_type="wandancer", in_dim=36, audio_inject_layers=[0, 2], music_dim=32,
               music_heads=2, music_latent_dim=32)
    m = patcher(sm.WAN22_WanDancer, cfg, seed)
    g = torch.Generator().manual_seed(seed + 1)
    music = torch.randn(1, 4 * frames, 35, generator=g)
    pos = conditioning(torch.randn(1, 8, 32, generator=g), audio_embed=music, clip_vision_output=_clip_vision(g))
    neg = conditioning(torch.randn(1, 8, 32, generator=g), audio_embed=torch.zeros_like(music),
                       clip_vision_output=_clip_vision(g))
    return m, torch.zeros(batch, 16, frames, size, size), pos, neg


# --- current line: audio and video in one model ---

@current_line("ltx2", "LTX-2 (audio and video)", "comfy.ldm.lightricks.av_model",
              site=(lambda b: b.attn1, lambda a, k: a[0]), block_io=(lambda a, k: a[0][0], lambda o: o[0]))
def ltx2(seed=0, batch=1, size=4, frames=2, audio_frames=6):
    """LTX-2's audio-video transformer: a video latent (128 channels) and an audio latent (8 channels x 16 mel
    bins) sampled together as ComfyUI's nested AV latent; the text already at the connectors' output (two
    caption_channels halves), so the tiny connectors only exist."""
    import comfy.nested_tensor
    import comfy.supported_models as sm
    cfg = dict(image_model="ltxav", in_channels=128, audio_in_channels=128, cross_attention_dim=128,
               audio_cross_attention_dim=64, attention_head_dim=64, audio_attention_head_dim=32, num_attention_heads=2,
               audio_num_attention_heads=2, caption_channels=64, num_layers=4, connector_attention_head_dim=32,
               connector_num_attention_heads=2, connector_num_layers=1)
    m = patcher(sm.LTXAV, cfg, seed)
    g = torch.Generator().manual_seed(seed + 1)
    mask = torch.ones(1, 8, dtype=torch.long)
    pos = conditioning(torch.randn(1, 8, 128, generator=g), attention_mask=mask, frame_rate=25)
    neg = conditioning(torch.randn(1, 8, 128, generator=g), attention_mask=mask, frame_rate=25)
    latent = comfy.nested_tensor.NestedTensor((torch.zeros(batch, 128, frames, size, size),
                                               torch.zeros(batch, 8, audio_frames, 16)))
    return m, latent, pos, neg

# --- current line: image models (Krea 2, ERNIE, Ideogram 4, Lens, MageFlow) ---

@current_line("krea2", "Krea 2", "comfy.ldm.krea2.model", site=(lambda b: b.attn, lambda a, k: a[0]),
              block_io=(lambda a, k: a[0], lambda o: o))
def krea2(seed=0, batch=1, size=16):
    """Krea 2's single-stream DiT (grouped-query attention: 2 query heads on 1 key head), its text fused from a
    2-layer stack of 32-wide text features; a Wan 2.1 latent (16 channels, one frame)."""
    import comfy.supported_models as sm
    cfg = dict(image_model="krea2", features=64, tdim=32, txtdim=32, heads=2, kvheads=1, multiplier=2, layers=4,
               patch=2, channels=16, theta=1000.0, txtlayers=2, txtheads=2, txtkvheads=2)
    m = patcher(sm.Krea2, cfg, seed)
    g = torch.Generator().manual_seed(seed + 1)
    pos = conditioning(torch.randn(1, 8, 64, generator=g))
    neg = conditioning(torch.randn(1, 8, 64, generator=g))
    return m, torch.zeros(batch, 16, 1, size, size), pos, neg


@current_line("ernie", "ERNIE-Image", "comfy.ldm.ernie.model", site=(lambda b: b.self_attention, lambda a, k: a[0]),
              block_io=(lambda a, k: a[0], lambda o: o))
def ernie(seed=0, batch=1, size=8):
    """ERNIE-Image: patch 1 on a Flux 2 latent (128 channels), 32-wide text features projected to the width."""
    import comfy.supported_models as sm
    cfg = dict(image_model="ernie", hidden_size=64, num_attention_heads=2, num_layers=4, ffn_hidden_size=128,
               in_channels=128, out_channels=128, patch_size=1, text_in_dim=32, rope_theta=256,
               rope_axes_dim=(8, 12, 12))
    m = patcher(sm.ErnieImage, cfg, seed)
    g = torch.Generator().manual_seed(seed + 1)
    pos = conditioning(torch.randn(1, 8, 32, generator=g))
    neg = conditioning(torch.randn(1, 8, 32, generator=g))
    return m, torch.zeros(batch, 128, size, size), pos, neg

@current_line("mage_flow", "MageFlow", "comfy.ldm.mage_flow.model",
              site=(lambda b: b.attn, lambda a, k: k["hidden_states"]),
              block_io=(lambda a, k: k["hidden_states"], lambda o: o[1]))
def mage_flow(seed=0, batch=1, size=8):
    """Mage-Flow: Qwen-Image's double-stream blocks at patch 1 on a Flux 2 latent (128 channels)."""
    import comfy.supported_models as sm
    cfg = dict(image_model="mage_flow", in_channels=128, out_channels=128, num_layers=4, attention_head_dim=32,
               num_attention_heads=2, joint_attention_dim=32, axes_dims_rope=(8, 12, 12))
    m = patcher(sm.MageFlow, cfg, seed)
    g = torch.Generator().manual_seed(seed + 1)
    pos = conditioning(torch.randn(1, 8, 32, generator=g))
    neg = conditioning(torch.randn(1, 8, 32, generator=g))
    return m, torch.zeros(batch, 128, size, size), pos, neg

@current_line("lens", "Lens", "comfy.ldm.lens.model", site=(lambda b: b.attn, lambda a, k: k["hidden_states"]),
              block_io=(lambda a, k: k["hidden_states"], lambda o: o[1]))
def lens(seed=0, batch=1, size=8):
    """Lens: a Flux 2 latent (128 channels, 2x2 patches of 32), text features of two encoder layers (16 wide each)
    side by side in the context."""
    import comfy.supported_models as sm
    cfg = dict(image_model="lens", patch_size=2, in_channels=128, out_channels=32, num_layers=4, attention_head_dim=32,
               num_attention_heads=2, enc_hidden_dim=16, axes_dims_rope=(8, 12, 12), selected_layer_index=(0, 1))
    m = patcher(sm.Lens, cfg, seed)
    g = torch.Generator().manual_seed(seed + 1)
    pos = conditioning(torch.randn(1, 8, 32, generator=g))
    neg = conditioning(torch.randn(1, 8, 32, generator=g))
    return m, torch.zeros(batch, 128, size, size), pos, neg

@current_line("ideogram4", "Ideogram 4", "comfy.ldm.ideogram4.model",
              site=(lambda b: b.attention, lambda a, k: a[0]), block_io=(lambda a, k: a[0], lambda o: o))
def ideogram4(seed=0, batch=1, size=8):
    """Ideogram 4 on a Flux 2 latent (128 channels: 2x2 patches of 32), 32-wide text features. Its model config
    fixes the real model's sizes over any given config (unet_extra_config), so a tiny one drops them."""
    import comfy.supported_models as sm

    class TinyIdeogram4(sm.Ideogram4):
        unet_extra_config = {}
    cfg = dict(image_model="ideogram4", in_channels=128, num_layers=4, num_attention_heads=2, attention_head_dim=32,
               intermediate_size=128, adaln_dim=32, llm_features_dim=32, rope_theta=10000, mrope_section=(8, 4, 4),
               norm_eps=1e-5)
    m = patcher(TinyIdeogram4, cfg, seed)
    g = torch.Generator().manual_seed(seed + 1)
    pos = conditioning(torch.randn(1, 8, 32, generator=g))
    neg = conditioning(torch.randn(1, 8, 32, generator=g))
    return m, torch.zeros(batch, 128, size, size), pos, neg

# --- current line: image models (HiDream-O1, Boogu, Anima, Z-Image pixel space, PixelDiT, JoyImage) ---

@current_line("joyimage", "JoyImage (Edit)", "comfy.ldm.joyimage.model", site=(lambda b: b.attn, lambda a, k: a[0]),
              block_io=(lambda a, k: k["hidden_states"], lambda o: o[0]))
def joyimage(seed=0, batch=1, size=16, frames=1):
    """JoyImage: Qwen-Image-like double blocks (image and text streams) on Wan 2.1 latents; its config pins the
    rope axes at [16, 56, 56], so a head is 128 wide."""
    import comfy.supported_models as sm
    cfg = dict(image_model="joyimage", patch_size=[1, 2, 2], in_channels=16, out_channels=16, hidden_size=256,
               num_attention_heads=2, text_dim=32, mlp_width_ratio=2.0, num_layers=4)
    m = patcher(sm.JoyImage, cfg, seed)
    g = torch.Generator().manual_seed(seed + 1)
    pos = conditioning(torch.randn(1, 8, 32, generator=g))
    neg = conditioning(torch.randn(1, 8, 32, generator=g))
    return m, torch.zeros(batch, 16, frames, size, size), pos, neg


def hidream_o1(seed=0, batch=1, size=64):
    """A tiny HiDream-O1, for the message that refuses it (its prefix cache: nodes/host/families.py).
    HiDream-O1: a Qwen3-VL decoder (Llama layers) on text tokens, a time token and 32x32 RGB patches (a 64x64
    image: 4 image tokens); the "text encoder" is its tokenizer, the ids ride in the cond as text_input_ids (the
    chat template around a prompt, ending with the boi and time tokens). Its vision tower runs for reference
    images only: one tiny block. The vocabulary stays the real one (its special token ids are fixed)."""
    import comfy.supported_models as sm
    from comfy.text_encoders import hidream_o1 as te
    text = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=4, num_attention_heads=2,
                num_key_value_heads=2, head_dim=32, rope_dims=[6, 5, 5])
    vision = dict(hidden_size=32, num_heads=2, intermediate_size=64, depth=1, num_position_embeddings=64)
    m = patcher(sm.HiDreamO1, dict(image_model="hidream_o1", text_config_overrides=text,
                                   vision_config_overrides=vision), seed)
    g = torch.Generator().manual_seed(seed + 1)

    def cond():
        ids = [te.IM_START_ID, te.USER_ID, te.NEWLINE_ID, *torch.randint(0, 150000, (6,), generator=g).tolist(),
               te.IM_END_ID, te.NEWLINE_ID, te.IM_START_ID, te.ASSISTANT_ID, te.NEWLINE_ID, te.BOI_TOKEN_ID,
               te.TMS_TOKEN_ID]
        ids = torch.tensor([ids])
        return conditioning(ids.unsqueeze(-1).float(), text_input_ids=ids)
    return m, torch.zeros(batch, 3, size, size), cond(), cond()


def smooth_time_embedder(first_linear, features: int, max_period: float, time_scale: float):
    """Make a random time embedder as smooth in t as a trained one. Its input is [cos, sin] of t * time_scale at
    frequencies from 1 down to 1/max_period; at time_scale 1000 (Z-Image) the fast ones turn by many radians
    between two sampling steps, and random weights mix them in as fully as the slow ones, so the time embedding,
    and with it every modulation, is white noise from step to step (block 0's residual changes by over 100%
    each step, where a trained model's changes by a few percent). Training weighs those features down; here each
    is weighed by at most one radian over t in [0, 1]."""
    import math
    half = features // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32) / half)
    damp = (1 / (freqs * time_scale)).clamp(max=1.0)
    with torch.no_grad():
        first_linear.weight.mul_(torch.cat([damp, damp]).to(first_linear.weight))


@current_line("z_image_pixel", "Z-Image pixel space", "comfy.ldm.lumina.model:NextDiTPixelSpace",
              site=(lambda b: b.attention, lambda a, k: a[0]), block_io=(lambda a, k: a[0], lambda o: o))
def z_image_pixel(seed=0, batch=1, size=16):
    """Z-Image's pixel-space NextDiT: RGB in 2x2 patches, a per-patch MLP decoder in place of the final layer; 256
    wide for its modulation, as z_image."""
    import comfy.supported_models as sm
    cfg = dict(image_model="zimage_pixel", patch_size=2, in_channels=3, dim=256, n_layers=4, n_refiner_layers=1,
               n_heads=2, n_kv_heads=2, axes_dims=[32, 48, 48], axes_lens=[64, 16, 16], cap_feat_dim=32,
               qk_norm=True, z_image_modulation=True, pad_tokens_multiple=32, time_scale=1000.0,
               decoder_hidden_size=32, decoder_num_res_blocks=2, decoder_max_freqs=4, decoder_in_channels=12)
    m = patcher(sm.ZImagePixelSpace, cfg, seed)
    dm = m.model.diffusion_model
    smooth_time_embedder(dm.t_embedder.mlp[0], dm.t_embedder.frequency_embedding_size, dm.t_embedder.max_period,
                         dm.time_scale)
    g = torch.Generator().manual_seed(seed + 1)
    return m, torch.zeros(batch, 3, size, size), conditioning(torch.randn(1, 8, 32, generator=g)), \
        conditioning(torch.randn(1, 8, 32, generator=g))


@current_line("anima", "Anima", "comfy.ldm.anima.model", site=(lambda b: b.self_attn, lambda a, k: a[0]),
              block_io=(lambda a, k: a[0], lambda o: o))
def anima(seed=0, batch=1, size=8, frames=1):
    """Anima: Cosmos Predict2's MiniTrainDIT behind an LLM adapter that turns the text encoder's 1024-wide states
    and the prompt's T5 ids into the cross attention's context (padded to 512 tokens). The adapter's size is
    fixed by the class (1024 wide, 6 blocks, a 32128-token embedding): filled once per process."""
    import comfy.supported_models as sm
    cfg = dict(image_model="anima", max_img_h=64, max_img_w=64, max_frames=16, in_channels=16, out_channels=16,
               patch_spatial=2, patch_temporal=1, concat_padding_mask=True, model_channels=64, num_blocks=4,
               num_heads=2, crossattn_emb_channels=1024, pos_emb_cls="rope3d", pos_emb_learnable=True,
               pos_emb_interpolation="crop", min_fps=1, max_fps=30, use_adaln_lora=True, adaln_lora_dim=16,
               extra_per_block_abs_pos_emb=False, rope_enable_fps_modulation=False)
    m = patcher(sm.Anima, cfg, seed, keep_weights=True)
    g = torch.Generator().manual_seed(seed + 1)

    def cond():
        # what Anima's extra_conds gives the blocks in ComfyUI's inference mode (the server's): the adapter's output
        # for the prompt, padded to 512 tokens, made once per run. Out of inference mode, as tm.sample runs, the
        # conditioning's t5xxl ids would make the model rerun the 1024-wide adapter on every call (5x the time)
        text, ids = torch.randn(1, 8, 1024, generator=g), torch.randint(0, 32128, (8,), generator=g)
        with torch.no_grad():
            return conditioning(m.model.diffusion_model.preprocess_text_embeds(text, ids[None], torch.ones(1, 8, 1)))
    return m, torch.zeros(batch, 16, frames, size, size), cond(), cond()


@current_line("boogu", "Boogu-Image", "comfy.ldm.boogu.model",
              site=(lambda b: b.img_instruct_attn, lambda a, k: a[0]),
              block_io=(lambda a, k: a[0], lambda o: o[0]))
def boogu(seed=0, batch=1, size=16):
    """Boogu-Image: OmniGen2's refiners, then double-stream blocks (image, instruction), then single-stream blocks on
    instruction + image; its model_base is OmniGen2's (the token count from an attention mask in the cond)."""
    import comfy.supported_models as sm
    cfg = dict(image_model="boogu", patch_size=2, in_channels=16, out_channels=None, hidden_size=64, num_layers=2,
               num_double_stream_layers=2, num_refiner_layers=1, num_attention_heads=2, num_kv_heads=1,
               multiple_of=16, ffn_dim_multiplier=None, norm_eps=1e-5, axes_dim_rope=[8, 12, 12],
               axes_lens=[64, 16, 16], instruction_feat_dim=32, timestep_scale=1000.0)
    m = patcher(sm.Boogu, cfg, seed)
    g = torch.Generator().manual_seed(seed + 1)
    mask = torch.ones(1, 8, dtype=torch.long)
    pos = conditioning(torch.randn(1, 8, 32, generator=g), attention_mask=mask)
    neg = conditioning(torch.randn(1, 8, 32, generator=g), attention_mask=mask)
    return m, torch.zeros(batch, 16, size, size), pos, neg


_PIXELDIT = dict(in_channels=3, num_groups=2, hidden_size=64, pixel_hidden_size=8, pixel_attn_hidden_size=32,
                 pixel_num_groups=2, patch_depth=4, pixel_depth=1, patch_size=4, txt_embed_dim=32, txt_max_length=16)


@current_line("pixeldit", "PixelDiT", "comfy.ldm.pixeldit.model", site=(lambda b: b.attn, lambda a, k: a[0]),
              block_io=(lambda a, k: a[0], lambda o: o[0]))
def pixeldit(seed=0, batch=1, size=16):
    """PixelDiT T2I: MMDiT patch blocks (image, text) on 4x4 RGB patches (16 tokens), then pixel blocks per pixel
    conditioned on the patch stack's output (the head after the cached span, as Chroma Radiance's)."""
    import comfy.supported_models as sm
    m = patcher(sm.PixelDiTT2I, dict(image_model="pixeldit_t2i", **_PIXELDIT), seed)
    g = torch.Generator().manual_seed(seed + 1)
    return m, torch.zeros(batch, 3, size, size), conditioning(torch.randn(1, 8, 32, generator=g)), \
        conditioning(torch.randn(1, 8, 32, generator=g))


@current_line("pid", "PiD (pixel diffusion decoder)", "comfy.ldm.pixeldit.pid", component_only=True)
def pid(seed=0, batch=1, size=16):
    """PiD: PixelDiT's body decoding a latent (lq_latent, 16 channels, 8x down) to pixels 4x up; its LQ features are
    gated into the patch stream before every lq_interval-th patch block."""
    import comfy.supported_models as sm
    cfg = dict(image_model="pid", lq_latent_channels=16, lq_hidden_dim=16, lq_num_res_blocks=1, lq_interval=2,
               **_PIXELDIT)
    m = patcher(sm.PiD, cfg, seed)
    g = torch.Generator().manual_seed(seed + 1)

    def cond():
        return conditioning(torch.randn(1, 8, 32, generator=g), lq_latent=torch.randn(1, 16, 2, 2, generator=g),
                            degrade_sigma=torch.tensor([0.2]))
    return m, torch.zeros(batch, 3, size, size), cond(), cond()


# --- current line: video and audio models (Kandinsky 5, CogVideoX, SeedVR2, ACE-Step 1.5, MiniMax Music 3) ---

@current_line("kandinsky5", "Kandinsky 5 (video)", "comfy.ldm.kandinsky5.model",
              site=(lambda b: b.self_attention, lambda a, k: a[0]),
              block_io=(lambda a, k: a[0], lambda o: o))
def kandinsky5(seed=0, batch=1, size=8, frames=2):
    """Kandinsky 5's video model: the latent, a zero image and a mask concatenated (33 channels a pixel, 132 a
    2x2 patch), one text block, four visual blocks; a Qwen text embedding and a pooled CLIP vector."""
    import comfy.supported_models as sm
    cfg = dict(image_model="kandinsky5", in_visual_dim=16, out_visual_dim=16, in_text_dim=32, in_text_dim2=32,
               time_dim=32, model_dim=64, ff_dim=128, visual_embed_dim=132, patch_size=(1, 2, 2), num_text_blocks=1,
               num_visual_blocks=4, axes_dims=(8, 12, 12))
    m = patcher(sm.Kandinsky5, cfg, seed)
    g = torch.Generator().manual_seed(seed + 1)
    pos = conditioning(torch.randn(1, 8, 32, generator=g), pooled_output=torch.randn(1, 32, generator=g))
    neg = conditioning(torch.randn(1, 8, 32, generator=g), pooled_output=torch.randn(1, 32, generator=g))
    return m, torch.zeros(batch, 16, frames, size, size), pos, neg


@current_line("kandinsky5_image", "Kandinsky 5 (image)", "comfy.ldm.kandinsky5.model",
              site=(lambda b: b.self_attention, lambda a, k: a[0]),
              block_io=(lambda a, k: a[0], lambda o: o))
def kandinsky5_image(seed=0, batch=1, size=16):
    """Kandinsky 5's image model: the same class on 4-D latents, no concatenated image or mask (64 = 16 x 2x2)."""
    import comfy.supported_models as sm
    cfg = dict(image_model="kandinsky5", in_visual_dim=16, out_visual_dim=16, in_text_dim=32, in_text_dim2=32,
               time_dim=32, model_dim=64, ff_dim=128, visual_embed_dim=64, patch_size=(1, 2, 2), num_text_blocks=1,
               num_visual_blocks=4, axes_dims=(8, 12, 12))
    m = patcher(sm.Kandinsky5Image, cfg, seed)
    g = torch.Generator().manual_seed(seed + 1)
    pos = conditioning(torch.randn(1, 8, 32, generator=g), pooled_output=torch.randn(1, 32, generator=g))
    neg = conditioning(torch.randn(1, 8, 32, generator=g), pooled_output=torch.randn(1, 32, generator=g))
    return m, torch.zeros(batch, 16, size, size), pos, neg


@current_line("cogvideox", "CogVideoX", "comfy.ldm.cogvideo.model",
              site=(lambda b: b.q, lambda a, k: a[0]),
              block_io=(lambda a, k: k["hidden_states"], lambda o: o[0]))
def cogvideox(seed=0, batch=1, size=8, frames=2):
    """CogVideoX 5B's layout (3D RoPE, no learned positions) at 64 wide: joint text + video attention, 4 blocks."""
    import comfy.supported_models as sm
    cfg = dict(image_model="cogvideox", num_attention_heads=2, attention_head_dim=32, in_channels=16, out_channels=16,
               time_embed_dim=32, text_embed_dim=32, num_layers=4, sample_width=16, sample_height=16,
               sample_frames=9, patch_size=2, max_text_seq_length=8, use_rotary_positional_embeddings=True)
    m = patcher(sm.CogVideoX_T2V, cfg, seed)
    g = torch.Generator().manual_seed(seed + 1)
    pos = conditioning(torch.randn(1, 8, 32, generator=g))
    neg = conditioning(torch.randn(1, 8, 32, generator=g))
    return m, torch.zeros(batch, 16, frames, size, size), pos, neg


# Stable Audio 3 runs on the Stable Audio Open class (comfy.ldm.audio.dit, on every line): its text encoder's module
# (comfy.text_encoders.sa3) says whether the running ComfyUI has the StableAudio3 model
@current_line("stable_audio3", "Stable Audio 3", "comfy.text_encoders.sa3",
              site=(lambda b: b.self_attn, lambda a, k: a[0]),
              block_io=(lambda a, k: a[0], lambda o: o))
def stable_audio3(seed=0, batch=1, length=16):
    """Stable Audio 3's AudioDiffusionTransformer as ComfyUI detects it: one shared adaLN projection of the time +
    seconds embedding (a per-block bias on it), RMS norms and q/k norms, and a local conditioning (the inpaint mask
    and masked latent, zeros for text to audio) added inside every block; 256-channel latents."""
    import comfy.supported_models as sm
    import comfy.ldm.audio.embedders as emb
    cfg = dict(audio_model="dit1.0", global_cond_shared_embed=True, global_cond_type="adaLN",
               timestep_features_type="expo", io_channels=256, embed_dim=64, depth=4, num_heads=2,
               cond_token_dim=768, project_cond_tokens=True, global_cond_dim=768, input_concat_dim=0,
               local_add_cond_dim=257, attn_kwargs={"qk_norm": "rms", "differential": False}, norm_type="rms_norm")
    config = sm.StableAudio3(cfg)
    config.set_inference_dtype(torch.float32, None)
    number = emb.NumberConditioner(768, min_val=0, max_val=384, fourier_features_type="expo").state_dict()
    g = torch.Generator().manual_seed(seed + 2)
    weights = {f"conditioner.conditioners.seconds_total.{n}": torch.randn(v.shape, generator=g)
               for n, v in number.items()}
    m = _audio_dit_patcher(config, weights, seed, unit_gammas=True)
    g = torch.Generator().manual_seed(seed + 1)
    return m, torch.zeros(batch, 256, length), conditioning(torch.randn(1, 8, 768, generator=g)), \
        conditioning(torch.randn(1, 8, 768, generator=g))


@current_line("ace_step15", "ACE-Step 1.5", "comfy.ldm.ace.ace_step15",
              site=(lambda b: b.self_attn, lambda a, k: a[0]),
              block_io=(lambda a, k: k["hidden_states"], lambda o: o))
def ace_step15(seed=0, batch=1, length=20):
    """ACE-Step 1.5 on (batch, 64, length) latents: its condition encoder (lyrics, timbre of the silence latent,
    audio-code hints pooled over 5 frames, so a length in fives), then 4 DiT layers, sliding window and full in
    turn. 64 latent channels and 192 DiT input channels are fixed by the silence latent it pads with."""
    import comfy.supported_models as sm
    cfg = dict(audio_model="ace1.5", in_channels=192, hidden_size=64, text_hidden_dim=32, timbre_hidden_dim=64,
               audio_acoustic_hidden_dim=64, num_dit_layers=4, num_lyric_layers=1, num_timbre_layers=1,
               num_tokenizer_layers=1, num_heads=2, num_kv_heads=1, head_dim=32, intermediate_size=128, patch_size=2,
               sliding_window=4, fsq_dim=64, encoder_hidden_size=64, encoder_intermediate_size=128,
               encoder_num_heads=2)
    m = patcher(sm.ACEStep15, cfg, seed)
    g = torch.Generator().manual_seed(seed + 1)

    def cond():
        return conditioning(torch.randn(1, 8, 32, generator=g), conditioning_lyrics=torch.randn(1, 6, 32, generator=g))
    return m, torch.zeros(batch, 64, length), cond(), cond()


# --- current line: 3D models ---

@current_line("triposplat", "TripoSplat", "comfy.ldm.triposplat.model",
              site=(lambda b: b.attn, lambda a, k: a[0]), block_io=(lambda a, k: a[0], lambda o: o), fixed_size=True)
def triposplat(seed=0, batch=1, tokens=64):
    """TripoSplat's LatentSeqMMFlowModel: a (tokens, 16) shape latent and a (1, 5) camera token denoised together.
    ComfyUI's sampler packs that nested latent into one (batch, 1, n) tensor and hands the model the two shapes as
    the `latent_shapes` cond; here the latent is that packed tensor and the conds carry the shapes (a cond's own
    value is the one extra_conds reads), so the sampler runs what a NestedTensor latent would run. The packed latent
    holds ones, not zeros: KSampler's empty-latent fix leaves a nested latent be but would widen an all-zero packed
    one to the format's 16 channels; at denoise 1 the flow sampler scales the latent by 1 - sigma = 0, so the run is
    the zero latent's. The token count is the model's (its fixed position anchors)."""
    import comfy.supported_models as sm
    cfg = dict(image_model="triposplat", q_token_length=tokens, in_channels=16, model_channels=64, cond_channels=32,
               out_channels=16, num_blocks=4, num_refiner_blocks=1, num_heads=2, num_head_channels=32,
               cam_channels=5, cond2_channels=16, mlp_ratio=2)
    m = patcher(sm.TripoSplat, cfg, seed)
    dm = m.model.diffusion_model
    with torch.no_grad():   # what the checkpoint brings and fill_weights would scramble: RoPE frequencies, RMS gains
        for name, p in dm.named_parameters():
            if name.rsplit(".", 1)[-1] in ("freqs_0", "freqs_1", "freqs_2"):
                p.copy_(torch.linspace(1.0, 16.0, steps=p.numel()))
            elif name.endswith(".gamma"):
                p.fill_(1.0)
    shapes = [(1, tokens, 16), (1, 1, 5)]
    g = torch.Generator().manual_seed(seed + 1)

    def cond():   # DINOv3 tokens (cls + registers + patches) and the image's Flux 2 latent, 4 tokens of 16
        return conditioning(torch.randn(1, 8, 32, generator=g), latent_shapes=shapes,
                            reference_latents=[torch.randn(1, 16, 2, 2, generator=g)])
    return m, torch.ones(batch, 1, tokens * 16 + 5), cond(), cond()


def trellis2(seed=0):
    """A tiny TRELLIS.2 (a real Trellis2: its structure, shape 512 / 1024 stages), for the message that refuses it."""
    import comfy.supported_models as sm
    cfg = dict(image_model="trellis2", resolution=32, model_channels=64, cond_channels=32, num_blocks=2, num_heads=2,
               mlp_ratio=2.0)
    return patcher(sm.Trellis2, cfg, seed)

# --- end of the current line's builders ---


# what each builder stands for, as the coverage table names it
LABELS = {"flux": "Flux.1 (dev, schnell, Kontext)", "flux2": "Flux 2", "chroma": "Chroma",
          "chroma_radiance": "Chroma Radiance", "hunyuan_video": "HunyuanVideo 1.0",
          "hunyuan_video15": "HunyuanVideo 1.5 (and HunyuanImage 2.1, same class)", "wan": "Wan 2.1 / 2.2",
          "wan_vace": "Wan VACE", "qwen_image": "Qwen-Image (and Edit, same class)", "ltxv": "LTX-Video",
          "lumina2": "Lumina 2 / Z-Image", "sd3": "SD3 / SD3.5", "omnigen2": "OmniGen2",
          "cosmos_predict2": "Cosmos Predict2", "auraflow": "AuraFlow", "mochi": "Mochi", "hidream": "HiDream-I1",
          "hunyuan3d": "Hunyuan3D 2.0", "pixart": "PixArt Alpha / Sigma", "hunyuan_dit": "HunyuanDiT 1.x",
          "stable_audio": "Stable Audio Open", "hunyuan3d21": "Hunyuan3D 2.1", "ace_step": "ACE-Step",
          "cosmos1": "Cosmos 1", "wan_s2v": "Wan 2.2 S2V"}
FAMILIES = {"flux": flux, "chroma": chroma, "wan": wan, "qwen_image": qwen_image,
            "hunyuan_video": hunyuan_video, "ltxv": ltxv, "flux2": flux2, "chroma_radiance": chroma_radiance,
            "hunyuan_video15": hunyuan_video15, "lumina2": lumina2, "sd3": sd3, "omnigen2": omnigen2,
            "cosmos_predict2": cosmos_predict2, "auraflow": auraflow, "mochi": mochi, "hidream": hidream,
            "hunyuan3d": hunyuan3d, "pixart": pixart, "hunyuan_dit": hunyuan_dit, "stable_audio": stable_audio,
            "hunyuan3d21": hunyuan3d21, "ace_step": ace_step}
# families that add into the hidden state between blocks on every call: the methods that cache inside blocks only
COMPONENT_ONLY = {"wan_vace": wan_vace, "cosmos1": cosmos1, "wan_s2v": wan_s2v}
CFG_PAIRS = {"hunyuan3d21"}   # FasterCache refuses them: a call without the uncond half cannot run
FIXED_SIZE: set = set()       # the model itself runs one latent size only: no other resolution to cache


class BlockCounter:
    """Counts the transformer blocks that really computed: a forward hook on each block's first Linear outside
    its modulation (TeaCache's probe runs the modulation of block 0; a hook on the block module itself would
    also fire where an object patch on its forward passed the block by)."""
    def __init__(self, model_patcher, attrs, first_only=False, marker=None):
        dm = model_patcher.model.diffusion_model
        blocks = [blk for a in attrs for blk in _modules(resolve(dm, a))]
        self.count = 0
        # marker: a submodule each block calls itself, for families whose attention modules may be reused whole
        first_linear = [resolve(blk, marker) if marker else self._marker(blk) for blk in blocks]
        self._handles = [lin.register_forward_hook(self._hook) for lin in first_linear[:1 if first_only else None]]

    @staticmethod
    def _marker(block):
        """An attention projection if there is one (they run even where PAB or SmoothCache reuse the kernel or
        the MLP), else the first Linear outside the modulation."""
        # (a quantized checkpoint's linears on the current line are modules with in_features, not nn.Linear)
        linears = [(n.lower(), m) for n, m in block.named_modules()
                   if isinstance(m, torch.nn.Linear) or hasattr(m, "in_features") and hasattr(m, "weight")]
        return next((m for n, m in linears if "attn" in n or "attention" in n),
                    next(m for n, m in linears if "mod" not in n))

    def _hook(self, *_):
        self.count += 1

    def close(self):
        for h in self._handles:
            h.remove()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def with_references(build, *, both: bool = True, **extra):
    """A family's tiny model with one reference latent in its conds, its tokens at timestep 0: Flux 2 / Klein and
    Qwen-Image-Edit 2511 ("index_timestep_zero"), Z-Image omni (any reference latent). both: the negative cond
    carries it too (then cond and uncond batch into one call)."""
    m, lat, pos, neg = build()
    ref = torch.randn((1, *lat.shape[1:]), generator=torch.Generator().manual_seed(5))
    add = {"reference_latents": [ref], **extra}
    return m, lat, [[pos[0][0], pos[0][1] | add]], ([[neg[0][0], neg[0][1] | add]] if both else neg)


# Where each family's block 0 consumes its timestep-modulated image input (what TeaCache measures).
MODULATED_SITE = {
    "flux": (lambda b: b.img_attn.qkv, lambda a, k: a[0]),
    "chroma": (lambda b: b.img_attn.qkv, lambda a, k: a[0]),
    "hunyuan_video": (lambda b: b.img_attn.qkv, lambda a, k: a[0]),
    "qwen_image": (lambda b: b.attn, lambda a, k: k["hidden_states"]),
    "ltxv": (lambda b: b.attn1, lambda a, k: a[0]),
    "wan": (lambda b: b, lambda a, k: k["e"]),
}
MODULATED_SITE |= {"flux2": MODULATED_SITE["flux"], "chroma_radiance": MODULATED_SITE["chroma"],
                    "hunyuan_video15": MODULATED_SITE["hunyuan_video"],
                    "lumina2": (lambda b: b.attention, lambda a, k: a[0]),
                    "sd3": (lambda b: b.x_block.attn.qkv, lambda a, k: a[0]),
                    "omnigen2": (lambda b: b.attn, lambda a, k: a[0]),
                    "cosmos_predict2": (lambda b: b.self_attn, lambda a, k: a[0]),
                    "auraflow": (lambda b: b.attn.w2q, lambda a, k: a[0]),
                    "mochi": (lambda b: b.attn.qkv_x, lambda a, k: a[0]),
                    "hidream": (lambda b: b.block.attn1, lambda a, k: a[0]),
                    "hunyuan3d": MODULATED_SITE["flux"], "pixart": (lambda b: b.attn, lambda a, k: a[0]),
                    "hunyuan_dit": (lambda b: b.attn1, lambda a, k: a[0]),
                    "stable_audio": (lambda b: b.self_attn, lambda a, k: a[0]),
                    "hunyuan3d21": (lambda b: b.attn1, lambda a, k: a[0]),
                    "ace_step": (lambda b: b.attn, lambda a, k: k["hidden_states"])}

# block 0's (hidden input, hidden output) for the current line's families (the older ones: test_first_block_cache)
BLOCK0_IO: dict = {}
UNAVAILABLE: set = set()   # registered here, absent from the running ComfyUI: covered on the current line only
CURRENT_LINE = set(_CURRENT)   # the builders of classes only the current line ships
for _key, _row in _CURRENT.items():
    LABELS[_key] = _row["label"]
    if not ships(_key):
        UNAVAILABLE.add(_key)
        continue
    (COMPONENT_ONLY if _row["component_only"] else FAMILIES)[_key] = _row["build"]
    if _row["site"]:
        MODULATED_SITE[_key] = _row["site"]
    if _row["block_io"]:
        BLOCK0_IO[_key] = _row["block_io"]
    if _row["cfg_pairs"]:
        CFG_PAIRS.add(_key)
    if _row["fixed_size"]:
        FIXED_SIZE.add(_key)
