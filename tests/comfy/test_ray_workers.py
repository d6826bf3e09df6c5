"""Raylight: CacheKit on Ray Workers against raylight's contract (nodes/ray_workers.py), with stand-ins for `ray`,
raylight's `ensure_fresh_actors` and its GPU workers: each worker is a fresh process that receives the patch
function pickled by value (as Ray ships it), applies it to its own ModelPatcher and samples. raylight itself
needs CUDA and Ray; it is not installed here."""
import json
import os
import subprocess
import sys
import types
from pathlib import Path

import cloudpickle
import pytest

from harness import pack
from harness.comfy_runtime import REPO

STANDIN = Path(__file__).resolve().parents[1] / "workers" / "ray_worker_standin.py"


class Worker:
    """A raylight GPU worker: model_function_runner.remote(fn, *args) runs fn on its own model elsewhere."""
    def __init__(self):
        self.results = []
        self.model_function_runner = types.SimpleNamespace(remote=self._remote)

    def _remote(self, fn, *args):
        payload = ray_module.cloudpickle.dumps((fn, args))

        def result():
            done = subprocess.run([sys.executable, str(STANDIN)], input=payload, capture_output=True, timeout=120,
                                  env=dict(os.environ, PYTHONPATH=str(REPO / "scripts")))   # the harness
            assert done.returncode == 0, done.stderr.decode()[-2000:]
            self.results.append(json.loads(done.stdout.decode().strip().splitlines()[-1]))
            return self.results[-1]
        return result


ray_module = types.SimpleNamespace(get=lambda futures: [f() for f in futures], cloudpickle=cloudpickle)


@pytest.fixture
def raylight(monkeypatch):
    workers = [Worker(), Worker()]
    actors = {"workers": workers}
    rw = types.ModuleType("raylight.distributed_worker.ray_worker")
    rw.ensure_fresh_actors = lambda a: (a, a["workers"], None)
    for name, mod in {"ray": ray_module, "raylight": types.ModuleType("raylight"),
                      "raylight.distributed_worker": types.ModuleType("raylight.distributed_worker"),
                      "raylight.distributed_worker.ray_worker": rw}.items():
        monkeypatch.setitem(sys.modules, name, mod)
    return actors


def test_every_worker_applies_the_method_to_its_own_model(ck, raylight):
    out = pack.node(ck, "RaylightCacheKit", ray_actors=raylight, method="Apply First Block Cache",
                    settings='{"residual_diff_threshold": 0.3, "max_consecutive_skips": 2}')
    assert out == (raylight,)
    for w in raylight["workers"]:
        (r,) = w.results
        assert r["loaded_before"] == []                   # the function came by value; the worker loaded the pack
        assert r["input_untouched"] and r["stats"]["node"] == "Apply First Block Cache"
        cond = r["stats"]["streams"]["cond"]
        assert cond["reused_steps"] and max(len(run) for run in _runs(cond["reused_steps"])) <= 2


def _runs(steps):
    out, cur = [], []
    for s in steps:
        if cur and s != cur[-1] + 1:
            out.append(cur)
            cur = []
        cur.append(s)
    return out + ([cur] if cur else [])


@pytest.mark.parametrize("settings, message", [
    ("{not json", "settings must be a JSON object of Apply First Block Cache's inputs"),
    ("[1, 2]", "settings must be a JSON object"),
    ('{"threshold": 0.1}', "Apply First Block Cache has no input threshold"),
    ('{"residual_diff_threshold": 7}', "Apply First Block Cache: residual_diff_threshold must be <= 1.0, got 7"),
])
def test_bad_settings_are_refused_before_reaching_a_worker(ck, raylight, settings, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        pack.node(ck, "RaylightCacheKit", ray_actors=raylight, method="Apply First Block Cache",
                  settings=settings)
    assert not any(w.results for w in raylight["workers"])


def test_without_raylight_the_node_says_so(ck):
    with pytest.raises(ValueError, match="Raylight: CacheKit on Ray Workers: raylight is not installed here"):
        pack.node(ck, "RaylightCacheKit", ray_actors={}, method="Apply TeaCache", settings="{}")
