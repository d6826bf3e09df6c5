"""TaylorSeer's and DBCache's forecasters (HiCache's Hermite weights, FoCa's Heun step) through ComfyUI's own sampling
path: the residual each reused step gets is the named rule applied to the residuals the computed steps stored, per
stream, at the sampler's step positions (the rules themselves against the authors' / cache-dit's code:
tests/engine/test_reference_hicache.py, test_reference_foca.py)."""
import math

import pytest
import torch

from harness import pack
from harness import tiny_models as tm
from harness.node_calls import STEPS, last_stats


def recording(monkeypatch, cls):
    """Per stream state: [(position, "store" | "reuse", residual)] as the policy stored / returned them."""
    log: dict[int, list] = {}

    def wrap(name):
        orig = getattr(cls, name)

        def method(self, state, residual_or_cached, step, span_input):
            out = orig(self, state, residual_or_cached, step, span_input)
            log.setdefault(id(state), []).append((step.position, name, {k: v.clone() for k, v in out.items()}))
            return out
        monkeypatch.setattr(cls, name, method)

    wrap("store")
    wrap("reuse")
    return log


def hicache_order1(d0, d0_prev, gap, k, scale=0.5):
    # HiCache (authors' Flux taylor_utils): d0 + H_1(scale k) scale d1 / 1!, H_1(x) = 2x, d1 = (d0 - d0_prev) / gap
    return d0 + (2 * scale * k) * scale * (d0 - d0_prev) / gap


def test_taylorseer_hermite_forecasts_by_hicache_rule(ck, monkeypatch):
    log = recording(monkeypatch, ck.cache_core.policies.taylorseer.TaylorSeer)
    m, lat, pos, neg = tm.wan()
    patched = pack.node(ck, "ApplyTaylorSeerCache", model=m, cache_interval=3, warmup_steps=2, max_order=1,
                        target="residual", factors_dtype="float32", final_steps=0, forecaster="hermite")[0]
    out = tm.sample(patched, lat, pos, neg, steps=STEPS, cfg=3.0)
    assert last_stats(ck)["streams"]["cond"]["reused_steps"] == [2, 4, 5, 7]
    checked = 0
    for events in log.values():
        stored = [(p, r) for p, kind, r in events if kind == "store"]
        for p, kind, got in events:
            if kind != "reuse":
                continue
            (p0, d0), (p1, d1) = [e for e in stored if e[0] < p][-2:][::-1]
            for key in got:
                want = hicache_order1(d0[key], d1[key], p0 - p1, p - p0)
                torch.testing.assert_close(got[key], want, rtol=1e-5, atol=1e-5)
            checked += 1
    assert checked == 4 * len(log) and torch.isfinite(out).all()
    taylor = tm.sample(pack.node(ck, "ApplyTaylorSeerCache", model=m, cache_interval=3, warmup_steps=2, max_order=1,
                                 target="residual", factors_dtype="float32", final_steps=0)[0],
                       lat, pos, neg, steps=STEPS, cfg=3.0)
    assert not torch.equal(taylor, out)


def foca_replay(events):
    """The FoCa rule on the stored residuals, re-derived (per-step slopes, window of the last two values, damped past
    3 steps): what each reused step should get."""
    anchors, window, want = [], [], []
    for p, kind, r in events:
        if kind == "store":
            anchors, window = (anchors + [(p, r)])[-2:], (window + [(p, r)])[-2:]
            continue
        (sa, a) = anchors[-1]
        if len(anchors) < 2 or len(window) < 2:
            want.append(a)
            continue
        (sp, ap), (s1, f1), (s2, f2) = anchors[0], window[0], window[1]
        e = p - sa
        c = e / 2 if e <= 3 else 9 / (2 * e)
        f = {k: a[k] + c * ((a[k] - ap[k]) / (sa - sp) + (f2[k] - f1[k]) / (s2 - s1)) for k in a}
        window = [window[1], (p, f)]
        want.append(f)
    return want


@pytest.mark.parametrize("node, inputs", [
    ("ApplyTaylorSeerCache", dict(cache_interval=5, warmup_steps=2, max_order=1, target="residual",
                                  factors_dtype="float32", final_steps=0, forecaster="foca")),
    ("ApplyDBCache", dict(Fn_compute_blocks=1, Bn_compute_blocks=0, residual_diff_threshold=0.99, max_warmup_steps=2,
                          warmup_interval=1, max_cached_steps=-1, max_continuous_cached_steps=3,
                          max_accumulated_residual_diff=0.0, taylorseer_order=0, calibrator="foca"))])
def test_foca_forecasts_by_its_rule(ck, monkeypatch, node, inputs):
    policy = {"ApplyTaylorSeerCache": ck.cache_core.policies.taylorseer.TaylorSeer,
              "ApplyDBCache": ck.cache_core.policies.dbcache.DBCache}[node]
    log = recording(monkeypatch, policy)
    m, lat, pos, neg = tm.wan()
    out = tm.sample(pack.node(ck, node, model=m, **inputs)[0], lat, pos, neg, steps=STEPS, cfg=3.0)
    reused = last_stats(ck)["streams"]["cond"]["reused_steps"]
    assert len(reused) >= 3 and torch.isfinite(out).all()
    checked = 0
    for events in log.values():
        got = [r for _, kind, r in events if kind == "reuse"]
        want = foca_replay(events)
        assert len(got) == len(want) == len(reused)
        for g, w in zip(got, want):
            for key in g:
                torch.testing.assert_close(g[key], w[key], rtol=1e-5, atol=1e-5)
        # past the first computed pair the forecast is not the stored residual (it moves along the slopes)
        assert not math.isclose(float((got[-1][key] - [r for _, k, r in events if k == "store"][-1][key])
                                      .abs().max()), 0.0, abs_tol=1e-7)
        checked += len(got)
    assert checked == len(reused) * len(log)


@pytest.mark.parametrize("node, inputs, message", [
    ("ApplyTaylorSeerCache", dict(cache_interval=3, warmup_steps=2, max_order=1, target="residual",
                                  factors_dtype="float32", forecaster="chebyshev"),
     "Apply TaylorSeer Cache: forecaster must be one of"),
    ("ApplyDBCache", dict(Fn_compute_blocks=1, Bn_compute_blocks=0, residual_diff_threshold=0.1, max_warmup_steps=0,
                          warmup_interval=1, max_cached_steps=-1, max_continuous_cached_steps=-1,
                          max_accumulated_residual_diff=0.0, taylorseer_order=0, calibrator="dmd"),
     "Apply DBCache: calibrator must be one of")])
def test_unknown_forecaster_is_refused_clearly(ck, node, inputs, message):
    with pytest.raises(ValueError) as err:
        pack.node(ck, node, model=tm.wan()[0], **inputs)
    assert message in str(err.value)
