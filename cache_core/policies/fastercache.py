"""FasterCache (ICLR'25; diffusers `faster_cache`; docs/methods.md §1.8).

Two parts, as in the reference hooks:
  CFG cache: on computed steps keep the low/high frequency difference between the uncond and cond
    model outputs (2-D FFT over the latent's last two dims, low = a centred disc of radius
    min(H, W)//5). On most steps inside its window the uncond branch is not run at all; it is
    estimated as IFFT(FFT_low(c) + Δ_low + FFT_high(c) + Δ_high), the deltas scaled by alpha_low /
    alpha_high on every such step while sigma is inside their ranges.
  Attention: on those cond-only calls, self attention is computed one step in N; in between its output
    is extrapolated from the last two, o_t + w (o_t - o_t-2), and the extrapolation joins the history.
The uncond decision counts sampler steps: step > 0, inside the window, step % N != 0.
"""
from __future__ import annotations

import torch

from ..policy import CfgCache, ComponentPolicy, StepInfo

__all__ = ["FasterCache"]   # what cache_core exports (policies/__init__.py)


def split_low_high(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Shifted 2-D spectrum of x split by a centred disc of radius min(H, W) // 5 (FasterCache paper)."""
    spectrum = torch.fft.fftshift(torch.fft.fft2(x))
    h, w = x.shape[-2:]
    radius = min(h, w) // 5
    yy, xx = torch.meshgrid(torch.arange(h, device=x.device), torch.arange(w, device=x.device), indexing="ij")
    low = (xx - w // 2) ** 2 + (yy - h // 2) ** 2 <= radius ** 2
    return spectrum * low, spectrum * ~low


class FasterCache(ComponentPolicy, CfgCache):
    name = "FasterCache"
    keep = 2
    store_approximations = True     # the extrapolated output becomes the newest history entry

    def __init__(self, attention_interval: int = 2, attention_weight: float = 0.5, uncond_interval: int = 5,
                 alpha_low: float = 1.1, alpha_high: float = 1.1, attention_max_sigma: float = 0.681,
                 uncond_max_sigma: float = 0.641, low_sigma_range: tuple[float, float] = (0.099, 0.901),
                 high_sigma_range: tuple[float, float] = (-0.001, 0.301)):
        if attention_interval < 1 or uncond_interval < 1:
            raise ValueError(f"intervals must be >= 1, got {attention_interval}, {uncond_interval}")
        self.attention_interval, self.attention_weight = int(attention_interval), float(attention_weight)
        self.uncond_interval = int(uncond_interval)
        self.saw_uncond = self.saw_self = False   # what this run's model gave the two caches to act on
        self.alpha_low, self.alpha_high = float(alpha_low), float(alpha_high)
        self.attention_max_sigma, self.uncond_max_sigma = attention_max_sigma, uncond_max_sigma
        self.low_range, self.high_range = low_sigma_range, high_sigma_range
        self.low_delta: torch.Tensor | None = None
        self.high_delta: torch.Tensor | None = None
        self.uncond_skipped_step: int | None = None

    # --- CFG cache ------------------------------------------------------------------------------
    def observe(self, label: str, key, kind: str, out, step: StepInfo) -> None:
        self.saw_self |= kind == "self"

    def run_notes(self) -> list[str]:
        notes = []
        if not self.saw_uncond:
            notes.append("no model call of this run had an uncond pass (cfg 1, or a guidance-distilled model such as "
                         "Flux dev): FasterCache had nothing to act on (its attention reuse comes with a skipped "
                         "uncond pass)")
        if not self.saw_self and self.attention_interval > 1:
            notes.append("this model makes no self attention call through ComfyUI's attention (it computes it its own "
                         "way): the attention reuse had nothing to act on, only the CFG cache applied")
        return notes

    def skip_uncond(self, step: StepInfo) -> bool:
        """Decide this step's CFG call; a skip makes it a cond-only step (attention may extrapolate)."""
        self.saw_uncond = True   # asked only for a call with both cond and uncond
        skip = (self.low_delta is not None and step.index > 0 and step.sigma < self.uncond_max_sigma
                and step.index % self.uncond_interval != 0)
        if skip:
            self.uncond_skipped_step = step.index
        return skip

    def observe_cfg(self, cond_out: torch.Tensor, uncond_out: torch.Tensor) -> None:
        low_u, high_u = split_low_high(uncond_out.float())
        low_c, high_c = split_low_high(cond_out.float())
        self.low_delta, self.high_delta = low_u - low_c, high_u - high_c

    def estimate_uncond(self, cond_out: torch.Tensor, step: StepInfo) -> torch.Tensor:
        if self.low_range[0] < step.sigma < self.low_range[1]:
            self.low_delta = self.low_delta * self.alpha_low       # compounding, as the reference does
        if self.high_range[0] < step.sigma < self.high_range[1]:
            self.high_delta = self.high_delta * self.alpha_high
        low_c, high_c = split_low_high(cond_out.float())
        spectrum = self.low_delta + low_c + self.high_delta + high_c
        return torch.fft.ifft2(torch.fft.ifftshift(spectrum)).real.to(cond_out.dtype)

    # --- attention --------------------------------------------------------------------------------
    def reuses(self, kind: str, block: int) -> bool:
        # cross attention always computes; self attention is reused only on a step whose uncond pass was skipped,
        # which needs a call with both halves: skip_uncond has been asked by the time the first output is stored
        return kind == "self" and self.attention_interval > 1 and self.saw_uncond

    def component_reuse(self, kind: str, block: int, step: StepInfo) -> bool:
        return (kind == "self" and self.uncond_skipped_step == step.index
                and step.sigma < self.attention_max_sigma and step.index % self.attention_interval != 0)

    def component_value(self, kind: str, history: list, step: StepInfo) -> torch.Tensor:
        older, newer = (history[0][1], history[-1][1]) if len(history) > 1 else (history[-1][1],) * 2
        return newer + (newer - older) * self.attention_weight
