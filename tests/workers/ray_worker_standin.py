"""A stand-in for one raylight Ray worker (tests/comfy/test_ray_workers.py): a fresh process that holds its own
ModelPatcher (a tiny seeded Wan), receives a patch function pickled by value on stdin the way Ray ships
`model_function_runner.remote(fn, *args)`, runs `model = fn(model, *args)` as raylight's worker does, then
samples as raylight's sampler does in every worker, and prints what the cache did as JSON. The test starts it with
scripts/ on PYTHONPATH (the harness)."""
import json
import sys

import cloudpickle

from harness import comfy_runtime

comfy_runtime.load()
from harness import tiny_models as tm  # noqa: E402  (after ComfyUI is importable)

fn, args = cloudpickle.loads(sys.stdin.buffer.read())
loaded_before = sorted(k for k in sys.modules if "cachekit" in k)
m, lat, pos, neg = tm.wan()
patched = fn(m, *args)
tm.sample(patched, lat, pos, neg, steps=8, cfg=3.0)
stats = sys.modules["cachekit_ray_worker.nodes.host.stats_feed"].recent()[-1]
print(json.dumps({"loaded_before": loaded_before, "stats": stats, "input_untouched": patched is not m}))
