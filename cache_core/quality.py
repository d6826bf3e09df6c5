"""How far a cached output is from the uncached one: PSNR, SSIM and the largest difference.

SSIM is Wang et al. 2004 as commonly computed (scikit-image's `gaussian_weights=True` variant): an 11-tap
Gaussian window with sigma 1.5, K1 = 0.01, K2 = 0.03, population covariances, the mean of the SSIM map over
the pixels the window fits in, averaged over channels and batch. Images smaller than the window use a window
as large as the smaller side (odd).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def psnr(test: torch.Tensor, reference: torch.Tensor, data_range: float) -> float:
    """Peak signal-to-noise ratio in dB (inf when equal)."""
    mse = float(((test.double() - reference.double()) ** 2).mean())
    return math.inf if mse == 0 else 10 * math.log10(data_range ** 2 / mse)


def _window(size: int, sigma: float) -> torch.Tensor:
    x = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-(x ** 2) / (2 * sigma ** 2))
    return g / g.sum()


def ssim(test: torch.Tensor, reference: torch.Tensor, data_range: float, channels_last: bool = True) -> float:
    """Mean SSIM of two image batches: (B, H, W, C) as ComfyUI's IMAGE (channels_last) or (B, C, H, W)."""
    a, b = test.double(), reference.double()
    if channels_last:
        a, b = a.movedim(-1, 1), b.movedim(-1, 1)
    n, c, h, w = a.shape
    size = min(11, h, w)
    size -= 1 - size % 2                       # odd
    sigma = 1.5 * size / 11
    g = _window(size, sigma)
    kernel = (g[:, None] * g[None, :]).expand(c, 1, size, size).contiguous()

    def blur(t):
        return F.conv2d(t, kernel, groups=c)   # "valid": only where the window fits, like skimage's crop

    mu_a, mu_b = blur(a), blur(b)
    var_a = blur(a * a) - mu_a ** 2
    var_b = blur(b * b) - mu_b ** 2
    cov = blur(a * b) - mu_a * mu_b
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    s = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a ** 2 + mu_b ** 2 + c1) * (var_a + var_b + c2))
    return float(s.mean())


def compare(test: torch.Tensor, reference: torch.Tensor, data_range: float | None = None,
            channels_last: bool = True) -> dict:
    """PSNR, SSIM and max |difference| of test against reference. data_range None: the reference's
    peak-to-peak (latents have no fixed range)."""
    if test.shape != reference.shape:
        raise ValueError(f"shapes differ: {tuple(test.shape)} vs {tuple(reference.shape)}")
    if data_range is None:
        data_range = float(reference.max() - reference.min()) or 1.0
    return {"psnr": psnr(test, reference, data_range), "ssim": ssim(test, reference, data_range, channels_last),
            "max_abs_diff": float((test.double() - reference.double()).abs().max()), "data_range": data_range}
