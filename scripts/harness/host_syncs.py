"""Host syncs: calls of the Tensor methods that bring a value to the host (item, tolist, numpy, __bool__, __float__,
__int__), as bench_speed.py reports them per model call and the tests bound them (tests/comfy/test_host_syncs.py:
one per model call beyond the uncached run). .cpu() alone is not counted: to_floats' .cpu().tolist() is one
transfer."""
from __future__ import annotations

import contextlib

import torch

READS = ("item", "tolist", "numpy", "__bool__", "__float__", "__int__")


@contextlib.contextmanager
def count_host_syncs():
    """Counts the host reads made while the block runs, in the dict yielded ({"n": count})."""
    counts = {"n": 0}
    saved = {n: getattr(torch.Tensor, n) for n in READS}

    def counting(orig):
        def f(self, *a, **k):
            counts["n"] += 1
            return orig(self, *a, **k)
        return f
    for n in READS:
        setattr(torch.Tensor, n, counting(saved[n]))
    try:
        yield counts
    finally:
        for n, f in saved.items():
            setattr(torch.Tensor, n, f)


def extra_host_syncs(base, patched, latent, pos, neg, **sample) -> int:
    """Host reads of a run of `patched` beyond those of the same run of `base` (tiny_models.sample's keywords:
    steps, cfg, sampler, ...). Both run once first, so first-run work is not counted; `patched` runs last, so the
    latest run stats are its own."""
    from harness import tiny_models as tm
    for model in (base, patched):
        tm.sample(model, latent, pos, neg, **sample)
    counted = []
    for model in (base, patched):
        with count_host_syncs() as reads:
            tm.sample(model, latent, pos, neg, **sample)
        counted.append(reads["n"])
    return counted[1] - counted[0]
