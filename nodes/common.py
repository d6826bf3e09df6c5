"""Inputs and checks shared by the CacheKit nodes, so each node file holds only what is its own."""
from __future__ import annotations

from abc import ABC, abstractmethod

from . import validation

MODEL_INPUT = ("MODEL", {"tooltip": "A diffusion transformer: Flux, Chroma, Wan, Qwen-Image, HunyuanVideo or LTXV."})


def window_inputs(start_percent: float = 0.0, end_percent: float = 1.0) -> dict:
    return {
        "start_percent": ("FLOAT", {"default": start_percent, "min": 0.0, "max": 1.0, "step": 0.01,
                                    "tooltip": "Caching may start at this point of the denoising schedule."}),
        "end_percent": ("FLOAT", {"default": end_percent, "min": 0.0, "max": 1.0, "step": 0.01,
                                  "tooltip": "Caching stops after this point of the schedule; later steps all compute."}),
    }


class CacheNode:
    """What every Apply node shares: MODEL in and out, the category, the schedule window inputs (after
    the node's own), and the hidden node id its run stats are reported under."""
    CATEGORY = "CacheKit"
    RETURN_TYPES = ("MODEL",)
    FUNCTION = "apply"
    WINDOW: dict | None = {}          # defaults for window_inputs(); None = no window inputs
    OPTIONAL: dict = {}

    @classmethod
    def own_inputs(cls) -> dict:
        return {}

    @classmethod
    def INPUT_TYPES(cls):
        required = {"model": MODEL_INPUT, **cls.own_inputs()}
        if cls.WINDOW is not None:
            required.update(window_inputs(**cls.WINDOW))
        spec = {"required": required, "hidden": {"unique_id": "UNIQUE_ID"}}
        if cls.OPTIONAL:
            spec["optional"] = dict(cls.OPTIONAL)
        return spec


def window_fields(node: str, start_percent, end_percent, **extra) -> dict:
    start, end = validation.percent_window(node, start_percent, end_percent)
    return dict(start_percent=start, end_percent=end, **extra)


def resolve_preset(node: str, method: str, choice: str, model, available: list[str]) -> str:
    """'auto' picks the published preset for the detected family/variant; otherwise the named one."""
    from .families import detect
    if choice != "auto":
        if choice not in available:
            raise validation.CacheKitInputError(f"{node}: unknown preset {choice!r}; choose one of {available}")
        return choice
    family = detect(model, node)
    name = family.preset(method, model.model.diffusion_model)
    if name is None:
        raise validation.CacheKitInputError(
            f"{node}: no published {method} preset for this {family.name} model; pick a preset by name "
            f"or give your own values (see the node's tooltips)")
    return name


def sampler_inputs() -> dict:
    """KSampler's own inputs (ComfyUI's nodes.py), for the calibration nodes that sample like it."""
    import nodes as comfy_nodes
    spec = dict(comfy_nodes.KSampler.INPUT_TYPES()["required"])
    spec["model"] = MODEL_INPUT
    return spec


class CalibrateNode(ABC):
    """A calibration node: samples once exactly like KSampler (same inputs) with a recording policy that
    never reuses, and returns (calibration, latent). Subclasses give NODE_NAME, RETURN_TYPES, their own
    extra inputs and the recorder."""
    CATEGORY = "CacheKit"
    RETURN_NAMES = ("calibration", "latent")
    FUNCTION = "calibrate"
    NODE_NAME = "Calibrate"

    @classmethod
    def own_inputs(cls) -> dict:
        return {}

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {**sampler_inputs(), **cls.own_inputs()}}

    @abstractmethod
    def recorder(self, **own_inputs):
        """The recording policy for one calibration run (its own inputs as keywords)."""

    def calibrate(self, model, seed, steps, cfg, sampler_name, scheduler, positive, negative, latent_image,
                  denoise=1.0, **own_inputs):
        import nodes as comfy_nodes
        from .hooks import install
        recorder = self.recorder(**own_inputs)
        patched = install(model, window_fields(self.NODE_NAME, 0.0, 1.0), lambda: recorder, self.NODE_NAME)
        (latent,) = comfy_nodes.common_ksampler(patched, seed, steps, cfg, sampler_name, scheduler, positive,
                                                negative, latent_image, denoise=denoise)
        return (recorder.result(), latent)
