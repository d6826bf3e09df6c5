"""CacheKit on raylight's Ray workers (komikndr/raylight: one generation split over GPUs with Ray + xDiT).

raylight's workers each load the model themselves, so a MODEL patched in the main process never reaches
them; its loaders and samplers pass RAY_ACTORS instead, and a patch reaches the workers the way raylight's own
ported nodes send theirs: `ensure_fresh_actors(ray_actors)` gives the GPU workers, and
`worker.model_function_runner.remote(fn, *args)` runs `fn(model, *args)` on each worker's own ModelPatcher
and keeps what it returns (raylight's ray_patch_decorator.py). This node sends any CacheKit Apply node that
way: each worker loads this pack by its folder if it has not, and applies the node to its model, so the
sampler that raylight runs in every worker runs the cache there, and nodes/parallel.py finds xDiT's
sequence-parallel group in the worker: every rank takes the same decision.

Written against raylight's public contract; raylight itself needs CUDA and Ray and is not installed here
(tests/comfy/test_ray_workers.py drives this node with stand-ins for `ray` and the workers).
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from . import common

RAY_ACTORS = "RAY_ACTORS"
PACK_DIR = str(Path(__file__).resolve().parents[1])


def _apply_in_worker(model, pack_dir: str, node_class: str, values: dict):
    """Runs inside a Ray worker on its ModelPatcher (shipped by value: it needs nothing of this module)."""
    import importlib.util
    import sys as _sys
    name = "cachekit_ray_worker"
    pack = _sys.modules.get(name)
    if pack is None:
        spec = importlib.util.spec_from_file_location(name, f"{pack_dir}/__init__.py",
                                                      submodule_search_locations=[pack_dir])
        pack = importlib.util.module_from_spec(spec)
        _sys.modules[name] = pack
        spec.loader.exec_module(pack)
    node = pack.NODE_CLASS_MAPPINGS[node_class]
    return getattr(node(), node.FUNCTION)(model=model, **values)[0]


class RaylightCacheKit(common.CacheKitNode):
    NODE_NAME = "Raylight: CacheKit on Ray Workers"   # named for the pack it serves: not a cache method itself
    CATEGORY = common.ADVANCED
    DESCRIPTION = ("For raylight (multi-GPU with Ray): applies a CacheKit method to the model in every Ray worker, "
                   "between raylight's loader and its sampler. The ranks that share one sequence agree on every "
                   "cache decision.")
    RETURN_TYPES = (RAY_ACTORS,)
    RETURN_NAMES = ("ray_actors",)
    FUNCTION = "apply"

    @classmethod
    def methods(cls) -> dict:
        from . import NODE_CLASS_MAPPINGS
        return {c.NODE_NAME: c for c in NODE_CLASS_MAPPINGS.values() if isinstance(c, type)
                and issubclass(c, common.CacheNode)}

    @classmethod
    def INPUT_TYPES(cls):
        names = sorted(cls.methods())
        return {"required": {
            "ray_actors": (RAY_ACTORS, {"tooltip": "From raylight's Ray loader (or a Ray patch node after it)."}),
            "method": (names, {"default": "Apply First Block Cache", "tooltip": "The CacheKit node to apply."}),
            "settings": ("STRING", {"default": "{}", "multiline": True,
                                    "tooltip": "That node's inputs as JSON, e.g. {\"residual_diff_threshold\": 0.12}; "
                                               "the others take their defaults."}),
        }}

    def apply(self, ray_actors, **inputs):
        v = self.checked(inputs)
        node = self.methods()[v["method"]]
        try:
            given = json.loads(v["settings"] or "{}")
        except json.JSONDecodeError as e:
            self.fail(f"settings must be a JSON object of {v['method']}'s inputs ({e}), got {v['settings']!r}")
        if not isinstance(given, dict):
            self.fail(f"settings must be a JSON object of {v['method']}'s inputs, got {v['settings']!r}")
        known = {k for k, d in node.declared_inputs().items() if k != "model"}
        unknown = sorted(set(given) - known)
        if unknown:
            self.fail(f"{v['method']} has no input {', '.join(unknown)} (it has {', '.join(sorted(known))})")
        values = node.checked({**node.defaults(), **given})     # refused here, naming the node, not in a worker
        try:
            import ray
            from raylight.distributed_worker.ray_worker import ensure_fresh_actors
        except ImportError as e:
            self.fail(f"raylight is not installed here ({e}); use the CacheKit Apply nodes on a MODEL instead")
        ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])   # workers need not import this pack
        ray_actors, workers, _ = ensure_fresh_actors(ray_actors)
        ray.get([w.model_function_runner.remote(_apply_in_worker, PACK_DIR, node.__name__, values) for w in workers])
        return (ray_actors,)


class CacheKitOnRayWorkers(RaylightCacheKit):
    """The node's id before 0.4: workflows saved with it still load and run; the search lists the new one only
    (its id began with "Cache", which put it first in every search for "cache")."""
    DEPRECATED = True
