"""Load this repository as a ComfyUI custom node package named `cachekit`, the way ComfyUI's loader
does (the module name is arbitrary; the pack uses relative imports only)."""
from __future__ import annotations

import importlib.util
import sys

from comfy_runtime import REPO


def load():
    if "cachekit" in sys.modules:
        return sys.modules["cachekit"]
    spec = importlib.util.spec_from_file_location("cachekit", REPO / "__init__.py",
                                                  submodule_search_locations=[str(REPO)])
    module = importlib.util.module_from_spec(spec)
    sys.modules["cachekit"] = module
    spec.loader.exec_module(module)
    return module
