"""One CFG batch (the cond and uncond branches of one model evaluation) under a CFG-level method (FasterCache,
docs/methods.md §1.8): on the steps the policy says, only the cond branch runs and the uncond output is estimated
from it; on the others both run and the policy keeps what it needs.

The host hands over the batch's input, its sigma, and a function that runs the model on both branches or on the
cond branch alone, returning the branches' denoised predictions (ComfyUI's CALC_COND_BATCH). The policy works on
the model output (x - x0) / sigma, which is what the reference hooks see; the estimate goes back as a prediction.
"""
from __future__ import annotations

from typing import Callable, Hashable, Sequence

import torch

from .policy import CfgCache


def run_cfg_batch(run, x: torch.Tensor, sigma: torch.Tensor, compute: Callable[[bool], list],
                  uncond_ids: Sequence[Hashable]) -> list:
    """[cond, uncond] predictions for this batch; `compute(both)` runs the model (both=False: cond alone)."""
    policy: CfgCache = run.policy
    s = sigma.reshape(-1, *([1] * (x.ndim - 1))).to(x.dtype)
    step = run.step_at(float(sigma.max()))
    if _skip_uncond(policy, step):
        cond_out = compute(False)[0]
        uncond_v = policy.estimate_uncond((x - cond_out) / s, step)
        for uid in uncond_ids:
            run.record_estimated(uid, "uncond", step, x.device)
        return [cond_out, x - s * uncond_v]
    outs = compute(True)
    _observe(policy, (x - outs[0]) / s, (x - outs[1]) / s)
    return outs


@torch.compiler.disable
def _skip_uncond(policy: CfgCache, step) -> bool:
    return policy.skip_uncond(step)


@torch.compiler.disable
def _observe(policy: CfgCache, cond_v, uncond_v) -> None:
    policy.observe_cfg(cond_v, uncond_v)
