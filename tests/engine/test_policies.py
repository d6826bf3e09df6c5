"""Decision rules worked out by hand from the published rules (docs/methods.md §1.2, §1.3), on cache_core
alone: TeaCache and MagCache have their state machines checked call by call."""

import pytest
import torch

from harness import pack

pack.load_core()
from cache_core import BlockLayout, CacheRun, MagCache, MagCacheCalibration, TeaCache  # noqa: E402
from cache_core.policies.magcache import resample, split_interleaved  # noqa: E402
from cache_core.policies.teacache import poly  # noqa: E402

# A 3-block stack whose "modulated input" is whatever the caller puts in args["F"].
LAYOUT = BlockLayout(kinds=("blk",) * 3, stream_keys={"blk": ("img",)}, modulated_input=lambda a: a["F"])


def blocks(args):
    return {"img": args["img"] * 1.5 + 1.0}


def run_steps(policy, fs, xs=None, label="cond"):
    """One call per step (input xs[i], default 1 + 0.01 i); returns the reuse flags, outputs and stats."""
    run = CacheRun(policy, LAYOUT, sigmas=[1.0 - i / len(fs) for i in range(len(fs) + 1)])
    flags, outs = [], []
    for i, f in enumerate(fs):
        xi = torch.full((1, 4), 1.0 + 0.01 * i) if xs is None else xs[i]
        call = run.begin_call(xi, run.sigmas[i], ["s"], [label])
        h = {"img": xi, "F": torch.tensor([float(f)])}
        for p in range(3):
            h = {**h, **call.run_block(p, h, blocks)}
        run.end_call(call)
        flags.append(call.reusing)
        outs.append(h["img"])
    return flags, outs, run.close()


def reused(flags):
    return [i for i, f in enumerate(flags) if f]


def test_poly_is_highest_degree_first():
    assert poly([2.0, -1.0, 0.5], 3.0) == pytest.approx(2 * 9 - 3 + 0.5)


def test_teacache_accumulates_resets_and_follows_every_call():
    # identity rescale; F: 1.0, 1.1 (rel .1 -> acc .1 reuse), 1.1 (rel 0 vs the *skipped* call's F -> reuse),
    # 1.3 (rel .2/1.1 -> acc .28 >= .15 compute, acc 0), 1.3 (reuse), 1.3 (last step: forced compute)
    flags, _, _ = run_steps(TeaCache(0.15, [1.0, 0.0]), [1.0, 1.1, 1.1, 1.3, 1.3, 1.3])
    assert reused(flags) == [1, 2, 4]


def test_teacache_first_and_last_steps_compute_and_wan_retention():
    flags, _, _ = run_steps(TeaCache(0.5, [1.0, 0.0]), [1.0] * 6)
    assert reused(flags) == [1, 2, 3, 4]
    # Wan use_ret_steps: 5 retained steps, no forced final step
    flags, _, _ = run_steps(TeaCache(0.5, [1.0, 0.0], retention_steps=5, final_steps=0), [1.0] * 8)
    assert reused(flags) == [5, 6, 7]


def test_teacache_threshold_zero_is_off_even_with_negative_polynomial():
    flags, _, _ = run_steps(TeaCache(0.0, [1.0, -0.05]), [1.0] * 6)   # poly(0) < 0
    assert reused(flags) == []


def test_teacache_reuse_adds_whole_stack_residual_to_current_input():
    flags, outs, _ = run_steps(TeaCache(0.5, [1.0, 0.0]), [1.0, 1.0, 1.0])
    assert flags == [False, True, False]
    x0, x1 = torch.full((1, 4), 1.0), torch.full((1, 4), 1.01)
    full = lambda x: ((x * 1.5 + 1) * 1.5 + 1) * 1.5 + 1   # noqa: E731
    torch.testing.assert_close(outs[1], x1 + (full(x0) - x0))


def test_magcache_accumulator_k_and_retention():
    gammas = [1.0, 1.0, 0.99, 0.98, 0.97, 0.9, 1.0, 1.0, 1.0, 1.0]
    flags, _, _ = run_steps(MagCache({"cond": gammas}, threshold=0.05, max_skips=2, retention_ratio=0.2),
                            [0.0] * 10)
    # retention int(.2*10+.5)=2; step 2 err .01; step 3 err .0398; step 4 n=3>K; step 5 err .1;
    # steps 6,7 reuse; step 8 n=3>K; step 9 reuse (the last step is not forced)
    assert reused(flags) == [2, 3, 6, 7, 9]


def test_magcache_final_steps_compute_and_reset_the_accumulator():
    gammas = [1.0, 1.0, 0.99, 0.98, 0.97, 0.9, 1.0, 1.0, 1.0, 1.0]
    pol = MagCache({"cond": gammas}, threshold=0.05, max_skips=2, retention_ratio=0.2, final_steps=3)
    # as above up to step 6; steps 7-9 compute, so step 9 no longer reuses
    assert reused(run_steps(pol, [0.0] * 10)[0]) == [2, 3, 6]
    with pytest.raises(ValueError, match="final_steps must be >= 0, got -1"):
        MagCache({"cond": gammas}, final_steps=-1)


def test_magcache_threshold_zero_is_off():
    flags, _, _ = run_steps(MagCache({"cond": [1.0] * 6}, threshold=0.0, retention_ratio=0.0), [0.0] * 6)
    assert reused(flags) == []


def test_magcache_uncond_stream_uses_its_own_ratios():
    ratios = split_interleaved([1.0, 1.0, 1.0, 0.5, 1.0, 0.5, 1.0, 0.5])
    assert ratios == {"cond": [1.0, 1.0, 1.0, 1.0], "uncond": [1.0, 0.5, 0.5, 0.5]}
    pol = MagCache(ratios, threshold=0.1, max_skips=5, retention_ratio=0.0)
    assert reused(run_steps(pol, [0.0] * 4, label="cond")[0]) == [1, 2, 3]
    assert reused(run_steps(pol, [0.0] * 4, label="uncond")[0]) == []


def test_resample_nearest_index_half_to_even():
    src = [0.0, 1.0, 2.0, 3.0, 4.0]
    assert resample(src, 3) == [0.0, 2.0, 4.0]
    assert resample(src, 9) == [0.0, 0.0, 1.0, 2.0, 2.0, 2.0, 3.0, 4.0, 4.0]
    assert resample(src, 1) == [4.0] and resample(src, 5) == src


def test_magcache_calibration_records_ratio_of_residual_norms_per_step():
    cal = MagCacheCalibration()
    x = torch.tensor([[[1.0, 2.0], [3.0, 4.0]]])          # (batch, tokens, hidden)
    run = CacheRun(cal, LAYOUT, sigmas=[1.0, 0.5, 0.0])
    expected, prev = [], None
    for i, scale in enumerate([1.0, 2.0]):
        xi = x * scale
        call = run.begin_call(xi, run.sigmas[i], ["s"], ["cond"])
        h = {"img": xi, "F": torch.zeros(1)}
        for p in range(3):
            h = {**h, **call.run_block(p, h, blocks)}
        run.end_call(call)
        r = h["img"] - xi
        expected.append(1.0 if prev is None else float((r.norm(dim=-1) / (prev.norm(dim=-1) + 1e-8)).mean()))
        prev = r
        assert not call.reusing
    res = cal.result()
    assert res["steps"] == 2 and res["ratios"]["cond"] == pytest.approx(expected)


def run_x(policy, xs):
    """One call per step with input x_i (scalar-filled); block 0's residual is 0.5 x + 1."""
    flags, _, _ = run_steps(policy, [0.0] * len(xs), xs=[torch.full((1, 4), float(x)) for x in xs])
    return reused(flags)


XS = [0, 0, 0.2, 0.2, 0.6, 0.6, 0.6, 0.6]   # Fn residuals 1, 1, 1.1, 1.1, 1.3, 1.3, 1.3, 1.3


@pytest.mark.parametrize("kwargs, expected", [
    # rel vs last computed: steps 2,3 -> .1 (reuse), 4 -> .3 (compute), 5-7 -> 0 (reuse)
    (dict(), [2, 3, 5, 6, 7]),
    (dict(max_continuous_cached_steps=2), [2, 3, 5, 6]),
    (dict(max_cached_steps=3), [2, 3, 5]),
    # diffs .1 + .1 reach .15: step 4 on is blocked for good (the sum is never reset)
    (dict(max_accumulated_diff=0.15), [2, 3]),
    # warmup range(0, 4, 2) forces 0 and 2 only: step 1 may reuse
    (dict(warmup_steps=4, warmup_interval=2), [1, 3, 5, 6, 7]),
    (dict(threshold=1.0), [2, 3, 4, 5, 6, 7]),      # R >= 1: static, always reuse after warmup
    (dict(threshold=0.0), []),                       # R <= 0: never
])
def test_dbcache_rules_in_cache_dit_order(kwargs, expected):
    from cache_core import DBCache
    args = dict(front_blocks=1, back_blocks=1, threshold=0.15, warmup_steps=2) | kwargs
    assert run_x(DBCache(**args), XS) == expected


def test_smoothcache_schedule_reproduces_published_fora_schedule():
    """Errors where a gap of 1 is always within alpha and 2 never is give the published 30-N-2-fora
    schedule (Roblox/SmoothCache smoothcache_schedules/30-N-2-fora.json)."""
    from cache_core.policies.smoothcache import make_schedule
    steps = 30
    cal = {"steps": steps, "lookahead": 3, "errors": {"attn": {
        "1": [0.05] * (steps - 1), "2": [0.5] * (steps - 2), "3": [0.9] * (steps - 3)}}}
    published = [1, 0] * 14 + [1, 1]
    assert make_schedule(cal, 0.1)["schedule"]["attn"] == published


def test_smoothcache_schedule_greedy_edges():
    from cache_core.policies.smoothcache import make_schedule
    # step 0: j=3 ok -> skip 1,2,3; step 4: only j=1 ok -> skip 5; step 6: nothing ok -> compute 7;
    # step 7 (last) forced
    e1 = [0.1, 0.9, 0.9, 0.9, 0.1, 0.9, 0.9]
    e2 = [0.1, 0.9, 0.9, 0.9, 0.9, 0.9]
    e3 = [0.1, 0.9, 0.9, 0.9, 0.9]
    cal = {"steps": 8, "lookahead": 3, "errors": {"mlp": {"1": e1, "2": e2, "3": e3}}}
    assert make_schedule(cal, 0.2)["schedule"]["mlp"] == [1, 0, 0, 0, 1, 0, 1, 1]
    assert make_schedule(cal, 0.0)["schedule"]["mlp"] == [1] * 8


def test_smoothcache_calibration_error_is_relative_l1_against_the_later_output():
    from cache_core import SmoothCacheCalibration, StepInfo
    cal = SmoothCacheCalibration(lookahead=2)
    ys = [torch.tensor([[1.0, -2.0]]), torch.tensor([[2.0, -2.0]]), torch.tensor([[2.0, 0.0]])]
    for s, y in enumerate(ys):
        cal.observe("cond", (0, "mlp"), "mlp", y, StepInfo(s, 3, 1.0))
        cal.observe("cond", (0, "mlp"), "mlp", y * 100, StepInfo(s, 3, 1.0))   # 2nd call of a step: ignored
    res = cal.result()["errors"]["mlp"]
    assert res["1"] == pytest.approx([1 / 4, 2 / 2])
    assert res["2"] == pytest.approx([3 / 2])


def test_smoothcache_reads_published_attn_rows_and_per_block_rows():
    from cache_core import SmoothCache, StepInfo
    sc = SmoothCache({"attn": [1, 0, 1], "mlp": [1, 1, 1], "mlp-2": [1, 0, 1]})
    step1 = StepInfo(1, 3, 0.5)
    assert sc.component_reuse("self", 0, step1)           # 'attn' is the published name of self attention
    assert not sc.component_reuse("mlp", 0, step1) and sc.component_reuse("mlp", 2, step1)
    assert not sc.component_reuse("cross", 0, step1)      # no row: always computed


def test_smoothcache_errors_resampled_linearly_in_position_and_gap():
    from cache_core.policies.smoothcache import resample_errors
    cal = {"format": "cachekit.smoothcache_errors", "steps": 3, "lookahead": 1, "errors": {"self": {"1": [0.2, 0.4]}}}
    assert resample_errors(cal, 3) is cal
    out = resample_errors(cal, 5)      # a new step is half an old one: gap 1 = half an old gap
    assert out["steps"] == 5 and out["lookahead"] == 2
    assert out["errors"]["self"]["1"][:3] == pytest.approx([0.1, 0.15, 0.2])
    assert out["errors"]["self"]["1"][3] is None        # reaches past the recorded errors
    assert out["errors"]["self"]["2"] == pytest.approx([0.2, 0.3, 0.4])
    fewer = resample_errors({**cal, "steps": 5, "lookahead": 2, "errors": {"self": {"1": [0.1] * 4, "2": [0.3] * 3}}},
                            3)
    assert fewer["lookahead"] == 1 and fewer["errors"]["self"]["1"] == pytest.approx([0.3, 0.3])


def test_component_outputs_split_into_streams_along_their_batch_axis():
    """Cosmos 1's MLPs see its tokens laid out T H W B D: a cached MLP output is split into streams along axis 3,
    so a stream reused in a call of another make-up (uncond alone) gets its own slice back."""
    from cache_core import SmoothCache
    layout = BlockLayout(kinds=("blk",), stream_keys={"blk": ("img",)}, component_batch_dims={"mlp": 3})
    run = CacheRun(SmoothCache({"mlp": [1, 0]}), layout, sigmas=[1.0, 0.5, 0.0])
    out = torch.randn(2, 3, 3, 2, 4, generator=torch.Generator().manual_seed(0))   # T H W (cond, uncond) D
    got = []

    def call_mlp(x, keys, kinds, compute):
        call = run.begin_call(x, run.sigmas[len(got)], keys, kinds)
        call.run_block(0, {}, lambda a: got.append(call.component((0, "mlp"), "mlp", compute)) or {})
        run.end_call(call)
    call_mlp(torch.zeros(2, 1), ["c", "u"], ["cond", "uncond"], lambda: out)     # step 0 computes both
    call_mlp(torch.zeros(1, 1), ["u"], ["uncond"], lambda: None)                 # step 1 reuses uncond's
    assert torch.equal(got[1], out[:, :, :, 1:])
