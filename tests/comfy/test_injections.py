"""Hints added into the hidden state between blocks (ControlNet; Wan VACE and Animate): a reused span of
blocks would replay the hints of the step it was computed on. Calls that carry such hints compute, and
families that inject on every call refuse span methods at the node; component methods stay exact."""
import pytest

from harness.comfy_runtime import REPO
import torch

from harness import tiny_models as tm
from harness.node_calls import METHODS, STEPS, fbc, last_stats, pab, teacache

pytestmark = pytest.mark.every_runtime   # what can differ between ComfyUI versions: make test runs it on each

FLUX_CFG = dict(in_channels=16, out_channels=16, vec_in_dim=32, context_in_dim=32, hidden_size=64, mlp_ratio=2.0,
                num_heads=2, depth=2, depth_single_blocks=2, axes_dim=[8, 12, 12], theta=10000, patch_size=2,
                qkv_bias=True, guidance_embed=True)


def controlled(pos, neg, start=0.0, end=1.0, seed=123):
    """A tiny ControlNetFlux (the XLabs layout ComfyUI loads) with seeded weights, applied to the
    conditioning by ComfyUI's own ControlNetApplyAdvanced."""
    import comfy.controlnet
    import comfy.ldm.flux.controlnet
    import comfy.model_management
    import comfy.ops
    import nodes
    cfg = tm.with_fields_since("comfy.ldm.flux.model:FluxParams", FLUX_CFG, txt_ids_dims=[])
    net = comfy.ldm.flux.controlnet.ControlNetFlux(latent_input=False, operations=comfy.ops.disable_weight_init,
                                                  device="cpu", dtype=torch.float32, **cfg)
    tm.fill_weights(net, seed)
    net.eval()
    control = comfy.controlnet.ControlNet(net, load_device=comfy.model_management.get_torch_device(),
                                         manual_cast_dtype=None, extra_conds=["y", "guidance"])
    hint = torch.rand(1, 64, 64, 3, generator=torch.Generator().manual_seed(seed))   # IMAGE, 8x the latent
    return nodes.ControlNetApplyAdvanced().apply_controlnet(pos, neg, control, hint, 1.0, start, end)


def test_controlnet_calls_compute_and_reuse_resumes_after_the_hint_ends(ck):
    m, lat, pos, neg = tm.flux(size=8)
    cpos, cneg = controlled(pos, neg)
    base = tm.sample(m, lat, cpos, cneg, steps=STEPS, cfg=3.0)
    assert not torch.equal(base, tm.sample(m, lat, pos, neg, steps=STEPS, cfg=3.0))    # the hint matters
    # a threshold that reuses almost every step without the ControlNet: with it, every call computes
    out = tm.sample(fbc(ck, m, 1.0), lat, cpos, cneg, steps=STEPS, cfg=3.0)
    stats = last_stats(ck)
    assert torch.equal(out, base) and all(s["reused_calls"] == 0 for s in stats["streams"].values())
    assert list(stats["forced"].values()) == [STEPS] and "ControlNet" in next(iter(stats["forced"]))
    # the hint only in the first half of the schedule: reuse happens after it, never while it is active
    hpos, hneg = controlled(pos, neg, end=0.5)
    tm.sample(fbc(ck, m, 1.0), lat, hpos, hneg, steps=STEPS, cfg=3.0)
    stats = last_stats(ck)
    forced = next(iter(stats["forced"].values()))
    cond = stats["streams"]["cond"]
    assert 0 < forced < STEPS and cond["reused_steps"] and min(cond["reused_steps"]) >= forced   # steps 0..forced-1


@pytest.mark.parametrize("method", ["teacache", "magcache", "taylorseer", "dbcache"])
def test_every_span_method_computes_calls_with_a_hint(ck, method):
    m, lat, pos, neg = tm.flux(size=8)
    cpos, cneg = controlled(pos, neg)
    out = tm.sample(METHODS[method][1](ck, m), lat, cpos, cneg, steps=STEPS, cfg=3.0)
    assert torch.equal(out, tm.sample(m, lat, cpos, cneg, steps=STEPS, cfg=3.0))
    assert all(s["reused_calls"] == 0 for s in last_stats(ck)["streams"].values())


def test_component_methods_keep_working_with_a_controlnet(ck):
    """PAB reuses attention inside the blocks; the hidden state (with this step's hints) flows through every
    block, so nothing stale is replayed: exact at its off setting, reusing at its on setting."""
    m, lat, pos, neg = tm.flux(size=8)
    cpos, cneg = controlled(pos, neg)
    base = tm.sample(m, lat, cpos, cneg, steps=STEPS, cfg=3.0)
    assert torch.equal(tm.sample(pab(ck, m, 1, 1), lat, cpos, cneg, steps=STEPS, cfg=3.0), base)
    out = tm.sample(pab(ck, m, 2, 3), lat, cpos, cneg, steps=STEPS, cfg=3.0)
    s = last_stats(ck)["streams"]["cond"]
    assert s["components_reused"] > 0 and torch.isfinite(out).all() and not last_stats(ck)["forced"]


def test_wan_vace_refuses_span_methods_and_component_methods_skip_only_main_block_attention(ck):
    from harness.node_calls import smoothcache, teacache
    m, lat, pos, neg = tm.wan_vace()
    with pytest.raises(ValueError, match="Apply TeaCache: Wan VACE adds its VACE hints into the hidden state .* "
                                         "Use a method that caches inside the blocks"):
        teacache(ck, m, 0.5)
    base = tm.sample(m, lat, pos, neg, steps=STEPS, cfg=3.0)
    assert torch.equal(tm.sample(smoothcache(ck, m, [1] * STEPS), lat, pos, neg, steps=STEPS, cfg=3.0), base)
    vace_attn = m.model.diffusion_model.vace_blocks[0].self_attn
    calls = []
    handle = vace_attn.register_forward_hook(lambda *_: calls.append(1))
    try:
        tm.sample(pab(ck, m, 2, 3), lat, pos, neg, steps=STEPS, cfg=3.0)
    finally:
        handle.remove()
    vace = last_stats(ck)["streams"]["cond"]
    plain, lat2, pos2, neg2 = tm.wan()                                    # the same 4 main blocks, no VACE
    tm.sample(pab(ck, plain, 2, 3), lat2, pos2, neg2, steps=STEPS, cfg=3.0)
    wan = last_stats(ck)["streams"]["cond"]
    # only the main blocks' attention modules are cached: the VACE blocks' own attention runs on every call
    # (one batched cond+uncond call per step), never taken for a main one's or from a cache
    assert vace["components_reused"] == wan["components_reused"] > 0
    assert vace["components_run"] == wan["components_run"]
    assert len(calls) == STEPS


def test_unets_get_a_message_saying_why(ck):
    with pytest.raises(ValueError, match="Apply First Block Cache: model class 'UNetModel' is a UNet"):
        fbc(ck, tm.sd15_unet(), 0.1)


def test_wan22_two_experts_each_count_their_own_steps(ck):
    """Wan 2.2 14B runs a high-noise and a low-noise expert in two KSamplerAdvanced (6 steps, split at 3). A
    cache node on each expert runs its own run over its own part of the schedule; a node on one expert
    only leaves the other as it is; at the exact setting the chain equals the uncached chain."""
    import nodes
    high, lat, pos, neg = tm.wan(seed=0)
    low = tm.wan(seed=9)[0]

    def chain(h, lo):
        first = nodes.KSamplerAdvanced().sample(h, "enable", 5, 6, 3.0, "euler", "simple", pos, neg,
                                                {"samples": lat}, 0, 3, "enable")[0]
        return nodes.KSamplerAdvanced().sample(lo, "disable", 5, 6, 3.0, "euler", "simple", pos, neg, first, 3,
                                               10000, "disable")[0]["samples"]
    base = chain(high, low)
    assert torch.equal(chain(fbc(ck, high, 0.0), fbc(ck, low, 0.0)), base)
    from cachekit.nodes.host import stats_feed

    def runs_since(mark):
        return [r for r in stats_feed.recent() if r["run"] > mark]
    mark = last_stats(ck)["run"]
    out = chain(fbc(ck, high, 1.0), fbc(ck, low, 1.0))
    runs = runs_since(mark)
    assert [r["total_steps"] for r in runs] == [3, 3] and torch.isfinite(out).all()
    assert all(s["steps_seen"] == 3 and s["reused_steps"] for r in runs for s in r["streams"].values())
    mark = last_stats(ck)["run"]
    chain(high, fbc(ck, low, 1.0))                                       # a cache node on the low expert only
    runs = runs_since(mark)
    assert len(runs) == 1 and runs[0]["total_steps"] == 3


def test_few_step_runs_are_warned_about_on_the_node_and_in_the_log(ck, caplog):
    import logging
    m, lat, pos, neg = tm.wan()
    with caplog.at_level(logging.WARNING, logger="CacheKit"):
        tm.sample(fbc(ck, m, 0.5), lat, pos, neg, steps=4, cfg=3.0)
    notes = last_stats(ck)["notes"]
    assert len(notes) == 1 and notes[0].startswith("4 steps: few-step (distilled) models gain little")
    assert notes[0].endswith("(README: few-step models)") and "#" not in notes[0]   # somewhere a user can follow
    assert "### Few-step models" in (REPO / "README.md").read_text()
    measured = (REPO / "docs" / "bench" / "few_steps.md").read_text()     # the numbers the note quotes
    assert "docs/bench/few_steps.md" in notes[0] and all(f"| wan | {n} |" in measured for n in (4, 6, 8))
    assert "Apply First Block Cache: 4 steps: few-step" in caplog.text
    tm.sample(fbc(ck, m, 0.5), lat, pos, neg, steps=10, cfg=3.0)
    assert last_stats(ck)["notes"] == []


@pytest.mark.parametrize("steps, warmup", [(3, 3), (2, 1)])
def test_a_run_with_no_step_to_reuse_says_it_runs_uncached(ck, caplog, steps, warmup):
    """Where the steps every run computes (the node's warmup; TeaCache's first and last) cover the whole run, the
    node says nothing can be reused instead of running a silent no-op, and indeed reuses nothing."""
    import logging
    m, lat, pos, neg = tm.wan()
    patched = fbc(ck, m, 1.0, warmup=warmup) if warmup == 3 else teacache(ck, m, 1.0)
    with caplog.at_level(logging.WARNING, logger="CacheKit"):
        out = tm.sample(patched, lat, pos, neg, steps=steps, cfg=3.0)
    stats = last_stats(ck)
    assert [n.split(":")[0] for n in stats["notes"]] == [f"{steps} steps"]
    assert "none of these" in stats["notes"][0] and "the run is uncached" in stats["notes"][0]
    assert all(s["reused_calls"] == 0 for s in stats["streams"].values())
    assert torch.equal(out, tm.sample(m, lat, pos, neg, steps=steps, cfg=3.0))
    assert "the run is uncached" in caplog.text
