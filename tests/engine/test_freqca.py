"""FreqCa (arXiv 2510.08669) against its authors' rule, re-derived here from their code (github:Tammytcl/FreqCa,
`cache_utils.py`, `cal_type.py`, `model.py`) in the shape they run it: the band split of each computed feature
(2-D DCT-II with a radial cutoff, or an FFT along the tokens), one dict of divided differences per band refreshed at
each computed ("activated") step, the low band forecast at order 0 and the high band by their hermite_formula
(scale 0.71), and their schedule. The DCT here is scipy's (what their torch_dct computes), independent of
cache_core's basis. The family x method tests run the node through ComfyUI's sampling on every family."""
import math

import numpy as np
import pytest
import scipy.fft
import torch

from harness import pack

pack.load_core()
from cache_core import FreqCa, StepInfo  # noqa: E402
from cache_core import frequency_bands  # noqa: E402
from cache_core.frequency_bands import DctBands, dct_rows, low_band, split  # noqa: E402


# --- the authors' rule ---------------------------------------------------------------------------------------------

def radial_mask(sizes, cutoff):
    """Their DCT mask: index distance from the origin <= cutoff * the largest (their 2-D rule; any axes here)."""
    grids = np.meshgrid(*[np.arange(n, dtype=np.float32) for n in sizes], indexing="ij")
    mag = np.sqrt(sum(g * g for g in grids)).astype(np.float32)
    return mag <= np.float32(cutoff) * mag.max()


def authors_dct(x: torch.Tensor, grid, cutoff=0.1):
    """decomposition_DCT: tokens (B, n, D) to (B, D, *grid), DCT-II ortho, masked, inverse; both bands."""
    b, n, d = x.shape
    spatial = x.double().transpose(1, 2).reshape(b, d, *grid).numpy()
    axes = tuple(range(2, 2 + len(grid)))
    coef = scipy.fft.dctn(spatial, type=2, norm="ortho", axes=axes)
    mask = radial_mask(grid, cutoff)
    bands = [scipy.fft.idctn(coef * m, type=2, norm="ortho", axes=axes) for m in (mask, ~mask)]
    return [torch.from_numpy(v).reshape(b, d, n).transpose(1, 2) for v in bands]


def authors_fft(x: torch.Tensor, grid, cutoff=0.1):
    """decomposition_FFT: an FFT along the token axis, |fftfreq| <= cutoff * max |fftfreq|; real parts."""
    freq = torch.fft.fft(x.double(), dim=1)
    freqs = torch.fft.fftfreq(x.shape[1])
    low = (freqs.abs() <= cutoff * freqs.abs().max())[None, :, None]
    return [torch.fft.ifft(freq * m, dim=1).real for m in (low, ~low)]


def authors_hermite(factors: dict, distance: int, max_order: int) -> torch.Tensor:
    """hermite_formula: F + sum_k H_k(0.71 d) / k! 0.71^k diff_k, H on a tensor of the feature's dtype."""
    scale = 0.71
    x = torch.tensor(float(distance), dtype=factors[0].dtype) * scale
    pred = factors[0].clone()
    for k in range(1, min(max_order, len(factors) - 1) + 1):
        h_prev, h = torch.ones_like(x), 2 * x
        for j in range(2, k + 1):
            h_prev, h = h, 2 * x * h - 2 * (j - 1) * h_prev
        pred.add_(factors[k], alpha=float(h / math.factorial(k) * scale ** k))
    return pred


class AuthorsFreqCa:
    """cal_type (no z-cache) + derivative_approximation + cache_step, for their one cached feature."""

    def __init__(self, interval, first_enhance, decompose, grid, max_order=2, cutoff=0.1):
        self.interval, self.first, self.max_order = interval, first_enhance, max_order
        self.decompose = lambda f: decompose(f, grid, cutoff)
        self.counter, self.activated, self.bands = 0, [0], {"low": {}, "high": {}}

    def is_full(self, step: int) -> bool:
        if step < self.first or self.counter == self.interval - 1:
            self.counter = 0
            self.activated.append(step)
            return True
        self.counter += 1
        return False

    def compute(self, step: int, feature: torch.Tensor) -> None:
        dist = self.activated[-2] - self.activated[-1]
        for name, band in zip(("low", "high"), self.decompose(feature)):
            old, new = self.bands[name], {0: band}
            for i in range(self.max_order):
                if old.get(i) is not None and step > self.first - 2:
                    new[i + 1] = (new[i] - old[i]) / dist
                else:
                    break
            self.bands[name] = new

    def forecast(self, step: int) -> torch.Tensor:
        distance = self.activated[-1] - step
        return (authors_hermite(self.bands["low"], distance, 0)
                + authors_hermite(self.bands["high"], distance, self.max_order))


def authors_schedule(steps, interval, first_enhance):
    ref = AuthorsFreqCa(interval, first_enhance, authors_dct, (1,))
    return [s for s in range(steps) if ref.is_full(s)]


def policy_schedule(policy, steps):
    return [s for s in range(steps) if policy.scheduled_compute(StepInfo(s, steps, 1.0 - s / steps))]


# --- the schedule ----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("steps, interval, warmup", [(50, 6, 3), (50, 9, 3), (4, 2, 1), (28, 4, 3), (20, 1, 3)])
def test_schedule_is_the_authors(steps, interval, warmup):
    got = policy_schedule(FreqCa(interval=interval, warmup_steps=warmup, final_steps=0), steps)
    assert got == authors_schedule(steps, interval, warmup)
    if (steps, interval) == (50, 9):
        assert got == [0, 1, 2, 11, 20, 29, 38, 47]     # their 6.24x FLOPs setting: 8 of 50 steps


def test_final_steps_compute():
    assert policy_schedule(FreqCa(interval=6, warmup_steps=3, final_steps=2), 20) == [0, 1, 2, 8, 14, 18, 19]


# --- the band split --------------------------------------------------------------------------------------------------

def test_dct_basis_is_scipys_orthonormal_dct_ii():
    n = 7
    full = dct_rows(n, n).double()
    ref = scipy.fft.dct(np.eye(n), type=2, norm="ortho", axis=0)
    np.testing.assert_allclose(full.numpy(), ref, atol=1e-6)
    torch.testing.assert_close(full @ full.T, torch.eye(n, dtype=torch.float64), atol=1e-6, rtol=0)


@pytest.mark.parametrize("grid", [(8, 8), (6, 10), (3, 4, 5), (37,)])
@pytest.mark.parametrize("transform, cutoff", [("dct", 0.1), ("dct", 0.35), ("fft", 0.1), ("fft", 0.5)])
def test_the_bands_add_up_to_the_feature_and_are_the_authors(grid, transform, cutoff):
    torch.manual_seed(0)
    x = torch.randn(2, math.prod(grid), 5)
    low, high = split(x, grid, transform, cutoff)
    assert low.dtype == high.dtype == torch.float32
    torch.testing.assert_close(low + high, x, rtol=0, atol=1e-6)
    ref_low, ref_high = (authors_dct if transform == "dct" else authors_fft)(x, grid, cutoff)
    torch.testing.assert_close(low.double(), ref_low, rtol=0, atol=1e-5)
    torch.testing.assert_close(high.double(), ref_high, rtol=0, atol=1e-5)
    # a band split, not a filter: each band has nothing in the other's frequencies
    torch.testing.assert_close(low_band(low, grid, transform, cutoff), low, rtol=0, atol=1e-5)
    assert low_band(high, grid, transform, cutoff).abs().max() < 1e-5
    assert high.abs().max() > 0.1 and low.abs().max() > 0.01


def test_cutoff_one_keeps_everything_low_and_zero_keeps_the_mean():
    torch.manual_seed(1)
    x = torch.randn(1, 48, 3)
    for transform in ("dct", "fft"):
        torch.testing.assert_close(low_band(x, (6, 8), transform, 1.0), x, rtol=0, atol=1e-5)
        torch.testing.assert_close(low_band(x, (6, 8), transform, 0.0), x.mean(1, keepdim=True).expand_as(x),
                                   rtol=0, atol=1e-6)


def test_unknown_transform_is_refused():
    with pytest.raises(ValueError, match="'wavelet'"):
        low_band(torch.zeros(1, 4, 1), (4,), "wavelet", 0.1)


def counting_builds(monkeypatch) -> list:
    """Every DCT band built from here on (each build makes one low-band mask), cached or not."""
    builds, mask = [], frequency_bands.dct_low_mask
    monkeypatch.setattr(frequency_bands, "dct_low_mask", lambda *a: builds.append(a) or mask(*a))
    return builds


@pytest.mark.parametrize("grid", [(8, 8), (3, 4, 5), (37,)])
def test_kept_dct_bands_split_bit_for_bit_as_built_per_call_and_build_once_per_key(monkeypatch, grid):
    torch.manual_seed(0)
    x = torch.randn(2, math.prod(grid), 5)
    cutoffs = (0.1, 0.35)
    want = {c: split(x, grid, "dct", c) for c in cutoffs}       # rows and mask built for the call
    builds, bands = counting_builds(monkeypatch), DctBands()
    for _ in range(2):
        for c in cutoffs:
            low, high = split(x, grid, "dct", c, bands)
            assert torch.equal(low, want[c][0]) and torch.equal(high, want[c][1])
    assert len(builds) == len(cutoffs)          # once per (sizes, cutoff, dtype, device), then kept
    dct_low = frequency_bands.dct_low
    on_grid = x.double().reshape(2, *grid, 5)
    axes = tuple(range(1, len(grid) + 1))
    assert torch.equal(dct_low(on_grid, axes, 0.1, bands), dct_low(on_grid, axes, 0.1))
    assert len(builds) == len(cutoffs) + 2      # float64 is a key of its own (and the uncached call built one)


# --- the rule on a feature sequence ----------------------------------------------------------------------------------

def feature_sequence(steps, tokens, channels=4, seed=0):
    """A smooth trajectory (slow low frequencies, a curved high-frequency part) plus a little noise per step."""
    g = torch.Generator().manual_seed(seed)
    base, slope, curve = (torch.randn(1, tokens, channels, generator=g) for _ in range(3))
    return [(base + 0.3 * slope * (s / steps) + curve * (s / steps) ** 2
             + 0.01 * torch.randn(1, tokens, channels, generator=g)) for s in range(steps)]


def run_policy(policy, features, latent_grid, inputs=None):
    """Drive the policy as the engine does for one stream: compute, or forecast where it may. Returns the stack
    output of every step (computed: the feature; forecast: input + the residual reuse() gives) and the computed
    steps."""
    total, state, cached = len(features), policy.new_state("cond"), None
    outs, computed = [], []
    for s, feature in enumerate(features):
        step = StepInfo(s, total, 1.0 - s / total, grid=latent_grid)
        x = inputs[s] if inputs is not None else torch.zeros_like(feature)
        if cached is not None and policy.wants_reuse(state, None, step) and not step.at_edge(*policy.edges(total)):
            outs.append(x + policy.reuse(state, cached, step, {"img": x})["img"])
        else:
            cached = policy.store(state, {"img": feature - x}, step, {"img": x})
            outs.append(feature)
            computed.append(s)
    return outs, computed, state


@pytest.mark.parametrize("transform, decompose", [("dct", authors_dct), ("fft", authors_fft)])
@pytest.mark.parametrize("interval", [3, 6])
def test_forecasts_are_the_authors_on_an_image_grid(transform, decompose, interval):
    steps, grid = 30, (8, 8)
    features = feature_sequence(steps, math.prod(grid))
    inputs = [0.5 * f + 0.1 for f in feature_sequence(steps, math.prod(grid), seed=1)]   # the stack's own input
    policy = FreqCa(interval=interval, warmup_steps=3, final_steps=0, transform=transform)
    outs, computed, state = run_policy(policy, features, (16, 16), inputs)    # a 16x16 latent, patch 2: 8x8 tokens
    ref = AuthorsFreqCa(interval, 3, decompose, grid)
    forecast = 0
    for s, feature in enumerate(features):
        if ref.is_full(s):
            assert s in computed
            ref.compute(s, feature.double())
        else:
            want = ref.forecast(s)
            torch.testing.assert_close(outs[s].double(), want, rtol=1e-5, atol=1e-5)
            forecast += 1
            # not the feature itself, nor the last computed one: a forecast
            assert (outs[s] - features[s]).abs().max() > 1e-3 and (outs[s] - features[computed[-1]]).abs().max() > 1e-3
    assert forecast == steps - len(computed) > 10
    assert len(state.forecaster.factors["img"]) == 3            # one feature's F, d1, d2: what a stream holds
    assert policy.run_notes() == []                             # the grid was found


def test_a_stream_builds_its_dct_bands_once_for_the_run(monkeypatch):
    builds = counting_builds(monkeypatch)
    features = feature_sequence(14, 48)
    _, computed, state = run_policy(FreqCa(interval=3, warmup_steps=3, final_steps=0), features, (3, 8, 8))
    assert 14 - len(computed) >= 6 and len(builds) == 1       # every forecast but the first reuses it
    again = run_policy(FreqCa(interval=3, warmup_steps=3, final_steps=0), features, (3, 8, 8))[2]
    assert again.bands is not state.bands and len(builds) == 2  # a new run's state builds its own


def test_low_band_is_reused_as_it_was_and_the_high_band_moves():
    steps, grid = 12, (8, 8)
    features = feature_sequence(steps, 64)
    policy = FreqCa(interval=4, warmup_steps=3, final_steps=0, transform="dct")
    outs, computed, _ = run_policy(policy, features, (16, 16))
    assert 4 not in computed
    last = max(c for c in computed if c < 4)
    low_now, high_now = split(outs[4], grid, "dct", 0.1)
    low_then, high_then = split(features[last], grid, "dct", 0.1)
    torch.testing.assert_close(low_now, low_then, rtol=0, atol=1e-5)
    assert (high_now - high_then).abs().max() > 1e-3


def test_video_grid_splits_over_frames_height_and_width():
    steps, grid = 14, (3, 4, 4)
    features = feature_sequence(steps, math.prod(grid))
    policy = FreqCa(interval=3, warmup_steps=3, final_steps=0, cutoff=0.3)
    outs, _, _ = run_policy(policy, features, (3, 8, 8))    # 3 frames of an 8x8 latent, patch (1, 2, 2)
    ref = AuthorsFreqCa(3, 3, authors_dct, grid, cutoff=0.3)
    for s, feature in enumerate(features):
        if ref.is_full(s):
            ref.compute(s, feature.double())
        else:
            torch.testing.assert_close(outs[s].double(), ref.forecast(s), rtol=1e-5, atol=1e-5)
    assert policy.run_notes() == []


def test_tokens_on_their_own_axes_use_them():
    """A feature laid out (batch, frames, height, width, channels) (Cosmos) is split over those axes."""
    steps = 10
    flat = feature_sequence(steps, 2 * 4 * 6, channels=3)
    features = [f.reshape(1, 2, 4, 6, 3) for f in flat]
    outs, _, _ = run_policy(FreqCa(interval=3, warmup_steps=2, final_steps=0), features, ())
    flat_outs, _, _ = run_policy(FreqCa(interval=3, warmup_steps=2, final_steps=0), flat, (2, 8, 12))
    for a, b in zip(outs, flat_outs):
        torch.testing.assert_close(a.reshape(b.shape), b, rtol=0, atol=1e-6)


@pytest.mark.parametrize("latent", [(37,), ()])
def test_tokens_that_are_no_grid_are_split_along_the_sequence(latent):
    """Audio (its latent one axis of 37) or a rank's shard (no latent grid): a 1-D DCT along the tokens, noted in the
    run where the tokens are not the latent's own."""
    steps, n = 12, 37
    features = feature_sequence(steps, n)
    policy = FreqCa(interval=3, warmup_steps=3, final_steps=0)
    outs, _, _ = run_policy(policy, features, latent)
    ref = AuthorsFreqCa(3, 3, authors_dct, (n,))
    for s, feature in enumerate(features):
        if ref.is_full(s):
            ref.compute(s, feature.double())
        else:
            torch.testing.assert_close(outs[s].double(), ref.forecast(s), rtol=1e-5, atol=1e-5)
    if latent == (37,):
        assert policy.run_notes() == []       # the latent's own axis: the grid
        return
    (note,) = policy.run_notes()
    assert "37 tokens" in note and "along the token sequence" in note


@pytest.mark.parametrize("transform, decompose", [("dct", authors_dct), ("fft", authors_fft)])
@pytest.mark.parametrize("start, before, after", [(5, 5, 0), (None, 5, 0), (0, 0, 5), (3, 3, 6)])
def test_image_tokens_joined_with_others_are_split_on_their_grid(transform, decompose, start, before, after):
    """Flux's single blocks join text and image tokens (text first; Kontext's reference images after the image):
    the image's 8x8 tokens forecast as the authors' feature on its grid, the others as one sequence beside it, the
    image found where the block's args say it starts (None: at the end); nothing noted."""
    steps, grid = 15, (8, 8)
    image, others = feature_sequence(steps, 64), feature_sequence(steps, before + after, seed=4)
    joined = [torch.cat((o[:, :before], i, o[:, before:]), dim=1) for i, o in zip(image, others)]
    policy, cached = FreqCa(interval=3, warmup_steps=3, final_steps=0, transform=transform), None
    state = policy.new_state("cond")
    ref_image = AuthorsFreqCa(3, 3, decompose, grid)
    ref_others = AuthorsFreqCa(3, 3, decompose, (before + after,))
    forecasts = 0
    for s in range(steps):
        step = StepInfo(s, steps, 1.0 - s / steps, grid=(16, 16), image_start=start)
        zeros = {"img": torch.zeros_like(joined[s])}
        if ref_image.is_full(s) & ref_others.is_full(s):      # both advance their schedule every step
            ref_image.compute(s, image[s].double())
            ref_others.compute(s, others[s].double())
            cached = policy.store(state, {"img": joined[s]}, step, zeros)
            continue
        got = policy.reuse(state, cached, step, zeros)["img"].double()
        torch.testing.assert_close(got[:, before:before + 64], ref_image.forecast(s), rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(torch.cat((got[:, :before], got[:, before + 64:]), dim=1), ref_others.forecast(s),
                                   rtol=1e-5, atol=1e-5)
        forecasts += 1
    assert forecasts == 8 and policy.run_notes() == []


def test_residual_target_forecasts_the_residual():
    """target residual: the bands of the stack's residual are forecast and added to the step's own input."""
    steps, grid = 12, (8, 8)
    residuals = feature_sequence(steps, 64)
    inputs = feature_sequence(steps, 64, seed=3)
    features = [r + x for r, x in zip(residuals, inputs)]
    outs, _, _ = run_policy(FreqCa(interval=4, warmup_steps=3, final_steps=0, target="residual"), features, (16, 16),
                            inputs)
    ref = AuthorsFreqCa(4, 3, authors_dct, grid)
    for s, r in enumerate(residuals):
        if ref.is_full(s):
            ref.compute(s, r.double())
        else:
            torch.testing.assert_close(outs[s].double(), inputs[s].double() + ref.forecast(s), rtol=1e-5, atol=1e-5)


def test_order_zero_and_cutoff_one_reuse_the_last_feature():
    steps = 10
    features = feature_sequence(steps, 64)
    for policy in (FreqCa(interval=3, warmup_steps=2, final_steps=0, max_order=0),
                   FreqCa(interval=3, warmup_steps=2, final_steps=0, cutoff=1.0)):
        outs, computed, _ = run_policy(policy, features, (16, 16))
        for s in range(steps):
            last = max(c for c in computed if c <= s)
            torch.testing.assert_close(outs[s], features[last], rtol=0, atol=1e-5)


def test_interval_one_never_reuses():
    policy = FreqCa(interval=1)
    state = policy.new_state("cond")
    policy.store(state, {"img": torch.ones(1, 4, 2)}, StepInfo(0, 10, 1.0), {"img": torch.zeros(1, 4, 2)})
    assert not any(policy.wants_reuse(state, None, StepInfo(s, 10, 1.0 - s / 10)) for s in range(10))


@pytest.mark.parametrize("kwargs, words", [
    (dict(interval=0), "0"), (dict(warmup_steps=-1), "-1"), (dict(cutoff=1.5), "1.5"),
    (dict(cutoff=float("nan")), "nan"), (dict(transform="dwt"), "'dwt'"), (dict(target="input"), "'input'"),
    (dict(max_order=-2), "-2")])
def test_bad_settings_are_refused_with_their_value(kwargs, words):
    with pytest.raises(ValueError, match=words):
        FreqCa(**kwargs)


def test_a_text_stream_beside_the_image_is_split_along_its_sequence_unnoted():
    """Double-stream stacks (Qwen-Image) end with the text beside the image: the image on its grid, the text along
    its tokens; only the image's layout is the run's business."""
    steps = 10
    img, txt = feature_sequence(steps, 64), feature_sequence(steps, 8, seed=2)
    policy, total = FreqCa(interval=3, warmup_steps=2, final_steps=0), steps
    state = policy.new_state("cond")
    ref = AuthorsFreqCa(3, 2, authors_dct, (8,))
    for s in range(steps):
        step = StepInfo(s, total, 1.0 - s / total, grid=(16, 16))
        zeros = {"img": torch.zeros_like(img[s]), "txt": torch.zeros_like(txt[s])}
        if ref.is_full(s):
            ref.compute(s, txt[s].double())
            cached = policy.store(state, {"img": img[s], "txt": txt[s]}, step, zeros)
        else:
            assert policy.wants_reuse(state, None, step)
            got = policy.reuse(state, cached, step, zeros)
            torch.testing.assert_close(got["txt"].double(), ref.forecast(s), rtol=1e-5, atol=1e-5)
    assert policy.run_notes() == []


def test_a_feature_without_token_axis_is_forecast_whole():
    from cache_core.forecast import HermiteForecaster
    policy, fc = FreqCa(interval=4, warmup_steps=1, final_steps=0), HermiteForecaster(2, torch.float32, scale=0.71)
    state = policy.new_state("cond")
    for s in (0, 4):
        value = torch.full((1, 6), float(s * s)) + torch.arange(6.0)
        cached = policy.store(state, {"img": value}, StepInfo(s, 10, 0.5), {"img": torch.zeros(1, 6)})
        fc.update({"img": value}, s)
    got = policy.reuse(state, cached, StepInfo(6, 10, 0.4), {"img": torch.zeros(1, 6)})["img"]
    torch.testing.assert_close(got, fc.predict(6)["img"])
    assert "no token axis" in policy.run_notes()[0]
