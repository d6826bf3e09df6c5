"""The ComfyUI model families CacheKit knows, as data: where each keeps its transformer blocks, which
`patches_replace["dit"]` kind ComfyUI calls them by, and which hidden-state tensors they pass on.

One table instead of per-family code: adding a family is adding a row, after checking in its
ComfyUI forward that every block honours `blocks_replace` and passes `transformer_options` on.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass, field

import torch

import comfy.utils

from ...cache_core import BlockLayout
from . import probes
from .adapters import CallAdapter, ReplaceAdapter, TupleAdapter


def _not_sampled(what: str) -> str:
    """UNSUPPORTED's reason for the image models (detectors, depth, segmentation) ComfyUI loads as a MODEL."""
    return (f"{what}, not a diffusion model: ComfyUI loads it as a MODEL, but its own nodes run it on images "
            f"directly, never through a sampler, and these methods cache the transformer blocks across the steps "
            f"of a sampling run")


# --- which published preset fits a model instance --------------------------------------------

def _wan_variant(dm) -> str | None:
    size = {1536: "1.3B", 5120: "14B"}.get(getattr(dm, "dim", None))
    if getattr(dm, "model_type", "t2v") == "i2v":
        return "i2v_14B_480p" if size == "14B" else None
    return f"t2v_{size}" if size else ("ti2v_5B_t2v" if getattr(dm, "dim", None) == 3072 else None)


def _wan_teacache(dm):
    v = _wan_variant(dm)
    return f"wan2.1_{v}" if v and not v.startswith("ti2v") else None


def _wan_magcache(dm):
    v = _wan_variant(dm)
    return None if v is None else (f"wan2.2_{v}" if v.startswith("ti2v") else f"wan2.1_{v}")


def _stack_skips(push, pop):
    """Long skip connections as the forward's own stack rule: {consumer block: producer block} for a depth.
    push(i, depth) / pop(i, depth): whether block i pushes its output / pops a skip (popped before it runs)."""
    def pairs(depth: int) -> dict[int, int]:
        stack, out = [], {}
        for i in range(depth):
            if pop(i, depth):
                out[i] = stack.pop()
            if push(i, depth):
                stack.append(i)
        return out
    return pairs


def _joined(txt_first: bool):
    """Double -> single blocks: the forward joins the image and text streams into one sequence. Where it says
    where the image sits (transformer_options["img_slice"], [start, end): Flux, Chroma and HunyuanVideo in ComfyUI
    after 0.3.75, where HunyuanVideo went from image first to text first), that order; else the family's own."""
    def image_start(args) -> int | None:
        where = (args.get("transformer_options") or {}).get("img_slice")
        return where[0] if where else (None if txt_first else 0)

    def join(hidden, _from, _to, args):
        first = ("img", "txt") if image_start(args) == 0 else ("txt", "img")
        return {"img": torch.cat([hidden[k] for k in first], dim=1)}
    join.image_start = image_start         # the layout's joined_image_start: where the image sits, per call
    return join


_join_txt_img = _joined(txt_first=True)      # Flux, Chroma, AuraFlow, Hunyuan3D 2.0
_join_img_txt = _joined(txt_first=False)     # HunyuanVideo in ComfyUI 0.3.75, HiDream


@dataclass(frozen=True)
class Family:
    """One row of the table. Blocks are (patch kind, attribute, skip-list attribute): the kind names the
    block for patches_replace["dit"] (route "replace") and for the per-kind entries below."""
    name: str
    classes: tuple[str, ...]                # "module.Class" of the diffusion_model, matched exactly
    blocks: tuple[tuple[str, str, str | None], ...]
    stream_keys: dict                       # block kind -> hidden-state tensors it takes and returns
    route: str = "replace"                  # patches.BLOCK_ROUTES (by name): how the blocks are reached
    # route "forward": the block's call as the engine's dict; route "replace": a ReplaceAdapter where the forward
    # names the hidden state its own way (either per kind as a dict)
    adapter: CallAdapter | ReplaceAdapter | dict | None = None
    convert: object = None                  # re-lays hidden states between block kinds (Flux: txt+img)
    modulated_input: object = None          # (block0, args) -> tensor, TeaCache's indicator
    modulated_image: object = None          # (block0, args) -> block 0's modulated image tokens, if not the above
    image_first: bool = True                # block 0's input starts with the image tokens (False: text first)
    teacache_preset: object = None          # (diffusion_model) -> preset name or None
    magcache_preset: object = None
    attention_kinds: dict = field(default_factory=dict)   # block kind -> kind of its n-th attention call
    mlp_modules: dict = field(default_factory=dict)       # block kind -> attribute names of its MLPs
    # block kind -> its attention modules in call order, for families whose attention kernel gets no
    # transformer_options (PixArt, HunyuanDiT, Hunyuan3D 2.1) or whose modules hold their projections (Wan): the
    # attention methods cache these modules' outputs instead
    attention_modules: dict = field(default_factory=dict)
    attention_tuple: bool = False   # those modules return a 1-tuple (HunyuanDiT)
    # block kind -> the linears that compute its attention's q, k, v inline ahead of the kernel (Flux-style
    # blocks: no attention module to cache), their first 3 x block.hidden_size outputs being q, k, v: a reused
    # attention skips those outputs (a linear that also feeds the MLP still computes the MLP's)
    attention_inputs: dict = field(default_factory=dict)
    # depth -> {block: the earlier block whose output it takes as a long skip} (HunyuanDiT): a block computed
    # after a reused span must not take its skip from inside the span
    long_skips: object = None
    block_name: str = "{}"         # a block's name in its container, by index (Cosmos 1's ModuleDict: "block{}")
    mlp_batch_dim: object = 0      # (diffusion_model) -> the batch axis of the MLPs' outputs (Cosmos 1: T H W B D)
    # why the model cannot run a call without the uncond half (FasterCache's uncond skip), if it cannot
    cfg_pairs: str | None = None
    # why span methods (a reused run of blocks) cannot apply, in full: the model adds into the hidden state
    # between blocks on every call
    injects: str | None = None
    models: str = ""               # what users load into this class, by name (README: scripts/supported_models.py)
    # hidden states besides "img" whose change each decision measures on its own (LTX-2's audio)
    decided: tuple[str, ...] = ()

    def block_path(self, kind: str, index: int) -> str:
        """"diffusion_model.<attribute>.<index>": the block's path in the BaseModel, for object patches."""
        return f"diffusion_model.{self._block_key(kind, index)}"

    def _block_key(self, kind: str, index: int) -> str:
        """The block's dotted path in the diffusion model (its container, then its name there)."""
        return f"{dict((k, a) for k, a, _ in self.blocks)[kind]}.{self.block_name.format(index)}"

    def mlp_paths(self, positions) -> list[tuple[int, str, str]]:
        """(block position, "diffusion_model.<path to the MLP module>", its name in the block) for every MLP
        the block kind declares (a block may lack one: SD3's last text block has no MLP)."""
        return self.module_paths(positions, self.mlp_modules)

    def module_paths(self, positions, modules: dict) -> list[tuple[int, str, str]]:
        return [(p, f"{self.block_path(kind, index)}.{name}", name)
                for p, (kind, index) in enumerate(positions) for name in modules.get(kind, ())]

    def adapter_for(self, kind: str) -> CallAdapter | ReplaceAdapter | None:
        return self.adapter[kind] if isinstance(self.adapter, dict) else self.adapter

    def block(self, diffusion_model, kind: str, index: int):
        """The block module at (kind, index) of this model instance."""
        return comfy.utils.get_attr(diffusion_model, self._block_key(kind, index))

    def layout(self, diffusion_model) -> tuple[BlockLayout, list[tuple[str, int]]]:
        """The block sequence this model instance runs, and the (kind, index) of each position."""
        positions = []
        for kind, attr, skip_attr in self.blocks:
            skipped = set(getattr(diffusion_model, skip_attr, None) or ()) if skip_attr else set()
            count = len(comfy.utils.get_attr(diffusion_model, attr))
            positions += [(kind, i) for i in range(count) if i not in skipped]
        probe = image = None
        if self.modulated_input is not None and positions:
            probe = functools.partial(self.modulated_input, self.block(diffusion_model, *positions[0]))
        if self.modulated_image is not None and positions:
            image = functools.partial(self.modulated_image, self.block(diffusion_model, *positions[0]))
        layout = BlockLayout(kinds=tuple(k for k, _ in positions), stream_keys=self.stream_keys,
                             primary="img", convert=self.convert, modulated_input=probe, modulated_image=image,
                             image_first=self.image_first,
                             joined_image_start=getattr(self.convert, "image_start", None),
                             attention_kinds=self.attention_kinds, decided=self.decided,
                             component_batch_dims=self._component_batch_dims(diffusion_model))
        return layout, positions

    def _component_batch_dims(self, diffusion_model) -> dict:
        dim = self.mlp_batch_dim(diffusion_model) if callable(self.mlp_batch_dim) else self.mlp_batch_dim
        return {"mlp": dim} if dim else {}

    def preset(self, method: str, diffusion_model) -> str | None:
        pick = {"teacache": self.teacache_preset, "magcache": self.magcache_preset}[method]
        return pick(diffusion_model) if pick is not None else None


_FLUX_BLOCKS = (("double_block", "double_blocks", "skip_mmdit"), ("single_block", "single_blocks", "skip_dit"))
_DOUBLE_SINGLE = {"double_block": ("img", "txt"), "single_block": ("img",)}
# joint image+text attention is "self"; Wan calls cross attention once for text (twice with an image
# condition: image, then text); LTXV's attn2 is cross attention
_JOINT_ATTN = {"double_block": ("self",), "single_block": ("self",)}
# Flux-style single blocks fuse their MLP into one linear with the attention: nothing to hook there
_FLUX_MLPS = {"double_block": ("img_mlp", "txt_mlp")}
_FLUX_QKV = {"double_block": ("img_attn.qkv", "txt_attn.qkv"), "single_block": ("linear1",)}

def _fixed(name):
    return lambda _dm: name


def _flux1(name):
    """Flux 2 (one global modulation for all blocks), LongCat-Image (text positions on two axes) and Ovis-Image
    (gated MLPs, a text norm) share Flux 1's class: the Flux 1 presets fit none of them."""
    def pick(dm):
        p = dm.params
        other = (getattr(p, "global_modulation", False) or getattr(p, "txt_ids_dims", None)
                 or getattr(p, "yak_mlp", False) or getattr(p, "txt_norm", False))
        return None if other else name
    return pick


def _hunyuan_video_1(name):
    """HunyuanVideo 1.5 and HunyuanImage 2.1 share the class; the published presets are HunyuanVideo 1.0's."""
    return lambda dm: name if (dm.byt5_in is None and dm.vision_in is None and list(dm.patch_size) == [1, 2, 2]
                               and getattr(dm.params, "in_channels", 16) == 16) else None


_CHROMA = dict(blocks=_FLUX_BLOCKS, stream_keys=_DOUBLE_SINGLE, convert=_join_txt_img,
               modulated_input=probes.flux_modulated, attention_kinds=_JOINT_ATTN, mlp_modules=_FLUX_MLPS,
               attention_inputs=_FLUX_QKV)
# The attention methods cache Wan's attention modules' outputs (after the output projection), so a reused
# attention skips its q/k/v/o projections too, as PAB's authors and diffusers broadcast it; I2V's cross attention
# (text and image kernels) is one module
_WAN = dict(blocks=(("double_block", "blocks", None),), stream_keys={"double_block": ("img",)},
            modulated_input=probes.wan_modulated, modulated_image=probes.wan_modulated_image,
            attention_kinds={"double_block": ("self", "cross")},
            attention_modules={"double_block": ("self_attn", "cross_attn")}, mlp_modules={"double_block": ("ffn",)})


FAMILIES = (
    # Kontext's reference tokens ride in img; Flux 2, LongCat and Ovis share the class (no presets: see _flux1)
    Family("Flux", ("comfy.ldm.flux.model.Flux",), _FLUX_BLOCKS, _DOUBLE_SINGLE, convert=_join_txt_img,
           modulated_input=probes.flux_modulated, teacache_preset=_flux1("flux"), magcache_preset=_flux1("flux_dev"),
           attention_kinds=_JOINT_ATTN, mlp_modules=_FLUX_MLPS, attention_inputs=_FLUX_QKV,
           models="Flux.1 dev / schnell, Flux.1 Kontext, Flux 2 (dev, Klein), LongCat-Image, Ovis-Image"),
    Family("Chroma", ("comfy.ldm.chroma.model.Chroma",), **_CHROMA,
           models="Chroma"),
    # Chroma's blocks in pixel space; its NeRF head runs after the blocks, outside the cached span
    Family("Chroma Radiance", ("comfy.ldm.chroma_radiance.model.ChromaRadiance",), **_CHROMA,
           models="Chroma Radiance (pixel space)"),
    # one class and one forward for all of them (presets: HunyuanVideo 1.0's only, see _hunyuan_video_1)
    Family("HunyuanVideo", ("comfy.ldm.hunyuan_video.model.HunyuanVideo",),
           (("double_block", "double_blocks", None), ("single_block", "single_blocks", None)), _DOUBLE_SINGLE,
           convert=_join_img_txt, modulated_input=probes.flux_modulated,
           teacache_preset=_hunyuan_video_1("hunyuan_video"), magcache_preset=_hunyuan_video_1("hunyuan_video_544p"),
           attention_kinds=_JOINT_ATTN, mlp_modules=_FLUX_MLPS, attention_inputs=_FLUX_QKV,
           models="HunyuanVideo 1.0 (T2V, I2V, SkyReels), HunyuanVideo 1.5, HunyuanImage 2.1 (and refiner)"),
    Family("Wan", ("comfy.ldm.wan.model.WanModel", "comfy.ldm.wan.model.CameraWanModel",
                   "comfy.ldm.wan.model.HumoWanModel"),
           teacache_preset=_wan_teacache, magcache_preset=_wan_magcache, **_WAN,
           models="Wan 2.1 / 2.2 T2V, I2V, TI2V, FunControl, camera, HuMo, the two 14B experts"),
    Family("Wan VACE", ("comfy.ldm.wan.model.VaceWanModel",), **_WAN,
           injects="adds its VACE hints into the hidden state after every k-th block, in place, on every call: a "
                   "reused run of blocks would replay the hints of the step it was computed on",
           models="Wan 2.1 VACE"),
    # Wan 2.2 S2V: its audio is added into the hidden state between blocks
    Family("Wan S2V", ("comfy.ldm.wan.model.WanModel_S2V",), **_WAN,
           injects="adds its audio features into the hidden state after the audio layers' blocks on every call: a "
                   "reused run of blocks would replay the audio of the step it was computed on",
           models="Wan 2.2 S2V"),
    Family("Wan Animate", ("comfy.ldm.wan.model_animate.AnimateWanModel",), **_WAN,
           injects="adds its face-motion features into the hidden state after every 5th block on every call: a "
                   "reused run of blocks would replay the features of the step it was computed on",
           models="Wan 2.2 Animate"),
    Family("Qwen-Image", ("comfy.ldm.qwen_image.model.QwenImageTransformer2DModel",),
           (("double_block", "transformer_blocks", None),), {"double_block": ("img", "txt")},
           modulated_input=probes.qwen_modulated, magcache_preset=_fixed("qwen_image"),
           attention_kinds={"double_block": ("self",)}, mlp_modules={"double_block": ("img_mlp", "txt_mlp")},
           models="Qwen-Image, Qwen-Image-Edit (2509, 2511)"),
    # Lumina 2 and Z-Image (NextDiT): the main stack `layers` (the refiners run on text or image alone before
    # it); its forward ignores patches_replace, so each block's own forward is patched. No TeaCache preset: the
    # published Lumina 2 coefficients disagree (code vs README of TeaCache4Lumina2), so Calibrate TeaCache it is
    Family("Lumina2 / Z-Image", ("comfy.ldm.lumina.model.NextDiT",), (("block", "layers", None),),
           {"block": ("img",)}, route="forward", adapter=CallAdapter(hidden={"img": "x"}, returns=("img",)),
           modulated_input=probes.lumina_modulated, image_first=False, attention_kinds={"block": ("self",)},
           mlp_modules={"block": ("feed_forward",)},
           models="Lumina Image 2.0, Z-Image (Turbo, omni)"),
    # SD3 / SD3.5 (MMDiT): joint blocks; image self attention a second time where x_block_self_attn is set
    Family("SD3", ("comfy.ldm.modules.diffusionmodules.mmdit.OpenAISignatureMMDITWrapper",),
           (("double_block", "joint_blocks", None),), {"double_block": ("img", "txt")},
           modulated_input=probes.sd3_modulated, attention_kinds={"double_block": ("self", "self")},
           mlp_modules={"double_block": ("x_block.mlp", "context_block.mlp")},
           models="Stable Diffusion 3 / 3.5"),
    # OmniGen2: like NextDiT, a main stack `layers` after text/image/reference refiners; no patches_replace
    Family("OmniGen2", ("comfy.ldm.omnigen.omnigen2.OmniGen2Transformer2DModel",), (("block", "layers", None),),
           {"block": ("img",)}, route="forward", adapter=CallAdapter(hidden={"img": "hidden_states"}, returns=("img",)),
           modulated_input=probes.omnigen2_modulated, image_first=False, magcache_preset=_fixed("omnigen2_t2i"),
           attention_kinds={"block": ("self",)}, mlp_modules={"block": ("feed_forward",)},
           models="OmniGen2"),
    # Cosmos Predict2: blocks on (B, T, H, W, D) tokens, self then cross attention; no patches_replace
    Family("Cosmos Predict2", ("comfy.ldm.cosmos.predict2.MiniTrainDIT",), (("block", "blocks", None),),
           {"block": ("img",)}, route="forward", adapter=CallAdapter(hidden={"img": "x_B_T_H_W_D"}, returns=("img",)),
           modulated_input=probes.cosmos2_modulated, attention_kinds={"block": ("self", "cross")},
           mlp_modules={"block": ("mlp",)},
           models="Cosmos Predict2"),
    # Cosmos 1 (7B/14B): blocks in a ModuleDict, on tokens laid out T H W B D; no patches_replace
    Family("Cosmos 1", ("comfy.ldm.cosmos.model.GeneralDIT",), (("block", "blocks", None),), {"block": ("img",)},
           route="forward", adapter=CallAdapter(hidden={"img": "x"}, returns=("img",)), block_name="block{}",
           attention_kinds={"block": ("self", "cross")}, mlp_modules={"block": ("blocks.2.block",)},
           mlp_batch_dim=lambda dm: 3 if dm.blocks["block0"].x_format == "THWBD" else 0,
           injects="adds its positional embedding into the hidden state before every block, in place: the blocks of "
                   "a reused run would hand the hidden state on and get it added again on top of the cached residual, "
                   "which holds those additions already",
           models="Cosmos 1 (7B, 14B)"),
    # AuraFlow: double (image, text) then single layers on text + image, text first (as Flux)
    Family("AuraFlow", ("comfy.ldm.aura.mmdit.MMDiT",),
           (("double_block", "double_layers", None), ("single_block", "single_layers", None)), _DOUBLE_SINGLE,
           convert=_join_txt_img, modulated_input=probes.aura_modulated, attention_kinds=_JOINT_ATTN,
           mlp_modules={"double_block": ("mlpX", "mlpC"), "single_block": ("mlp",)},
           models="AuraFlow"),
    # Mochi: asymmetric joint blocks (the last one leaves the text as it is and has no text MLP)
    Family("Mochi", ("comfy.ldm.genmo.joint_model.asymm_models_joint.AsymmDiTJoint",),
           (("double_block", "blocks", None),), {"double_block": ("img", "txt")},
           modulated_input=probes.mochi_modulated, teacache_preset=_fixed("mochi"),
           attention_kinds={"double_block": ("self",)},
           mlp_modules={"double_block": ("mlp_x", "mlp_y")},
           models="Mochi 1"),
    # Hunyuan3D 2.0: Flux's double and single blocks on shape latents (no positional embedding), text first
    Family("Hunyuan3D 2.0", ("comfy.ldm.hunyuan3d.model.Hunyuan3Dv2",), **_CHROMA,
           models="Hunyuan3D 2.0"),
    # HiDream-I1: its forward ignores patches_replace. Each block gets its own Llama layer's states appended to
    # the text (double) or to the sequence (single) and the forward cuts them off after the block, so what a
    # block adds to them is dropped: only the carried part of the sequence needs the cached residual.
    Family("HiDream", ("comfy.ldm.hidream.model.HiDreamImageTransformer2DModel",),
           (("double_block", "double_stream_blocks", None), ("single_block", "single_stream_blocks", None)),
           _DOUBLE_SINGLE, route="forward", convert=_join_img_txt, modulated_input=probes.hidream_modulated,
           adapter={"double_block": CallAdapter(hidden={"img": "image_tokens", "txt": "text_tokens"},
                                                returns=("img", "txt")),
                    "single_block": CallAdapter(hidden={"img": "image_tokens"}, returns=("img",))},
           attention_kinds=_JOINT_ATTN, mlp_modules={"double_block": ("block.ff_i", "block.ff_t"),
                                                     "single_block": ("block.ff_i",)},
           models="HiDream-I1 (full, dev, fast)"),
    # PixArt Alpha / Sigma: its forward ignores patches_replace and passes nothing on to the blocks, so the blocks'
    # forwards are patched, and the attention methods cache the attention modules (no kernel override reaches them)
    Family("PixArt", ("comfy.ldm.pixart.pixartms.PixArtMS",), (("block", "blocks", None),), {"block": ("img",)},
           route="forward", adapter=CallAdapter(hidden={"img": "x"}, returns=("img",)),
           modulated_input=probes.pixart_modulated, attention_kinds={"block": ("self", "cross")},
           attention_modules={"block": ("attn", "cross_attn")}, mlp_modules={"block": ("mlp",)},
           models="PixArt Alpha, PixArt Sigma"),
    # HunyuanDiT 1.0-1.2: the second half's blocks take a first-half block's output as a long skip
    Family("HunyuanDiT", ("comfy.ldm.hydit.models.HunYuanDiT",), (("double_block", "blocks", None),),
           {"double_block": ("img",)}, modulated_input=probes.hydit_modulated,
           attention_kinds={"double_block": ("self", "cross")}, attention_modules={"double_block": ("attn1", "attn2")},
           attention_tuple=True, mlp_modules={"double_block": ("mlp",)},
           long_skips=_stack_skips(push=lambda i, d: i < d // 2 - 1, pop=lambda i, d: i > d // 2),
           models="HunyuanDiT 1.0-1.2"),
    # Hunyuan3D 2.1: a time token first, long skips as HunyuanDiT's (its own stack rule), MoE MLPs in the last blocks
    Family("Hunyuan3D 2.1", ("comfy.ldm.hunyuan3dv2_1.hunyuandit.HunYuanDiTPlain",), (("block", "blocks", None),),
           {"block": ("img",)}, adapter=ReplaceAdapter("x"), modulated_input=probes.hunyuan3d21_modulated,
           image_first=False, attention_kinds={"block": ("self", "cross")},
           attention_modules={"block": ("attn1", "attn2")}, mlp_modules={"block": ("mlp", "moe")},
           long_skips=_stack_skips(push=lambda i, d: i < d // 2, pop=lambda i, d: i > d // 2),
           cfg_pairs="swaps the text of the two halves of every batch (cond and uncond), so a call without the uncond "
                     "half cannot run",
           models="Hunyuan3D 2.1"),
    # ACE-Step: blocks on the audio latent's tokens; its forward ignores patches_replace, and its self attention is
    # a linear attention of its own (only the cross attention calls ComfyUI's kernel, so only it is cached)
    Family("ACE-Step", ("comfy.ldm.ace.model.ACEStepTransformer2DModel",), (("block", "transformer_blocks", None),),
           {"block": ("img",)}, route="forward",
           adapter=CallAdapter(hidden={"img": "hidden_states"}, returns=("img",)), modulated_input=probes.ace_modulated,
           attention_kinds={"block": ("cross",)}, mlp_modules={"block": ("ff",)},
           models="ACE-Step"),
    # Stable Audio Open: the time (and seconds) embedding is prepended as a token, so block 0's input starts there;
    # Stable Audio 3: 64 memory tokens first, the time in a shared adaLN. Its forward honours patches_replace, but
    # the block it hands the patch drops local_add_cond (Stable Audio 3's inpaint mask and latent, added in every
    # block, zeros for text to audio but not a zero contribution): the blocks' own forwards are patched instead
    Family("Stable Audio", ("comfy.ldm.audio.dit.AudioDiffusionTransformer",),
           (("double_block", "transformer.layers", None),), {"double_block": ("img",)}, route="forward",
           adapter=CallAdapter(hidden={"img": "x"}, returns=("img",)),
           modulated_input=probes.stable_audio_modulated, image_first=False,
           attention_kinds={"double_block": ("self", "cross")}, mlp_modules={"double_block": ("ff",)},
           models="Stable Audio Open 1.0, Stable Audio 3 (Medium, Medium Base)"),
    Family("LTXV", ("comfy.ldm.lightricks.model.LTXVModel",),
           (("double_block", "transformer_blocks", None),), {"double_block": ("img",)},
           modulated_input=probes.ltxv_modulated, teacache_preset=_fixed("ltxv"),
           attention_kinds={"double_block": ("self", "cross")}, mlp_modules={"double_block": ("ff",)},
           models="LTX-Video (0.9.x)"),

    # --- current line: Wan variants ---
    # SCAIL / SCAIL-2 (Wan 2.1 I2V 14B fine-tunes): their forward honours patches_replace for every block and passes
    # transformer_options on; the reference frames ride in front of the video tokens, the pose tokens (and SCAIL-2's
    # identity masks, added at the patch embedding) after them: nothing enters the hidden state between blocks
    Family("Wan SCAIL", ("comfy.ldm.wan.model.SCAILWanModel", "comfy.ldm.wan.model.SCAIL2WanModel"), **_WAN,
           models="SCAIL-Preview, SCAIL-2 (Wan 2.1 character animation)"),
    # Wan-Animate-2: a pose branch runs beside the blocks (outside the block replacement, every call unless
    # WanAnimate2Cache stores it) and hands each block the pose K/V: a conditioning fixed over the steps (pose
    # timestep fixed), not an addition to the hidden state. Its blocks compute self attention in forward_gen, past
    # the module's forward, so the attention methods cache its cross attention only. Its pose branch calls the
    # blocks' cross attention and MLP outside any block: computed there, never cached (the engine's block -1).
    # TeaCache reads block 0's modulated image tokens (what its self attention's projections take; no module
    # sees e0 there), as TeaCache itself does outside Wan: not a "Wan ..." name, so Wan's e0 presets do not offer
    Family("Wan-Animate-2", ("comfy.ldm.wan.model_animate2.WanAnimate2Model",),
           **{**_WAN, "modulated_input": probes.wan_modulated_image, "modulated_image": None,
              "attention_kinds": {"double_block": ("cross",)},
              "attention_modules": {"double_block": ("cross_attn",)}},
           models="Wan-Animate-2"),
    Family("WanDancer", ("comfy.ldm.wan.model_wandancer.WanDancerModel",), **_WAN,
           injects="adds its music features into the hidden state after the music layers' blocks, in place, on every "
                   "call: a reused run of blocks would replay the music of the step it was computed on",
           models="WanDancer"),

    # --- current line: audio and video in one model ---
    # LTX-2 / 2.3: video and audio tokens through the same blocks, (video, audio) under one key. The audio is
    # measured on its own (decided), so a call reuses only where both changed little. Only the video's own
    # self and cross attention are cached (its first two calls); the audio's, and the two between the modalities,
    # are left unnamed and always compute, as its MLP (only the video's ff is named)
    Family("LTX-2", ("comfy.ldm.lightricks.av_model.LTXAVModel",), (("double_block", "transformer_blocks", None),),
           {"double_block": ("img", "audio")}, adapter=TupleAdapter("img", ("img", "audio")), decided=("audio",),
           modulated_input=probes.ltxav_modulated, attention_kinds={"double_block": ("self", "cross")},
           mlp_modules={"double_block": ("ff",)},
           models="LTX-2, LTX-2.3 (audio and video)"),

    # --- current line: image models (Krea 2, ERNIE, Ideogram 4, Lens, MageFlow) ---
    # Krea 2: one stack of single-stream blocks on text + image (text first); its forward ignores patches_replace
    Family("Krea 2", ("comfy.ldm.krea2.model.SingleStreamDiT",), (("block", "blocks", None),), {"block": ("img",)},
           route="forward", adapter=CallAdapter(hidden={"img": "x"}, returns=("img",)),
           modulated_input=probes.krea2_modulated, image_first=False, attention_kinds={"block": ("self",)},
           mlp_modules={"block": ("mlp",)},
           models="Krea 2 (with or without reference images)"),

    # ERNIE-Image: one stack of blocks on image + text (image first) sharing one modulation; its forward ignores
    # patches_replace and its attention kernel gets no transformer_options, so the attention methods cache the
    # attention modules
    Family("ERNIE-Image", ("comfy.ldm.ernie.model.ErnieImageModel",), (("block", "layers", None),),
           {"block": ("img",)}, route="forward", adapter=CallAdapter(hidden={"img": "x"}, returns=("img",)),
           modulated_input=probes.ernie_modulated, attention_kinds={"block": ("self",)},
           attention_modules={"block": ("self_attention",)}, mlp_modules={"block": ("mlp",)},
           models="ERNIE-Image"),

    # MageFlow: not a subclass of Qwen-Image's class, but its blocks (QwenImageTransformerBlock) and its block loop
    # (patches_replace for every block, as Qwen-Image's); 12 blocks, patch 1, its own weights: no Qwen-Image preset
    Family("MageFlow", ("comfy.ldm.mage_flow.model.MageFlowTransformer2DModel",),
           (("double_block", "transformer_blocks", None),), {"double_block": ("img", "txt")},
           modulated_input=probes.qwen_modulated, attention_kinds={"double_block": ("self",)},
           mlp_modules={"double_block": ("img_mlp", "txt_mlp")},
           models="Mage-Flow (with or without reference images)"),

    # Lens: double-stream blocks (image, text) with joint attention; its forward honours patches_replace for every block
    Family("Lens", ("comfy.ldm.lens.model.LensTransformer2DModel",), (("double_block", "transformer_blocks", None),),
           {"double_block": ("img", "txt")}, modulated_input=probes.lens_modulated,
           attention_kinds={"double_block": ("self",)}, mlp_modules={"double_block": ("img_mlp", "txt_mlp")},
           models="Lens"),

    # Ideogram 4: one stack of single-stream blocks on text + image (text first); its forward ignores patches_replace
    Family("Ideogram 4", ("comfy.ldm.ideogram4.model.Ideogram4Transformer2DModel",), (("block", "layers", None),),
           {"block": ("img",)}, route="forward", adapter=CallAdapter(hidden={"img": "x"}, returns=("img",)),
           modulated_input=probes.ideogram4_modulated, image_first=False, attention_kinds={"block": ("self",)},
           mlp_modules={"block": ("feed_forward",)},
           models="Ideogram 4"),

    # --- current line: image models (HiDream-O1, Boogu, Anima, Z-Image pixel space, PixelDiT, JoyImage) ---
    # JoyImage (Edit): Qwen-Image-like double blocks; reference latents ride in img after the target's tokens
    Family("JoyImage", ("comfy.ldm.joyimage.model.JoyImageTransformer3DModel",),
           (("double_block", "double_blocks", None),), {"double_block": ("img", "txt")},
           modulated_input=probes.joyimage_modulated, attention_kinds={"double_block": ("self",)},
           mlp_modules={"double_block": ("img_mlp", "txt_mlp")},
           models="JoyImage, JoyImage-Edit"),
    # Z-Image pixel space: NextDiT's main stack as Lumina 2 / Z-Image runs it (its own forward only swaps the final
    # layer for a per-patch pixel decoder after the blocks, outside any cached span)
    Family("Z-Image pixel space", ("comfy.ldm.lumina.model.NextDiTPixelSpace",), (("block", "layers", None),),
           {"block": ("img",)}, route="forward", adapter=CallAdapter(hidden={"img": "x"}, returns=("img",)),
           modulated_input=probes.lumina_modulated, image_first=False, attention_kinds={"block": ("self",)},
           mlp_modules={"block": ("feed_forward",)},
           models="Z-Image pixel space"),
    # Anima: Cosmos Predict2's MiniTrainDIT; its own forward only runs the LLM adapter on the text (into the cross
    # attention's context) before MiniTrainDIT's forward, which runs the blocks as in the Cosmos Predict2 row
    Family("Anima", ("comfy.ldm.anima.model.Anima",), (("block", "blocks", None),),
           {"block": ("img",)}, route="forward", adapter=CallAdapter(hidden={"img": "x_B_T_H_W_D"}, returns=("img",)),
           modulated_input=probes.cosmos2_modulated, attention_kinds={"block": ("self", "cross")},
           mlp_modules={"block": ("mlp",)},
           models="Anima"),
    # Boogu-Image: OmniGen2's refiners, then double-stream blocks (image; instruction) and single-stream blocks on
    # instruction + image; no patches_replace. The image stream starts with the reference images' tokens, if any
    Family("Boogu-Image", ("comfy.ldm.boogu.model.BooguTransformer2DModel",),
           (("double_block", "double_stream_layers", None), ("single_block", "single_stream_layers", None)),
           _DOUBLE_SINGLE, route="forward", convert=_join_txt_img,
           adapter={"double_block": CallAdapter(hidden={"img": "img_hidden_states", "txt": "instruct_hidden_states"},
                                                returns=("img", "txt")),
                    "single_block": CallAdapter(hidden={"img": "hidden_states"}, returns=("img",))},
           modulated_input=probes.boogu_modulated, image_first=False,
           attention_kinds={"double_block": ("self", "self"), "single_block": ("self",)},
           mlp_modules={"double_block": ("img_feed_forward", "instruct_feed_forward"),
                        "single_block": ("feed_forward",)},
           models="Boogu-Image"),
    # PixelDiT: MMDiT patch blocks (image, text), then pixel blocks conditioned on their output (a head after the
    # cached span, as Chroma Radiance's NeRF head); no patches_replace. PiD (PidNet) is its body as a latent
    # decoder, with its own _forward that gates LQ features into the image stream before every lq_interval-th
    # patch block, on every call
    Family("PixelDiT", ("comfy.ldm.pixeldit.model.PixDiT_T2I",), (("double_block", "patch_blocks", None),),
           {"double_block": ("img", "txt")}, route="forward",
           adapter=CallAdapter(hidden={"img": "x", "txt": "y"}, returns=("img", "txt")),
           modulated_input=probes.pixeldit_modulated, attention_kinds={"double_block": ("self",)},
           mlp_modules={"double_block": ("mlp_x", "mlp_y")},
           models="PixelDiT (T2I)"),
    Family("PiD", ("comfy.ldm.pixeldit.pid.PidNet",), (("double_block", "patch_blocks", None),),
           {"double_block": ("img", "txt")}, route="forward",
           adapter=CallAdapter(hidden={"img": "x", "txt": "y"}, returns=("img", "txt")),
           modulated_input=probes.pixeldit_modulated, attention_kinds={"double_block": ("self",)},
           mlp_modules={"double_block": ("mlp_x", "mlp_y")},
           injects="gates its LQ (input latent) features into the image stream before every lq_interval-th patch "
                   "block, on every call: a reused run of blocks would replay the features of the step it was "
                   "computed on",
           models="PiD (Pixel Diffusion Decoder)"),

    # --- current line: video and audio models (Kandinsky 5, CogVideoX, SeedVR2, ACE-Step 1.5, MiniMax Music 3) ---
    # ACE-Step 1.5: the DiT stack at decoder.layers, after its condition encoder (lyrics, timbre, audio-code hints)
    # ran on the whole call. Its forward ignores patches_replace and passes no transformer_options down, so its
    # blocks' forwards and its attention modules are patched (the attention kernels are out of the override's reach)
    Family("ACE-Step 1.5", ("comfy.ldm.ace.ace_step15.AceStepConditionGenerationModel",),
           (("block", "decoder.layers", None),), {"block": ("img",)}, route="forward",
           adapter=CallAdapter(hidden={"img": "hidden_states"}, returns=("img",)),
           modulated_input=probes.ace15_modulated,
           attention_kinds={"block": ("self", "cross")}, attention_modules={"block": ("self_attn", "cross_attn")},
           mlp_modules={"block": ("mlp",)},
           models="ACE-Step 1.5 (turbo, base, SFT)"),

    # Kandinsky 5 (video and image, one class): text blocks, then the visual stack. Its forward honours
    # patches_replace but hands the block {"x": ...} and takes a dict back, which no ReplaceAdapter returns: the
    # blocks' own forwards are patched instead (the same blocks, the same call). The text blocks run before the
    # stack, outside any cached span; their attention kernels (block -1) are always computed
    Family("Kandinsky 5", ("comfy.ldm.kandinsky5.model.Kandinsky5",),
           (("double_block", "visual_transformer_blocks", None),), {"double_block": ("img",)}, route="forward",
           adapter=CallAdapter(hidden={"img": "visual_embed"}, returns=("img",)),
           modulated_input=probes.kandinsky5_modulated, attention_kinds={"double_block": ("self", "cross")},
           mlp_modules={"double_block": ("feed_forward",)},
           models="Kandinsky 5.0 (Video Lite, Video Pro, Image Lite)"),
    # CogVideoX: joint text + video attention in every block (text first), the two streams kept apart between
    # blocks; its forward ignores patches_replace. Its MLP is two linears the block calls inline (on text + video):
    # the MLP methods cache the output linear's result, which is the MLP's output, so a reused MLP still runs
    # its input projection (half the MLP's work)
    Family("CogVideoX", ("comfy.ldm.cogvideo.model.CogVideoXTransformer3DModel",), (("block", "blocks", None),),
           {"block": ("img", "txt")}, route="forward",
           adapter=CallAdapter(hidden={"img": "hidden_states", "txt": "encoder_hidden_states"},
                               returns=("img", "txt")),
           modulated_input=probes.cogvideo_modulated, modulated_image=probes.cogvideo_modulated_image,
           image_first=False,
           attention_kinds={"block": ("self",)}, mlp_modules={"block": ("ff_out",)},
           models="CogVideoX 2B / 5B, CogVideoX 1.5 (T2V, I2V, Fun inpaint)"),

    # --- current line: 3D models ---

    # TripoSplat: a main stack `blocks` on the shape latent's tokens, the image context and a camera token joined
    # (latent first), after refiners that run on the latent and the context apart; no patches_replace. The forward
    # computes each block's rotary embedding from the hidden state it hands that block: inside a reused span it is
    # computed on the passed-through state and unused
    Family("TripoSplat", ("comfy.ldm.triposplat.model.LatentSeqMMFlowModel",), (("block", "blocks", None),),
           {"block": ("img",)}, route="forward", adapter=CallAdapter(hidden={"img": "x"}, returns=("img",)),
           modulated_input=probes.triposplat_modulated, attention_kinds={"block": ("self",)},
           mlp_modules={"block": ("mlp",)},
           models="TripoSplat (image to 3D Gaussian splats)"),

    # --- end of the current line's rows ---
)

_CASCADE = ("(Stable Cascade) is a UNet of residual and attention blocks, not a diffusion transformer: these methods "
            "cache transformer block stacks")

# Classes ComfyUI ships that no method here can serve, and why (anything else unknown gets the generic message)
UNSUPPORTED = {
    "comfy.ldm.modules.diffusionmodules.openaimodel.UNetModel":
        "is a UNet (SD1.x/SD2/SDXL), not a diffusion transformer: these methods cache transformer block stacks. "
        "For a UNet use ComfyUI's own EasyCache node (model patches, under sampling), which skips whole steps on "
        "any model",
    "comfy.ldm.cascade.stage_c.StageC": _CASCADE,
    "comfy.ldm.cascade.stage_b.StageB": _CASCADE,
    # current line: video and audio models (Kandinsky 5, CogVideoX, SeedVR2, ACE-Step 1.5, MiniMax Music 3)
    "comfy.ldm.seedvr.model.NaDiT":
        "(SeedVR2 video restoration) restores a video in one sampling step: these methods reuse what an earlier "
        "step of the same run computed, and a one-step run has none, so every block would be computed anyway. Its "
        "blocks also take the batch's videos and texts packed into one token list each (no batch axis), and its "
        "attention and MLP modules return video and text as a pair, which the per-stream and per-module caches "
        "cannot split or hold",
    "comfy.ldm.minimax_music.dit.MiniMaxMusic3DiT":
        "(MiniMax Music 3) runs its 36-block stack once per overlapping 8-second window of the song inside every "
        "model call (any song over 8 s), each pass on another stretch of audio: the caches keep one state per block "
        "and stream for a call, so a pass would reuse another window's residuals and attention. ComfyUI's own "
        "EasyCache node (model patches, under sampling) skips whole steps instead",
    # audio and video in one packed sequence
    "comfy.ldm.minimax.model.MiniMaxH3Model":
        "(MiniMax H3) runs its text, video and audio tokens as one packed sequence through the same blocks: "
        "CacheKit cannot yet measure its audio tokens apart from its video, and one decision for both is what "
        "damaged its audio under a single-decision cache (ComfyUI issue #15326), so it is not served until its "
        "audio can be decided on its own (LTX-2, whose blocks keep the two apart, is)",
    # 3D models, and the image models ComfyUI loads as a MODEL that no sampler runs
    "comfy.ldm.trellis2.model.Trellis2":
        "(TRELLIS.2) runs a different transformer for each of its sampling stages, picked on every call from the "
        "conditioning: the sparse structure on a dense 16x16x16 grid, then the shape and the texture on sparse "
        "voxel tokens, whose hidden state is a sparse tensor of a different length per sample, not the dense "
        "tensor these caches hold; the methods cache one fixed stack of blocks per model. ComfyUI's own LazyCache "
        "node skips whole steps from the sampler's input and output instead (its EasyCache does not reach this "
        "model: Trellis2's forward runs no diffusion-model wrappers)",
    "comfy.ldm.rt_detr.rtdetr_v4.RTv4": _not_sampled("(RT-DETR v4) is an object detector"),
    "comfy.ldm.depth_anything_3.model.DepthAnything3Net":
        _not_sampled("(Depth Anything 3) is a depth and camera-pose estimator"),
    "comfy.ldm.sam3.detector.SAM3Model":
        _not_sampled("(SAM 3) is an object segmentation and tracking model"),
    # image models
    "comfy.ldm.hidream_o1.model.HiDreamO1Transformer":
        "(HiDream-O1) keeps a key/value cache of its text prefix only while no block is replaced: any block hook "
        "turns it off and the whole sequence is recomputed every call, which changes the output in its last digits "
        "(about 1e-6) even with caching off and gives up that cache's speed; CacheKit serves no model it cannot leave "
        "exact when off",
    # Wan variants
    "comfy.ldm.wan.ar_model.CausalWanModel":
        "is Causal-Forcing Wan 2.1 (autoregressive): under its AR video sampler every model call denoises one chunk "
        "of frames in its own block loop, which takes no block replacement and hands the blocks no "
        "transformer_options, and every block appends the chunk's keys and values to its KV cache, which the "
        "sampler rewinds by a fixed length after each step. A block a cache skipped would append nothing and the "
        "rewind would cut into the earlier chunks' keys; and each chunk restarts from noise in a few distilled "
        "steps, so there are no similar consecutive steps to reuse across. No step or block cache (EasyCache "
        "included) applies: sample it without one",
}

SUPPORTED_NAMES = ", ".join(f.name for f in FAMILIES)


def made_for(family: Family, preset_family: str) -> bool:
    """Whether a preset published for `preset_family` describes models of `family` (its variants included:
    "Wan" presets fit "Wan VACE")."""
    return family.name == preset_family or family.name.startswith(preset_family + " ")


class UnsupportedModelError(ValueError):
    pass


def _qualname(cls: type) -> str:
    return f"{cls.__module__}.{cls.__name__}"


# what a family row was written against besides its blocks: the model's own forward (its block loop, the patches it
# honours, how it calls the blocks). A subclass that keeps these is its parent's family; one that redefines any of
# them is refused until a row names it (a row lists each class it was checked on).
FORWARDS = ("forward", "_forward", "forward_orig")


def _family_of(cls: type, node_name: str) -> Family | None:
    """The row naming this class, else the row of the nearest supported ancestor the class keeps the forward of."""
    for fam in FAMILIES:
        if _qualname(cls) in fam.classes:
            return fam
    for i, ancestor in enumerate(cls.__mro__[1:], start=1):
        fam = next((f for f in FAMILIES if _qualname(ancestor) in f.classes), None)
        if fam is None:
            continue
        changed = sorted({m for sub in cls.__mro__[:i] for m in FORWARDS if m in vars(sub)})
        if changed:
            raise UnsupportedModelError(
                f"{node_name}: model class '{cls.__name__}' is a {ancestor.__name__} ({fam.name}) with its own "
                f"{', '.join(changed)}: CacheKit has not been checked on that forward, so it does not assume the "
                f"{fam.name} layout holds. Supported families: {SUPPORTED_NAMES}.")
        return fam
    return None


def detect(model_patcher, node_name: str) -> Family:
    """The family of a ComfyUI MODEL, or a clear error naming the model class."""
    base = getattr(model_patcher, "model", None)
    dm = getattr(base, "diffusion_model", None)
    if dm is None:
        raise UnsupportedModelError(f"{node_name}: input 'model' is not a ComfyUI diffusion MODEL "
                                    f"(got {type(model_patcher).__name__})")
    name = _qualname(type(dm))
    if name in UNSUPPORTED:   # before the ancestors: a refused subclass of a supported class says its own reason
        raise UnsupportedModelError(f"{node_name}: model class '{type(dm).__name__}' {UNSUPPORTED[name]}.")
    fam = _family_of(type(dm), node_name)
    if fam is not None:
        return fam
    raise UnsupportedModelError(
        f"{node_name}: model class '{type(dm).__name__}' ({type(base).__name__}) is not a supported "
        f"diffusion transformer. Supported families: {SUPPORTED_NAMES}.")
