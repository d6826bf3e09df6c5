"""Forecasters: predict a cached feature at a later step from its values at computed steps.

Kept apart from the decision policies so any method can forecast instead of reusing stale values
(TaylorSeer; DBCache's calibrator)."""
from __future__ import annotations

import math

import torch


class TaylorForecaster:
    """Taylor series in the step position (TaylorSeer, ICCV'25; docs/methods.md §1.6).

    At a computed step s with value Y, Δ = s - s_prev:  d0 = Y,  d_{i+1} = (d_i - d_i_old) / Δ  (up to
    max_order, and only as far as the previous update had orders). At step s + k the forecast is
    Σ_i d_i k^i / i!.  Factors are kept in `dtype` (None = the feature's own dtype).
    Positions may be fractional (a sampler's midpoint call). Only the first value at a position counts:
    a second one there (Heun's corrector, SA-Solver PECE) or one for an earlier position (heunpp2 looks
    ahead, then back) changes nothing, so differences always span distinct positions.
    """

    def __init__(self, max_order: int = 1, dtype: torch.dtype | None = torch.float32):
        if max_order < 0:
            raise ValueError(f"max_order must be >= 0, got {max_order}")
        self.max_order, self.dtype = int(max_order), dtype
        self.factors: dict[str, list[torch.Tensor]] = {}
        self.last_step: float | None = None

    def update(self, values: dict[str, torch.Tensor], step: float) -> None:
        if self.last_step is not None and step <= self.last_step:
            return
        delta = None if self.last_step is None else step - self.last_step
        for key, value in values.items():
            new = [value]
            old = self.factors.get(key, []) if delta is not None else []
            for i in range(min(self.max_order, len(old))):
                new.append((new[i] - old[i].to(value.dtype)) / delta)
            self.factors[key] = [f.to(self.dtype) if self.dtype is not None else f for f in new]
        self.last_step = step

    @property
    def ready(self) -> bool:
        return self.last_step is not None

    def coefficient(self, order: int, k: float) -> float:
        """Weight of the order-th factor k steps after the last update: k^i / i!."""
        return (k ** order) / math.factorial(order)

    def predict(self, step: float, like: dict[str, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
        k = step - self.last_step
        out = {}
        for key, factors in self.factors.items():
            dtype = like[key].dtype if like is not None else factors[0].dtype
            acc = torch.zeros_like(factors[0], dtype=dtype)
            for i, f in enumerate(factors):
                acc = acc + f.to(dtype) * self.coefficient(i, k)
            out[key] = acc
        return out


def hermite(x: float, degree: int) -> float:
    """Physicists' Hermite polynomial H_degree(x), by H_{j+1} = 2x H_j - 2j H_{j-1}."""
    prev, cur = 1.0, 2.0 * x
    if degree == 0:
        return prev
    for j in range(1, degree):
        prev, cur = cur, 2.0 * x * cur - 2.0 * j * prev
    return cur


class HermiteForecaster(TaylorForecaster):
    """HiCache (arXiv 2508.16984, ICLR'26; github:fenglang918/HiCache; docs/methods.md §1.10): TaylorSeer's
    factors (the same divided differences d_i, so the same memory: max_order+1 tensors per key), weighted by
    scaled physicists' Hermite polynomials instead of the Taylor monomials. At step s + k the forecast is

        d_0 + sum_{i>=1} d_i * H_i(scale * k) * scale^i / i!

    The "dual scaling" is the authors': the step distance enters H_i as scale*k (keeping the polynomial in the
    range where it stays small) and each term is damped again by scale^i. Published default scale 0.5 (their
    `hicache_scale_factor`), order 1 (their HiCache mode). At order 1 with scale 0.5 the forecast is
    d_0 + 0.5 k d_1: half TaylorSeer's linear step."""

    def __init__(self, max_order: int = 1, dtype: torch.dtype | None = torch.float32, scale: float = 0.5):
        if not scale > 0:
            raise ValueError(f"scale must be > 0, got {scale}")
        super().__init__(max_order, dtype)
        self.scale = float(scale)

    def coefficient(self, order: int, k: float) -> float:
        if order == 0:
            return 1.0
        return hermite(self.scale * k, order) * self.scale ** order / math.factorial(order)


class FoCaForecaster:
    """FoCa, Forecast then Calibrate (arXiv 2508.16211; as cache-dit 1.5.3's FoCaCalibrator runs it;
    docs/methods.md §1.11): the feature is integrated as an ODE in the step position. Every computed step is an
    anchor A (the last) with the anchor slope g_A = (A - A_prev) / (s_A - s_Aprev); every value, computed or
    forecast, enters a window of the last two (F_k at s_k, F_km1). A forecast at step s is the Heun
    (trapezoidal) step from the anchor with the mean of the anchor slope and the window's slope:

        F(s) = A + c * (g_A + (F_k - F_km1) / (s_k - s_km1)),   c = e / 2 for e = s - s_A <= horizon,
                                                                 c = horizon^2 / (2 e) beyond (damped to A)

    and then enters the window itself, so the next forecast's local slope comes from the forecasts (the BDF2-type
    recursion from the two latest values), while the anchor term holds it to the computed trend. cache-dit
    assumes unit gaps (slopes are plain differences); here slopes are per step, which is the same where the
    gaps are 1 and keeps the anchor slope right when computed steps lie several steps apart.
    Holds up to 4 tensors of the feature's size per key (two anchors, two window values; the newest anchor
    and the window share one). Before two computed steps it returns the anchor (plain reuse), as cache-dit."""

    def __init__(self, dtype: torch.dtype | None = torch.float32, horizon: float | None = 3.0):
        if horizon is not None and not horizon > 0:
            raise ValueError(f"horizon must be > 0 or None, got {horizon}")
        self.dtype, self.horizon = dtype, horizon
        self.anchors: list[tuple[float, dict[str, torch.Tensor]]] = []   # the last two computed steps
        self.window: list[tuple[float, dict[str, torch.Tensor]]] = []    # the last two values, any kind
        self.forecast_at: float | None = None                            # window[-1] is a forecast there

    def _cast(self, values: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {k: v.detach().to(self.dtype) if self.dtype is not None else v.detach() for k, v in values.items()}

    def update(self, values: dict[str, torch.Tensor], step: float) -> None:
        if self.anchors and step <= self.anchors[-1][0]:
            return                      # a second value at a computed position (Heun's corrector) changes nothing
        entry = (float(step), self._cast(values))
        self.anchors = (self.anchors + [entry])[-2:]
        self.window = ([e for e in self.window if e[0] < step] + [entry])[-2:]
        self.forecast_at = None

    @property
    def ready(self) -> bool:
        return bool(self.anchors)

    @staticmethod
    def slope(new: torch.Tensor, old: torch.Tensor, gap: float) -> torch.Tensor:
        """Change per step between two values `gap` steps apart (cache-dit: new - old, every gap taken as 1)."""
        return (new - old) / gap

    def _coefficient(self, elapsed: float) -> float:
        if self.horizon is None or elapsed <= self.horizon:
            return elapsed / 2.0
        return self.horizon * self.horizon / (2.0 * elapsed)

    def predict(self, step: float, like: dict[str, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
        (s_a, anchor) = self.anchors[-1]
        if len(self.anchors) < 2 or len(self.window) < 2:
            out = anchor
        elif self.forecast_at is not None and step == self.forecast_at:
            out = self.window[-1][1]     # asked again at the same position: the same forecast, no new entry
        else:
            (s_p, prev), (s_km1, f_km1), (s_k, f_k) = self.anchors[0], self.window[0], self.window[1]
            c = self._coefficient(step - s_a)
            out = {key: a + c * (self.slope(a, prev[key], s_a - s_p) + self.slope(f_k[key], f_km1[key], s_k - s_km1))
                   for key, a in anchor.items()}
            if step > s_k:              # a forecast ahead of the window joins it; a look back does not
                self.window = [self.window[1], (float(step), out)]
                self.forecast_at = float(step)
        # copies: what is returned may be changed in place, and the window holds the same tensors
        return {k: v.to(like[k].dtype if like is not None else v.dtype, copy=True) for k, v in out.items()}


def chebyshev(tau: torch.Tensor, degree: int) -> torch.Tensor:
    """T_0..T_degree at each tau (rows), by the recurrence T_{j+1} = 2 tau T_j - T_{j-1}."""
    cols = [torch.ones_like(tau), tau]
    while len(cols) <= degree:
        cols.append(2 * tau * cols[-1] - cols[-2])
    return torch.stack(cols[:degree + 1], dim=-1)


class ChebyshevForecaster:
    """Spectrum (arXiv 2603.01623): a feature as a function of time tau in [-1, 1], fitted over every stored
    (tau_i, Y_i) by ridge regression on the Chebyshev basis T_0..T_degree, and blended with a first-order Taylor
    step from the last two: forecast = blend * cheb + (1 - blend) * taylor.

    Both parts are linear in the stored features, so the forecast is one weighted sum sum_i w_i Y_i with the
    weights solved on a (degree+1)-square system in float64: nothing of the features' size is factorized.
    `storage` keeps the history on another device (the CPU) to spare accelerator memory."""

    def __init__(self, degree: int = 4, ridge: float = 0.1, blend: float = 0.5, storage: str | None = None):
        if degree < 0 or ridge < 0 or not 0.0 <= blend <= 1.0:
            raise ValueError(f"need degree >= 0, ridge >= 0 and blend in [0, 1]; got {degree}, {ridge}, {blend}")
        self.degree, self.ridge, self.blend, self.storage = int(degree), float(ridge), float(blend), storage
        self.taus: list[float] = []
        self.values: dict[str, list[torch.Tensor]] = {}

    def update(self, values: dict[str, torch.Tensor], tau: float) -> None:
        if self.taus and tau <= self.taus[-1]:   # a second value at a position (Heun's corrector) changes nothing
            return
        self.taus.append(float(tau))
        for key, v in values.items():
            self.values.setdefault(key, []).append(v.detach().to(self.storage) if self.storage else v.detach())

    @property
    def ready(self) -> bool:
        return len(self.taus) >= 2

    def weights(self, tau: float) -> list[float]:
        t = torch.tensor(self.taus, dtype=torch.float64)
        phi = chebyshev(t, self.degree)                                   # (n, degree + 1)
        gram = phi.T @ phi + self.ridge * torch.eye(self.degree + 1, dtype=torch.float64)
        at = chebyshev(torch.tensor([float(tau)], dtype=torch.float64), self.degree)[0]
        cheb = torch.linalg.solve(gram, at) @ phi.T                       # (n,): weight of each stored feature
        k = (tau - self.taus[-1]) / (self.taus[-1] - self.taus[-2])
        taylor = torch.zeros_like(cheb)
        taylor[-1], taylor[-2] = 1.0 + k, -k
        return (self.blend * cheb + (1.0 - self.blend) * taylor).tolist()

    def predict(self, tau: float, like: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        w = self.weights(tau)
        out = {}
        for key, history in self.values.items():
            ref = like[key]
            acc = torch.zeros_like(ref, dtype=torch.float32)
            for wi, y in zip(w, history):
                acc.add_(y.to(ref.device, torch.float32), alpha=wi)
            out[key] = acc.to(ref.dtype)
        return out
