"""Tiny, seeded instances of the real ComfyUI model classes, one per supported DiT family.

ComfyUI's ops skip weight init, so every parameter is filled from a seeded generator.
Each builder returns (ModelPatcher, latent, positive, negative) ready for comfy.sample.sample.
"""
from __future__ import annotations

import torch


def _fill(model, seed: int, scale: float = 0.05):
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


def _patcher(family_cls, unet_config, seed):
    import comfy.model_management
    import comfy.model_patcher
    cfg = family_cls(unet_config)
    cfg.set_inference_dtype(torch.float32, None)
    model = cfg.get_model({})
    _fill(model.diffusion_model, seed)
    model.eval()
    return comfy.model_patcher.ModelPatcher(model, load_device=comfy.model_management.get_torch_device(),
                                            offload_device=comfy.model_management.unet_offload_device())


def _cond(ctx, **extra):
    return [[ctx, dict(extra)]]


def flux(seed=0, batch=1, size=16):
    import comfy.supported_models as sm
    cfg = dict(image_model="flux", in_channels=16, out_channels=16, vec_in_dim=32, context_in_dim=32,
               hidden_size=64, mlp_ratio=2.0, num_heads=2, depth=2, depth_single_blocks=2,
               axes_dim=[8, 12, 12], theta=10000, patch_size=2, qkv_bias=True, guidance_embed=True)
    m = _patcher(sm.Flux, cfg, seed)
    g = torch.Generator().manual_seed(seed + 1)
    pos = _cond(torch.randn(1, 8, 32, generator=g), pooled_output=torch.randn(1, 32, generator=g), guidance=3.5)
    neg = _cond(torch.randn(1, 8, 32, generator=g), pooled_output=torch.randn(1, 32, generator=g), guidance=3.5)
    return m, torch.zeros(batch, 16, size, size), pos, neg


def chroma(seed=0, batch=1, size=16):
    import comfy.supported_models as sm
    cfg = dict(image_model="chroma", in_channels=64, out_channels=64, context_in_dim=32, hidden_size=64,
               mlp_ratio=2.0, num_heads=2, depth=2, depth_single_blocks=2, axes_dim=[8, 12, 12], theta=10000,
               patch_size=2, qkv_bias=True, in_dim=64, out_dim=64, hidden_dim=64, n_layers=2)
    m = _patcher(sm.Chroma, cfg, seed)
    g = torch.Generator().manual_seed(seed + 1)
    # Chroma has no pooled text vector, but its model_base still reads the key.
    pos = _cond(torch.randn(1, 8, 32, generator=g), pooled_output=torch.zeros(1, 32))
    neg = _cond(torch.randn(1, 8, 32, generator=g), pooled_output=torch.zeros(1, 32))
    return m, torch.zeros(batch, 16, size, size), pos, neg


def wan(seed=0, batch=1, size=16, frames=1):
    import comfy.supported_models as sm
    cfg = dict(image_model="wan2.1", model_type="t2v", patch_size=(1, 2, 2), text_len=16, in_dim=16, dim=64,
               ffn_dim=128, freq_dim=32, text_dim=32, out_dim=16, num_heads=2, num_layers=4)
    m = _patcher(sm.WAN21_T2V, cfg, seed)
    g = torch.Generator().manual_seed(seed + 1)
    pos = _cond(torch.randn(1, 8, 32, generator=g))
    neg = _cond(torch.randn(1, 8, 32, generator=g))
    return m, torch.zeros(batch, 16, frames, size, size), pos, neg


def qwen_image(seed=0, batch=1, size=16):
    import comfy.supported_models as sm
    cfg = dict(image_model="qwen_image", patch_size=2, in_channels=64, out_channels=16, num_layers=4,
               attention_head_dim=32, num_attention_heads=2, joint_attention_dim=32, axes_dims_rope=(8, 12, 12))
    m = _patcher(sm.QwenImage, cfg, seed)
    g = torch.Generator().manual_seed(seed + 1)
    pos = _cond(torch.randn(1, 8, 32, generator=g))
    neg = _cond(torch.randn(1, 8, 32, generator=g))
    return m, torch.zeros(batch, 16, 1, size, size), pos, neg


def hunyuan_video(seed=0, batch=1, size=16, frames=1):
    import comfy.supported_models as sm
    cfg = dict(image_model="hunyuan_video", in_channels=16, out_channels=16, vec_in_dim=32, context_in_dim=32,
               hidden_size=64, mlp_ratio=2.0, num_heads=2, depth=2, depth_single_blocks=2, axes_dim=[8, 12, 12],
               theta=256, patch_size=[1, 2, 2], qkv_bias=True, guidance_embed=True, byt5=False, meanflow=False,
               use_cond_type_embedding=False, vision_in_dim=None)
    m = _patcher(sm.HunyuanVideo, cfg, seed)
    g = torch.Generator().manual_seed(seed + 1)
    pos = _cond(torch.randn(1, 8, 32, generator=g), pooled_output=torch.randn(1, 32, generator=g), guidance=6.0)
    neg = _cond(torch.randn(1, 8, 32, generator=g), pooled_output=torch.randn(1, 32, generator=g), guidance=6.0)
    return m, torch.zeros(batch, 16, frames, size, size), pos, neg


def ltxv(seed=0, batch=1, size=4, frames=2):
    import comfy.supported_models as sm
    cfg = dict(image_model="ltxv", in_channels=128, cross_attention_dim=128, attention_head_dim=64,
               num_attention_heads=2, caption_channels=64, num_layers=4)
    m = _patcher(sm.LTXV, cfg, seed)
    g = torch.Generator().manual_seed(seed + 1)
    mask = torch.ones(1, 8, dtype=torch.long)
    pos = _cond(torch.randn(1, 8, 64, generator=g), attention_mask=mask, frame_rate=25)
    neg = _cond(torch.randn(1, 8, 64, generator=g), attention_mask=mask, frame_rate=25)
    return m, torch.zeros(batch, 128, frames, size, size), pos, neg


FAMILIES = {"flux": flux, "chroma": chroma, "wan": wan, "qwen_image": qwen_image,
            "hunyuan_video": hunyuan_video, "ltxv": ltxv}


def sample(model, latent, pos, neg, *, steps=8, cfg=1.0, seed=0, sampler="euler", scheduler="simple", denoise=1.0,
           callback=None):
    """One run through ComfyUI's own sampling path; returns the latent (fp32, CPU)."""
    import comfy.sample
    noise = comfy.sample.prepare_noise(latent, seed)
    out = comfy.sample.sample(model, noise, steps, cfg, sampler, scheduler, pos, neg, latent,
                              denoise=denoise, seed=seed, disable_pbar=True, callback=callback)
    return out.float().cpu()


def lumina2(seed=0):
    """An unsupported DiT (NextDiT ignores patches_replace in 0.3.75), for the error path."""
    import comfy.supported_models as sm
    cfg = dict(image_model="lumina2", patch_size=2, in_channels=16, dim=64, n_layers=2, n_refiner_layers=1,
               n_heads=2, n_kv_heads=2, axes_dims=[8, 12, 12], axes_lens=[16, 16, 16], cap_feat_dim=32,
               qk_norm=True)
    return _patcher(sm.Lumina2, cfg, seed)


class BlockCounter:
    """Counts real forwards of every transformer block module of a model (forward hooks)."""
    def __init__(self, model_patcher, attrs, first_only=False):
        dm = model_patcher.model.diffusion_model
        blocks = [blk for a in attrs for blk in getattr(dm, a)]
        self.count = 0
        self._handles = [blk.register_forward_hook(self._hook) for blk in blocks[:1 if first_only else None]]

    def _hook(self, *_):
        self.count += 1

    def close(self):
        for h in self._handles:
            h.remove()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
