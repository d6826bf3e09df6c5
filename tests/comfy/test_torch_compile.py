"""Apply First Block Cache with ComfyUI's TorchCompileModel mechanism (set_torch_compile_wrapper),
in both orders. The data-dependent decision runs outside the compiled graph (torch.compiler.disable),
so dynamo traces the blocks and the cached run gives the same output as without compilation."""
import pytest
import torch

from harness import tiny_models as tm
from harness.node_calls import STEPS, fbc, last_stats


def compiled(model, backend):
    from comfy_api.torch_helpers import set_torch_compile_wrapper
    m = model.clone()
    set_torch_compile_wrapper(model=m, backend=backend)
    return m


@pytest.mark.parametrize("family", ["flux", "wan"])
@pytest.mark.parametrize("order", ["cache_then_compile", "compile_then_cache"])
def test_compiled_cached_run_matches_uncompiled(ck, family, order):
    torch._dynamo.reset()
    m, lat, pos, neg = tm.FAMILIES[family]()
    eager_cached = tm.sample(fbc(ck, m, 1.0), lat, pos, neg, steps=STEPS, cfg=3.0)
    eager_stats = last_stats(ck)
    if order == "cache_then_compile":
        model = compiled(fbc(ck, m, 1.0), "aot_eager")
    else:
        model = fbc(ck, compiled(m, "aot_eager"), 1.0)
    out = tm.sample(model, lat, pos, neg, steps=STEPS, cfg=3.0)
    stats = last_stats(ck)
    assert stats["streams"] == eager_stats["streams"]          # same decisions, step for step
    assert stats["streams"]["cond"]["reused_steps"]
    torch.testing.assert_close(out, eager_cached, rtol=1e-5, atol=1e-5)
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] > 0   # dynamo really compiled blocks


@pytest.mark.parametrize("family", sorted(f for f in tm.FAMILIES if f in tm.CURRENT_LINE))
def test_current_line_family_compiled_decides_as_uncompiled(ck, family):
    """Every family new on the current line behind ComfyUI's compile wrapper (aot_eager): First Block Cache makes
    the same decisions, step for step, and gives the same output as without compilation."""
    torch._dynamo.reset()
    m, lat, pos, neg = tm.FAMILIES[family]()
    eager = tm.sample(fbc(ck, m, 1.0), lat, pos, neg, steps=STEPS, cfg=3.0)
    eager_streams = last_stats(ck)["streams"]
    out = tm.sample(compiled(fbc(ck, m, 1.0), "aot_eager"), lat, pos, neg, steps=STEPS, cfg=3.0)
    assert last_stats(ck)["streams"] == eager_streams and eager_streams["cond"]["reused_steps"]
    torch.testing.assert_close(out, eager, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("method", ["teacache", "magcache", "taylorseer", "dbcache", "pab", "fastercache",
                                    "smoothcache", "seacache", "spectrum"])
def test_every_method_compiled_matches_uncompiled(ck, method):
    """Each method behind ComfyUI's compile wrapper (aot_eager on CPU): same decisions, same output."""
    from harness.node_calls import METHODS
    torch._dynamo.reset()
    m, lat, pos, neg = tm.wan()
    apply = METHODS[method][1]
    eager = tm.sample(apply(ck, m), lat, pos, neg, steps=STEPS, cfg=3.0)
    eager_streams = last_stats(ck)["streams"]
    out = tm.sample(compiled(apply(ck, m), "aot_eager"), lat, pos, neg, steps=STEPS, cfg=3.0)
    assert last_stats(ck)["streams"] == eager_streams
    assert any(s["reused_calls"] for s in eager_streams.values())
    torch.testing.assert_close(out, eager, rtol=1e-5, atol=1e-5)
