"""Host syncs on the decision path: one per model call at most. The call's sigma is read in the same transfer
as the decision metric (cache_core/steps.CallStep), so the span methods cost one value brought to the host per
call (SeaCache two: its filter needs the sigma before it measures; Spectrum reads its CPU-side weights). Counted as
bench_speed.py counts them (harness/host_syncs.py): calls of Tensor.item / tolist / numpy / __bool__ / __float__ /
__int__ beyond those of the uncached run."""
import pytest

from harness import tiny_models as tm
from harness.host_syncs import extra_host_syncs
from harness.node_calls import STEPS, dbcache, fbc, magcache, seacache, spectrum, taylorseer, teacache

METHODS = {
    "fbc": (lambda ck, m: fbc(ck, m, 0.3), 1),
    "teacache": (lambda ck, m: teacache(ck, m, 0.3), 1),
    "dbcache": (lambda ck, m: dbcache(ck, m, 0.3), 1),
    "magcache": (lambda ck, m: magcache(ck, m, 0.3), 1),
    "taylorseer": (lambda ck, m: taylorseer(ck, m, 3), 1),
    # + one per forecast step: its ridge weights are solved in float64 on CPU tensors and read back (no device)
    "spectrum": (lambda ck, m: spectrum(ck, m), 2),
    "seacache": (lambda ck, m: seacache(ck, m, 0.3), 2),
}


@pytest.mark.parametrize("method", METHODS)
def test_host_syncs_per_model_call(ck, method):
    m, lat, pos, neg = tm.wan()
    apply, most = METHODS[method]
    # euler, cond+uncond batched: one call a step
    extra = extra_host_syncs(m, apply(ck, m), lat, pos, neg, steps=STEPS, cfg=3.0)
    assert STEPS <= extra <= most * STEPS + 1, extra             # + 1: the run reads the sampler's schedule once
