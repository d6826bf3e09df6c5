"""CacheKit's First Block Cache, MagCache (and its calibration) and TaylorSeer against diffusers 0.39's own
hooks (FirstBlockCacheConfig, MagCacheConfig, TaylorSeerCacheConfig) on the same tiny seeded
FluxTransformer2DModel, inputs and 12-step Euler flow-matching run: same per-step reuse decisions and
the same outputs. The harness is scripts/harness/diffusers_host.py; no ComfyUI here."""

import pytest
import torch
from diffusers.hooks import FirstBlockCacheConfig, MagCacheConfig, TaylorSeerCacheConfig
from diffusers.hooks.mag_cache import _MAG_CACHE_LEADER_BLOCK_HOOK, FLUX_MAG_RATIOS
from diffusers.hooks.taylorseer_cache import _TAYLORSEER_CACHE_HOOK

from harness import diffusers_host as dh
from harness import pack

pack.load_core()   # cache_core as a top-level package; the repo root on sys.path would shadow ComfyUI's nodes
from cache_core import FirstBlockCache, MagCache, MagCacheCalibration, TaylorSeer  # noqa: E402

STEPS = 12
# Block-0 img residual relL1 on this model lies in ~0.32-0.76 (the untrained timestep embedding makes
# every step's modulation differ a lot). 0.45 reuses isolated steps (CCCRCRRCCRCC): the nearest observed
# metrics are 0.399 (reused) and 0.469 (computed). 0.6 reuses long runs against a stale reference
# (CRRRRRRRRCCR): nearest 0.549 and 0.668. test_thresholds_give_mixed_decisions_with_margin guards both.
THRESHOLDS = [0.0, 0.45, 0.6]
MARGIN = 1e-3   # no observed metric may lie closer than this to a threshold


@pytest.fixture(scope="module")
def setup():
    model = dh.tiny_flux(seed=0)
    return model, dh.flux_inputs(seed=0, config=model.config), dh.linear_sigmas(STEPS)


@pytest.fixture(scope="module")
def plain(setup):
    model, inputs, sigmas = setup
    return dh.sample(model, inputs, sigmas)


def rel_change(a, b):
    return ((a - b).abs().mean() / b.abs().mean()).item()


def test_tiny_model_is_a_meaningful_testbed(plain):
    x, outputs = plain
    assert len(outputs) == STEPS
    assert all(torch.isfinite(v).all() for v in outputs) and torch.isfinite(x).all()
    # the model output moves a few percent per step: reuse has something to get wrong
    changes = [rel_change(b, a) for a, b in zip(outputs, outputs[1:])]
    assert min(changes) > 0.01, changes


def test_threshold_zero_is_bit_identical_to_plain(setup, plain):
    model, inputs, sigmas = setup
    x, outputs, reused, stats = dh.run_cachekit(model, inputs, sigmas, FirstBlockCache(0.0))
    assert torch.equal(x, plain[0]) and all(torch.equal(a, b) for a, b in zip(outputs, plain[1]))
    assert reused == [False] * STEPS
    assert stats["block_evals"] == stats["block_evals_full"] == STEPS * len(dh.block_list(model))


@pytest.mark.parametrize("threshold", THRESHOLDS)
def test_first_block_cache_matches_diffusers(setup, threshold):
    model, inputs, sigmas = setup
    ref_x, ref_outputs, ref_reused = dh.run_diffusers(model, inputs, sigmas, FirstBlockCacheConfig(threshold))
    x, outputs, reused, stats = dh.run_cachekit(model, inputs, sigmas, FirstBlockCache(threshold))

    assert reused == ref_reused
    # Exact: both add the same cached residual (of block 0's output, img and txt) to the same block-0
    # output, so no tolerance is needed; a looser one would hide e.g. a residual applied twice at 1e-6.
    for got, ref in zip(outputs, ref_outputs):
        torch.testing.assert_close(got, ref, rtol=0, atol=0)
    torch.testing.assert_close(x, ref_x, rtol=0, atol=0)

    # the engine's own bookkeeping agrees with the per-call flags
    s = stats["streams"][dh.STREAM]
    assert s["reused_steps"] == [i for i, r in enumerate(reused) if r]
    assert s["computed_steps"] == [i for i, r in enumerate(reused) if not r]
    n_blocks = len(dh.block_list(model))
    assert stats["block_evals"] == n_blocks * s["computed_calls"] + 1 * s["reused_calls"]


@pytest.mark.parametrize("threshold", [t for t in THRESHOLDS if t > 0])
def test_thresholds_give_mixed_decisions_with_margin(setup, threshold):
    """Without this, a change to the model or the fill could silently turn the comparison above into
    'always compute' (or 'always reuse') on both sides, or put a threshold on a metric's float noise."""
    model, inputs, sigmas = setup
    policy = FirstBlockCache(threshold)
    metrics = dh.log_metrics(policy)
    _, _, reused, _ = dh.run_cachekit(model, inputs, sigmas, policy)
    assert 0 < sum(reused) < STEPS - 1, reused      # step 0 always computes; others must be mixed
    values = [m for _, m in metrics]
    assert len(values) == STEPS - 1 and None not in values
    closest = min(values, key=lambda m: abs(m - threshold))
    assert abs(closest - threshold) > MARGIN, (threshold, sorted(values))


def test_harness_leaves_the_model_as_it_was(setup, plain):
    """Hooks on, hooks off, our shims on and off, also after an error: the plain model still gives the
    same bits, and a diffusers run starts from a fresh state every time (its cache would otherwise carry
    over from the previous run and reuse at step 0)."""
    model, inputs, sigmas = setup
    first = dh.run_diffusers(model, inputs, sigmas, FirstBlockCacheConfig(0.6))
    again = dh.run_diffusers(model, inputs, sigmas, FirstBlockCacheConfig(0.6))
    assert first[2] == again[2] and not first[2][0] and torch.equal(first[0], again[0])
    assert not model.is_cache_enabled

    class Boom(FirstBlockCache):
        def wants_reuse(self, state, metric, step):
            raise RuntimeError("boom")

    forwards = [b.__dict__.get("forward") for b in dh.block_list(model)]
    with pytest.raises(RuntimeError, match="boom"):
        dh.run_cachekit(model, inputs, sigmas, Boom(0.5))
    assert [b.__dict__.get("forward") for b in dh.block_list(model)] == forwards

    x, outputs = dh.sample(model, inputs, sigmas)
    assert torch.equal(x, plain[0]) and all(torch.equal(a, b) for a, b in zip(outputs, plain[1]))


def test_diffusers_run_after_an_earlier_cache_context():
    """diffusers caches the list of child hook registries at the first cache_context; the harness must
    refresh it after enable_cache or the block hooks never see the context name."""
    model = dh.tiny_flux(seed=1)
    inputs, sigmas = dh.flux_inputs(seed=1, config=model.config), dh.linear_sigmas(4)
    with model.cache_context(dh.STREAM):
        pass
    _, _, reused = dh.run_diffusers(model, inputs, sigmas, FirstBlockCacheConfig(0.0))
    assert reused == [False] * 4


# --- MagCache -----------------------------------------------------------------------------------
def mag_reused(transformer) -> bool:
    """The head block's hook decides for the whole stack and keeps the decision in the shared state."""
    return not dh.find_hook(transformer, _MAG_CACHE_LEADER_BLOCK_HOOK).state_manager.get_state().should_compute


class MagCalibrationRecorder:
    """Keeps the hook's calibration ratios after every call (the hook computes but never skips)."""

    def __init__(self):
        self.ratios: list[float] = []

    def __call__(self, transformer) -> bool:
        state = dh.find_hook(transformer, _MAG_CACHE_LEADER_BLOCK_HOOK).state_manager.get_state()
        self.ratios = list(state.calibration_ratios)
        return not state.should_compute


@pytest.fixture(scope="module")
def diffusers_mag_ratios(setup):
    """diffusers' calibration of this model and run: gamma_t = mean over image tokens of |r_t| / |r_{t-1}|.

    num_inference_steps is one more than the run's steps: at step == num_inference_steps the hook resets
    its state and drops the ratios (after printing them); in calibrate mode the value is used for nothing
    else."""
    model, inputs, sigmas = setup
    recorder = MagCalibrationRecorder()
    config = MagCacheConfig(calibrate=True, num_inference_steps=STEPS + 1)
    _, _, reused = dh.run_diffusers(model, inputs, sigmas, config, recorder=recorder)
    assert reused == [False] * STEPS and len(recorder.ratios) == STEPS
    return recorder.ratios


def test_magcache_calibration_matches_diffusers(setup, diffusers_mag_ratios):
    model, inputs, sigmas = setup
    calibration = MagCacheCalibration()
    _, _, reused, _ = dh.run_cachekit(model, inputs, sigmas, calibration)
    ours = calibration.result()["ratios"][dh.STREAM]
    assert reused == [False] * STEPS
    # Exact: both take the per-token L2 norm (fp32) of the same image-stream whole-stack residual.
    assert ours == diffusers_mag_ratios
    # a real calibration, not a constant: the residual norm moves by up to ~20% per step here
    assert ours[0] == 1.0 and max(abs(g - 1.0) for g in ours[1:]) > 0.1, ours


# (ratios, threshold, max_skips, retention_ratio). "calibrated" is the list diffusers' calibrate mode gives
# for this run (length = steps, values 0.86-1.23); FLUX_MAG_RATIOS has 28 entries, which both sides
# resample to 12 by nearest index. Retention keeps int(r * 12 + 0.5) steps: 0.2 -> 0-1, 0.1 -> 0, 0.3 -> 0-3.
MAG_CASES = [
    ("calibrated", 0.06, 3, 0.2),     # CCRCCCRRCRCC: the error threshold decides
    ("calibrated", 0.1, 2, 0.2),      # CCRCRRCRCRCC
    ("calibrated", 0.5, 3, 0.2),      # CCRRRCRRRCRR: max_skips (K) decides
    ("calibrated", 0.2, 4, 0.1),      # CRCRRCRRCRCR
    ("calibrated", 0.15, 3, 0.3),     # CCCCRRRCCRCR: 3.6 rounds up (truncating would free step 3)
    ("flux", 0.06, 3, 0.2),           # CCRCRCRRRCRC
    ("flux", 0.03, 3, 0.2),           # CCCCRCRRCRCC
]


def mag_ratios(which, calibrated):
    return list(calibrated) if which == "calibrated" else FLUX_MAG_RATIOS.tolist()


def log_mag_errors(policy: MagCache) -> list[float]:
    """The accumulated error MagCache compares with its threshold, at every step past the retention."""
    log: list[float] = []
    wants_reuse = policy.wants_reuse

    def logged(state, metric, step):
        if not policy.retained(step):
            log.append(policy._tentative(state, step)[2])
        return wants_reuse(state, metric, step)

    policy.wants_reuse = logged   # on this policy object only
    return log


@pytest.mark.parametrize("which, threshold, max_skips, retention", MAG_CASES)
def test_magcache_matches_diffusers(setup, diffusers_mag_ratios, which, threshold, max_skips, retention):
    model, inputs, sigmas = setup
    ratios = mag_ratios(which, diffusers_mag_ratios)
    config = MagCacheConfig(threshold=threshold, max_skip_steps=max_skips, retention_ratio=retention,
                            num_inference_steps=STEPS, mag_ratios=ratios)
    ref_x, ref_outputs, ref_reused = dh.run_diffusers(model, inputs, sigmas, config, recorder=mag_reused)
    policy = MagCache({"cond": ratios}, threshold, max_skips, retention)
    errors = log_mag_errors(policy)
    x, outputs, reused, stats = dh.run_cachekit(model, inputs, sigmas, policy)

    assert 0 < sum(reused) < STEPS - 1, reused          # a mix of reused and computed steps
    assert reused == ref_reused
    # diffusers keeps the ratios in float32 tensors, CacheKit in Python floats: no decision may hang on that
    assert min(abs(e - threshold) for e in errors) > 1e-4, (threshold, errors)
    # Exact. On a skip diffusers adds the cached image residual to block 0's input and passes the text
    # stream through, CacheKit adds both cached residuals; the output reads only the image stream, and
    # both add the same residual (last block's image output - block 0's image input) to the same input.
    for got, ref in zip(outputs, ref_outputs):
        torch.testing.assert_close(got, ref, rtol=0, atol=0)
    torch.testing.assert_close(x, ref_x, rtol=0, atol=0)
    s = stats["streams"][dh.STREAM]
    assert stats["block_evals"] == len(dh.block_list(model)) * s["computed_calls"]   # a skip runs no block


def test_magcache_threshold_zero_is_off_unlike_diffusers(setup):
    """A deliberate difference: CacheKit's threshold 0 never reuses. diffusers compares err <= threshold,
    so at 0 it still skips wherever the ratio is exactly 1.0 (err stays 0): FLUX_MAG_RATIOS has 1.0 at
    indices 14, 16, 18 and 19, which a 28-step run uses as is."""
    model, inputs, _ = setup
    sigmas = dh.linear_sigmas(28)
    config = MagCacheConfig(threshold=0.0, num_inference_steps=28, mag_ratios=FLUX_MAG_RATIOS)
    _, _, ref_reused = dh.run_diffusers(model, inputs, sigmas, config, recorder=mag_reused)
    _, _, reused, _ = dh.run_cachekit(model, inputs, sigmas, MagCache({"cond": FLUX_MAG_RATIOS.tolist()}, 0.0))
    assert [i for i, r in enumerate(ref_reused) if r] == [14, 16, 18, 19]
    assert not any(reused)


# --- TaylorSeer ---------------------------------------------------------------------------------
# Hook every block, and only the blocks: each forecasts its own (encoder_hidden_states, hidden_states).
TAYLOR_BLOCKS = [r"transformer_blocks\.\d+", r"single_transformer_blocks\.\d+"]


def taylor_reused(transformer) -> bool:
    """A block's hook updates its factors (last_update_step = current_step) only on computed calls; all
    hooks share the schedule, so block 0's tells for the call."""
    state = dh.find_hook(transformer, _TAYLORSEER_CACHE_HOOK).state_manager.get_state()
    return state.last_update_step != state.current_step


@pytest.mark.parametrize("order", [1, 2])
@pytest.mark.parametrize("interval, warmup", [(3, 2), (2, 1)])   # CCRCRRCRRCRR, CRCRCRCRCRCR
def test_taylorseer_output_target_matches_diffusers(setup, plain, order, interval, warmup):
    model, inputs, sigmas = setup
    config = TaylorSeerCacheConfig(cache_interval=interval, disable_cache_before_step=warmup, max_order=order,
                                   taylor_factors_dtype=torch.float32, cache_identifiers=TAYLOR_BLOCKS)
    ref_x, ref_outputs, ref_reused = dh.run_diffusers(model, inputs, sigmas, config, recorder=taylor_reused)
    policy = TaylorSeer(interval=interval, warmup_steps=warmup, max_order=order, target="output")
    x, outputs, reused, _ = dh.run_cachekit(model, inputs, sigmas, policy)

    assert 0 < sum(reused) < STEPS - 1, reused
    assert reused == ref_reused
    first = reused.index(True)
    # Up to the first forecast step both ran the same blocks on the same inputs: bit-equal.
    for got, ref in zip(outputs[:first], ref_outputs[:first]):
        torch.testing.assert_close(got, ref, rtol=0, atol=0)
    # From there, float rounding only (seen: <= 2.4e-7 on outputs of magnitude <= 0.9). The model output
    # reads only the last block's image output. diffusers fits its series to that output y and returns
    # the forecast F as is; CacheKit's engine hands the policy residuals, so it fits to a + (y - a) and
    # returns a + (F - a) (a = block 0's input), both of which round. (With y and F taken directly, the two
    # are bit-equal.) Forecasting the residual instead (target="residual") or a wrong order moves the
    # outputs by >= 8e-4.
    for got, ref in zip(outputs, ref_outputs):
        torch.testing.assert_close(got, ref, rtol=0, atol=1e-6)
    torch.testing.assert_close(x, ref_x, rtol=0, atol=1e-6)
    assert (x - plain[0]).abs().max() > 1e-3   # the forecast is not the computed result
