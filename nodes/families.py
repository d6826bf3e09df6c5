"""The ComfyUI model families CacheKit knows, as data: where each keeps its transformer blocks, which
`patches_replace["dit"]` kind ComfyUI calls them by, and which hidden-state tensors they pass on.

One table instead of per-family code: adding a family is adding a row, after checking in its
ComfyUI forward that every block honours `blocks_replace` and passes `transformer_options` on.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..cache_core import BlockLayout


def _join_txt_img(hidden, _from, _to):
    return {"img": torch.cat((hidden["txt"], hidden["img"]), dim=1)}    # Flux, Chroma: txt first


def _join_img_txt(hidden, _from, _to):
    return {"img": torch.cat((hidden["img"], hidden["txt"]), dim=1)}    # HunyuanVideo: img first


@dataclass(frozen=True)
class Family:
    name: str
    classes: tuple[str, ...]              # "module.Class" of the diffusion_model, matched exactly
    blocks: tuple[tuple[str, str, str | None], ...]   # (dit patch kind, attribute, skip-list attribute)
    stream_keys: dict
    convert: object = None

    def layout(self, diffusion_model) -> tuple[BlockLayout, list[tuple[str, int]]]:
        """The block sequence this model instance runs, and the (kind, index) of each position."""
        positions = []
        for kind, attr, skip_attr in self.blocks:
            skipped = set(getattr(diffusion_model, skip_attr, None) or ()) if skip_attr else set()
            positions += [(kind, i) for i in range(len(getattr(diffusion_model, attr))) if i not in skipped]
        layout = BlockLayout(kinds=tuple(k for k, _ in positions), stream_keys=self.stream_keys,
                             primary="img", convert=self.convert)
        return layout, positions


_FLUX_BLOCKS = (("double_block", "double_blocks", "skip_mmdit"), ("single_block", "single_blocks", "skip_dit"))
_DOUBLE_SINGLE = {"double_block": ("img", "txt"), "single_block": ("img",)}

FAMILIES = (
    Family("Flux", ("comfy.ldm.flux.model.Flux",), _FLUX_BLOCKS, _DOUBLE_SINGLE, _join_txt_img),
    Family("Chroma", ("comfy.ldm.chroma.model.Chroma",), _FLUX_BLOCKS, _DOUBLE_SINGLE, _join_txt_img),
    Family("HunyuanVideo", ("comfy.ldm.hunyuan_video.model.HunyuanVideo",),
           (("double_block", "double_blocks", None), ("single_block", "single_blocks", None)),
           _DOUBLE_SINGLE, _join_img_txt),
    # Wan 2.1 / 2.2 T2V, I2V, TI2V, camera and HuMo. Not VACE or Animate (they add into the hidden state
    # between blocks in place) nor S2V (its blocks get no transformer_options).
    Family("Wan", ("comfy.ldm.wan.model.WanModel", "comfy.ldm.wan.model.CameraWanModel",
                   "comfy.ldm.wan.model.HumoWanModel"),
           (("double_block", "blocks", None),), {"double_block": ("img",)}),
    Family("Qwen-Image", ("comfy.ldm.qwen_image.model.QwenImageTransformer2DModel",),
           (("double_block", "transformer_blocks", None),), {"double_block": ("img", "txt")}),
    Family("LTXV", ("comfy.ldm.lightricks.model.LTXVModel",),
           (("double_block", "transformer_blocks", None),), {"double_block": ("img",)}),
)

SUPPORTED_NAMES = "Flux, Chroma, HunyuanVideo, Wan 2.1/2.2, Qwen-Image, LTXV"


class UnsupportedModelError(ValueError):
    pass


def _qualname(obj) -> str:
    cls = type(obj)
    return f"{cls.__module__}.{cls.__name__}"


def detect(model_patcher, node_name: str) -> Family:
    """The family of a ComfyUI MODEL, or a clear error naming the model class."""
    base = getattr(model_patcher, "model", None)
    dm = getattr(base, "diffusion_model", None)
    if dm is None:
        raise UnsupportedModelError(f"{node_name}: input 'model' is not a ComfyUI diffusion MODEL "
                                    f"(got {type(model_patcher).__name__})")
    name = _qualname(dm)
    for fam in FAMILIES:
        if name in fam.classes:
            return fam
    raise UnsupportedModelError(
        f"{node_name}: model class '{type(dm).__name__}' ({type(base).__name__}) is not a supported "
        f"diffusion transformer. Supported families: {SUPPORTED_NAMES}.")
