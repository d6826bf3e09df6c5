"""How each family's block 0 consumes its timestep-modulated input, computed from the block's call without touching
it: TeaCache's and SeaCache's probe (the family table, families.py, names one per row). Each reads the block's own
modules and the forward's arguments as the block would, so the probe is what its first attention gets."""
from __future__ import annotations

import torch

import comfy.model_management
import comfy.ops


# --- block 0's timestep-modulated input (TeaCache's indicator), computed without touching args ---

def reference_start(args, tokens: int) -> int:
    """Where the reference images' tokens start among an image stream's `tokens`: the forward appends them after
    the noisy latent's and lists their counts in transformer_options["reference_image_num_tokens"]."""
    refs = (args.get("transformer_options") or {}).get("reference_image_num_tokens") or ()
    return tokens - sum(refs)


def flux_modulated(block, args):
    from comfy.ldm.flux.layers import apply_mod
    vec, x = args["vec"], block.img_norm1(args["img"])
    mod1 = block.img_mod(vec)[0] if block.modulation else vec[0][0]   # Chroma, Flux 2 pass precomputed mods
    dims = args.get("modulation_dims_img")                            # HunyuanVideo I2V's token replace
    if dims is None and mod1.scale.shape[1] == 2:
        # two modulations a sample, not one (Flux 2's "index_timestep_zero" references, ComfyUI after 0.3.75): the
        # forward hands the block their split outside args; the reference tokens take the second, at timestep 0
        start = reference_start(args, x.shape[1])
        dims = [(0, start, 0), (start, x.shape[1], 1)]
    return apply_mod(x, 1 + mod1.scale, mod1.shift, dims)


def wan_modulated(_block, args):
    return args["vec"]   # e0, the time projection: TeaCache's use_ret_steps indicator for Wan


def wan_modulated_image(block, args):
    from comfy.ldm.wan.model import repeat_e
    x, e = args["img"], args["vec"]
    mod = block.modulation.to(dtype=x.dtype, device=x.device)
    e = (mod + e).chunk(6, dim=1) if e.ndim < 4 else (mod.unsqueeze(0) + e).unbind(2)
    return torch.addcmul(repeat_e(e[0], x), block.norm1(x.contiguous()), 1 + repeat_e(e[1], x))


def qwen_modulated(block, args):
    x, vec = block.img_norm1(args["img"]), args["vec"]
    mod1 = block.img_mod(vec).chunk(2, dim=-1)[0]
    if vec.shape[0] == 2 * x.shape[0]:
        # Edit 2511's "index_timestep_zero" references (ComfyUI after 0.3.75): the time embedding holds a second
        # batch at timestep 0 for the reference tokens, whose start the forward hands the block outside args
        return block._modulate(x, mod1, reference_start(args, x.shape[1]))[0]
    return block._modulate(x, mod1)[0]


def ltxv_modulated(block, args):
    from comfy.ldm.common_dit import rms_norm
    x, t = args["img"], args["vec"]
    table = block.scale_shift_table[None, None].to(device=x.device, dtype=x.dtype)
    shift, scale = (table + t.reshape(x.shape[0], t.shape[1], table.shape[2], -1)).unbind(dim=2)[:2]
    normed = rms_norm(x)
    return torch.addcmul(normed, normed, scale) + shift


def lumina_modulated(block, args):
    from comfy.ldm.lumina.model import modulate
    normed = block.attention_norm1(args["img"])
    if not block.modulation:
        return normed
    scale = block.adaLN_modulation(args["adaln_input"]).chunk(4, dim=1)[0]
    zero = args.get("timestep_zero_index")    # Z-Image omni's references (ComfyUI after 0.3.75): the block's own call
    return modulate(normed, scale) if zero is None else modulate(normed, scale, timestep_zero_index=zero)


def sd3_modulated(block, args):
    from comfy.ldm.modules.diffusionmodules.mmdit import modulate
    xb = block.x_block
    chunks = 9 if xb.x_block_self_attn else (4 if xb.scale_mod_only else 6)   # as DismantledBlock splits it
    mods = xb.adaLN_modulation(args["vec"]).chunk(chunks, dim=1)
    shift, scale = (None, mods[0]) if xb.scale_mod_only else (mods[0], mods[1])
    return modulate(xb.norm1(args["img"]), shift, scale)


def omnigen2_modulated(block, args):
    return block.norm1(args["img"], args["temb"])[0] if block.modulation else block.norm1(args["img"])


def cosmos2_modulated(block, args):
    x = args["img"]
    if args.get("extra_per_block_pos_emb") is not None:
        x = x + args["extra_per_block_pos_emb"]
    m = block.adaln_modulation_self_attn(args["emb_B_T_D"])
    if block.use_adaln_lora:
        m = m + args["adaln_lora_B_T_3D"]
    shift, scale, _ = (t[:, :, None, None] for t in m.chunk(3, dim=-1))
    return (block.layer_norm_self_attn(x) * (1 + scale) + shift).flatten(1, 3)   # as its self attention gets it


def hidream_modulated(block, args):
    inner = block.block
    shift, scale = inner.adaLN_modulation(args["adaln_input"])[:, None].chunk(12, dim=-1)[:2]
    return inner.norm1_i(args["img"]) * (1 + scale) + shift


def aura_modulated(block, args):
    shift, scale = block.modX(args["vec"]).chunk(6, dim=1)[:2]
    return block.normX1(args["img"]) * (1 + scale[:, None]) + shift[:, None]


def pixart_modulated(block, args):
    from comfy.ldm.pixart.blocks import t2i_modulate
    x = args["img"]
    table = block.scale_shift_table[None].to(dtype=x.dtype, device=x.device)
    shift, scale = (table + args["t"].reshape(x.shape[0], 6, -1)).chunk(6, dim=1)[:2]
    return t2i_modulate(block.norm1(x), shift, scale)


def hydit_modulated(block, args):
    return block.norm1(args["img"]) + block.default_modulation(args["vec"]).unsqueeze(dim=1)


def hunyuan3d21_modulated(block, args):
    x = args["img"]
    if block.timested_modulate:
        x = x + block.default_modulation(args["t"]).unsqueeze(dim=1)
    return block.norm1(x)


def ace_modulated(block, args):
    x = args["img"]
    normed = block.norm1(x)
    if not block.use_adaln_single:
        return normed
    table = block.scale_shift_table[None].to(dtype=args["temb"].dtype, device=args["temb"].device)
    shift, scale = (table + args["temb"].reshape(x.shape[0], 6, -1)).chunk(6, dim=1)[:2]
    return normed * (1 + scale) + shift


def stable_audio_modulated(block, args):
    normed, vec = block.pre_norm(args["img"]), args.get("global_cond")
    # "prepend" models take the time as a token, no modulation (ComfyUI after 0.3.75 says so as has_global_cond)
    if vec is None or not getattr(block, "has_global_cond", getattr(block, "global_cond_dim", None)):
        return normed
    if getattr(block, "global_cond_shared_embed", False):   # Stable Audio 3: a per-block bias on a shared projection
        ssg = comfy.ops.cast_to_input(block.to_scale_shift_gate, vec) + vec
    else:
        ssg = block.to_scale_shift_gate(vec)
    scale, shift = ssg.unsqueeze(1).chunk(6, dim=-1)[:2]
    return normed * (1 + scale) + shift


def mochi_modulated(block, args):
    import torch.nn.functional as F
    from comfy.ldm.common_dit import rms_norm
    scale = block.mod_x(F.silu(args["vec"])).chunk(4, dim=1)[0]
    return rms_norm(args["img"], eps=1e-6) * (1 + scale[:, None])


# --- current line: Wan variants ---

# --- current line: audio and video in one model ---

def ltxav_modulated(block, args):
    """LTX-2's block 0 input as its self attentions get it, per modality (the audio absent when there is none)."""
    from comfy.ldm.common_dit import rms_norm

    def modulated(x, table, timestep):
        shift, scale = block.get_ada_values(table, x.shape[0], timestep, slice(0, 2))
        return rms_norm(x) * (1 + scale) + shift
    out = {"img": modulated(args["img"], block.scale_shift_table, args["v_timestep"])}
    if args["audio"].numel():
        out["audio"] = modulated(args["audio"], block.audio_scale_shift_table, args["a_timestep"])
    return out

# --- current line: image models (Krea 2, ERNIE, Ideogram 4, Lens, MageFlow) ---

def krea2_modulated(block, args):
    x, zero = args["x"], args.get("timestep_zero_index")
    scale, shift = block.mod(args["vec"])[:2]
    normed = block.prenorm(x)
    if zero is None:
        return (1 + scale) * normed + shift
    # "index_timestep_zero" references: the tokens from `zero` on take the second half of vec (timestep 0)
    bs = x.shape[0]
    return torch.cat([normed[:, :zero] * (1 + scale[:bs]) + shift[:bs],
                      normed[:, zero:] * (1 + scale[bs:]) + shift[bs:]], dim=1)


def ernie_modulated(block, args):
    shift, scale = args["temb"][:2]   # the forward's shared modulation, handed to every block
    return block.adaLN_sa_ln(args["x"]) * (1 + scale) + shift

def lens_modulated(block, args):
    mod1 = block.img_mod(args["vec"]).chunk(2, dim=-1)[0]
    return block._modulate(block.img_norm1(args["img"]), mod1)[0]

def ideogram4_modulated(block, args):
    scale = block.adaln_modulation(args["adaln_input"]).chunk(4, dim=-1)[0]
    return block.attention_norm1(args["x"]) * (1.0 + scale)

# --- current line: image models (HiDream-O1, Boogu, Anima, Z-Image pixel space, PixelDiT, JoyImage) ---

def joyimage_modulated(block, args):
    x, vec = args["img"], args["vec"]
    shift, scale = block.img_mod(vec)[:2]
    return block.img_norm1(x) * (1 + scale.unsqueeze(1)) + shift.unsqueeze(1)


def boogu_modulated(block, args):
    return block.img_norm1(args["img"], args["temb"])[0]


def pixeldit_modulated(block, args):
    from comfy.ldm.pixeldit.modules import apply_adaln_
    shift, scale = block.adaLN_modulation_img(args["c"]).chunk(6, dim=-1)[:2]
    return apply_adaln_(block.norm_x1(args["img"]), shift, scale)


# --- current line: video and audio models (Kandinsky 5, CogVideoX, SeedVR2, ACE-Step 1.5, MiniMax Music 3) ---

def ace15_modulated(block, args):
    temb = args["temb"]
    table = comfy.model_management.cast_to(block.scale_shift_table, dtype=temb.dtype, device=temb.device)
    shift, scale = (table + temb).chunk(6, dim=1)[:2]
    return block.self_attn_norm(args["img"]) * (1 + scale) + shift


def kandinsky5_modulated(block, args):
    from comfy.ldm.kandinsky5.model import apply_scale_shift_norm, get_shift_scale_gate
    attn_params = block.visual_modulation(args["time_embed"]).chunk(3, dim=-1)[0]
    shift, scale, _ = get_shift_scale_gate(attn_params)
    return apply_scale_shift_norm(block.self_attention_norm, args["img"], scale, shift)


def cogvideo_modulated_parts(block, args):
    normed, normed_txt, _, _ = block.norm1(args["img"], args["txt"], args["temb"])
    return normed_txt, normed


def cogvideo_modulated(block, args):
    return torch.cat(cogvideo_modulated_parts(block, args), dim=1)   # joint attention's input: text first


def cogvideo_modulated_image(block, args):
    return cogvideo_modulated_parts(block, args)[1]

# --- current line: 3D models ---

def triposplat_modulated(block, args):
    mod = args["mod"] if block.share_mod else block.adaLN_modulation(args["mod"])
    mod = mod + comfy.ops.cast_to_input(block.shift_table, mod)
    shift, scale = (m.unsqueeze(1) for m in mod.chunk(6, dim=1)[:2])
    return torch.addcmul(shift, block.norm1(args["img"]), 1 + scale)
