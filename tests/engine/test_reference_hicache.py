"""HermiteForecaster against HiCache's own rule (arXiv 2508.16984; the authors' Flux `taylor_utils`, mode "HiCache"),
re-derived here from their code in the shape they run it: a dict of difference factors per module, refreshed at
each computed ("activated") step by the same divided differences as TaylorSeer, and a forecast that weights factor
k by H_k(scale * x) * scale^k / k! with H the physicists' Hermite polynomial evaluated on a tensor of the feature's
dtype, x the steps since the last activated one."""
import math

import numpy as np
import pytest
import torch

from harness import pack

pack.load_core()
from cache_core.forecast import HermiteForecaster, TaylorForecaster, hermite  # noqa: E402


def authors_hermite(x: torch.Tensor, n: int) -> torch.Tensor:
    # their recurrence, on a tensor: H_0 = 1, H_1 = 2x, H_{k} = 2x H_{k-1} - 2(k-1) H_{k-2}
    h_prev, h = torch.ones_like(x), 2 * x
    if n == 0:
        return h_prev
    for k in range(2, n + 1):
        h_prev, h = h, 2 * x * h - 2 * (k - 1) * h_prev
    return h


class AuthorsHiCache:
    """Their derivative_approximation + _hicache_prediction_formula, for one module."""

    def __init__(self, max_order: int, scale: float):
        self.max_order, self.scale, self.activated, self.factors = max_order, scale, [], {}

    def update(self, feature: torch.Tensor, step: int):
        self.activated.append(step)
        if len(self.activated) < 2:
            self.factors = {0: feature}
            return
        dist = self.activated[-1] - self.activated[-2]
        new = {0: feature}
        for i in range(self.max_order):
            if i not in self.factors:
                break
            new[i + 1] = (new[i] - self.factors[i]) / dist
        self.factors = new

    def predict(self, step: int) -> torch.Tensor:
        x = step - self.activated[-1]
        order = min(self.max_order, len(self.factors) - 1)
        if order < 1:
            return self.factors[0]
        f0 = self.factors[0]
        xs = torch.tensor(float(x), dtype=f0.dtype) * self.scale
        pred = f0.clone()
        for k in range(1, order + 1):
            alpha = float(authors_hermite(xs, k) / math.factorial(k)) * self.scale ** k
            pred.add_(self.factors[k], alpha=alpha)
        return pred


@pytest.mark.parametrize("order, scale", [(1, 0.5), (2, 0.5), (3, 0.5), (2, 0.6), (1, 0.3)])
def test_forecaster_matches_authors_rule(order, scale):
    g = torch.Generator().manual_seed(order)
    feats = {s: torch.randn(2, 5, 8, generator=g) for s in range(14)}
    computed = [0, 1, 2, 5, 7, 11, 12]          # irregular gaps: 1, 1, 3, 2, 4, 1
    ref, ours = AuthorsHiCache(order, scale), HermiteForecaster(order, dtype=torch.float32, scale=scale)
    forecasts = 0
    for step in range(14):
        if step in computed:
            ref.update(feats[step], step)
            ours.update({"img": feats[step]}, step)
        else:
            got = ours.predict(step, like={"img": feats[step]})["img"]
            torch.testing.assert_close(got, ref.predict(step), rtol=1e-5, atol=1e-5)
            forecasts += 1
    assert forecasts == 7


def test_hermite_is_the_physicists_family():
    for degree in range(6):
        for x in (-1.3, 0.0, 0.25, 0.5, 2.0):
            coeffs = [0.0] * degree + [1.0]
            assert hermite(x, degree) == pytest.approx(np.polynomial.hermite.hermval(x, coeffs), rel=1e-12)


def test_differs_from_taylor_and_dual_scaling_at_order_one():
    """Order 1, scale s: d0 + 2 s^2 k d1 (TaylorSeer's d0 + k d1 scaled by 2 s^2): half the slope at s = 0.5."""
    d0, d1 = torch.full((3,), 1.0), torch.full((3,), 2.0)
    her, tay = HermiteForecaster(1, scale=0.5), TaylorForecaster(1)
    for f in (her, tay):
        f.update({"x": d0 - d1}, 0.0)
        f.update({"x": d0}, 1.0)
    torch.testing.assert_close(her.predict(4.0)["x"], d0 + 0.5 * 3 * d1)
    torch.testing.assert_close(tay.predict(4.0)["x"], d0 + 3 * d1)


def test_bad_scale_is_refused():
    with pytest.raises(ValueError, match="scale"):
        HermiteForecaster(1, scale=0.0)
