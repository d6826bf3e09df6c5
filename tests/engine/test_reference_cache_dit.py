"""CacheKit's DBCache against cache-dit 1.5.3's own DBCache on the same tiny seeded FluxTransformer2DModel,
inputs and 12-step Euler flow-matching run as tests/engine/test_reference_diffusers.py (harness:
scripts/harness/diffusers_host.py): same per-step reuse decisions and bit-equal outputs, for Fn/Bn splits and every
limit (warmup with interval, max cached, max continuous, max accumulated diff, R >= 1). With the
TaylorSeer calibrator cache-dit lags by one step index; test_taylorseer_calibrator_index_lag pins that
down exactly. With the FoCa calibrator cache-dit takes every gap as one step; test_foca_calibrator_unit_gaps pins
that down. No ComfyUI here.

How cache-dit is driven (its rules, with file:line, are in the research notes this was built from):
  * one cache context over the joined list double + single blocks, which is cache-dit's default Flux
    adapter (CACHE_DIT_FLUX_ENABLE_DUMMY_BLOCKS=1) and CacheKit's layout in the harness; the adapter is
    spelled out here so the environment variable cannot change it;
  * enable_separate_cfg=False (one call per step), fp32 (cache-dit measures its diff in the tensor dtype);
  * refresh_context before every run: on a bare transformer the context persists across runs and its
    own refresh comes one call late, so a second run would start at step 12 with the last run's buffers.
"""
import contextlib

import cache_dit
import pytest
import torch
from cache_dit import DBCacheConfig, FoCaCalibratorConfig, TaylorSeerCalibratorConfig

from harness import diffusers_host as dh
from harness import pack

pack.load_core()   # cache_core as a top-level package; the repo root on sys.path would shadow ComfyUI's nodes
from cache_core import DBCache  # noqa: E402
from cache_core.forecast import FoCaForecaster  # noqa: E402

STEPS = 12
MARGIN = 1e-3   # no measured diff (or accumulated sum) may lie closer than this to its threshold


@pytest.fixture(scope="module")
def setup():
    model = dh.tiny_flux(seed=0)
    return model, dh.flux_inputs(seed=0, config=model.config), dh.linear_sigmas(STEPS)


# --- cache-dit side -----------------------------------------------------------------------------
def cache_dit_config(kw: dict) -> tuple[DBCacheConfig, TaylorSeerCalibratorConfig | FoCaCalibratorConfig | None]:
    """cache-dit's configs for CacheKit's DBCache(**kw)."""
    order = kw.get("taylorseer_order", 0)
    config = DBCacheConfig(
        Fn_compute_blocks=kw["front_blocks"], Bn_compute_blocks=kw["back_blocks"],
        residual_diff_threshold=kw["threshold"], max_warmup_steps=kw["warmup_steps"],
        warmup_interval=kw.get("warmup_interval", 1), max_cached_steps=kw.get("max_cached_steps", -1),
        max_continuous_cached_steps=kw.get("max_continuous_cached_steps", -1),
        max_accumulated_residual_diff_threshold=kw.get("max_accumulated_diff"),
        enable_separate_cfg=False, num_inference_steps=STEPS)
    if kw.get("calibrator") == "foca":
        return config, FoCaCalibratorConfig()
    return config, (TaylorSeerCalibratorConfig(taylorseer_order=order) if order else None)


@contextlib.contextmanager
def cache_dit_enabled(model, kw: dict):
    """cache-dit's DBCache on `model` for the duration; disable_cache drops its contexts and puts back the
    forward it found (the Flux forward that cache-dit's patch functor installed on the first enable, which
    computes the same as diffusers': test_cache_dit_leaves_the_model_as_it_was)."""
    config, calibrator = cache_dit_config(kw)
    cache_dit.enable_cache(dh.cache_dit_adapter(model), cache_config=config, calibrator_config=calibrator)
    try:
        assert len(model._context_names) == 1   # one context over the joined list
        yield
    finally:
        cache_dit.disable_cache(model)


def run_cache_dit(model, inputs, sigmas):
    """One sampling run with cache-dit enabled. Returns (final x, per-step outputs, per-step reused flags,
    per-step measured diffs (None where a limit decided before the diff))."""
    cache_dit.refresh_context(model, num_inference_steps=len(sigmas) - 1)   # fresh context: step 0, no buffers
    reused, diffs = [], []

    @contextlib.contextmanager
    def on_call(step, x, sigma):
        yield
        ctx = model._context_manager.get_context(model._context_names[0])   # re-created on refresh: look up
        assert ctx.get_current_step() == step
        reused.append(bool(ctx.cached_steps) and ctx.cached_steps[-1] == step)
        diffs.append(ctx.residual_diffs.get(str(step)))

    x, outputs = dh.sample(model, inputs, sigmas, on_call)
    return x, outputs, reused, diffs


def pattern(reused):
    return "".join("R" if r else "C" for r in reused)


def assert_bit_equal(outputs, ref_outputs, x=None, ref_x=None):
    for got, ref in zip(outputs, ref_outputs):
        torch.testing.assert_close(got, ref, rtol=0, atol=0)
    if x is not None:
        torch.testing.assert_close(x, ref_x, rtol=0, atol=0)


# --- same decisions, same outputs -----------------------------------------------------------------
# The tiny model's Fn residual relL1 lies in ~0.32-0.76. The 4 blocks are double0, double1 | single0,
# single1. A scenario's limits are listed so the test can check that each one decides something.
SCENARIOS = {
    # id: (DBCache kwargs, its limits); comments give the decisions seen
    "F1B0_continuous2": (dict(front_blocks=1, back_blocks=0, threshold=0.6, warmup_steps=2,
                              max_continuous_cached_steps=2), ["max_continuous_cached_steps"]),   # CCRRCRRCCRRC
    "F2B1": (dict(front_blocks=2, back_blocks=1, threshold=0.6, warmup_steps=2), []),             # CCRRRRRRRCCR
    "F1B1": (dict(front_blocks=1, back_blocks=1, threshold=0.45, warmup_steps=2), []),            # CCCRCRRCCRCC
    # the front blocks end inside the single blocks: the probe is measured across the kind change
    "F3B0": (dict(front_blocks=3, back_blocks=0, threshold=0.45, warmup_steps=2), []),            # CCCRCRRCCRCC
    # warmup range(0, 4, 2) forces steps 0 and 2 only; step 1 may reuse. At most 3 cached steps in all.
    "warmup_interval_max_cached": (dict(front_blocks=1, back_blocks=0, threshold=0.6, warmup_steps=4,
                                        warmup_interval=2, max_cached_steps=3),
                                   ["warmup_interval", "max_cached_steps"]),                       # CRCRRCCCCCCC
    # every measured diff adds up, on computed steps too, and is never reset: steps 2-5 measure 0.578 (C),
    # 0.372 (R), 0.523 (C), 0.397 (R), 1.87 in all, so steps 6-11 compute (cached steps alone: 0.77)
    "max_accumulated": (dict(front_blocks=1, back_blocks=0, threshold=0.45, warmup_steps=2,
                             max_accumulated_diff=1.5), ["max_accumulated_diff"]),                 # CCCRCRCCCCCC
    # R >= 1 reuses whenever the limits let it, without a diff
    "R1_continuous3": (dict(front_blocks=1, back_blocks=0, threshold=1.0, warmup_steps=2,
                            max_continuous_cached_steps=3), ["max_continuous_cached_steps"]),       # CCRRRCRRRCRR
}


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_dbcache_matches_cache_dit(setup, name):
    model, inputs, sigmas = setup
    kw, limits = SCENARIOS[name]
    with cache_dit_enabled(model, kw):
        ref_x, ref_outputs, ref_reused, ref_diffs = run_cache_dit(model, inputs, sigmas)
    x, outputs, reused, stats = dh.run_cachekit(model, inputs, sigmas, DBCache(**kw))

    assert 0 < sum(reused) < STEPS - kw["warmup_steps"], pattern(reused)   # a mix past the warmup
    assert pattern(reused) == pattern(ref_reused)
    # Exact: the same front blocks, the same cached middle residual (img and txt) added to the same front
    # output, then the same back blocks.
    assert_bit_equal(outputs, ref_outputs, x, ref_x)
    s = stats["streams"][dh.STREAM]
    assert s["reused_steps"] == [i for i, r in enumerate(reused) if r]

    # no decision hangs on float noise: diffs vs R, running sums vs the accumulated limit
    measured = [d for d in ref_diffs if d is not None and d >= 0]
    if kw["threshold"] < 1.0:
        assert measured and min(abs(d - kw["threshold"]) for d in measured) > MARGIN, (measured, kw)
    if "max_accumulated_diff" in kw:
        sums = [sum(measured[:i + 1]) for i in range(len(measured))]
        assert min(abs(t - kw["max_accumulated_diff"]) for t in sums) > MARGIN, sums
    # each limit in the scenario decides something: without it the run decides differently
    for limit in limits:
        free = {k: v for k, v in kw.items() if k != limit}
        _, _, free_reused, _ = dh.run_cachekit(model, inputs, sigmas, DBCache(**free))
        assert free_reused != reused, (limit, pattern(reused))


def test_runs_refreshed_in_one_enabling_repeat(setup):
    """The harness's refresh_context before each run: three runs in one enabling all start at step 0 with
    empty buffers (run_cache_dit checks the step), so all decide and compute as CacheKit's single run."""
    model, inputs, sigmas = setup
    kw = SCENARIOS["F2B1"][0]
    with cache_dit_enabled(model, kw):
        runs = [run_cache_dit(model, inputs, sigmas) for _ in range(3)]
    x, outputs, reused, _ = dh.run_cachekit(model, inputs, sigmas, DBCache(**kw))
    for ref_x, ref_outputs, ref_reused, _ in runs:
        assert ref_reused == reused
        assert_bit_equal(outputs, ref_outputs, x, ref_x)


def test_cache_dit_leaves_the_model_as_it_was():
    """cache-dit replaces the transformer's forward with its own copy of the Flux forward on enable and
    keeps it after disable_cache; uncached and CacheKit runs on that model give the same bits as on a model
    cache-dit never touched."""
    fresh, used = dh.tiny_flux(seed=0), dh.tiny_flux(seed=0)
    inputs, sigmas = dh.flux_inputs(seed=0, config=fresh.config), dh.linear_sigmas(STEPS)
    kw = SCENARIOS["F1B0_continuous2"][0]
    with cache_dit_enabled(used, kw):
        run_cache_dit(used, inputs, sigmas)
    assert "forward" in used.__dict__ and not hasattr(used, "_context_manager")

    plain_x, plain_outputs = dh.sample(fresh, inputs, sigmas)
    x, outputs = dh.sample(used, inputs, sigmas)
    assert_bit_equal(outputs, plain_outputs, x, plain_x)
    ck_fresh = dh.run_cachekit(fresh, inputs, sigmas, DBCache(**kw))
    ck_used = dh.run_cachekit(used, inputs, sigmas, DBCache(**kw))
    assert ck_used[2] == ck_fresh[2]
    assert_bit_equal(ck_used[1], ck_fresh[1], ck_used[0], ck_fresh[0])


def test_empty_middle_span_differs_only_in_bookkeeping(setup):
    """Fn + Bn = number of blocks (cache-dit does not reject it): nothing lies between front and back.
    CacheKit runs every block and reports every step computed; cache-dit still takes decisions and marks
    steps cached, but the residual it adds is that of no blocks (0), so the outputs are the same bits."""
    model, inputs, sigmas = setup
    kw = dict(front_blocks=3, back_blocks=1, threshold=0.6, warmup_steps=2)
    with cache_dit_enabled(model, kw):
        ref_x, ref_outputs, ref_reused, _ = run_cache_dit(model, inputs, sigmas)
    x, outputs, reused, _ = dh.run_cachekit(model, inputs, sigmas, DBCache(**kw))
    assert not any(reused) and any(ref_reused), (pattern(reused), pattern(ref_reused))
    assert_bit_equal(outputs, ref_outputs, x, ref_x)


# --- TaylorSeer calibrator ------------------------------------------------------------------------
class LaggedDBCache(DBCache):
    """CacheKit's DBCache with cache-dit's calibrator index lag: cache-dit creates a calibrator's state at
    its first update with its step counter at -1, so the counter runs one behind the context step, and it
    forms derivatives only while that counter is > 1. Updates before step 3 therefore keep only the value
    itself (the Taylor series starts afresh); the steps between updates (the k in the forecast) agree."""

    def store(self, state, residual, step, span_input):
        if step.index < 3:
            state.forecaster.last_step = None   # the forecaster then keeps just [value]
        return super().store(state, residual, step, span_input)


@pytest.mark.parametrize("order", [1, 2])
def test_taylorseer_calibrator_index_lag(setup, order):
    """cache-dit's TaylorSeer calibrator vs CacheKit's DBCache(taylorseer_order): decisions equal (they use
    the raw Fn residual), outputs equal up to the first cached step (2) and different from there: CacheKit
    extrapolates with the derivative from steps 0 and 1, cache-dit has none yet and reuses the step-1
    residual as is. Emulating only that lag makes CacheKit bit-equal to cache-dit over the whole run."""
    model, inputs, sigmas = setup
    kw = dict(SCENARIOS["F1B0_continuous2"][0], taylorseer_order=order)   # CCRRCRRCCRRC
    with cache_dit_enabled(model, kw):
        ref_x, ref_outputs, ref_reused, _ = run_cache_dit(model, inputs, sigmas)
    x, outputs, reused, _ = dh.run_cachekit(model, inputs, sigmas, DBCache(**kw))

    assert pattern(reused) == pattern(ref_reused) == "CCRRCRRCCRRC"
    assert_bit_equal(outputs[:2], ref_outputs[:2])
    assert all((a - b).abs().max() > 1e-4 for a, b in zip(outputs[2:], ref_outputs[2:]))
    # at step 2 cache-dit's forecast is order 0: the plain DBCache reuse, to the bit
    plain = dh.run_cachekit(model, inputs, sigmas, DBCache(**{**kw, "taylorseer_order": 0}))
    assert_bit_equal(plain[1][2:3], ref_outputs[2:3])

    lag_x, lag_outputs, lag_reused, _ = dh.run_cachekit(model, inputs, sigmas, LaggedDBCache(**kw))
    assert lag_reused == ref_reused
    assert_bit_equal(lag_outputs, ref_outputs, lag_x, ref_x)


# --- FoCa calibrator ------------------------------------------------------------------------------
class UnitGapFoCa(FoCaForecaster):
    """cache-dit's FoCa slopes: plain differences, whatever the gap."""

    @staticmethod
    def slope(new, old, gap):
        return new - old


class UnitGapDBCache(DBCache):
    def new_state(self, label):
        state = super().new_state(label)
        state.forecaster = UnitGapFoCa()
        return state


@pytest.mark.parametrize("scenario", ["F1B0_continuous2", "R1_continuous3"])
def test_foca_calibrator_unit_gaps(setup, scenario):
    """cache-dit's FoCa calibrator vs CacheKit's DBCache(calibrator="foca"): decisions equal, outputs equal while every
    gap between the values FoCa holds is one step (steps 0-4 of CCRRC...), different once the last two computed
    steps lie further apart (CacheKit's anchor slope is per step, cache-dit's counts the whole gap). Taking every gap
    as one step, as cache-dit does, makes CacheKit bit-equal to it over the whole run."""
    model, inputs, sigmas = setup
    kw = dict(SCENARIOS[scenario][0], calibrator="foca")
    with cache_dit_enabled(model, kw):
        ref_x, ref_outputs, ref_reused, _ = run_cache_dit(model, inputs, sigmas)
    x, outputs, reused, _ = dh.run_cachekit(model, inputs, sigmas, DBCache(**kw))
    assert reused == ref_reused and pattern(reused).startswith("CCRR")
    first_wide = pattern(reused).index("R", pattern(reused).index("C", 2))   # the first reuse after a gap > 1
    assert_bit_equal(outputs[:first_wide], ref_outputs[:first_wide])
    assert (outputs[first_wide] - ref_outputs[first_wide]).abs().max() > 1e-4

    unit_x, unit_outputs, unit_reused, _ = dh.run_cachekit(model, inputs, sigmas, UnitGapDBCache(**kw))
    assert unit_reused == ref_reused
    assert_bit_equal(unit_outputs, ref_outputs, unit_x, ref_x)
