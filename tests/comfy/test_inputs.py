"""Any value a user, a link or a file can send to a CacheKit node: each bad one is a clear error naming the
node, the input and the value (from the node function and from VALIDATE_INPUTS, which the server calls),
never a stack trace from deep inside comfy and never a silent no-op. Values at the declared limits run."""
import math

import pytest

from harness import pack
from harness import tiny_models as tm
from harness.node_calls import STEPS, last_stats

BAD_NUMBERS = [math.nan, math.inf, -math.inf, 1e30, -1e30, "1", None, True, [1]]


def node_classes(ck):
    return ck.NODE_CLASS_MAPPINGS


def schedule(row=(1, 0, 1, 0, 0, 1, 0, 1)):
    row = list(row)
    return {"format": "cachekit.smoothcache_schedule", "version": 1, "steps": len(row),
            "schedule": {"self": row, "cross": list(row), "mlp": list(row)}}


def errors():
    return {"format": "cachekit.smoothcache_errors", "version": 1, "steps": 4, "lookahead": 2,
            "errors": {"self": {"1": [0.1, 0.2, 0.1], "2": [0.3, None]}, "mlp": {"1": [0.1, 0.1, 0.1]}}}


def ratios():
    return {"format": "cachekit.magcache_ratios", "version": 1, "steps": 4,
            "ratios": {"cond": [1.0, 0.9, 0.95, 0.99], "uncond": [1.0, 0.9, 0.95, 0.99]}}


def lemica_errors(steps=STEPS):
    return {"format": "cachekit.lemica_errors", "version": 1, "steps": steps,
            "errors": {"cond": [[0.1] * (steps - 1 - i) for i in range(steps - 1)]}}


def valid_inputs(name):
    """What each node needs besides its widget defaults to run."""
    m, lat, pos, neg = tm.wan()
    extra = {"ApplySmoothCache": {"schedule": schedule()}, "SmoothCacheSchedule": {"calibration": errors()},
             "ApplyTeaCache": {"coefficients": "wan2.1_t2v_1.3B"}, "ApplyMagCache": {"ratios": "wan2.1_t2v_1.3B"},
             "ApplyDBCache": {"Fn_compute_blocks": 1, "Bn_compute_blocks": 1},      # the tiny Wan has 4 blocks
             "ApplyLeMiCa": {"calibration": lemica_errors()}}
    sampling = dict(positive=pos, negative=neg, latent_image={"samples": lat}, sampler_name="euler",
                    scheduler="simple", steps=2)
    base = {} if name == "SmoothCacheSchedule" else {"model": m}
    return {**base, **(sampling if name.startswith(("Calibrate", "Tune")) else {}), **extra.get(name, {})}


def numeric_inputs(ck):
    for name, cls in sorted(node_classes(ck).items()):
        for inp, decl in cls.declared_inputs().items():
            if decl[0] in ("INT", "FLOAT"):
                yield name, cls, inp, decl[0], decl[1]



def refused(ck, name, **inputs):
    """The node function's error for these values."""
    with pytest.raises(ValueError) as err:
        pack.node(ck, name, **inputs)
    return str(err.value)


def test_queue_time_checks_are_comfyuis_own_one_error_per_input(ck):
    """No VALIDATE_INPUTS (ComfyUI would attach its answer to every input), and every number declares its range,
    so ComfyUI's own queue-time check names the one input that is out of it (tests/server/test_server.py sends one);
    Load Cache Calibration checks its one input itself, to say which workflow writes a missing file."""
    for name, cls in node_classes(ck).items():
        assert hasattr(cls, "VALIDATE_INPUTS") == (name == "LoadCacheCalibration"), name
        for inp, decl in cls.declared_inputs().items():
            if decl[0] in ("INT", "FLOAT"):
                assert "min" in decl[1] and "max" in decl[1], (name, inp)


def test_every_numeric_input_refuses_every_bad_value(ck):
    seen = 0
    for name, cls, inp, kind, opts in numeric_inputs(ck):
        base = valid_inputs(name)
        limits = [opts[k] + d for k, d in (("min", -1), ("max", 1)) if k in opts]
        for bad in BAD_NUMBERS + limits + ([2.5] if kind == "INT" else []):
            message = refused(ck, name, **{**base, inp: bad})
            assert message.startswith(f"{cls.NODE_NAME}: {inp} must be"), message
            assert repr(bad) in message, message
            seen += 1
    assert seen > 300


def test_choices_and_text_of_the_wrong_kind_are_refused(ck):
    for name, value, message in [
        ("ApplyTaylorSeerCache", {"target": "blocks"}, "Apply TaylorSeer Cache: target must be one of"),
        ("ApplyTaylorSeerCache", {"factors_dtype": 16}, "factors_dtype must be one of"),
        ("ApplyMagCache", {"ratios": "wan9"}, "Apply MagCache: ratios must be one of"),
        ("ApplyTeaCache", {"coefficients": 3}, "Apply TeaCache: coefficients must be one of"),
        ("ApplyTeaCache", {"coefficients": "custom", "custom_coefficients": 5}, "custom_coefficients must be text"),
        ("CalibrateMagCache", {"sampler_name": "eulr"}, "Calibrate MagCache: sampler_name must be one of"),
    ]:
        msg = refused(ck, name, **{**valid_inputs(name), **value})
        assert msg.startswith(message) or message in msg, msg


@pytest.mark.parametrize("text", ["nan, 0", "inf", "1e400, 1", "1, -inf", "", " , ", "a, b", "1;;x"])
def test_teacache_custom_coefficients_must_be_finite_numbers(ck, text):
    msg = refused(ck, "ApplyTeaCache", model=tm.wan()[0], rel_l1_thresh=0.2, coefficients="custom",
                     custom_coefficients=text)
    assert msg.startswith("Apply TeaCache: custom_coefficients "), msg


def _set(d, path, value):
    """A copy of d with the item at path replaced (or removed when value is ...)."""
    import copy
    d = copy.deepcopy(d)
    target = d
    for key in path[:-1]:
        target = target[key]
    if value is ...:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return d


@pytest.mark.parametrize("path, value, where", [
    (("ratios", "cond", 2), math.nan, "ratios['cond'][2] must be a finite number > 0, got nan"),
    (("ratios", "cond", 2), math.inf, "ratios['cond'][2] must be a finite number > 0, got inf"),
    (("ratios", "cond", 0), -0.5, "ratios['cond'][0] must be a finite number > 0, got -0.5"),
    (("ratios", "cond", 0), 0, "ratios['cond'][0] must be a finite number > 0, got 0"),
    (("ratios", "cond", 1), "0.9", "ratios['cond'][1] must be a finite number > 0, got '0.9'"),
    (("ratios", "uncond"), [], "ratios['uncond'] must be a non-empty list"),
    (("ratios", "uncond"), [1.0, 0.9], "ratios['uncond'] must hold 4 values (one per step), got 2"),
    (("ratios",), {}, "ratios must be a non-empty mapping"),
    (("ratios",), ..., "ratios must be a non-empty mapping, got None"),
    (("format",), "cachekit.smoothcache_schedule", "is not a MagCache calibration"),
    (("steps",), 0, "steps must be a whole number >= 1, got 0"),
])
def test_malformed_magcache_calibrations_are_refused(ck, path, value, where):
    msg = refused(ck, "ApplyMagCache", model=tm.wan()[0], calibration=_set(ratios(), path, value))
    assert msg.startswith("Apply MagCache: calibration ") and where in msg, msg


@pytest.mark.parametrize("path, value, where", [
    (("schedule", "self"), ..., None),     # a missing row is fine: that kind then always computes
    (("schedule", "mlp", 3), 2, "schedule['mlp'][3] must be 0 (reuse) or 1 (compute), got 2"),
    (("schedule", "mlp", 3), math.nan, "schedule['mlp'][3] must be 0 (reuse) or 1 (compute), got nan"),
    (("schedule", "mlp", 3), "0", "schedule['mlp'][3] must be 0 (reuse) or 1 (compute), got '0'"),
    (("schedule", "mlp"), [1, 0, 1], "schedule['mlp'] must hold 8 values (one per step), got 3"),
    (("schedule", "cross"), [], "schedule['cross'] must be a non-empty list"),
    (("schedule", "mpl"), [1] * 8, "schedule keys must be a component kind"),
    (("schedule",), {}, "schedule must be a non-empty mapping"),
    (("steps",), ..., "steps must be a whole number >= 1, got None"),
    (("steps",), 8.5, "steps must be a whole number >= 1, got 8.5"),
    (("format",), ..., "is not a SmoothCache schedule"),
])
def test_malformed_smoothcache_schedules_are_refused(ck, path, value, where):
    bad = _set(schedule(), path, value)
    if where is None:
        pack.node(ck, "ApplySmoothCache", model=tm.wan()[0], schedule=bad)
        return
    msg = refused(ck, "ApplySmoothCache", model=tm.wan()[0], schedule=bad)
    assert msg.startswith("Apply SmoothCache: schedule ") and where in msg, msg


@pytest.mark.parametrize("path, value, where", [
    (("errors", "self", "1", 0), math.nan, "errors['self']['1'][0] must be a finite number >= 0, got nan"),
    (("errors", "self", "1", 0), -1.0, "errors['self']['1'][0] must be a finite number >= 0, got -1.0"),
    (("errors", "self", "3"), [0.1], "errors['self'] keys must be lookaheads '1'..'2', got '3'"),
    (("errors", "self", "1"), [0.1] * 5, "errors['self']['1'] must be a list of at most 4 values"),
    (("errors", "ffn"), {"1": [0.1]}, "errors keys must be one of"),
    (("errors",), {}, "errors must be a non-empty mapping"),
    (("lookahead",), 0, "lookahead must be a whole number >= 1, got 0"),
])
def test_malformed_smoothcache_calibrations_are_refused(ck, path, value, where):
    msg = refused(ck, "SmoothCacheSchedule", calibration=_set(errors(), path, value))
    assert msg.startswith("SmoothCache Schedule: calibration ") and where in msg, msg


def apply_nodes(ck):
    return sorted(n for n in node_classes(ck) if n.startswith("Apply"))


@pytest.mark.parametrize("limit", ["min", "max"])
def test_every_apply_input_at_its_declared_limit_runs_and_stays_bounded(ck, limit):
    """Each numeric input alone at its declared minimum or maximum (the others at their defaults): the run
    finishes and the latent stays within 10x the uncached one (an fp16 model would not overflow)."""
    m, lat, pos, neg = tm.wan()
    base = tm.sample(m, lat, pos, neg, steps=STEPS, cfg=3.0)
    bound = 10 * float(base.abs().max())
    long_bound = 10 * float(tm.sample(m, lat, pos, neg, steps=30, cfg=3.0).abs().max())
    ran = 0
    for name in apply_nodes(ck):
        cls = node_classes(ck)[name]
        for inp, decl in cls.declared_inputs().items():
            if decl[0] not in ("INT", "FLOAT") or limit not in decl[1] or inp == "target_compute":
                continue      # (a target needs a tuning run: test_tuning.py)
            inputs = {**valid_inputs(name), inp: decl[1][limit], "model": m}
            if name == "ApplyDBCache" and inp in ("Fn_compute_blocks", "Bn_compute_blocks") and limit == "max":
                with pytest.raises(ValueError, match="leave nothing to cache in this Wan model"):
                    pack.node(ck, name, **inputs)
                continue
            if inp == "end_percent" and limit == "min":
                inputs["start_percent"] = 0.0
            if inp == "start_percent" and limit == "max":
                inputs["end_percent"] = 1.0
            peak = float(tm.sample(pack.node(ck, name, **inputs)[0], lat, pos, neg, steps=STEPS, cfg=3.0).abs().max())
            assert peak < bound, (name, inp, limit, peak)   # NaN fails this too
            assert last_stats(ck)["status"] == "finished"
            ran += 1
        # and every numeric input at that limit together over a 30-step run (the window kept open, DBCache's
        # Fn/Bn valid; SmoothCache's schedule and LeMiCa's calibration are for 8 steps)
        together = {inp: decl[1][limit] for inp, decl in cls.declared_inputs().items()
                    if decl[0] in ("INT", "FLOAT") and limit in decl[1] and inp != "target_compute"}
        inputs = {**valid_inputs(name), **together, "model": m, "start_percent": 0.0, "end_percent": 1.0}
        if name == "ApplyDBCache":
            inputs.update(Fn_compute_blocks=1, Bn_compute_blocks=1)
        steps = STEPS if name in ("ApplySmoothCache", "ApplyLeMiCa") else 30
        peak = float(tm.sample(pack.node(ck, name, **inputs)[0], lat, pos, neg, steps=steps, cfg=3.0).abs().max())
        assert peak < long_bound, (name, "all", limit, peak)
    assert ran > 30
