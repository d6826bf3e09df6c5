"""SpeCa (docs/methods.md §1.12) on cache_core alone: its forecast-then-verify rule through the engine, and against
a re-derivation of the authors' code (Shenyi-Z/Cache4Diffusion, flux/speca-flux: cal_type, derivative_approximation,
taylor_formula, calculate_relative_l1_error) fed the same features and errors."""

import math
import random

import pytest
import torch

from harness import pack

pack.load_core()
from cache_core import BlockLayout, CacheRun, SpeCa, StepInfo, pointwise_rel_l1  # noqa: E402

# A 3-block stack: block 0 adds args["R"] (its residual, the probe), blocks 1 and 2 add half of args["S"] each (the
# span's residual is S).
LAYOUT = BlockLayout(kinds=("blk",) * 3, stream_keys={"blk": ("img",)})


def blocks(p):
    return lambda a: {"img": a["img"] + (a["R"] if p == 0 else a["S"] / 2)}


def run(policy, rs, ss, x=None, at=None):
    """One call per step (or at the steps `at`) with block-0 residuals rs[i] and span residuals ss[i]; (reuse flags,
    outputs, stats)."""
    n = len(rs)
    cr = CacheRun(policy, LAYOUT, sigmas=[1.0 - i / n for i in range(n + 1)])
    flags, outs = [], []
    for i in (range(n) if at is None else at):
        xi = torch.full_like(rs[i], 0.5) if x is None else x
        call = cr.begin_call(xi, cr.sigmas[i], ["s"], ["cond"])
        h = {"img": xi, "R": rs[i], "S": ss[i]}
        for p in range(3):
            h = {**h, **call.run_block(p, h, blocks(p))}
        cr.end_call(call)
        flags.append(call.reusing)
        outs.append(h["img"])
    return flags, outs, cr.close()


def reused(flags):
    return [i for i, f in enumerate(flags) if f]


def linear(n, a, b, shape=(1, 6, 4)):
    g = torch.Generator().manual_seed(0)
    base, slope = torch.randn(shape, generator=g), torch.randn(shape, generator=g)
    return [a * base + b * i * slope for i in range(n)]


def test_off_computes_every_step_and_is_exact():
    rs, ss = linear(10, 1.0, 0.1), linear(10, 2.0, 0.3)
    plain = [torch.full_like(r, 0.5) + r + s / 2 + s / 2 for r, s in zip(rs, ss)]
    for off in (SpeCa(threshold=0.0, warmup_steps=1, unverified_drafts=2), SpeCa(max_drafts=0, warmup_steps=1)):
        flags, outs, _ = run(off, rs, ss)
        assert reused(flags) == []
        assert all(torch.equal(o, p) for o, p in zip(outs, plain))


def test_exact_forecasts_pass_every_check_up_to_max_drafts():
    """Features linear in the step: the first-order forecast is exact, every check passes (error 0), and only
    warmup and max_drafts force computes; a drafted step's output is the real one."""
    rs, ss = linear(12, 1.0, 0.1), linear(12, 2.0, 0.3)
    policy = SpeCa(threshold=0.01, decay=1.0, warmup_steps=2, unverified_drafts=0, max_drafts=3, max_order=1)
    flags, outs, stats = run(policy, rs, ss)
    assert reused(flags) == [2, 3, 4, 6, 7, 8, 10, 11]
    for r, s, o in zip(rs, ss, outs):
        torch.testing.assert_close(o, 0.5 + r + s, rtol=1e-5, atol=1e-5)
    assert policy.verified == 8 and policy.rejected == 0
    assert stats.notes == ["SpeCa: 8 drafts checked at block 0, 0 rejected and computed"]


def test_a_jump_in_block_0_rejects_the_draft_and_that_step_computes():
    rs, ss = linear(10, 1.0, 0.1), linear(10, 2.0, 0.3)
    rs[5] = rs[5] * 1.5       # block 0 leaves the line at step 5 only: relative error 1/3 there
    policy = SpeCa(threshold=0.2, decay=1.0, warmup_steps=2, unverified_drafts=1, max_drafts=8, max_order=1)
    flags, outs, _ = run(policy, rs, ss)
    # 2 unverified; 3, 4 checked and exact; 5 rejected, computed (block 0's series now holds the jump); 6 is the
    # first draft after it (unverified); 7 on are checked against a series bent by the jump and rejected
    assert reused(flags)[:4] == [2, 3, 4, 6] and not flags[5]
    torch.testing.assert_close(outs[5], 0.5 + rs[5] + ss[5])
    assert policy.rejected >= 1


def test_unverified_drafts_are_taken_whatever_block_0_does():
    rs, ss = linear(8, 1.0, 0.1), linear(8, 2.0, 0.3)
    rs = [r * (-1) ** i for i, r in enumerate(rs)]      # the forecast is wrong by far at every step
    policy = SpeCa(threshold=0.1, decay=1.0, warmup_steps=2, unverified_drafts=2, max_drafts=8, max_order=1)
    flags, _, _ = run(policy, rs, ss)
    assert reused(flags) == [2, 3, 5, 6]      # 4 and 7 are checked and rejected
    assert policy.verified == 2 and policy.rejected == 2


def test_a_call_where_none_was_expected_is_checked_at_its_own_position():
    """measure() forecasts where the stream's calls predict the next one (the engine's metric); a call elsewhere
    (step 4 skipped) is measured again at its own position, where the exact series has no error."""
    rs, ss = linear(8, 1.0, 0.1), linear(8, 2.0, 0.3)
    used = {}

    class Seen(SpeCa):
        def draft_error(self, state, metric, step):
            used[step.index] = (metric, state.guess == step.position)
            return super().draft_error(state, metric, step)

    policy = Seen(threshold=0.01, decay=1.0, warmup_steps=2, unverified_drafts=0, max_drafts=8, max_order=1)
    flags, outs, _ = run(policy, rs, ss, at=[0, 1, 2, 3, 5, 6])
    assert reused(flags) == [2, 3, 4, 5]                   # the calls at steps 2, 3, 5, 6
    assert used[2][1] and used[3][1] and used[2][0] == pytest.approx(0, abs=1e-6)
    assert not used[5][1] and used[5][0] > 0.01          # forecast at 4: it would have rejected
    assert not used[6][1]                                # expected at 7 after 3, 5
    for o, i in zip(outs, [0, 1, 2, 3, 5, 6]):
        torch.testing.assert_close(o, 0.5 + rs[i] + ss[i], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("calls, missed", [
    ([0, 1, 2, 3, 4, 5], []),                       # euler: one call a step
    ([0, 0.5, 1, 1.5, 2, 2.5], []),                 # dpm_2: its midpoints, the same spacing
    ([0, 1, 1, 2, 2, 3, 3, 4], [2]),                # heun: the corrector at the next step's sigma, where it starts
    ([0, 0, 1, 1, 2, 2], []),                       # SA-Solver PECE: each sigma twice
])
def test_the_next_call_is_expected_where_the_stream_has_seen_the_sampler_call(calls, missed):
    """measure()'s position: once two calls are seen, the next one is where the stream's calls put it; a sampler
    that calls each position twice is found from the counts (Heun's first repeat, before any count shows it, is
    the one miss)."""
    policy = SpeCa()
    state = policy.new_state("cond")
    misses = []
    for i, position in enumerate(calls):
        if i >= 2 and policy.expected_position(state) != position:
            misses.append(i)
        policy.seen_at(state, position)
    assert misses == missed


def test_threshold_schedule_is_the_authors():
    p = SpeCa(threshold=7.0, decay=0.3, min_threshold=0.1)
    for i in range(50):
        progress = i / 50
        assert p.step_threshold(StepInfo(i, 50, 1.0)) == pytest.approx(max(7.0 * 0.3 ** progress, 0.1))
    p = SpeCa(threshold=0.1, decay=0.01, min_threshold=0.01)
    assert p.step_threshold(StepInfo(40, 50, 1.0)) == pytest.approx(0.01)


@pytest.mark.parametrize("kwargs", [dict(threshold=-1), dict(decay=0.0), dict(decay=1.5), dict(max_drafts=-1),
                                    dict(error_measure="l2"), dict(unverified_drafts=-2)])
def test_bad_settings_raise_with_the_values(kwargs):
    with pytest.raises(ValueError, match=str(list(kwargs.values())[0]).replace(".", r"\.")):
        SpeCa(**kwargs)


# --- the authors' code, re-derived -------------------------------------------------------------------------------

def authors_types(total, measured, first_enhance, min_taylor, max_taylor, base, decay, floor=0.1):
    """cal_type of flux/speca-flux run over a whole sampling loop. measured(step) is what their last-layer check
    measures on a drafted step (it runs only where cache_dic['check'] is set); the result is 'full' or 'taylor'
    per step."""
    types, last, counter, check, err = [], "None", 0, False, None
    for step in range(total):
        if last == "full":
            kind, counter, check, err = "taylor", 1, False, None
        else:
            threshold = max(base * decay ** (step / total), floor)
            check = counter >= min_taylor
            too_large = err is not None and err > threshold
            if step < first_enhance or counter >= max_taylor or (too_large and check):
                kind, counter = "full", 0
            else:
                kind, counter = "taylor", counter + 1
        if kind == "taylor" and check:
            err = measured(step)
        last = kind
        types.append(kind)
    return types


class Injected(SpeCa):
    """The rule with the error given per step (what block 0's check would measure)."""
    def __init__(self, errors, **kw):
        super().__init__(**kw)
        self.errors = errors

    def draft_error(self, state, metric, step):
        return self.errors[step.index]


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("min_taylor, max_taylor", [(2, 8), (2, 5), (4, 12), (0, 3)])
def test_decisions_are_the_authors_with_the_error_seen_one_step_sooner(seed, min_taylor, max_taylor):
    """Their error measured on step t decides step t + 1; ours measured on step t + 1 decides it. Fed errors so that
    their measurement on t is ours on t + 1, the computed steps agree from the end of warmup on (their step 1, a
    draft inside first_enhance, is computed here), with unverified_drafts = max(min_taylor_steps, 1) + 1 (the first
    draft after a compute is never checked there)."""
    total, rnd = 30, random.Random(seed)
    errors = [rnd.uniform(0.0, 0.6) for _ in range(total + 1)]
    theirs = authors_types(total, lambda t: errors[t + 1], 3, min_taylor, max_taylor, base=0.5, decay=0.1)
    policy = Injected(errors, threshold=0.5, decay=0.1, min_threshold=0.1, warmup_steps=3,
                      unverified_drafts=max(min_taylor, 1) + 1, max_drafts=max_taylor, max_order=0)
    ones = [torch.ones(1, 2, 2)] * total
    flags, _, _ = run(policy, ones, ones)
    assert not any(flags[:3])
    assert [not f for f in flags[2:]] == [k == "full" for k in theirs[2:]]
    assert "taylor" in theirs[3:] and "full" in theirs[4:]       # the case is not degenerate


@pytest.mark.parametrize("errors", [0.0, 1.0])
def test_all_accepted_and_all_rejected_are_the_authors_schedule(errors):
    total = 30
    theirs = authors_types(total, lambda t: errors, 3, 2, 8, base=0.5, decay=0.1)
    policy = Injected([errors] * total, threshold=0.5, decay=0.1, min_threshold=0.1, warmup_steps=3,
                      unverified_drafts=3, max_drafts=8, max_order=0)
    flags, _, _ = run(policy, [torch.ones(1, 2, 2)] * total, [torch.ones(1, 2, 2)] * total)
    assert [not f for f in flags[2:]] == [k == "full" for k in theirs[2:]]


def authors_factors(cache, feature, activated, max_order):
    """derivative_approximation: d0 = Y, d_{i+1} = (d_i - d_i_old) / (distance between the last two computes)."""
    distance = activated[-1] - activated[-2] if len(activated) > 1 else 1
    new = {0: feature}
    for i in range(max_order):
        if cache.get(i) is None:
            break
        new[i + 1] = (new[i] - cache[i]) / distance
    return new


def authors_forecast(factors, distance):
    """taylor_formula."""
    return sum(factors[i] * distance ** i / math.factorial(i) for i in range(len(factors)))


def authors_rel_l1(x, full_x, eps=1e-10):
    """calculate_relative_l1_error."""
    return (torch.abs(x - full_x) / (torch.abs(full_x) + eps)).mean().item()


class Recorded(SpeCa):
    """Records each check's error, and that it came with the engine's metric (forecast where the call was
    expected) equal to measuring it again at the call's own position."""
    def __init__(self, **kw):
        super().__init__(**kw)
        self.seen = {}

    def draft_error(self, state, metric, step):
        assert metric is not None and state.guess == step.position
        self.seen[step.index] = super().draft_error(state, metric, step)
        parts = self.error_parts(state, state.pending, step.position)
        assert self.seen[step.index] == pytest.approx(float(parts[0] / parts[1]), rel=1e-6)
        return self.seen[step.index]


@pytest.mark.parametrize("order", [1, 2, 3])
def test_forecast_and_pointwise_error_equal_the_authors_formulas(order):
    """The same features through the authors' Taylor factors and their relative L1: the drafted outputs and the
    errors the checks measured agree (their step > first_enhance - 2 guard only concerns their own first steps)."""
    g = torch.Generator().manual_seed(order)
    total = 14
    rs = [torch.randn(1, 8, 4, generator=g) * (1 + 0.1 * i) for i in range(total)]
    ss = [torch.randn(1, 8, 4, generator=g) + 0.2 * i for i in range(total)]
    policy = Recorded(threshold=1e9, decay=1.0, warmup_steps=3, unverified_drafts=1, max_drafts=2, max_order=order,
                      error_measure="pointwise")
    x = torch.zeros(1, 8, 4)
    flags, outs, _ = run(policy, rs, ss, x=x)
    computed = [i for i, f in enumerate(flags) if not f]
    assert computed == [0, 1, 2, 5, 8, 11]
    span, probe, activated = {}, {}, []
    for i in range(total):
        if not flags[i]:
            activated.append(i)
            span = authors_factors(span, ss[i], activated, order)
            probe = authors_factors(probe, rs[i], activated, order)
            continue
        k = i - activated[-1]
        torch.testing.assert_close(outs[i] - rs[i], authors_forecast(span, k), rtol=1e-5, atol=1e-5)
        if i in policy.seen:
            assert policy.seen[i] == pytest.approx(authors_rel_l1(authors_forecast(probe, k), rs[i]), rel=1e-5)
    assert sorted(policy.seen) == [4, 7, 10, 13]


def test_pointwise_measure_is_the_authors_and_relative_l1_the_ratio_of_sums():
    g = torch.Generator().manual_seed(3)
    f, y = torch.randn(2, 16, 8, generator=g), torch.randn(2, 16, 8, generator=g)
    assert pointwise_rel_l1(f, y).item() == pytest.approx(authors_rel_l1(f, y), rel=1e-6)
    y16 = y.half()
    assert pointwise_rel_l1(f.half(), y16).item() == pytest.approx(authors_rel_l1(f.half().float(), y16.float()),
                                                                   rel=1e-6)
