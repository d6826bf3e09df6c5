"""The low-frequency band of a feature over its token axes (FreqCa, arXiv 2510.08669; docs/methods.md §1.13).

Two transforms, as the authors' code (github:Tammytcl/FreqCa, `cache_utils.py`) splits its feature:
  "dct"  orthonormal DCT-II over the token grid's axes; a coefficient is low where its index distance from the
         origin, sqrt(i^2 + j^2 (+ t^2)), is at most `cutoff` times the largest one on the grid (their Flux rule, on
         a square image grid; here on any grid: a video's frames are one more axis, a sequence one axis)
  "fft"  FFT along the tokens taken as one sequence (the grid flattened row by row); a frequency is low where
         |f| is at most `cutoff` times the largest |f| (their Qwen-Image rule)
The high band is the rest (x - low), so the two bands add up to the feature. Computed in float32, as theirs.

The DCT keeps only the basis rows an in-band coefficient can use (index <= cutoff times the largest distance on
each axis): at the published cutoff 0.1 that is a tenth of each axis, so the transform costs a small fraction of a
full one and needs no FFT-based DCT. Those rows and the low-band mask depend on the grid alone: a run keeps them
in a DctBands (held by its stream state, dropped with it) and a forecast step only multiplies."""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

TRANSFORMS = ("dct", "fft")


def dct_rows(n: int, rows: int, device=None, dtype=torch.float32) -> torch.Tensor:
    """The first `rows` rows of the orthonormal DCT-II matrix of size n: C[k, i] = s_k cos(pi (i + 1/2) k / n),
    s_0 = sqrt(1/n), s_k = sqrt(2/n). C @ x transforms, C.T @ X inverts (when rows == n)."""
    k = torch.arange(rows, device=device, dtype=torch.float64)[:, None]
    i = torch.arange(n, device=device, dtype=torch.float64)[None, :]
    c = torch.cos(math.pi * (i + 0.5) * k / n) * math.sqrt(2.0 / n)
    c[0] *= math.sqrt(0.5)
    return c.to(dtype)


def dct_low_mask(sizes: tuple[int, ...], cutoff: float, device=None) -> torch.Tensor:
    """Which DCT coefficients of a grid of `sizes` are low (the authors' radial rule, in float32 as theirs), built
    where the feature is: nothing is copied to or read from the device."""
    grids = torch.meshgrid(*[torch.arange(n, dtype=torch.float32, device=device) for n in sizes], indexing="ij")
    distance = torch.sqrt(sum(g * g for g in grids))
    return distance <= cutoff * distance.max()


def band_rows(sizes: tuple[int, ...], cutoff: float) -> list[int]:
    """Per axis, the DCT rows an in-band coefficient can use: indices up to cutoff times the grid's largest distance
    (computed on the host from the sizes alone; one row of slack for float32 rounding, which the mask then rules
    out exactly)."""
    reach = cutoff * math.sqrt(sum((n - 1) ** 2 for n in sizes))
    return [min(n, int(reach * (1 + 1e-6)) + 1) for n in sizes]


def _along(x: torch.Tensor, axis: int, matrix: torch.Tensor) -> torch.Tensor:
    """matrix applied to x along `axis` (matrix: (out, x.shape[axis]))."""
    return torch.movedim(torch.movedim(x, axis, -1) @ matrix.T, -1, axis)


@dataclass(frozen=True)
class DctBand:
    """One grid's low band: per axis the DCT rows an in-band coefficient can use, and which of their coefficients
    are low (shaped by those rows)."""
    bases: tuple[torch.Tensor, ...]
    mask: torch.Tensor


def dct_band(sizes: tuple[int, ...], cutoff: float, dtype: torch.dtype, device) -> DctBand:
    rows = band_rows(sizes, cutoff)     # rows past these only ever carry high coefficients
    mask = dct_low_mask(sizes, cutoff, device)[tuple(slice(0, r) for r in rows)]
    return DctBand(tuple(dct_rows(n, r, device, dtype) for n, r in zip(sizes, rows)), mask)


class DctBands:
    """dct_band, built once per (sizes, cutoff, dtype, device) and kept: FreqCa's stream state holds one for its
    run, so the bases are not rebuilt on every forecast and go with the state (never module-level).
    Callable, so streams.held_bytes leaves it out of what the cache holds, as it does code and weights: a constant
    of the grid, no step's feature (a few KiB on an image or video grid; along a sequence of n tokens, about
    n/10 rows of n at cutoff 0.1)."""

    def __init__(self):
        self._bands: dict[tuple, DctBand] = {}

    def __call__(self, sizes: tuple[int, ...], cutoff: float, dtype: torch.dtype, device) -> DctBand:
        key = (tuple(sizes), float(cutoff), dtype, torch.device(device))
        if key not in self._bands:
            self._bands[key] = dct_band(*key)
        return self._bands[key]


def dct_low(x: torch.Tensor, axes: tuple[int, ...], cutoff: float, bands=dct_band) -> torch.Tensor:
    """bands: dct_band (built for this call) or a run's DctBands."""
    band = bands(tuple(x.shape[a] for a in axes), cutoff, x.dtype, x.device)
    coef = x
    for axis, basis in zip(axes, band.bases):
        coef = _along(coef, axis, basis)
    shape = [1] * x.ndim
    for axis, r in zip(axes, band.mask.shape):
        shape[axis] = r
    coef = coef * band.mask.reshape(shape)
    for axis, basis in zip(axes, band.bases):
        coef = _along(coef, axis, basis.T)
    return coef


def fft_low(x: torch.Tensor, axis: int, cutoff: float) -> torch.Tensor:
    freqs = torch.fft.fftfreq(x.shape[axis], device=x.device).abs()
    shape = [1] * x.ndim
    shape[axis] = -1
    mask = (freqs <= cutoff * freqs.max()).reshape(shape)
    return torch.fft.ifft(torch.fft.fft(x, dim=axis) * mask, dim=axis).real


def low_band(x: torch.Tensor, grid: tuple[int, ...], transform: str, cutoff: float, bands=dct_band) -> torch.Tensor:
    """x: (batch, tokens, channels) whose tokens lay out as `grid` (row-major; one axis for a sequence); the low
    band of x in float32, laid out as x. bands: where the DCT's rows and mask come from (dct_low)."""
    if transform not in TRANSFORMS:
        raise ValueError(f"transform must be one of {TRANSFORMS}, got {transform!r}")
    x32 = x.float()
    if transform == "fft":
        return fft_low(x32, 1, cutoff)
    on_grid = x32.reshape(x.shape[0], *grid, x.shape[-1])
    return dct_low(on_grid, tuple(range(1, len(grid) + 1)), cutoff, bands).reshape(x.shape)


def split(x: torch.Tensor, grid: tuple[int, ...], transform: str, cutoff: float,
          bands=dct_band) -> tuple[torch.Tensor, torch.Tensor]:
    """(low, high) in float32: the two bands of x, low + high = x (up to float32 rounding)."""
    low = low_band(x, grid, transform, cutoff, bands)
    return low, x.float() - low
