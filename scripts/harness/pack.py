"""Load this repository as a ComfyUI custom node package named `cachekit`, the way ComfyUI's loader
does (the module name is arbitrary; the pack uses relative imports only)."""
from __future__ import annotations

import importlib.util
import sys

from harness.comfy_runtime import REPO


def load():
    if "cachekit" in sys.modules:
        return sys.modules["cachekit"]
    spec = importlib.util.spec_from_file_location("cachekit", REPO / "__init__.py",
                                                  submodule_search_locations=[str(REPO)])
    module = importlib.util.module_from_spec(spec)
    sys.modules["cachekit"] = module
    spec.loader.exec_module(module)
    return module


def method_nodes() -> dict:
    """The Apply nodes with example settings (nodes/examples.py) in their tables' order, by key: the node's module
    name, what workflow files, calibrations and test ids call the method. Loads ComfyUI and the pack."""
    from harness import comfy_runtime
    comfy_runtime.load()
    return {cls.__module__.rsplit(".", 1)[1]: cls for cls in load().nodes.METHOD_NODES}


def load_core():
    """cache_core alone, as a top-level package, without putting the repo on sys.path (its `nodes/`
    folder would shadow ComfyUI's nodes.py)."""
    if "cache_core" in sys.modules:
        return sys.modules["cache_core"]
    spec = importlib.util.spec_from_file_location("cache_core", REPO / "cache_core" / "__init__.py",
                                                  submodule_search_locations=[str(REPO / "cache_core")])
    module = importlib.util.module_from_spec(spec)
    sys.modules["cache_core"] = module
    spec.loader.exec_module(module)
    return module


def node(ck, name: str, **inputs):
    """Run a CacheKit node function the way ComfyUI does (keywords), with its declared defaults for the
    inputs not given."""
    cls = ck.NODE_CLASS_MAPPINGS[name]
    out = getattr(cls(), cls.FUNCTION)(**{**cls.defaults(), **inputs})
    return out["result"] if isinstance(out, dict) and "result" in out else out   # nodes that also show data
