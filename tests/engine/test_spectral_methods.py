"""Spectrum's forecaster and schedule, SeaCache's filter and token grid, checked by hand and against an
independent computation (explicit DFT matrices in float64). The family x method tests run both methods
through ComfyUI's sampling on every family (test_methods_comfy.py)."""
import math

import pytest
import torch

from harness import pack

core = pack.load_core()
from cache_core.forecast import ChebyshevForecaster  # noqa: E402
from cache_core.policies.seacache import spectral_filter, token_grid  # noqa: E402
from cache_core.policies.spectrum import compute_steps  # noqa: E402


def poly_feature(tau, coeffs):
    base = torch.arange(12, dtype=torch.float32).reshape(3, 4) / 10
    return {"img": sum(c * tau ** j * (base + j) for j, c in enumerate(coeffs))}


@pytest.mark.parametrize("degree", [1, 2, 4])
def test_a_polynomial_feature_of_the_fit_degree_is_forecast_exactly(degree):
    coeffs = [0.5, -1.0, 0.7, 0.3, -0.2][:degree + 1]
    f = ChebyshevForecaster(degree=degree, ridge=0.0, blend=1.0)
    taus = [-1.0, -0.8, -0.5, -0.3, 0.0, 0.1][:degree + 2]
    for t in taus:
        f.update(poly_feature(t, coeffs), t)
    for t in (0.3, 0.55):
        got = f.predict(t, like=poly_feature(t, coeffs))["img"]
        torch.testing.assert_close(got, poly_feature(t, coeffs)["img"], rtol=1e-4, atol=1e-4)


def test_blend_zero_is_the_first_order_taylor_step():
    f = ChebyshevForecaster(degree=4, ridge=0.1, blend=0.0)
    for t in (-1.0, -0.5, 0.0):
        f.update(poly_feature(t, [1.0, 2.0]), t)
    torch.testing.assert_close(f.predict(0.25, like=poly_feature(0.25, [1.0, 2.0]))["img"],
                               poly_feature(0.25, [1.0, 2.0])["img"])
    assert f.weights(0.25) == pytest.approx([0.0, -0.5, 1.5])


def test_ridge_shrinks_the_fit_toward_zero():
    """A constant feature: no penalty reproduces it, and a larger penalty shrinks the forecast more."""
    got = []
    for ridge in (0.0, 0.1, 1.0, 10.0):
        f = ChebyshevForecaster(degree=2, ridge=ridge, blend=1.0)
        for t in (-1.0, -0.6, -0.2, 0.2):
            f.update({"img": torch.full((2,), 3.0)}, t)
        got.append(float(f.predict(0.5, like={"img": torch.zeros(2)})["img"][0]))
    assert got[0] == pytest.approx(3.0, abs=1e-4)
    assert got == sorted(got, reverse=True) and got[-1] < 2.0


def test_history_kept_on_the_cpu_when_asked():
    f = ChebyshevForecaster(storage="cpu")
    f.update({"img": torch.ones(2, dtype=torch.float16)}, 0.0)
    assert f.values["img"][0].device.type == "cpu"


def test_spectrum_schedule_is_the_worked_sequence():
    """warmup 5, then gaps floor(2 + 0.75 k) = 2, 2, 3, 4, 5, 5, 6, and the last 3 steps."""
    assert sorted(compute_steps(30, 5, 3, 2.0, 0.75)) == [0, 1, 2, 3, 4, 6, 8, 11, 15, 20, 25, 27, 28, 29]
    assert compute_steps(10, 5, 3, 1.0, 0.0) == frozenset(range(10))            # gap 1: every step, exact
    assert sorted(compute_steps(4, 5, 3, 2.0, 0.75)) == [0, 1, 2, 3]


def _loop_rule(total, warmup, final, base, growth):
    """The authors' schedule as their forward loop runs it (a counter of cached steps and a window that grows
    by `growth` at every computed step), plus the forced last steps."""
    computed, window, cached = [], base, 0
    for step in range(total):
        run = step < warmup or (cached + 1) % math.floor(window) == 0
        if step >= warmup and run:
            window = round(window + growth, 3)
        cached = 0 if run else cached + 1
        if run or step >= total - final:
            computed.append(step)
    return computed


@pytest.mark.parametrize("total", [8, 20, 28, 30, 50])
@pytest.mark.parametrize("base, growth", [(2.0, 0.75), (2.0, 0.0), (3.0, 0.5), (1.0, 0.0)])
def test_spectrum_schedule_equals_the_authors_loop_rule(total, base, growth):
    assert sorted(compute_steps(total, 5, 3, base, growth)) == _loop_rule(total, 5, 3, base, growth)


def _dft_filter(x, sigma, power):
    """The SeaCache gain applied with explicit DFT matrices per axis, in float64."""
    a, b = 1 - sigma, sigma
    y = x.double().to(torch.complex128)
    gains = []
    for ax in range(1, x.ndim - 1):
        n = x.shape[ax]
        k = torch.arange(n, dtype=torch.float64)
        f = torch.where(k < (n + 1) // 2, k, k - n) / n
        s = 1.0 / (f.abs() ** power + 1e-16)
        gains.append((a * s) / (a * a * s + b * b + 1e-16))
    mean = math.prod(float(g.mean()) for g in gains)
    for ax, g in zip(range(1, x.ndim - 1), gains):
        n = x.shape[ax]
        k = torch.arange(n, dtype=torch.float64)
        dft = torch.exp(-2j * math.pi * k[:, None] * k[None, :] / n)
        op = torch.linalg.inv(dft) @ torch.diag(g.to(torch.complex128)) @ dft
        y = torch.movedim(torch.tensordot(op, torch.movedim(y, ax, 0), dims=1), 0, ax)
    return (y / mean).real


@pytest.mark.parametrize("shape, power", [((2, 4, 6, 3), 2.0), ((1, 3, 4, 4, 2), 3.0), ((1, 5, 2), 2.0)])
def test_seacache_filter_equals_an_explicit_dft_computation(shape, power):
    x = torch.randn(shape, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(spectral_filter(x, 0.4, power).double(), _dft_filter(x, 0.4, power),
                               rtol=1e-4, atol=1e-5)


def test_seacache_weighs_detail_less_while_the_step_is_noisy():
    """A change in fine detail counts for less against a change in coarse structure at high noise."""
    grid = torch.zeros(1, 8, 8, 1)
    fine = grid + torch.tensor([[(-1.0) ** (i + j) for j in range(8)] for i in range(8)])[None, :, :, None]
    coarse = grid + torch.linspace(-1, 1, 8)[None, :, None, None].expand(1, 8, 8, 1)

    def ratio(sigma):
        return float(spectral_filter(fine, sigma, 2.0).abs().mean() / spectral_filter(coarse, sigma, 2.0).abs().mean())
    assert ratio(0.9) < ratio(0.5) < ratio(0.1)


def test_token_grid_from_the_latent():
    assert token_grid(64, (16, 16), True) == (8, 8)                   # Flux: 2x2 patches
    assert token_grid(80, (16, 16), True) == (8, 8)                   # Kontext: reference tokens after the image
    assert token_grid(2 * 64, (2, 16, 16), True) == (2, 8, 8)         # Wan: frames x 2x2 patches
    assert token_grid(2 * 16 * 16, (2, 16, 16), True) == (2, 16, 16)  # LTXV: 1x1 patches
    assert token_grid(32, (32,), True) == (32,)                        # Hunyuan3D: a token latent
    assert token_grid(72, (16, 16), False) is None                     # text first: no grid at the start


def test_seacache_measures_a_change_through_one_filter_the_steps():
    """Both probes of a change go through the current step's filter: the same tokens at two noise levels are no
    change (the authors' scripts compare with the previous probe as filtered at its own step, which counts how the
    filter moved), and a change is relL1(H_t x_t, H_t x_prev) on the image tokens, other tokens after them left
    out (Kontext's reference tokens)."""
    from types import SimpleNamespace
    from cache_core.metrics import ratio, rel_l1
    from cache_core.policies.seacache import SeaCache
    from cache_core.policy import StepInfo
    pol, layout = SeaCache(threshold=0.2), SimpleNamespace(image_first=True)
    g = torch.Generator().manual_seed(3)
    x0, x1 = (torch.randn(1, 16 + 4, 8, generator=g) for _ in range(2))    # a 4x4 grid, then 4 reference tokens
    s0, s1 = StepInfo(1, 10, 0.9, grid=(8, 8)), StepInfo(2, 10, 0.6, grid=(8, 8))

    def change(first, second):
        state = pol.new_state("cond")
        pol.commit(state, False, pol.condition(first, s0, layout), None, s0)
        return float(ratio(pol.measure(state, pol.condition(second, s1, layout), step=s1)))

    assert change(x0, x0) == 0.0
    published = float(rel_l1(spectral_filter(x0[:, :16].reshape(1, 4, 4, 8), 0.6, 2.0),
                             spectral_filter(x0[:, :16].reshape(1, 4, 4, 8), 0.9, 2.0)))
    assert published > 0.05                                                  # what the filter's move alone gave
    want = rel_l1(spectral_filter(x1[:, :16].reshape(1, 4, 4, 8), 0.6, 2.0),
                  spectral_filter(x0[:, :16].reshape(1, 4, 4, 8), 0.6, 2.0))
    assert change(x0, x1) == pytest.approx(float(want), rel=1e-5)
