"""Which real ComfyUI runs here, and how to import it as a library.

scripts/setup_runtime.sh builds one folder per supported ComfyUI line under .runtime/comfyui-<version>/ (its
source tree and its own venv). CACHEKIT_COMFY picks the line (default: the current one); CACHEKIT_COMFY_DIR
points at any other ComfyUI tree. Import order matters: argument parsing off and --cpu set before
comfy.model_management is imported, the base directory set before folder_paths, utils.extra_config before nodes.
"""
from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CURRENT, OLDEST = "0.33.0", "0.3.75"      # the lines the tests cover (README, pyproject's requires-comfyui)
VERSION = os.environ.get("CACHEKIT_COMFY", CURRENT)
COMFY_DIR = Path(os.environ.get("CACHEKIT_COMFY_DIR", REPO / ".runtime" / f"comfyui-{VERSION}" / "ComfyUI"))


def python(version: str = VERSION) -> Path:
    """The venv interpreter of a runtime built by setup_runtime.sh."""
    return REPO / ".runtime" / f"comfyui-{version}" / "venv" / "bin" / "python"


def comfyui_version() -> str:
    """The version of the ComfyUI tree in use, as it states it (comfyui_version.py)."""
    text = (COMFY_DIR / "comfyui_version.py").read_text()
    return text.split("=", 1)[1].strip().strip("\"'")


def load(base_directory: str | None = None, cpu: bool | None = None):
    """Make `import comfy...` work; returns the ComfyUI folder. Once per process."""
    if "comfy.model_management" in sys.modules:
        return COMFY_DIR
    if not (COMFY_DIR / "comfy").is_dir():
        raise RuntimeError(f"ComfyUI not found at {COMFY_DIR}: run scripts/setup_runtime.sh (make setup) first")
    if str(COMFY_DIR) not in sys.path:
        sys.path.insert(0, str(COMFY_DIR))
    import comfy.options
    comfy.options.enable_args_parsing(False)
    import comfy.cli_args
    import torch
    args = comfy.cli_args.args
    args.cpu = (not torch.cuda.is_available()) if cpu is None else cpu
    args.base_directory = base_directory or tempfile.mkdtemp(prefix="cachekit-comfy-base-")
    import utils.extra_config  # noqa: F401  (before nodes: nodes.py puts comfy/ on sys.path)
    import comfy.model_management  # noqa: F401
    return COMFY_DIR


def with_fields_since(params: str, cfg: dict, **fields) -> dict:
    """A hand-written model config plus the fields ComfyUI added to that family's config dataclass after 0.3.75
    (its model_detection fills them from a real checkpoint), where the running ComfyUI declares them: one config
    serves every line. params: "module:Class" of the dataclass (e.g. "comfy.ldm.flux.model:FluxParams")."""
    import dataclasses
    import importlib
    module, name = params.split(":")
    declared = {f.name for f in dataclasses.fields(getattr(importlib.import_module(module), name))}
    return cfg | {k: v for k, v in fields.items() if k in declared}
