"""ComfyUI 0.33's Wan variants beyond what the family x method tests build (the current line only).

- SCAIL / SCAIL-2 with reference images: the references ride in front of the video tokens (time concatenated, so
  the tiny builders leave them out for the other-resolution test); every method still is exact when off and
  reuses when on, its stats equal to the blocks that ran.
- Wan-Animate-2 with its pose branch on: the branch runs the blocks' cross attention and MLP outside the block
  loop on every call; whatever a method caches, it computes exactly as without one.
- The Wan variants CacheKit refuses say why, naming what the model does.
"""
import pytest
import torch

from harness import tiny_models as tm
from harness.node_calls import METHODS, STEPS, block_attrs, block_count, block_marker, last_stats


@pytest.mark.parametrize("method", ["teacache", "dbcache", "pab", "smoothcache"])
@pytest.mark.parametrize("family", ["wan_scail", "wan_scail2"])
def test_scail_reference_images_off_exact_and_reuse_counted(ck, family, method):
    m, lat, pos, neg = tm.with_scail_reference(tm.FAMILIES[family])
    base = tm.sample(m, lat, pos, neg, steps=STEPS, cfg=3.0)
    _, _, plain_pos, plain_neg = tm.FAMILIES[family]()
    assert not torch.equal(base, tm.sample(m, lat, plain_pos, plain_neg, steps=STEPS, cfg=3.0))   # they count
    off, on, always = METHODS[method]
    assert torch.equal(tm.sample(off(ck, m), lat, pos, neg, steps=STEPS, cfg=3.0), base)
    patched = on(ck, m)
    with tm.BlockCounter(patched, block_attrs(ck, m), marker=block_marker(ck, m)) as counter:
        out = tm.sample(patched, lat, pos, neg, steps=STEPS, cfg=3.0)
    stats, n = last_stats(ck), block_count(ck, m)
    cond = stats["streams"]["cond"]
    assert cond["reused_steps"] and 0 in cond["computed_steps"]
    expected = len(cond["computed_steps"]) * n + len(cond["reused_steps"]) * (n if always is None else always)
    assert stats["block_evals"] == counter.count == expected
    assert torch.isfinite(out).all() and not torch.equal(out, base)


def _causal_wan():
    import comfy.supported_models as sm
    cfg = dict(image_model="wan2.1", model_type="t2v", causal_ar=True, patch_size=(1, 2, 2), text_len=16, in_dim=16,
               dim=64, ffn_dim=128, freq_dim=32, text_dim=32, out_dim=16, num_heads=2, num_layers=2)
    return tm.patcher(sm.WAN21_CausalAR_T2V, cfg, 0)


@pytest.mark.parametrize("method", ["teacache", "dbcache", "pab", "smoothcache", "fastercache"])
def test_animate2_pose_branch_computes_as_uncached_on_every_call(ck, method):
    """The pose branch's K/V of every block, on every call, equal the uncached run's (they do not depend
    on the step: the branch runs at a fixed timestep on fixed latents, the same for both conds), while the blocks
    reuse."""
    m, lat, pos, neg = tm.wan_animate2(pose=True)
    blocks = m.model.diffusion_model.blocks

    def pose_kv(model):
        seen = []
        for i, b in enumerate(blocks):
            def spy(*a, _i=i, _f=type(b).forward_pose.__get__(b), **k):
                out = _f(*a, **k)
                seen.append((_i, out[1][:1].clone()))   # the rows are alike: FasterCache may run the cond alone
                return out
            b.forward_pose = spy
        try:
            out = tm.sample(model, lat, pos, neg, steps=STEPS, cfg=3.0)
        finally:
            for b in blocks:
                del b.forward_pose
        return out, seen
    base, expected = pose_kv(m)
    out, got = pose_kv(METHODS[method][1](ck, m))
    assert any(s["reused_steps"] for s in last_stats(ck)["streams"].values())   # FasterCache: the uncond
    assert len(got) == len(expected) == STEPS * len(blocks)
    assert [i for i, _ in got] == [i for i, _ in expected]
    for (_, a), (_, b) in zip(got, expected):        # a cond run alone (FasterCache) rounds unlike the batch of two
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    assert torch.isfinite(out).all() and not torch.equal(out, base)


@pytest.mark.parametrize("method", ["teacache", "pab"])
def test_causal_wan_is_refused_saying_why(ck, method):
    with pytest.raises(ValueError) as err:
        METHODS[method][1](ck, _causal_wan())
    assert "model class 'CausalWanModel' is Causal-Forcing Wan 2.1 (autoregressive)" in str(err.value)
