"""LeMiCa (docs/methods.md §1.14) through ComfyUI's own sampling path: Calibrate LeMiCa records the reuse errors of
an uncached run (checked against residuals measured with module hooks), its file saves and loads back the same, and
Apply LeMiCa Schedule computes exactly the searched steps on every family; another step count is a clear error."""
import os

import pytest
import torch

from harness import pack
from harness import tiny_models as tm
from harness.node_calls import FAMILIES, STEPS, block_attrs, block_count, last_stats, stack_residuals

pytestmark = pytest.mark.every_runtime   # what can differ between ComfyUI versions: make test runs it on each


def calibrate(ck, m, lat, pos, neg, steps=STEPS, cfg=3.0, **kw):
    return pack.node(ck, "CalibrateLeMiCa", model=m, seed=0, steps=steps, cfg=cfg, sampler_name="euler",
                     scheduler="simple", positive=pos, negative=neg, latent_image={"samples": lat}, **kw)


def apply(ck, m, cal, target=0.5, final=1, forecast="reuse"):
    return pack.node(ck, "ApplyLeMiCa", model=m, calibration=cal, target_compute=target, final_steps=final,
                     forecast=forecast)[0]


def expected_steps(ck, cal, computed, final=1):
    """The schedule from cache_core's search on the worse stream's errors (tests/engine/test_schedule_search.py
    holds the search to brute force)."""
    ss = ck.cache_core.schedule_search
    forced = {0, *range(cal["steps"] - final, cal["steps"])}
    return ss.solve(ss.edge_weights(ss.worst_of(cal["errors"].values()), cal["steps"]), cal["steps"], computed,
                    forced)


@pytest.mark.parametrize("family", FAMILIES)
def test_calibrate_then_apply_computes_exactly_the_searched_steps(ck, family):
    m, lat, pos, neg = tm.FAMILIES[family]()
    cal, latent = calibrate(ck, m, lat, pos, neg)
    assert torch.equal(tm.packed(latent["samples"]), tm.sample(m, lat, pos, neg, steps=STEPS, cfg=3.0))   # no reuse
    assert cal["steps"] == STEPS and "cond" in cal["errors"]
    assert all(len(rows) == STEPS - 1 for rows in cal["errors"].values())
    mask = expected_steps(ck, cal, 4)
    patched = apply(ck, m, cal, 0.5)
    with tm.BlockCounter(patched, block_attrs(ck, m)) as counter:
        out = tm.sample(patched, lat, pos, neg, steps=STEPS, cfg=3.0)
    stats = last_stats(ck)
    assert len(mask) == 4 and mask[0] == 0 and mask[-1] == STEPS - 1
    for label, s in stats["streams"].items():
        assert s["computed_steps"] == mask, label
        assert s["reused_steps"] == [i for i in range(STEPS) if i not in mask], label
    assert stats["block_evals"] == counter.count == len(mask) * block_count(ck, m)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("family", ["wan", "flux"])
def test_recorded_errors_are_those_of_the_residuals_measured_with_hooks(ck, family):
    """cfg 1 (one stream): E[i][k] = sum|r_k - r_i| / sum|r_i| of the whole-stack residual r measured independently
    with module hooks on the first and last blocks (the tiny residuals are smaller than `samples`: every element)."""
    m, lat, pos, neg = tm.FAMILIES[family]()
    with stack_residuals(ck, m, family) as residuals:
        cal, _ = calibrate(ck, m, lat, pos, neg, cfg=1.0)
    assert list(cal["errors"]) == ["cond"] and cal["samples"] == residuals[0].numel()
    rows = cal["errors"]["cond"]
    for i in range(STEPS - 1):
        for k in range(i + 1, STEPS):
            r_i, r_k = residuals[i].float(), residuals[k].float()
            expected = float((r_k - r_i).abs().sum() / r_i.abs().sum())
            assert rows[i][k - i - 1] == pytest.approx(expected, rel=1e-4), (i, k)


def test_saved_file_loads_in_a_new_node_and_drives_the_same_schedule(ck):
    m, lat, pos, neg = tm.wan()
    out = ck.NODE_CLASS_MAPPINGS["CalibrateLeMiCa"]().calibrate(
        model=m, samples=65536, seed=0, steps=STEPS, cfg=3.0, sampler_name="euler", scheduler="simple",
        positive=pos, negative=neg, latent_image={"samples": lat}, denoise=1.0)
    cal = out["result"][0]
    chart = out["ui"]["cachekit_chart"][0]
    assert chart["series"]["cond"] == [row[0] for row in cal["errors"]["cond"]]
    saved = pack.node(ck, "SaveCacheCalibration", calibration=cal, filename_prefix="test/lemica")
    name = saved["ui"]["cachekit_calibration"][0]
    path = saved["ui"]["cachekit_saved"][0]["path"]
    try:
        assert name.startswith("test/lemica_") and os.path.isfile(path)
        loaded = pack.node(ck, "LoadCacheCalibration", calibration=name)[0]
    finally:
        os.remove(path)
    assert {k: v for k, v in loaded.items() if k not in ("file", "cachekit_version", "created")} == cal
    direct = tm.sample(apply(ck, m, cal, 0.4), lat, pos, neg, steps=STEPS, cfg=3.0)
    direct_streams = last_stats(ck)["streams"]
    from_file = tm.sample(apply(ck, m, loaded, 0.4), lat, pos, neg, steps=STEPS, cfg=3.0)
    assert torch.equal(from_file, direct) and last_stats(ck)["streams"] == direct_streams
    mask = expected_steps(ck, loaded, 3)
    assert all(s["computed_steps"] == mask for s in direct_streams.values())
    # every step computes at target 1: the uncached output, bit for bit
    assert torch.equal(tm.sample(apply(ck, m, loaded, 1.0), lat, pos, neg, steps=STEPS, cfg=3.0),
                       tm.sample(m, lat, pos, neg, steps=STEPS, cfg=3.0))


@pytest.mark.parametrize("how", ["taylor", "foca"])
def test_a_forecast_follows_the_same_schedule_and_extrapolates(ck, how):
    m, lat, pos, neg = tm.flux()
    cal, _ = calibrate(ck, m, lat, pos, neg)
    reused = tm.sample(apply(ck, m, cal, 0.5), lat, pos, neg, steps=STEPS, cfg=3.0)
    plain_streams = last_stats(ck)["streams"]
    forecast = tm.sample(apply(ck, m, cal, 0.5, forecast=how), lat, pos, neg, steps=STEPS, cfg=3.0)
    streams = last_stats(ck)["streams"]
    assert {k: s["computed_steps"] for k, s in streams.items()} == {k: s["computed_steps"]
                                                                   for k, s in plain_streams.items()}
    assert torch.isfinite(forecast).all() and not torch.equal(forecast, reused)


def test_another_step_count_or_too_few_steps_asked_is_said_plainly(ck, caplog):
    m, lat, pos, neg = tm.wan()
    cal, _ = calibrate(ck, m, lat, pos, neg)
    with pytest.raises(ValueError, match="Apply LeMiCa Schedule: the schedule was searched from a calibration of "
                                         f"{STEPS} steps and this run has 6: calibrate"):
        tm.sample(apply(ck, m, cal, 0.5), lat, pos, neg, steps=6, cfg=3.0)
    node = ck.NODE_CLASS_MAPPINGS["ApplyLeMiCa"]()
    node.apply(model=m, calibration=cal, target_compute=0.0, final_steps=2, forecast="reuse")
    assert node.warnings == [f"target_compute 0 of {STEPS} steps asks for 1 computed, but step 0 and the last 2 "
                             "always compute: 3 do"]
    with pytest.raises(ValueError, match="Apply LeMiCa Schedule: calibration is not a LeMiCa calibration"):
        apply(ck, m, {"format": "cachekit.magcache_ratios", "version": 1, "ratios": {"cond": [1.0]}})
    with pytest.raises(ValueError, match="Calibrate LeMiCa: steps must be at most 200"):
        calibrate(ck, m, lat, pos, neg, steps=201)
