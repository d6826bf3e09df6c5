"""Which step a model call belongs to, from its sigma (cache_core/steps.py), on the call sequences the
samplers of ComfyUI 0.3.75 really make (recorded with 4 steps of the 'simple' schedule)."""
import pytest

from harness import pack

pack.load_core()
from cache_core.steps import StepClock  # noqa: E402

SIGMAS = [1.0, 0.96, 0.88889, 0.72727, 0.0]


def steps(calls, sigmas=SIGMAS):
    clock = StepClock(sigmas)
    return [clock.locate(s).index for s in calls]


@pytest.mark.parametrize("calls, expected", [
    ([1.0, 0.96, 0.88889, 0.72727], [0, 1, 2, 3]),                                      # euler, lcm, uni_pc
    ([1.0, 0.96, 0.96, 0.88889, 0.88889, 0.72727, 0.72727], [0, 1, 1, 2, 2, 3, 3]),     # heun: corrector at next sigma
    ([1.0, 0.9999, 0.96, 0.91354, 0.88889, 0.77419, 0.72727], [0, 0, 1, 1, 2, 2, 3]),   # dpmpp_2s_ancestral: midpoints
    ([0.99999, 0.99928, 0.96, 0.93269, 0.88889], [0, 0, 1, 1, 2]),                      # dpmpp_sde: sigma rounding
    ([1.0, 0.96, 0.88889, 0.96, 0.88889, 0.72727, 0.88889], [0, 1, 2, 1, 2, 3, 2]),     # heunpp2 looks ahead
    ([0.99999, 0.96, 0.96, 0.88889, 0.88889, 0.72727, 0.72727], [0, 1, 1, 2, 2, 3, 3]),  # sa_solver_pece
    ([1.0, 0.98347, 0.96722, 0.95123, 0.89352, 0.73995, 0.7357], [0, 0, 0, 1, 1, 2, 2]),  # dpm_adaptive
])
def test_samplers_call_sequences(calls, expected):
    assert steps(calls) == expected


def test_positions_are_fractional_between_schedule_sigmas():
    clock = StepClock([1.0, 0.5, 0.0])
    assert [clock.locate(s).position for s in (1.0, 0.75, 0.5, 0.25)] == [0.0, 0.5, 1.0, 1.5]
    assert clock.locate(0.25).index == 1


def test_outside_the_schedule_clamps_and_last_sigma_is_the_last_step():
    assert steps([1.2, 0.0]) == [0, 3]
    assert StepClock([1.0]).locate(0.5).index == 0          # no steps: nothing to count


def test_a_schedule_that_rises_again_follows_the_sampler_forward():
    # restart / unsampling style: 1.0 -> 0.2, up to 0.6 (step 2 rises), down to 0; a sigma held by several
    # steps goes to the nearest one at or after the previous call
    sig = [1.0, 0.6, 0.2, 0.6, 0.3, 0.0]
    assert steps([1.0, 0.6, 0.2, 0.6, 0.3], sig) == [0, 1, 2, 3, 4]
    assert steps([1.0, 0.6, 0.4, 0.2, 0.4, 0.6, 0.45], sig) == [0, 1, 1, 2, 2, 3, 3]
