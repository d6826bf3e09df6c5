"""Write small, seeded checkpoints that ComfyUI's own loaders detect (UNETLoader, CLIPLoader).

No model hub is reachable here, so the demo and the server tests generate their models: real
ComfyUI architectures at a size that runs on a CPU, with random (seeded) weights. Files are
written with safetensors and reused when already there.
Run inside the venv after `comfy_runtime.load()` (the functions import comfy lazily).
"""
from __future__ import annotations

from pathlib import Path

import torch

from harness.comfy_runtime import with_fields_since


def _randomize(state_dict: dict, seed: int, std: float = 0.02) -> dict:
    g = torch.Generator().manual_seed(seed)
    out = {}
    for k, v in state_dict.items():
        if not v.dtype.is_floating_point:
            out[k] = v.clone()
        elif v.ndim >= 2:
            out[k] = torch.randn(v.shape, generator=g) * std
        elif k.endswith("weight") or k.endswith("scale"):
            out[k] = torch.ones(v.shape)
        else:
            out[k] = torch.randn(v.shape, generator=g) * std
    return out


def _save(sd: dict, path: Path, dtype) -> Path:
    import safetensors.torch
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".partial")
    safetensors.torch.save_file({k: (v.to(dtype) if v.dtype.is_floating_point else v).contiguous()
                                 for k, v in sd.items()}, str(tmp))
    tmp.replace(path)
    return path


def _diffusion_state_dict(family_cls, unet_config: dict, seed: int) -> dict:
    cfg = family_cls(unet_config)
    cfg.set_inference_dtype(torch.float32, None)
    model = cfg.get_model({})
    return _randomize(model.diffusion_model.state_dict(), seed)


def wan(path: Path, dim: int = 128, layers: int = 2, seed: int = 0, dtype=torch.float32) -> Path:
    """Wan 2.1 T2V as UNETLoader detects it: heads = dim/128, text_dim 4096, freq_dim 256."""
    if path.exists():
        return path
    import comfy.supported_models as sm
    cfg = dict(image_model="wan2.1", model_type="t2v", patch_size=(1, 2, 2), in_dim=16, dim=dim,
               ffn_dim=dim * 4, freq_dim=256, text_dim=4096, out_dim=16, num_heads=dim // 128,
               num_layers=layers, window_size=(-1, -1), qk_norm=True, cross_attn_norm=True, eps=1e-6)
    return _save(_diffusion_state_dict(sm.WAN21_T2V, cfg, seed), path, dtype)


def hunyuan_video(path: Path, hidden: int = 256, depth: int = 2, single: int = 4, seed: int = 0,
                  dtype=torch.float32) -> Path:
    """HunyuanVideo as UNETLoader detects it, with 768-wide text input (CLIP-L's width)."""
    if path.exists():
        return path
    import comfy.supported_models as sm
    cfg = dict(image_model="hunyuan_video", in_channels=16, out_channels=16, vec_in_dim=768,
               context_in_dim=768, hidden_size=hidden, mlp_ratio=4.0, num_heads=hidden // 128, depth=depth,
               depth_single_blocks=single, axes_dim=[16, 56, 56], theta=256, patch_size=[1, 2, 2],
               qkv_bias=True, guidance_embed=True, byt5=False, meanflow=False, use_cond_type_embedding=False,
               vision_in_dim=None)
    cfg = with_fields_since("comfy.ldm.hunyuan_video.model:HunyuanVideoParams", cfg, meanflow_sum=False)
    return _save(_diffusion_state_dict(sm.HunyuanVideo, cfg, seed), path, dtype)


def clip_l(path: Path, seed: int = 0) -> Path:
    """A CLIP-L text encoder (ComfyUI's own class and tokenizer) with random weights, fp16 (~250 MB)."""
    if path.exists():
        return path
    import comfy.sd1_clip
    model = comfy.sd1_clip.SD1ClipModel(device="cpu", dtype=torch.float16)
    sd = {k.replace("clip_l.transformer.", "").replace("clip_l.", ""): v for k, v in model.state_dict().items()}
    return _save(_randomize(sd, seed), path, torch.float16)
