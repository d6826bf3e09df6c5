"""What the CacheKit nodes share, so each node file holds only what is its own: the category, the display
name, one check of every input against its own declaration in the node function (at queue time ComfyUI checks
widget values against the same declaration itself, one error on each input that is out of range; linked values
reach only the node function), MODEL in/out with the schedule window, and KSampler's inputs for the calibration
nodes."""
from __future__ import annotations

import importlib
import logging
from abc import ABC, abstractmethod
from typing import Callable

from ..cache_core import calibration_data, presets
from .charts import ui as chart_ui
from .examples import Examples
from .host import calibration_files as files
from .host import validation
from .host.families import SUPPORTED_NAMES, detect, made_for
from .host.install import install

_log = logging.getLogger("CacheKit")

MODEL_INPUT = ("MODEL", {"tooltip": f"A diffusion transformer from a loader (or a LoRA / sampling node after one). "
                                    f"Supported: {SUPPORTED_NAMES}."})
# The node library's folders: what a user picks first, then the two-step workflows, then files, then the rest
APPLY, CALIBRATE, FILES, ADVANCED = ("CacheKit", "CacheKit/calibrate and tune", "CacheKit/files",
                                     "CacheKit/advanced")
# Short widget labels (the frontend shows an input's display_name): the input names stay what saved workflows use
LABELS = {
    "residual_diff_threshold": "threshold", "max_consecutive_skips": "max skips in a row",
    "target_compute": "target compute", "custom_coefficients": "custom coefs", "retention_ratio": "retention",
    "Fn_compute_blocks": "front blocks Fn", "Bn_compute_blocks": "back blocks Bn", "max_warmup_steps": "warmup steps",
    "max_cached_steps": "max cached", "max_continuous_cached_steps": "max cached in a row",
    "max_accumulated_residual_diff": "max total diff", "taylorseer_order": "Taylor order",
    "self_attention_interval": "self-attn every", "cross_attention_interval": "cross-attn every",
    "uncond_interval": "uncond every", "uncond_max_sigma": "uncond max sigma", "attention_interval": "attn every",
    "attention_weight": "attn weight", "attention_max_sigma": "attn max sigma", "retention_steps": "retention",
}


# The speed/quality dial of each method, in one plain sentence before the tooltip's details
FASTER = "Higher = faster, lower = closer to the uncached result. "
PLAIN = {name: FASTER for name in ("residual_diff_threshold", "rel_l1_thresh", "threshold", "cache_interval",
                                   "self_attention_interval", "cross_attention_interval", "alpha")}


def labelled(inputs: dict) -> dict:
    """The declarations with a short display_name where LABELS has one (and the declaration none), and the plain
    sentence of PLAIN in front of the tooltip."""
    out = {}
    for name, decl in inputs.items():
        if len(decl) > 1 and (name in LABELS or name in PLAIN):
            opts = dict(decl[1])
            if name in LABELS:
                opts.setdefault("display_name", LABELS[name])
            if name in PLAIN and not opts.get("tooltip", "").startswith(PLAIN[name]):
                opts["tooltip"] = PLAIN[name] + opts.get("tooltip", "")
            decl = (decl[0], opts, *decl[2:])
        out[name] = decl
    return out


def window_inputs(start_percent: float = 0.0, end_percent: float = 1.0) -> dict:
    return {
        "start_percent": ("FLOAT", {"default": start_percent, "min": 0.0, "max": 1.0, "step": 0.01,
                                    "tooltip": "Caching may start at this point of the denoising schedule."}),
        "end_percent": ("FLOAT", {"default": end_percent, "min": 0.0, "max": 1.0, "step": 0.01,
                                  "tooltip": "Caching stops after this point of the schedule; later steps all "
                                             "compute."}),
    }


class CacheKitNode:
    """Every CacheKit node. NODE_NAME is its display name and what its messages start with."""
    CATEGORY = CALIBRATE
    NODE_NAME = "CacheKit"

    @classmethod
    def declared_inputs(cls) -> dict:
        spec = cls.INPUT_TYPES()
        return {**spec.get("required", {}), **spec.get("optional", {})}

    @classmethod
    def defaults(cls) -> dict:
        """The declared default of every input that has one (what a new node in the graph starts with)."""
        return {name: decl[1]["default"] for name, decl in cls.declared_inputs().items()
                if len(decl) > 1 and "default" in decl[1]}

    @classmethod
    def checked(cls, values: dict) -> dict:
        """The values held to the node's declaration: numbers finite and in range, choices valid."""
        return validation.declared(cls.NODE_NAME, cls.declared_inputs(), values)

    # No VALIDATE_INPUTS: ComfyUI would attach its one answer to every input of the node. Without it ComfyUI holds
    # each widget value to its min/max/choices at queue time and names the one input that is wrong.

    def fail(self, message: str):
        raise validation.CacheKitInputError(f"{self.NODE_NAME}: {message}")

    def warn(self, message: str) -> None:
        """Something the user should know that does not stop the node: logged, and shown on the node with each
        run it makes (Apply nodes)."""
        _log.warning("%s: %s", self.NODE_NAME, message)
        self.warnings = [*getattr(self, "warnings", []), message]


TUNING_TYPE = "CACHE_TUNING"


def target_inputs() -> dict:
    """Auto-tune (cache_core/tuning.py): a saving asked for instead of a threshold."""
    return {
        "target_compute": ("FLOAT", {
            "default": 0.0, "min": 0.0, "max": 1.0, "step": 0.05,
            "tooltip": "Ask for a saving instead of a threshold: the fraction of block evaluations to compute "
                       "(0.5 = half). 0 = use the threshold as set. The threshold is then picked per run from a "
                       "tuning (Tune Cache Threshold; MagCache needs none)."}),
        "tuning": (TUNING_TYPE, {"tooltip": "From Tune Cache Threshold or Load Cache Calibration. Without it, "
                                            "target_compute uses the newest saved tuning made on this model."}),
    }


class CacheNode(CacheKitNode, ABC):
    """An Apply node: MODEL in, the method installed on a clone out. Subclasses declare own_inputs() and
    turn the checked values into the method (policy factory and engine limits). THRESHOLD names the input a
    target_compute replaces (threshold-driven methods)."""
    RETURN_TYPES = ("MODEL",)
    FUNCTION = "apply"
    CATEGORY = APPLY
    WINDOW: dict | None = {}          # defaults for window_inputs(); None = no window inputs
    OPTIONAL: dict = {}
    THRESHOLD: str | None = None
    # the method as tests, benchmarks, workflows and the coverage table name and run it (examples.py)
    METHOD = ""                       # its name in workflow titles ("Pyramid Attention Broadcast")
    SHORT = ""                        # in tables and benchmark rows ("PAB"); empty = METHOD
    RANK = 100                        # its place in those tables (the order the methods were added)
    EXAMPLES: Examples | None = None

    @classmethod
    def own_inputs(cls) -> dict:
        return {}

    @classmethod
    def INPUT_TYPES(cls):
        required = {"model": MODEL_INPUT, **cls.own_inputs()}
        if cls.WINDOW is not None:
            required.update(window_inputs(**cls.WINDOW))
        spec = {"required": labelled(required), "hidden": {"unique_id": "UNIQUE_ID"}}
        optional = {**cls.OPTIONAL, **(target_inputs() if cls.THRESHOLD else {})}
        if optional:
            spec["optional"] = labelled(optional)
        return spec

    @abstractmethod
    def method(self, model, v: dict) -> tuple[Callable, dict]:
        """(policy factory, engine limits such as warmup_steps / max_consecutive) from checked values."""

    def apply(self, model, unique_id=None, **inputs):
        # an optional input a workflow does not carry (saved before it existed, or an API prompt) takes its default
        optional = {name: decl[1]["default"] for name, decl in self.INPUT_TYPES().get("optional", {}).items()
                    if len(decl) > 1 and "default" in decl[1]}
        v = self.checked(optional | inputs)
        self.warnings = []           # ComfyUI keeps a node's object between prompts
        target = v["target_compute"] if self.THRESHOLD else 0.0
        if target > 0.0:
            v[self.THRESHOLD] = 1.0          # a placeholder: each run sets it from the target
        make_policy, fields = self.method(model, v)
        if target > 0.0:
            make_policy = self.targeted(model, target, make_policy(), v.get("tuning"))
        if self.WINDOW is not None:
            start, end = validation.percent_window(self.NODE_NAME, v["start_percent"], v["end_percent"])
            fields = dict(fields, start_percent=start, end_percent=end)
        fields = dict(fields, notes=tuple(self.warnings))
        return (install(model, fields, make_policy, self.NODE_NAME, unique_id, node_class=type(self).__name__),)

    def targeted(self, model, target: float, policy, tuning: dict | None):
        """The method aimed at `target`: from a tuning made for it, or from its schedule when it has no probe."""
        from ..cache_core.tuning import Targeted, traces_from
        if policy.probe is None:
            return Targeted(policy, target)
        fmt = calibration_data.THRESHOLD_TUNING
        if tuning is None:
            tuning = files.find_matching(fmt, model, lambda data: data["method"].get("name") == policy.name)
            if tuning is None:
                self.fail(f"target_compute {target} needs a tuning: none is connected and none made for "
                          f"{policy.name} on this model is saved in {files.folders()}; run Tune Cache Threshold "
                          f"after this node (with target_compute 0) once and save it with Save Cache Calibration")
            _log.info("%s: target_compute uses the saved %s", self.NODE_NAME, files.source_name(tuning))
        tuning = self.calibration(fmt, tuning, model, "tuning")
        made = tuning["method"]
        mine = {"name": policy.name, "probe": policy.probe, "front_blocks": policy.front_blocks,
                **policy.tuning_key()}
        if any(made.get(k) != v for k, v in mine.items()):
            self.fail(f"{files.source_name(tuning, 'the tuning')} was recorded for "
                      f"{', '.join(f'{k} {made.get(k)}' for k in mine)}; this node runs "
                      f"{', '.join(f'{k} {v}' for k, v in mine.items())}: tune this setting")
        return Targeted(policy, target, traces_from(tuning), tuning["steps"])

    def resolve_preset(self, method: str, choice: str, model) -> str | None:
        """'auto': the published preset for the detected family/variant, or None where there is none;
        otherwise the named one (checked against the declared choices), with a warning where it was published for
        another family."""
        family = detect(model, self.NODE_NAME)
        if choice == "auto":
            return family.preset(method, model.model.diffusion_model)
        published_for = presets.family(method, choice)
        if not made_for(family, published_for):
            calibrate = "Calibrate TeaCache" if method == "teacache" else "Calibrate MagCache"
            self.warn(f"the preset '{choice}' was published for {published_for}, and this model is {family.name}: "
                      f"its numbers do not describe this model, so reuse decisions will be off. Use 'auto', or "
                      f"calibrate this model ({calibrate})")
        return choice

    def saved_calibration(self, fmt: str, model, calibrate_node: str) -> dict:
        """For 'auto' without a published preset: the newest saved calibration made on this very model."""
        found = files.find_matching(fmt, model)
        if found is None:
            self.fail(f"no published preset for this {detect(model, self.NODE_NAME).name} model and no saved "
                      f"calibration made on it in {files.folders()}; run {calibrate_node} once, save it with Save "
                      f"Cache Calibration, and 'auto' picks it up (or connect the calibration directly)")
        _log.info("%s: 'auto' uses the saved %s", self.NODE_NAME, files.source_name(found))
        return found

    def calibration(self, fmt: str, value: dict, model, input_name: str = "calibration"):
        """A connected calibration (from a calibrate node or a file), checked and matched to the model."""
        try:
            checked = calibration_data.CHECKS[fmt](value)
        except ValueError as e:
            self.fail(f"{files.source_name(value, input_name)} {e}")
        for note in files.check_model(self.NODE_NAME, value, model):
            self.warn(note)
        return checked


def comfy_nodes():
    """ComfyUI's own nodes.py (KSampler), looked up by name at run time: this package is called nodes too, and an
    import statement of that name reads as one of this package."""
    return importlib.import_module("nodes")


def sampler_inputs() -> dict:
    """KSampler's own inputs, for the calibration nodes that sample like it."""
    spec = dict(comfy_nodes().KSampler.INPUT_TYPES()["required"])
    spec["model"] = MODEL_INPUT
    return spec


class CalibrateNode(CacheKitNode, ABC):
    """A calibration node: samples once exactly like KSampler (same inputs) with a recording policy that
    never reuses, and returns (calibration, latent). Subclasses give NODE_NAME, RETURN_TYPES, their own
    extra inputs and the recorder."""
    RETURN_NAMES = ("calibration", "latent")
    FUNCTION = "calibrate"
    CATEGORY = CALIBRATE

    @classmethod
    def own_inputs(cls) -> dict:
        return {}

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": labelled({**sampler_inputs(), **cls.own_inputs()})}

    @abstractmethod
    def recorder(self, v: dict, model):
        """The recording policy for one calibration run, from the checked values."""

    def calibrate(self, model, positive, negative, latent_image, **inputs):
        v = self.checked(inputs)
        recorder = self.recorder(v, model)
        patched = install(model, {}, lambda: recorder, self.NODE_NAME, replacing=False)
        (latent,) = comfy_nodes().common_ksampler(patched, v["seed"], v["steps"], v["cfg"], v["sampler_name"],
                                                v["scheduler"], positive, negative, latent_image,
                                                denoise=v.get("denoise", 1.0))
        try:
            result = recorder.result()
        except ValueError as e:
            self.fail(str(e))
        shift = getattr(model.get_model_object("model_sampling"), "shift", None)
        result["model"] = files.describe_model(model)      # what a saved file is matched against
        result["sampling"] = {"steps": v["steps"], "sampler": v["sampler_name"], "scheduler": v["scheduler"],
                              "cfg": v["cfg"], "denoise": v.get("denoise", 1.0),
                              "shift": float(shift) if shift is not None else None}
        return {"ui": chart_ui(result), "result": (result, latent)}
