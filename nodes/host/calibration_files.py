"""Calibration files: the models folder they live in (`cache_calibrations`, registered with ComfyUI's
folder_paths, so extra_model_paths.yaml can add more), writing them (never over an existing file), reading
them back as data (JSON only, checked before use, nothing in a file is executed), the fingerprint of the
model a calibration was made on, and whether a calibration fits the model it is applied to.

A calibration is the same dict in a graph and in a file: {"format", "version", "steps", <the method's
arrays>, "model": {"family", "fingerprint"}, "sampling": {"steps", "sampler", ...}}; a file adds
"cachekit_version" and "created", and reading one adds "file" (its name, for messages).
"""
from __future__ import annotations

import datetime
import hashlib
import json
import logging
import os
import re
from pathlib import Path

import torch
from torch.utils._python_dispatch import is_traceable_wrapper_subclass

from ...cache_core import calibration_data as cd
from .families import detect
from .validation import CacheKitInputError

FOLDER = "cache_calibrations"
MAX_BYTES = 16 * 2**20
# ComfyUI socket type of each calibration format, and the union a loaded file comes out as
SOCKET_TYPES = {tag: f.socket for tag, f in cd.FORMATS.items()}
ANY_CALIBRATION = ",".join(SOCKET_TYPES.values())
WHAT = {tag: f.what for tag, f in cd.FORMATS.items()}
_log = logging.getLogger("CacheKit")
PACK_ROOT = Path(__file__).resolve().parents[2]     # the pack's folder (custom_nodes/<pack>)


def _pack_version() -> str:
    text = (PACK_ROOT / "pyproject.toml").read_text()
    return re.search(r'^version\s*=\s*"([^"]+)"', text, re.M).group(1)


CACHEKIT_VERSION = _pack_version()


def register() -> None:
    """models/cache_calibrations first, after any folder extra_model_paths.yaml named for it; .json only."""
    import folder_paths
    folder_paths.add_model_folder_path(FOLDER, os.path.join(folder_paths.models_dir, FOLDER), is_default=True)
    paths, _ = folder_paths.folder_names_and_paths[FOLDER]
    folder_paths.folder_names_and_paths[FOLDER] = (paths, {".json"})


def folders() -> list[str]:
    import folder_paths
    return folder_paths.get_folder_paths(FOLDER)


def names() -> list[str]:
    import folder_paths
    return folder_paths.get_filename_list(FOLDER)


# --- the model a calibration belongs to ---------------------------------------------------------------
def fingerprint(model) -> dict:
    """Class, block count, hidden size, a hash of every parameter's name and shape, and a hash of the
    values of a few small tensors (norms and biases: a fine-tune changes them, a LoRA loaded later does
    not touch this model's own copy)."""
    dm = model.get_model_object("diffusion_model")
    family = detect(model, "CacheKit")
    _, positions = family.layout(dm)
    params = sorted(dm.named_parameters())
    shapes = hashlib.sha256(";".join(f"{n}:{tuple(p.shape)}" for n, p in params).encode()).hexdigest()
    values = hashlib.sha256()
    for _, p in [(n, p) for n, p in params if p.numel() <= 4096 and not is_traceable_wrapper_subclass(p)][:8]:
        # a quantizing loader's own tensor class (GGUF's) is hashed as the data it stores; the current line's
        # QuantizedTensor (a wrapper holding its data elsewhere) is left out above
        values.update(p.detach().as_subclass(torch.Tensor).to("cpu", torch.float32).contiguous().numpy().tobytes())
    block0 = family.block(dm, *positions[0]) if positions else None
    # a quantized checkpoint's linears are not torch.nn.Linear on the current line (its mixed-precision ops)
    hidden = next((m.in_features for m in block0.modules() if hasattr(m, "in_features")), None) if block0 else None
    return {"class": type(dm).__name__, "blocks": len(positions), "hidden": hidden, "shapes": shapes[:16],
            "weights": values.hexdigest()[:16]}


def weight_patches(model) -> dict | None:
    """The weight patches loaded on this MODEL (LoRAs: ModelPatcher.add_patches), which the fingerprint leaves out:
    how many weights they touch and a hash of which ones, at which strengths and of which sizes; None without any.
    A LoRA shifts what the blocks compute, and with it the statistics a calibration recorded."""
    patches = getattr(model, "patches", None) or {}
    if not patches:
        return None
    h = hashlib.sha256()
    for key in sorted(patches):
        for patch in patches[key]:
            h.update(f"{key}:{patch[0]}:{patch[2]}:{_shapes(patch[1])};".encode())
    return {"weights": len(patches), "hash": h.hexdigest()[:16]}


def _shapes(data) -> str:
    """The tensor sizes inside a patch's data (a tuple, or the current line's weight adapter objects)."""
    if torch.is_tensor(data):
        return str(tuple(data.shape))
    if isinstance(data, (tuple, list)):
        return "(" + ",".join(_shapes(d) for d in data) + ")"
    inner = getattr(data, "weights", None)
    return type(data).__name__ + (_shapes(inner) if inner is not None else "")


def describe_model(model) -> dict:
    return {"family": detect(model, "CacheKit").name, "fingerprint": fingerprint(model),
            "weight_patches": weight_patches(model)}


def source_name(calibration, default: str = "the calibration") -> str:
    """How messages name a calibration: its file where it came from one."""
    return f"calibration file '{calibration['file']}'" if isinstance(calibration, dict) and "file" in calibration \
        else default


def check_model(node: str, calibration: dict, model) -> list[str]:
    """Another model family is an error; the same family with another fingerprint only a warning (a
    fine-tune may share its base model's curve). Returns what the node should say: a calibration made without the
    LoRAs now loaded, or with others (files from before CacheKit recorded them are not checked for it)."""
    made = calibration.get("model") or {}
    family = detect(model, node).name
    if made.get("family") not in (None, family):
        raise CacheKitInputError(f"{node}: {source_name(calibration)} was made on a {made['family']} model, this "
                                 f"model is {family}; calibrate this model instead")
    if made.get("fingerprint") not in (None, fingerprint(model)):
        _log.warning("%s: %s was made on another %s model (its fingerprint differs: a fine-tune, another size); "
                     "using it anyway", node, source_name(calibration), family)
    if "weight_patches" not in made:
        return []
    then, now = made["weight_patches"], weight_patches(model)
    if then == now:
        return []
    what = (f"without the LoRA (weight patches on {now['weights']} weights) now loaded" if then is None else
            "with a LoRA (weight patches) that is not loaded now" if now is None else
            "with other LoRAs or strengths than those loaded now")
    return [f"{source_name(calibration)} was made on this model {what}: a LoRA shifts what the blocks compute, so "
            f"its statistics may not hold (reuse far more or less than planned); calibrate with the LoRAs loaded"]


# --- files --------------------------------------------------------------------------------------------
def _prefix_parts(prefix: str) -> list[str]:
    parts = [p for p in re.split(r"[\\/]+", prefix.strip()) if p]
    if not parts or prefix.strip()[:1] in "/\\" or any(p in (".", "..") or ":" in p for p in parts):
        raise ValueError(f"filename_prefix must be a name, optionally with subfolders, inside the calibrations "
                         f"folder, got {prefix!r}")
    return parts


def save(calibration: dict, prefix: str) -> str:
    """Write the calibration as <prefix>_00001.json (the next free number; an existing file is never
    overwritten) in the first calibrations folder; returns its name as the Load node lists it."""
    cd.check_any(calibration)
    parts = _prefix_parts(prefix)
    folder = Path(folders()[0], *parts[:-1])
    folder.mkdir(parents=True, exist_ok=True)
    record = {k: v for k, v in calibration.items() if k != "file"}
    record |= {"cachekit_version": CACHEKIT_VERSION,
               "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
    text = json.dumps(record, indent=1, allow_nan=False)
    counter = 1 + max((int(m.group(1)) for f in folder.glob(f"{parts[-1]}_*.json")
                       if (m := re.fullmatch(re.escape(parts[-1]) + r"_(\d+)\.json", f.name))), default=0)
    while True:
        path = folder / f"{parts[-1]}_{counter:05d}.json"
        try:
            with open(path, "x", encoding="utf-8") as f:
                f.write(text)
            return "/".join([*parts[:-1], path.name])
        except FileExistsError:
            counter += 1


def load(name: str) -> dict:
    """Read and check one calibration file; ValueError saying what is wrong with it."""
    path = path_of(name)
    if path is None:
        raise ValueError(missing(name))
    real = os.path.realpath(path)
    if not any(os.path.commonpath([real, os.path.realpath(f)]) == os.path.realpath(f) for f in folders()):
        raise ValueError(f"calibration file {name!r} lies outside the calibrations folders")
    if os.path.getsize(real) > MAX_BYTES:
        raise ValueError(f"calibration file {name!r} is larger than {MAX_BYTES // 2**20} MiB")
    try:
        data = json.loads(Path(real).read_text(encoding="utf-8"))
        cd.check_any(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"calibration file {name!r} is not valid JSON ({e})") from None
    except ValueError as e:
        raise ValueError(f"calibration file {name!r} {e}") from None
    return data | {"file": name}


def path_of(name) -> str | None:
    """Where a listed calibration lies on disk (None: not in the calibrations folders)."""
    import folder_paths
    return folder_paths.get_full_path(FOLDER, name) if isinstance(name, str) and name else None


WORKFLOWS = PACK_ROOT / "workflows"   # the shipped example workflows


def missing(name) -> str:
    """What to do about a calibration file that is not there: run the workflow that saves it (a shipped one whose
    Save Cache Calibration prefix makes this name, if any) or save one with that name."""
    prefix = re.sub(r"_\d+\.json$", "", str(name))
    makers = []
    for path in sorted(WORKFLOWS.glob("*.json")):
        try:
            nodes = json.loads(path.read_text(encoding="utf-8")).get("nodes", [])
        except (OSError, ValueError):
            continue
        if any(n.get("type") == "SaveCacheCalibration" and (n.get("widgets_values") or [None])[-1] == prefix
               for n in nodes):
            makers.append(path.stem)
    made_by = (f"the {' or '.join(repr(m) for m in makers)} workflow (CacheKit's templates) writes it: open and run "
               f"that one first, then run this one again") if makers else (
        "Save Cache Calibration writes the files listed here: run the workflow that calibrates this model first, "
        "or pick another file")
    return f"no calibration file {name!r} in {folders()}; {made_by}"


def summary(calibration: dict) -> str:
    sampling = calibration.get("sampling") or {}
    made = calibration.get("model") or {}
    how = ", ".join(str(sampling[k]) for k in ("sampler", "scheduler") if k in sampling)
    return (f"{WHAT.get(calibration.get('format'), 'calibration')} for {calibration.get('steps')} steps"
            f"{' on ' + made['family'] if 'family' in made else ''}{' (' + how + ')' if how else ''}")


def find_matching(fmt: str, model, fits=lambda data: True) -> dict | None:
    """The newest saved calibration of this format made on this very model (same family and fingerprint)
    that `fits`."""
    family, print_ = detect(model, "CacheKit").name, fingerprint(model)
    found = []
    for name in names():
        try:
            data = load(name)
        except ValueError as e:
            _log.debug("CacheKit: skipping %s", e)
            continue
        made = data.get("model") or {}
        if data["format"] == fmt and made.get("family") == family and made.get("fingerprint") == print_ \
                and fits(data):
            found.append((str(data.get("created", "")), name, data))
    return max(found)[2] if found else None
