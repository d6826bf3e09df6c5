"""SeaCache (Spectral-Evolution-Aware Cache, CVPR'26, arXiv 2602.18993; public code jiwoogit/SeaCache;
docs/methods.md §1.4).

TeaCache's rule without its per-model polynomial: per stream, acc += relL1(H_t G_t, H_t G_prev) over block 0's
modulated image tokens G after a spectral filter H_t, reuse the whole-stack residual while acc < threshold,
else compute and reset; G_prev follows every call. The filter is the Wiener gain of a signal with power
spectrum 1/|f|^p mixed with noise at the step's level, per axis of the token grid (frames, height, width),
multiplied over the axes and normalized to mean 1:  H(f) = a S / (a^2 S + b^2), S = 1 / |f|^p,
a = 1 - sigma, b = sigma (rectified flow; a = 1/sqrt(1 + sigma^2), b = sigma a for sigma > 1).
Early (noisy) steps weigh the coarse structure, late steps the detail, so the measured change follows
what the step can still alter. p = 3 for video grids, 2 for images, as the authors' Wan and Flux scripts.
The first and last steps always compute (the authors' default without retention steps).

Both tokens of a change go through the step's own filter H_t. The authors' scripts keep the previous call's probe
as filtered at its own step, so their change also counts how much the filter itself moved between the two steps; on
the five benchmark models that part dominates, and the change they measure ranks the steps against the error of
reusing them (Spearman -0.67 to +0.34), where the change through one filter ranks them as the output does (+0.92 to
+0.96; docs/bench/notes.md, 2026-12-07).
"""
from __future__ import annotations

import math
import torch

from ..metrics import rel_l1_parts
from ..policy import StepInfo
from .teacache import TeaCache

__all__ = ["SeaCache"]   # what cache_core exports (policies/__init__.py)

_PATCHES = (2, 1, 4)   # spatial patch sizes DiTs use, tried in this order to lay the tokens out as the grid


def token_grid(tokens: int, latent: tuple[int, ...], others: bool) -> tuple[int, ...] | None:
    """The (frames,) height, width of the image tokens among `tokens`, from the call's latent sizes: a grid
    whose size is the token count, else (others: other tokens may lie beside the image, the caller knows where) one
    that fits among them."""
    if not latent:
        return None
    spatial, temporal = latent[-2:], latent[:-2]
    grids = [(*temporal, *(-(-d // p) for d in spatial)) if len(spatial) == 2 else tuple(latent) for p in _PATCHES]
    exact = [g for g in grids if math.prod(g) == tokens]
    if exact:
        return exact[0]
    return next((g for g in grids if others and math.prod(g) < tokens), None)


def spectral_filter(x: torch.Tensor, sigma: float, power: float) -> torch.Tensor:
    """x: (batch, *grid, channels); the SeaCache gain over the grid axes, in fp32."""
    s = min(max(float(sigma), 1e-6), 1 - 1e-6) if sigma <= 1.0 else float(sigma)
    a, b = (1.0 - s, s) if sigma <= 1.0 else (1 / math.sqrt(1 + s * s), s / math.sqrt(1 + s * s))
    axes = tuple(range(1, x.ndim - 1))
    x32 = x.float()
    gain = None
    for ax in axes:
        f = torch.fft.fftfreq(x32.shape[ax], device=x32.device).abs()
        signal = 1.0 / (f.pow(power) + 1e-16)
        g = (a * signal) / (a * a * signal + b * b + 1e-16)
        shape = [1] * x32.ndim
        shape[ax] = -1
        gain = g.reshape(shape) if gain is None else gain * g.reshape(shape)
    gain = gain / gain.mean()
    return torch.fft.ifftn(torch.fft.fftn(x32, dim=axes) * gain, dim=axes).real


class SeaCache(TeaCache):
    """TeaCache's accumulator and forced steps, on the filtered probe with no rescaling polynomial."""
    name = "SeaCache"
    probe = "modulated_image"
    conditions_probe = True   # the filter needs the call's sigma before the metric is measured

    def __init__(self, threshold: float = 0.2, power: float | None = None, retention_steps: int = 1,
                 final_steps: int = 1):
        if power is not None and power <= 0:
            raise ValueError(f"power must be > 0, got {power}")
        super().__init__(threshold, [1.0, 0.0], retention_steps, final_steps)   # poly = identity
        self.power = power
        self.unfiltered: str | None = None   # why a run measured its probe without the filter (noted once)

    def tuning_key(self) -> dict:
        # the filter shapes every recorded change, and a change went through one filter only since 2026-12-07
        return {"power": self.power, "filter": "the step's"}

    def run_notes(self) -> list[str]:
        return [f"SeaCache: {self.unfiltered}"] if self.unfiltered else []

    def condition(self, probe, step: StepInfo, layout):
        """The probe's image tokens (the filter takes the first tokens as the image: other tokens only after it),
        unfiltered: measure() filters them beside the previous call's, through this step's filter."""
        if probe is None:
            return None
        grid = token_grid(probe.shape[1], step.grid, layout.image_first) if probe.ndim == 3 else None
        if grid is None:
            self.unfiltered = ("the tokens are split across ranks, so no rank holds the image grid: measured "
                               "unfiltered" if not step.grid else
                               f"block 0's {probe.shape[1]} tokens do not lay out as the image grid of a "
                               f"{'x'.join(map(str, step.grid))} latent (text or a time token first): "
                               f"measured unfiltered")
            return probe
        n = math.prod(grid)
        return probe if n == probe.shape[1] else probe[:, :n].clone()    # kept as the next call's reference

    def measure(self, state, probe, step: StepInfo | None = None):
        grid = (token_grid(probe.shape[1], step.grid, False)
                if step is not None and probe is not None and probe.ndim == 3 else None)
        if grid is None or state.prev is None or state.prev.shape != probe.shape:
            return super().measure(state, probe)           # no image grid (condition() noted why), or no reference
        power = self.power if self.power is not None else (3.0 if len(grid) == 3 and grid[0] > 1 else 2.0)
        b = probe.shape[0]
        both = torch.cat([probe, state.prev]).reshape(2 * b, *grid, probe.shape[-1])
        filtered = spectral_filter(both, step.sigma, power)
        return rel_l1_parts(filtered[:b], filtered[b:])
