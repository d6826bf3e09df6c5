"""FreqCa (Frequency-aware Caching, arXiv 2510.08669; public code Tammytcl/FreqCa; docs/methods.md §1.13).

A static schedule, as TaylorSeer's: the first `warmup_steps` compute (their `first_enhance`, 3), then one step in
every `interval` (their rule: step s >= warmup computes when (s - warmup + 1) % interval == 0, so 50 steps at
interval 6 compute 0, 1, 2, 8, 14, ..., 44), and the last `final_steps` (0 is their schedule). One feature per
stream is cached, the stack's output (their Cumulative Residual Feature: what the final layer reads) or its
residual (`target`). On a forecast step it is split into frequency bands over the token grid
(frequency_bands.py): the low band, which stays similar between steps, is reused as it was on the last computed
step; the high band, which changes smoothly, is forecast by HiCache's Hermite series (forecast.HermiteForecaster)
at their order 2 and scale 0.71, from divided differences over the computed steps:

    forecast = low(F) + high(F + sum_{i>=1} c_i(k) d_i),   c_i(k) = H_i(0.71 k) 0.71^i / i!

Both bands come from the same differences (the split is linear), so one forecaster over the whole feature holds
them: max_order + 1 tensors per stream, and the split runs on the forecast increment only. Their differences start
at the last warmup step (earlier computed steps keep no history), which store() reproduces.

The grid: a feature laid out (batch, *grid, channels) uses its own axes; tokens (batch, n, channels) whose count is
an image or video grid of the call's latent (seacache.token_grid) use that grid; image tokens joined with others
in one sequence (Flux's single blocks: text first, where the model's block args put the image; StepInfo
.image_start) are split on their grid and the others along their own sequence, as the authors' feature is the image
tokens alone and a text stream beside the image is split; any other tokens (audio, 3-D shapes, a rank's shard) are
split along the sequence as one axis, noted once per run.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from ..forecast import HermiteForecaster
from ..frequency_bands import TRANSFORMS, DctBands, low_band
from ..policy import CachePolicy, Hidden, StepInfo
from .seacache import token_grid

__all__ = ["FreqCa"]   # what cache_core exports (policies/__init__.py)

TARGETS = ("output", "residual")
SCALE = 0.71   # the authors' `scale_factor` in hermite_formula


@dataclass
class _State:
    forecaster: HermiteForecaster
    bands: DctBands = field(default_factory=DctBands)    # the DCT's rows and mask of each grid, for the run


class FreqCa(CachePolicy):
    name = "FreqCa"
    front_blocks = 0
    back_blocks = 0
    probe = None

    def __init__(self, interval: int = 6, warmup_steps: int = 3, final_steps: int = 0, max_order: int = 2,
                 transform: str = "dct", cutoff: float = 0.1, target: str = "output"):
        if interval < 1 or warmup_steps < 0 or final_steps < 0 or max_order < 0:
            raise ValueError(f"need interval >= 1, warmup_steps >= 0, final_steps >= 0, max_order >= 0; got "
                             f"{interval}, {warmup_steps}, {final_steps}, {max_order}")
        if transform not in TRANSFORMS:
            raise ValueError(f"transform must be one of {TRANSFORMS}, got {transform!r}")
        if not (math.isfinite(cutoff) and 0.0 <= cutoff <= 1.0):
            raise ValueError(f"cutoff must be in [0, 1], got {cutoff}")
        if target not in TARGETS:
            raise ValueError(f"target must be one of {TARGETS}, got {target!r}")
        self.interval, self.warmup, self.final = int(interval), int(warmup_steps), int(final_steps)
        self.max_order = int(max_order)
        self.transform, self.cutoff, self.target = transform, float(cutoff), target
        self.along_sequence: set[str] = set()   # why a run split some feature along its sequence (noted once)

    def new_state(self, label: str) -> _State:
        return _State(self._forecaster())

    def _forecaster(self) -> HermiteForecaster:
        return HermiteForecaster(self.max_order, torch.float32, scale=SCALE)

    def edges(self, total_steps: int) -> tuple[int, int]:
        return self.warmup, self.final

    def scheduled_compute(self, step: StepInfo) -> bool:
        return step.at_edge(*self.edges(step.total)) or (step.index - self.warmup + 1) % self.interval == 0

    def wants_reuse(self, state: _State, metric, step: StepInfo) -> bool:
        return state.forecaster.ready and not self.scheduled_compute(step)

    def run_notes(self) -> list[str]:
        return [f"FreqCa: {why}" for why in sorted(self.along_sequence)]

    def store(self, state: _State, residual: Hidden, step: StepInfo, span_input: Hidden) -> Hidden:
        if step.index <= self.warmup - 2:     # the authors keep no differences before the last warmup step
            state.forecaster = self._forecaster()
        values = residual if self.target == "residual" else {k: span_input[k] + residual[k] for k in residual}
        state.forecaster.update(values, step.position)
        return residual

    def reuse(self, state: _State, cached: Hidden, step: StepInfo, span_input: Hidden) -> Hidden:
        fc = state.forecaster
        k = step.position - fc.last_step
        out = {}
        for key, factors in fc.factors.items():
            value = factors[0]
            if len(factors) > 1:
                increment = sum(f * fc.coefficient(i, k) for i, f in enumerate(factors) if i > 0)
                # low(F) + high(F + increment) = F + increment - low(increment)
                value = value + (increment - self._low(increment, step, key, state.bands))
            if self.target == "output":
                value = value - span_input[key].float()
            out[key] = value.to(cached[key].dtype)
        return out

    def _low(self, x: torch.Tensor, step: StepInfo, key: str, bands: DctBands) -> torch.Tensor:
        """The low band of a feature, over its token grid where it has one, else along its sequence."""
        if x.ndim >= 4:          # (batch, *grid, channels): the tokens on their own axes
            grid = tuple(x.shape[1:-1])
            flat = x.reshape(x.shape[0], -1, x.shape[-1])
            return low_band(flat, grid, self.transform, self.cutoff, bands).reshape(x.shape)
        if x.ndim < 3:
            self.along_sequence.add(f"'{key}' has no token axis ({tuple(x.shape)}): forecast whole, no band split")
            return torch.zeros_like(x)
        tokens = x.shape[1]
        grid = token_grid(tokens, step.grid, others=key == "img")   # the image grid, alone or among others
        n = math.prod(grid) if grid is not None else tokens
        if n < tokens:
            start = tokens - n if step.image_start is None else step.image_start
            if start + n <= tokens:
                return self._low_joined(x, grid, start, bands)
            grid = None     # the model says the image starts where its grid does not fit
        if grid is None:
            grid = (tokens,)
            if self.transform == "dct" and key == "img":     # other streams (text, LTX-2's audio) are no image
                latent = f"the {'x'.join(map(str, step.grid))} latent" if step.grid else "a rank's shard"
                self.along_sequence.add(
                    f"the stack's {tokens} tokens do not hold the image grid of {latent} where the model puts the "
                    f"image (audio, 3-D shapes, a rank's shard): the DCT runs along the token sequence")
        return low_band(x, grid, self.transform, self.cutoff, bands)

    def _low_joined(self, x: torch.Tensor, grid: tuple[int, ...], start: int, bands: DctBands) -> torch.Tensor:
        """Image tokens joined with others in one sequence (Flux's single blocks: text, the image, Kontext's reference
        images): the image's low band over its grid, the others' along their own sequence, as a text stream beside
        the image is split. start: the first image token."""
        n = math.prod(grid)
        image, other = x[:, start:start + n], torch.cat((x[:, :start], x[:, start + n:]), dim=1)
        low_image = low_band(image, grid, self.transform, self.cutoff, bands)
        low_other = low_band(other, (other.shape[1],), self.transform, self.cutoff, bands)
        return torch.cat((low_other[:, :start], low_image, low_other[:, start:]), dim=1)
