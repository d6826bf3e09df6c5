"""Cache decisions under sequence parallelism (raylight, xDiT): two gloo processes, each running the real Wan
blocks of a tiny model on half of the tokens with attention that all-gathers K and V, through CacheKit's
engine with First Block Cache (tests/workers/parallel_worker.py). With the decision sync every rank takes the
one-process decision on every step, although the halves measured alone fall on opposite sides of the threshold
on some step; without it they part ways (or the collectives inside attention fail)."""
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from harness.comfy_runtime import REPO

WORKER = Path(__file__).resolve().parents[1] / "workers" / "parallel_worker.py"


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(tmp: Path, name: str, world: int, threshold: float, mode: str = "sync", timeout: float = 30.0):
    """Run `world` ranks; returns ([record of each rank], [exit code of each rank])."""
    env = dict(os.environ, TORCH_DISTRIBUTED_DEBUG="DETAIL", OMP_NUM_THREADS="1", PYTHONPATH=str(REPO / "scripts"))
    port = _port()
    outs = [tmp / f"{name}_{r}.json" for r in range(world)]
    procs = [subprocess.Popen([sys.executable, str(WORKER), "--rank", str(r), "--world", str(world), "--port",
                               str(port), "--mode", mode, "--threshold", str(threshold), "--out", str(outs[r])],
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
             for r in range(world)]
    codes = []
    for p in procs:
        try:
            p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
        codes.append(p.returncode)
    records = [json.loads(o.read_text()) if o.exists() else {"decisions": []} for o in outs]
    return records, codes


def ratio(parts):
    """A stream's metric from the partial sums one rank measured (None: nothing measured, first step)."""
    return parts[0] / parts[1] if parts[1] else None


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("parallel")
    # threshold 0 (never reuses): what each half measures alone at every step; the threshold goes between the
    # two halves on the step where they differ most, a third of the way up from the lower one (the whole
    # sequence's metric, a weighted mean of the halves, lies near their middle: clear of the threshold)
    probe, codes = launch(tmp, "probe", 2, 0.0)
    assert codes == [0, 0]
    local = [[ratio(row[0]) for row in r["local"]] for r in probe]
    steps = [i for i in range(len(local[0])) if local[0][i] is not None]
    step = max(steps, key=lambda i: abs(local[0][i] - local[1][i]) / max(local[0][i], local[1][i]))
    low, high = sorted((local[0][step], local[1][step]))
    threshold = low + (high - low) / 3
    single, code = launch(tmp, "single", 1, threshold)
    assert code == [0]
    synced, codes = launch(tmp, "sync", 2, threshold)
    assert codes == [0, 0]
    unsynced, codes_off = launch(tmp, "nosync", 2, threshold, mode="nosync", timeout=30.0)
    return dict(threshold=threshold, single=single[0], synced=synced, unsynced=unsynced, codes_off=codes_off)


def test_ranks_decide_alike_and_as_one_process(runs):
    a, b = runs["synced"]
    assert a["decisions"] == b["decisions"] == runs["single"]["decisions"]
    assert any(runs["single"]["decisions"]) and not all(runs["single"]["decisions"])
    for r in (a, b):
        for got, want in zip(r["metrics"], runs["single"]["metrics"]):
            assert (got is None) == (want is None)
            if got is not None:
                assert got == pytest.approx(want, rel=1e-6)


def test_the_halves_alone_fall_on_opposite_sides_of_the_threshold(runs):
    thr = runs["threshold"]
    a, b = ([ratio(row[0]) for row in r["local"]] for r in runs["synced"])
    assert any(x is not None and y is not None and (x < thr) != (y < thr) for x, y in zip(a, b))


def test_gathered_output_equals_one_process(runs):
    import torch
    single = torch.tensor(runs["single"]["tokens"])
    for r in runs["synced"]:
        torch.testing.assert_close(torch.tensor(r["tokens"]), single, rtol=1e-4, atol=1e-5)


def test_without_the_sync_the_ranks_part_ways(runs):
    """The negative control: the same run with the sync off diverges (or its collectives fail)."""
    a, b = runs["unsynced"]
    assert a["decisions"] != b["decisions"] or runs["codes_off"] != [0, 0]


class _Recording:
    """A stand-in sync that counts what the engine asks of it (one rank: the sums come back as they went)."""
    collective, ranks = True, 1

    def __init__(self):
        self.calls = []

    def sum(self, partials):
        self.calls.append("sum")
        return partials

    def all_agree(self, verdict, device):
        self.calls.append("agree")
        return verdict


@pytest.mark.parametrize("node, inputs, collectives", [
    ("ApplyFirstBlockCache", dict(residual_diff_threshold=0.3), True),
    ("ApplyTeaCache", dict(rel_l1_thresh=0.3, coefficients="custom"), True),
    ("ApplySeaCache", dict(threshold=0.3), True),
    ("ApplyDBCache", dict(Fn_compute_blocks=1, Bn_compute_blocks=1, residual_diff_threshold=0.3), True),
    ("ApplyMagCache", dict(threshold=0.3, ratios="wan2.1_t2v_1.3B"), False),
    ("ApplyTaylorSeerCache", dict(cache_interval=3), False),
    ("ApplySpectrumCache", dict(warmup_steps=2, final_steps=1, degree=1), False),
])
def test_methods_that_decide_from_tensors_agree_every_decision_and_the_others_need_no_collective(
        ck, monkeypatch, node, inputs, collectives):
    from harness import pack
    from harness import tiny_models as tm
    from harness.node_calls import last_stats
    sync = _Recording()
    import importlib
    monkeypatch.setattr(importlib.import_module("cachekit.nodes.host.parallel"), "decision_sync", lambda: sync)
    m, lat, pos, neg = tm.wan()
    tm.sample(pack.node(ck, node, model=m, **inputs)[0], lat, pos, neg, steps=8, cfg=3.0)
    if collectives:    # one sum of the stacked streams and one verdict per decision: 8 steps, cond+uncond batched
        assert sync.calls == ["sum", "agree"] * 8
    else:
        assert sync.calls == []
    if node == "ApplySeaCache":   # a rank holds a shard of the tokens: no image grid to filter over, and it says so
        assert any("split across ranks" in n for n in last_stats(ck)["notes"])
