"""TaylorSeer against diffusers 0.39's own implementation: the compute/forecast schedule of
TaylorSeerCacheHook and the factor update / prediction of TaylorSeerState, on the same sequence of
features, for orders 0-3 and irregular gaps between computed steps."""

import pytest
import torch
from diffusers.hooks.taylorseer_cache import TaylorSeerState

from harness import pack

pack.load_core()
from cache_core import StepInfo, TaylorForecaster, TaylorSeer  # noqa: E402


def diffusers_schedule(steps, interval, before, after=None):
    # TaylorSeerCacheHook._measure_should_compute, with current_step incremented per call from -1; `after` is
    # its disable_cache_after_step (the cooldown)
    return [s < before or (s - before - 1) % interval == 0 or (after is not None and s >= after)
            for s in range(steps)]


@pytest.mark.parametrize("interval, before, final", [(5, 3, 0), (3, 2, 0), (2, 0, 0), (1, 3, 0), (6, 3, 0),
                                                     (5, 3, 2), (4, 2, 1), (6, 3, 5)])
def test_schedule_matches_diffusers(interval, before, final):
    """final_steps N is diffusers' disable_cache_after_step = steps - N."""
    ours = TaylorSeer(interval=interval, warmup_steps=before, final_steps=final)
    got = [ours.scheduled_compute(StepInfo(s, 30, 1.0)) for s in range(30)]
    assert got == diffusers_schedule(30, interval, before, 30 - final if final else None)


@pytest.mark.parametrize("order", [0, 1, 2, 3])
def test_forecaster_matches_diffusers_state(order):
    g = torch.Generator().manual_seed(order)
    feats = {s: torch.randn(2, 5, 8, generator=g) for s in range(12)}
    computed = [0, 1, 2, 5, 7, 11]          # irregular gaps: Δ = 1, 1, 3, 2, 4
    ref = TaylorSeerState(taylor_factors_dtype=torch.float32, max_order=order)
    ours = TaylorForecaster(max_order=order, dtype=torch.float32)
    for step in range(12):
        ref.current_step = step
        if step in computed:
            ref.update((feats[step],))
            ours.update({"img": feats[step]}, step)
        else:
            expected = ref.predict()[0]
            got = ours.predict(step, like={"img": feats[step]})["img"]
            torch.testing.assert_close(got, expected, rtol=1e-6, atol=1e-6)
