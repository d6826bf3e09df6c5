"""Calibrations as files: Save Cache Calibration writes them into models/cache_calibrations, Load Cache
Calibration reads them back exactly as the calibrate node gave them, Apply nodes use them (also found by
'auto' for a model with no published preset, also at another step count), and every bad or mismatched
file is a clear error naming it. Plus Calibrate TeaCache's fit."""
import json
import logging
import os
import pickle

import pytest
import torch

from harness import pack
from harness import tiny_models as tm
from harness.node_calls import STEPS, last_stats

pytestmark = pytest.mark.every_runtime   # what can differ between ComfyUI versions: make test runs it on each


@pytest.fixture
def folder(ck):
    """An empty calibrations folder for each test."""
    from cachekit.nodes.host import calibration_files as files
    path = files.folders()[0]
    os.makedirs(path, exist_ok=True)
    for root, _, names in os.walk(path, topdown=False):
        for n in names:
            os.remove(os.path.join(root, n))
    return path


def ksampler(lat, pos, neg, steps=STEPS, **kw):
    return dict(seed=0, steps=steps, cfg=3.0, sampler_name="euler", scheduler="simple", positive=pos, negative=neg,
                latent_image={"samples": lat}, **kw)


def calibrate(ck, name, m, lat, pos, neg, steps=STEPS, **kw):
    return pack.node(ck, name, model=m, **ksampler(lat, pos, neg, steps), **kw)[0]


def save(ck, calibration, prefix="test/cal"):
    out = pack.node(ck, "SaveCacheCalibration", calibration=calibration, filename_prefix=prefix)
    return out["ui"]["cachekit_calibration"][0]


def load(ck, name):
    return pack.node(ck, "LoadCacheCalibration", calibration=name)[0]


def magcache(ck, m, calibration=None, ratios="auto", thr=0.3):
    return pack.node(ck, "ApplyMagCache", model=m, threshold=thr, retention_ratio=0.0, max_skips=5, ratios=ratios,
                     calibration=calibration)[0]


def test_save_then_load_gives_back_the_calibration_and_drives_apply_the_same(ck, folder, caplog):
    m, lat, pos, neg = tm.wan()
    cal = calibrate(ck, "CalibrateMagCache", m, lat, pos, neg)
    with caplog.at_level(logging.INFO, logger="CacheKit"):
        name = save(ck, cal)
        loaded = load(ck, name)
    assert name == "test/cal_00001.json" and os.path.isfile(os.path.join(folder, "test", "cal_00001.json"))
    assert f"loaded {name}: MagCache ratios for {STEPS} steps on Wan (euler, simple)" in caplog.text
    on_disk = json.loads(open(os.path.join(folder, name)).read())
    assert on_disk["format"] == "cachekit.magcache_ratios" and on_disk["version"] == 1
    assert on_disk["model"]["family"] == "Wan" and set(on_disk["model"]["fingerprint"]) == {
        "class", "blocks", "hidden", "shapes", "weights"}
    assert on_disk["sampling"] == {"steps": STEPS, "sampler": "euler", "scheduler": "simple", "cfg": 3.0,
                                   "denoise": 1.0, "shift": 8.0}
    assert on_disk["cachekit_version"] == ck.nodes.host.calibration_files.CACHEKIT_VERSION and on_disk["created"]
    assert {k: v for k, v in loaded.items() if k not in ("file", "cachekit_version", "created")} == cal
    direct = tm.sample(magcache(ck, m, cal), lat, pos, neg, steps=STEPS, cfg=3.0)
    direct_streams = last_stats(ck)["streams"]
    from_file = tm.sample(magcache(ck, m, loaded), lat, pos, neg, steps=STEPS, cfg=3.0)
    assert torch.equal(from_file, direct) and last_stats(ck)["streams"] == direct_streams
    assert direct_streams["cond"]["reused_steps"]


def test_saving_never_overwrites_and_keeps_inside_the_folder(ck, folder):
    cal = {"format": "cachekit.magcache_ratios", "version": 1, "steps": 2, "ratios": {"cond": [1.0, 0.9]}}
    assert [save(ck, cal, "a") for _ in range(3)] == ["a_00001.json", "a_00002.json", "a_00003.json"]
    open(os.path.join(folder, "a_00007.json"), "w").write("{}")          # a hand-made file is never overwritten
    assert save(ck, cal, "a") == "a_00008.json"
    assert "a_00008.json" in ck.NODE_CLASS_MAPPINGS["LoadCacheCalibration"].INPUT_TYPES()["required"]["calibration"][0]
    for prefix in ["../escape", "/abs/x", "a/../../b", "", "c:\\x"]:
        with pytest.raises(ValueError, match="Save Cache Calibration: filename_prefix must be a name"):
            save(ck, cal, prefix)
    with pytest.raises(ValueError, match="Save Cache Calibration: calibration is not a CacheKit calibration"):
        save(ck, {"format": "x"})


def _write(folder, name, content):
    mode = "wb" if isinstance(content, bytes) else "w"
    with open(os.path.join(folder, name), mode) as f:
        f.write(content)
    return name


GOOD = {"format": "cachekit.magcache_ratios", "version": 1, "steps": 3, "ratios": {"cond": [1.0, 0.9, 0.8]}}


@pytest.mark.parametrize("content, message", [
    ("{not json", "is not valid JSON"),
    (b"\xff\xfe\x00garbage", "is not valid JSON"),
    (pickle.dumps({"format": "cachekit.magcache_ratios"}), "is not valid JSON"),   # never unpickled
    (json.dumps(GOOD | {"version": 2}), "has schema version 2; this CacheKit reads version 1"),
    (json.dumps({"format": "cachekit.other"}), "is not a CacheKit calibration"),
    (json.dumps([1, 2]), "is not a CacheKit calibration"),
    (json.dumps(GOOD | {"ratios": {"cond": []}}), "ratios['cond'] must be a non-empty list"),
    (json.dumps(GOOD | {"ratios": {"cond": [1.0, "x", 0.8]}}), "ratios['cond'][1] must be a finite number > 0"),
    ('{"format": "cachekit.magcache_ratios", "version": 1, "steps": 3, "ratios": {"cond": [1.0, NaN, 0.8]}}',
     "ratios['cond'][1] must be a finite number > 0, got nan"),
    (json.dumps(GOOD | {"ratios": {"cond": [1.0] * 10001}, "steps": 10001}), "must hold at most 10000 values"),
    (json.dumps(GOOD | {"model": "Wan"}), "model must be a mapping"),
])
def test_bad_files_are_refused_naming_the_file(ck, folder, content, message):
    name = _write(folder, "bad.json", content)
    with pytest.raises(ValueError) as err:
        load(ck, name)
    text = str(err.value)
    assert text.startswith("Load Cache Calibration: calibration file 'bad.json' ") and message in text


def test_files_outside_the_folder_or_too_large_are_refused(ck, folder, tmp_path):
    outside = tmp_path / "outside.json"
    outside.write_text(json.dumps(GOOD))
    os.symlink(outside, os.path.join(folder, "link.json"))
    with pytest.raises(ValueError, match="'link.json' lies outside the calibrations folders"):
        load(ck, "link.json")
    with pytest.raises(ValueError, match="no calibration file '../outside.json'"):
        load(ck, "../outside.json")
    _write(folder, "huge.json", " " * (16 * 2**20 + 1))
    with pytest.raises(ValueError, match="'huge.json' is larger than 16 MiB"):
        load(ck, "huge.json")


def test_a_file_for_another_method_or_family_is_a_clear_error(ck, folder):
    m, lat, pos, neg = tm.wan()
    name = save(ck, calibrate(ck, "CalibrateMagCache", m, lat, pos, neg))
    with pytest.raises(ValueError, match=f"Apply SmoothCache: calibration file '{name}' is not a SmoothCache "
                                         f"schedule .* got 'cachekit.magcache_ratios'"):
        pack.node(ck, "ApplySmoothCache", model=m, schedule=load(ck, name))
    with pytest.raises(ValueError, match=f"Apply MagCache: calibration file '{name}' was made on a Wan model, "
                                         f"this model is Flux"):
        magcache(ck, tm.flux()[0], load(ck, name))


def test_same_family_other_weights_is_a_warning_and_runs(ck, folder, caplog):
    m, lat, pos, neg = tm.wan()
    name = save(ck, calibrate(ck, "CalibrateMagCache", m, lat, pos, neg))
    other, lat, pos, neg = tm.wan(seed=5)                 # a "fine-tune": same shapes, other weights
    with caplog.at_level(logging.WARNING, logger="CacheKit"):
        out = tm.sample(magcache(ck, other, load(ck, name)), lat, pos, neg, steps=STEPS, cfg=3.0)
    assert f"calibration file '{name}' was made on another Wan model" in caplog.text
    assert torch.isfinite(out).all() and last_stats(ck)["streams"]["cond"]["reused_steps"]


def test_auto_without_a_published_preset_uses_a_saved_calibration_of_this_model(ck, folder, caplog):
    m, lat, pos, neg = tm.chroma()                        # no published MagCache or TeaCache preset
    with pytest.raises(ValueError, match="Apply MagCache: no published preset for this Chroma model and no "
                                         "saved calibration made on it .* run Calibrate MagCache once"):
        magcache(ck, m)
    other = tm.chroma(seed=3)[0]
    save(ck, calibrate(ck, "CalibrateMagCache", other, lat, pos, neg), "other")   # another Chroma: not picked
    with pytest.raises(ValueError, match="no saved calibration made on it"):
        magcache(ck, m)
    cal = calibrate(ck, "CalibrateMagCache", m, lat, pos, neg)
    name = save(ck, cal, "mine")
    with caplog.at_level(logging.INFO, logger="CacheKit"):
        auto = tm.sample(magcache(ck, m), lat, pos, neg, steps=STEPS, cfg=3.0)
    assert f"'auto' uses the saved calibration file '{name}'" in caplog.text
    assert torch.equal(auto, tm.sample(magcache(ck, m, cal), lat, pos, neg, steps=STEPS, cfg=3.0))


def test_magcache_at_another_step_count_resamples_and_says_so(ck, folder, caplog):
    m, lat, pos, neg = tm.wan()
    loaded = load(ck, save(ck, calibrate(ck, "CalibrateMagCache", m, lat, pos, neg)))
    with caplog.at_level(logging.INFO, logger="CacheKit"):
        out = tm.sample(magcache(ck, m, loaded), lat, pos, neg, steps=12, cfg=3.0)
    assert f"ratios for {STEPS} steps resampled to 12 by nearest index" in caplog.text
    s = last_stats(ck)["streams"]["cond"]
    assert torch.isfinite(out).all() and s["steps_seen"] == 12 and s["reused_steps"]


def test_smoothcache_schedule_at_another_step_count_is_rebuilt_from_its_errors(ck, folder, caplog):
    m, lat, pos, neg = tm.wan()
    errors = calibrate(ck, "CalibrateSmoothCache", m, lat, pos, neg, lookahead=3)
    schedule = load(ck, save(ck, pack.node(ck, "SmoothCacheSchedule", calibration=errors, alpha=10.0)[0]))
    assert schedule["steps"] == STEPS and schedule["alpha"] == 10.0
    with caplog.at_level(logging.INFO, logger="CacheKit"):
        out = tm.sample(pack.node(ck, "ApplySmoothCache", model=m, schedule=schedule)[0], lat, pos, neg, steps=15,
                        cfg=3.0)
    assert f"schedule made for {STEPS} steps rebuilt for 15 from its calibration errors" in caplog.text
    s = last_stats(ck)["streams"]["cond"]
    assert torch.isfinite(out).all() and s["steps_seen"] == 15 and s["components_reused"] > 0
    bare = {k: v for k, v in schedule.items() if k not in ("errors", "alpha")}    # a hand-written schedule
    with pytest.raises(ValueError, match="carries no calibration errors to rebuild it from"):
        tm.sample(pack.node(ck, "ApplySmoothCache", model=m, schedule=bare)[0], lat, pos, neg, steps=15, cfg=3.0)


def test_calibrate_teacache_fits_the_recorded_changes(ck, folder):
    """The recorded pairs are relL1 of block 0's modulated input (what Apply TeaCache measures) and of the
    stack output (measured here with hooks on the last block); the polynomial maps one to the other
    within the reported RMS error; Apply TeaCache runs on it, exact at threshold 0."""
    import importlib
    m, lat, pos, neg = tm.wan()
    dm = m.model.diffusion_model
    outputs = []
    hook = dm.blocks[-1].register_forward_hook(lambda mod, a, k, o: outputs.append(o.clone()), with_kwargs=True)
    try:
        cal = calibrate(ck, "CalibrateTeaCache", m, lat, pos, neg, steps=12, degree=2)
    finally:
        hook.remove()
    assert set(cal["samples"]) == {"cond", "uncond"}
    for chunk, stream in enumerate(cal["samples"].values()):   # streams in the order of the batch's chunks
        xs, ys = stream["input"], stream["output"]
        expected = [float((b[chunk] - a[chunk]).abs().mean() / a[chunk].abs().mean())
                    for a, b in zip(outputs, outputs[1:])]
        assert len(xs) == 11 and ys == pytest.approx(expected, rel=1e-4)
    poly = importlib.import_module("cachekit.cache_core.policies.teacache").poly
    points = [p for s in cal["samples"].values() for p in zip(s["input"], s["output"])]
    rmse = (sum((poly(cal["coefficients"], x) - y) ** 2 for x, y in points) / len(points)) ** 0.5
    assert rmse == pytest.approx(cal["fit_rmse"], rel=1e-6) and cal["fit_rmse"] < 0.5 * max(y for _, y in points)
    loaded = load(ck, save(ck, cal))
    base = tm.sample(m, lat, pos, neg, steps=12, cfg=3.0)
    apply = lambda thr: pack.node(ck, "ApplyTeaCache", model=m, rel_l1_thresh=thr, calibration=loaded)[0]  # noqa
    assert torch.equal(tm.sample(apply(0.0), lat, pos, neg, steps=12, cfg=3.0), base)
    out = tm.sample(apply(0.3), lat, pos, neg, steps=12, cfg=3.0)
    assert torch.isfinite(out).all() and last_stats(ck)["streams"]["cond"]["reused_steps"]
    with pytest.raises(ValueError, match="rel_l1_thresh -1 picks a preset's published value"):
        apply(-1.0)
