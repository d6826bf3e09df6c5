"""Auto-tune (cache_core/tuning.py, Tune Cache Threshold, target_compute on the threshold-driven nodes): a
saving asked for lands near that saving, on a model that learned something, through ComfyUI's sampling."""
import dataclasses

import pytest
import torch

from harness import pack
from harness import tiny_models as tm
from harness.node_calls import last_stats

from harness import digits_models as dm

STEPS = 30


def tune(ck, patched, lat, pos, neg, steps=STEPS, cfg=4.0):
    return pack.node(ck, "TuneCacheThreshold", model=patched, seed=0, steps=steps, cfg=cfg, sampler_name="euler",
                     scheduler="simple", positive=pos, negative=neg, latent_image={"samples": lat}, denoise=1.0)[0]


def fraction(ck):
    s = last_stats(ck)
    return s["block_evals"] / s["block_evals_full"]


# method -> (node, its settings with target_compute 0, how many blocks a reused call still runs)
NODES = {
    "fbc": ("ApplyFirstBlockCache", dict(residual_diff_threshold=0.0, max_consecutive_skips=-1)),
    "teacache": ("ApplyTeaCache", dict(rel_l1_thresh=0.0, coefficients="custom", custom_coefficients="1.0, 0.0")),
    "seacache": ("ApplySeaCache", dict(threshold=0.0)),
    "dbcache": ("ApplyDBCache", dict(Fn_compute_blocks=1, Bn_compute_blocks=1, residual_diff_threshold=0.0,
                                     max_warmup_steps=2)),
}


@pytest.fixture(scope="module")
def trained(comfy):
    """The benchmark's Flux-class digits model, trained briefly (deterministic, about 30 s on 2 cores)."""
    r = dataclasses.replace(dm.RECIPES["flux"], steps=400, batch=32)
    m = dm.train(r, log=lambda *_: None)
    pos, neg = dm.conditioning("flux", 3)
    return m, dm.empty_latent("flux"), pos, neg


@pytest.mark.parametrize("method", NODES)
def test_target_lands_near_it_on_a_trained_model(ck, trained, method):
    m, lat, pos, neg = trained
    name, settings = NODES[method]
    tuning = tune(ck, pack.node(ck, name, model=m, **settings)[0], lat, pos, neg)
    base = tm.sample(m, lat, pos, neg, steps=STEPS, cfg=4.0)
    seen = []
    for target in (0.35, 0.5, 0.7):
        patched = pack.node(ck, name, model=m, target_compute=target, tuning=tuning, **settings)[0]
        out = tm.sample(patched, lat, pos, neg, steps=STEPS, cfg=4.0)
        got = fraction(ck)
        seen.append(got)
        assert abs(got - target) <= 0.06, (method, target, got, last_stats(ck)["notes"])
        assert not torch.equal(out, base)
    assert seen == sorted(seen)          # asking for more compute never gives less


def block0_lora(model, scale: float):
    """`model` with a seeded rank-4 LoRA on every Linear of its first double block, loaded as Load LoRA loads one
    (comfy.sd.load_lora_for_models): what First Block Cache measures changes differently from step to step."""
    block = model.model.diffusion_model.double_blocks[0]
    return tm.lora_on(model, [f"double_blocks.0.{name}" for name, lin in block.named_modules()
                              if isinstance(lin, torch.nn.Linear)], seed=1, scale=scale)


def test_a_target_holds_on_a_lora_loaded_after_the_tuning(ck, trained):
    """A tuning made without the LoRA now loaded: the threshold it picks, set by hand, computes far more than the
    target on the LoRA's model (the LoRA makes block 0's changes larger); target_compute keeps the run on the
    tuning's plan (cache_core/tuning_scale.py) and lands near the target, and says the run drifted from it."""
    m, lat, pos, neg = trained
    name, settings = NODES["fbc"]
    tuning = tune(ck, pack.node(ck, name, model=m, **settings)[0], lat, pos, neg)
    moved = block0_lora(m, 0.3)
    for target in (0.5, 0.7):
        patched = pack.node(ck, name, model=moved, target_compute=target, tuning=tuning, **settings)[0]
        tm.sample(patched, lat, pos, neg, steps=STEPS, cfg=4.0)
        got, notes = fraction(ck), last_stats(ck)["notes"]
        assert abs(got - target) <= 0.06, (target, got, notes)
        assert any("off the tuning's plan" in n and "a LoRA loaded since" in n for n in notes), notes
        picked = float(next(n for n in notes if n.startswith("target")).split("threshold ")[1].split(" ")[0])
        by_hand = pack.node(ck, name, model=moved, **(settings | dict(residual_diff_threshold=picked)))[0]
        tm.sample(by_hand, lat, pos, neg, steps=STEPS, cfg=4.0)
        assert fraction(ck) - target > 0.25, (target, picked, fraction(ck))


def test_a_threshold_a_lora_lets_nothing_through_is_said(ck, trained):
    """A threshold chosen on the model without the LoRA reuses; with it, it reuses nothing, and the run says so (not
    a silent no-op), with the smallest change it turned down and what to do."""
    m, lat, pos, neg = trained
    name, settings = NODES["fbc"]
    for model, reuses in ((m, True), (block0_lora(m, 0.3), False)):
        tm.sample(pack.node(ck, name, model=model, **(settings | dict(residual_diff_threshold=0.1)))[0], lat, pos, neg,
                  steps=STEPS, cfg=4.0)
        said = [n for n in last_stats(ck)["notes"] if n.startswith("reused no step at threshold 0.1:")]
        if reuses:
            assert fraction(ck) < 0.9 and said == []
        else:
            assert fraction(ck) == 1.0 and len(said) == 1, last_stats(ck)["notes"]
    smallest = float(said[0].split("the smallest change it measured there: ")[1].split(";")[0])
    assert smallest >= 0.1 and "set target_compute" in said[0]


def test_magcache_aims_from_its_ratios_without_a_tuning_run(ck, trained):
    """No probe: the replay is the run itself, so the fraction is exactly what it predicts."""
    m, lat, pos, neg = trained
    for target in (0.4, 0.6):
        patched = pack.node(ck, "ApplyMagCache", model=m, threshold=0.1, max_skips=10, retention_ratio=0.1,
                            ratios="flux_dev", target_compute=target)[0]
        tm.sample(patched, lat, pos, neg, steps=STEPS, cfg=4.0)
        note = next(n for n in last_stats(ck)["notes"] if n.startswith("target"))
        predicted = float(note.split("gives ")[1].split("%")[0]) / 100
        assert fraction(ck) == pytest.approx(predicted, abs=1e-3)
        assert abs(fraction(ck) - target) <= 1 / STEPS + 1e-9


@pytest.mark.parametrize("method", ["fbc", "magcache"])
def test_a_target_the_limits_cannot_reach_says_which_limit(ck, trained, caplog, method):
    """20% asked where the run cannot go below about half: the node says the target cannot be reached, what the run
    gives and what limits it, on the node and as a warning in the log. First Block Cache with one reuse in a row at
    most: its max_consecutive_skips (and what the run would give without it); MagCache with retention 0.3: its own
    rule (the first steps it computes)."""
    import logging
    m, lat, pos, neg = trained
    if method == "fbc":
        name, settings = NODES["fbc"]
        settings = settings | dict(max_consecutive_skips=1)
        tuning = tune(ck, pack.node(ck, name, model=m, **settings)[0], lat, pos, neg)
        patched = pack.node(ck, name, model=m, target_compute=0.2, tuning=tuning, **settings)[0]
    else:
        patched = pack.node(ck, "ApplyMagCache", model=m, threshold=0.1, max_skips=10, retention_ratio=0.3,
                            ratios="flux_dev", target_compute=0.2)[0]
    with caplog.at_level(logging.WARNING, logger="CacheKit"):
        tm.sample(patched, lat, pos, neg, steps=STEPS, cfg=4.0)
    note = next(n for n in last_stats(ck)["notes"] if n.startswith("target"))
    assert note.startswith("target 20% cannot be reached: threshold ") and fraction(ck) > 0.2 + 0.02
    assert "cannot be reached" in caplog.text
    if method == "fbc":
        assert "the node's max_consecutive_skips limits it (without that limit: " in note
        assert float(note.split("(without that limit: ")[1].split("%")[0]) / 100 < fraction(ck)
    else:
        assert f"the method's own rule limits it (it computes its first {int(0.3 * STEPS + 0.5)} " in note


def test_tuning_saved_and_loaded_as_a_calibration_file(ck, trained, tmp_path):
    files = ck.nodes.host.calibration_files
    m, lat, pos, neg = trained
    name, settings = NODES["fbc"]
    tuning = tune(ck, pack.node(ck, name, model=m, **settings)[0], lat, pos, neg, steps=12)
    saved = pack.node(ck, "SaveCacheCalibration", calibration=tuning, filename_prefix="tests/tuning")["ui"]
    loaded = pack.node(ck, "LoadCacheCalibration", calibration=saved["cachekit_calibration"][0])[0]
    assert ck.cache_core.calibration_data.check_any(loaded)["streams"] == tuning["streams"]
    # no tuning connected: the newest saved one made for this method on this model
    patched = pack.node(ck, name, model=m, target_compute=0.5, **settings)[0]
    tm.sample(patched, lat, pos, neg, steps=12, cfg=4.0)
    assert any("12-step tuning" in n for n in last_stats(ck)["notes"])
    assert files.find_matching(ck.cache_core.calibration_data.THRESHOLD_TUNING, m) is not None


def test_tuning_mistakes_are_refused_clearly(ck):
    m, lat, pos, neg = tm.flux()
    fbc = pack.node(ck, "ApplyFirstBlockCache", model=m, residual_diff_threshold=0.0)[0]
    tuning = tune(ck, fbc, lat, pos, neg, steps=6, cfg=1.0)
    with pytest.raises(ValueError, match="Apply DBCache: the tuning was recorded for name FirstBlockCache"):
        pack.node(ck, "ApplyDBCache", model=m, Fn_compute_blocks=2, target_compute=0.5, tuning=tuning)
    with pytest.raises(ValueError, match="Apply TeaCache: target_compute 0.5 needs a tuning"):
        pack.node(ck, "ApplyTeaCache", model=m, coefficients="custom", target_compute=0.5)
    with pytest.raises(ValueError, match="Tune Cache Threshold: the model has no CacheKit node"):
        tune(ck, m, lat, pos, neg, steps=4)
    with pytest.raises(ValueError, match="Tune Cache Threshold: Apply MagCache: MagCache decides from its schedule"):
        tune(ck, pack.node(ck, "ApplyMagCache", model=m, ratios="flux_dev")[0], lat, pos, neg, steps=4)
    with pytest.raises(ValueError, match="Apply First Block Cache: tuning is not a threshold tuning"):
        pack.node(ck, "ApplyFirstBlockCache", model=m, target_compute=0.5, tuning={"format": "x"})
    bad = dict(tuning, streams={"cond": dict(tuning["streams"]["cond"], changes=[[]] * 6)})
    bad["streams"]["cond"]["changes"][3] = [0.1, float("nan"), 0.2]
    with pytest.raises(ValueError, match=r"streams\['cond'\]\['changes'\]\[3\]\[1\] must be a finite number"):
        pack.node(ck, "ApplyFirstBlockCache", model=m, target_compute=0.5, tuning=bad)


def test_replay_follows_the_policy_rules(ck):
    """The replay drives the policy's own decisions: First Block Cache measured against the last computed
    step, TeaCache against the previous call, with the engine's limits (max consecutive reuses)."""
    t = ck.cache_core.tuning
    core = ck.cache_core
    # changes[i][k] = change of step i against step i-1-k: 0.05 per step, additive
    changes = tuple(tuple(0.05 * (k + 1) for k in range(i)) for i in range(8))
    trace = {"cond": t.Trace(tuple(range(8)), tuple(1 - i / 8 for i in range(8)), changes)}
    fbc = core.FirstBlockCache(0.12)   # reuse while the change since the last computed step < 0.12
    assert t.replay(fbc, trace, 8, core.ReuseLimits(), 4) == pytest.approx((3 * 4 + 5 * 1) / 32)   # C R R C R R C R
    tea = core.TeaCache(0.12, [1.0, 0.0], retention_steps=1, final_steps=0)   # accumulates 0.05 per call
    assert t.replay(tea, trace, 8, core.ReuseLimits(), 4) == pytest.approx((3 * 4 + 5 * 0) / 32)   # C R R C R R C R
    capped = core.ReuseLimits(max_consecutive=1)
    assert t.replay(tea, trace, 8, capped, 4) == pytest.approx((4 * 4 + 4 * 0) / 32)
    thr, got = t.threshold_for(fbc.with_threshold, 0.6, lambda p: t.replay(p, trace, 8, core.ReuseLimits(), 4))
    assert got >= 0.6 and t.replay(fbc.with_threshold(thr * 1.01), trace, 8, core.ReuseLimits(), 4) <= got
    # a run with no step to aim over (a one-sigma tail of a split schedule) keeps the threshold as set
    policy, note = t.Targeted(core.MagCache({"cond": [1.0] * 4}, 0.3), 0.5).at([1.0], core.ReuseLimits(), 4)
    assert policy.threshold == 0.3 and "no steps" in note


def test_a_seacache_tuning_fits_only_its_spectral_power(ck):
    m, lat, pos, neg = tm.flux()
    tuning = tune(ck, pack.node(ck, "ApplySeaCache", model=m, threshold=0.0, spectral_power=2.0)[0], lat, pos, neg,
                  steps=6, cfg=1.0)
    assert tuning["method"]["power"] == 2.0
    pack.node(ck, "ApplySeaCache", model=m, spectral_power=2.0, target_compute=0.5, tuning=tuning)
    with pytest.raises(ValueError, match="Apply SeaCache: the tuning was recorded for .*power 2.0"):
        pack.node(ck, "ApplySeaCache", model=m, spectral_power=3.0, target_compute=0.5, tuning=tuning)
    # one recorded before a change went through one filter (no "filter" key) measured another change
    old = {**tuning, "method": {k: v for k, v in tuning["method"].items() if k != "filter"}}
    with pytest.raises(ValueError, match="recorded for .*filter None.*tune this setting"):
        pack.node(ck, "ApplySeaCache", model=m, spectral_power=2.0, target_compute=0.5, tuning=old)
    # SeaCache records its own change, one step back, per step
    changes = next(iter(tuning["streams"].values()))["changes"]
    assert changes[0] == [] and all(len(row) == 1 for row in changes[1:])
