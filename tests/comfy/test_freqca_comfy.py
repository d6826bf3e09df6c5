"""FreqCa through ComfyUI's own sampling (the family x method tests run its off and on cases on every family): on a
forecast step each stream's stack output keeps the low band of its last computed step and moves in the high band,
over the image's token grid, where the stack's tokens are that grid (Wan) and where text joins the image (Flux's
single blocks: the text along its own sequence)."""
import math

import pytest
import torch

from harness import pack
from harness import tiny_models as tm
from harness.host_syncs import extra_host_syncs
from harness.node_calls import STEPS, last_stats

pytestmark = pytest.mark.every_runtime


def freqca(ck, model, **inputs):
    settings = dict(cache_interval=3, warmup_steps=2, final_steps=1, max_order=2, transform="dct", cutoff=0.3,
                    target="output")
    return pack.node(ck, "ApplyFreqCaCache", model=model, **(settings | inputs))[0]


def recorded(ck, monkeypatch):
    """Every stack output the policy sees, per stream: (stream state, step, 'computed' or 'forecast', output)."""
    cls = ck.cache_core.policies.freqca.FreqCa
    seen, store, reuse = [], cls.store, cls.reuse

    def store_seen(self, state, residual, step, span_input):
        seen.append((id(state), step.index, "computed", {k: span_input[k] + residual[k] for k in residual}))
        return store(self, state, residual, step, span_input)

    def reuse_seen(self, state, cached, step, span_input):
        out = reuse(self, state, cached, step, span_input)
        seen.append((id(state), step.index, "forecast", {k: span_input[k] + out[k] for k in out}))
        return out
    monkeypatch.setattr(cls, "store", store_seen)
    monkeypatch.setattr(cls, "reuse", reuse_seen)
    return seen


def bands_of(low_band, feature, grid, text, transform):
    """The low band as the policy splits the stack's output: the image tokens over their grid, the text tokens
    the model put before them (Flux's single blocks) along their own sequence."""
    image = low_band(feature[:, text:], grid, transform, 0.3)
    return torch.cat((low_band(feature[:, :text], (text,), transform, 0.3), image), dim=1) if text else image


@pytest.mark.parametrize("family, grid, text", [("wan", (1, 8, 8), 0), ("flux", (8, 8), 8)])
@pytest.mark.parametrize("transform", ["dct", "fft"])
def test_forecast_keeps_the_low_band_and_moves_the_high_band(ck, monkeypatch, family, grid, text, transform):
    m, lat, pos, neg = tm.FAMILIES[family]()
    seen = recorded(ck, monkeypatch)
    out = tm.sample(freqca(ck, m, transform=transform), lat, pos, neg, steps=STEPS, cfg=3.0)
    stats = last_stats(ck)
    assert torch.isfinite(out).all()
    assert stats["streams"]["cond"]["computed_steps"] == [0, 1, 4, 7]      # warmup 2, interval 3, the last step
    low_band = ck.cache_core.frequency_bands.low_band
    forecasts = [r for r in seen if r[2] == "forecast"]
    assert {r[1] for r in forecasts} == {2, 3, 5, 6} and len({r[0] for r in forecasts}) == 2   # cond and uncond
    for stream, index, _, now in forecasts:
        then = [r for r in seen if r[0] == stream and r[2] == "computed" and r[1] < index][-1][3]["img"]
        now = now["img"]
        assert now.shape[1] == math.prod(grid) + text
        low_now, low_then = (bands_of(low_band, f, grid, text, transform) for f in (now, then))
        scale = float(then.abs().max())
        torch.testing.assert_close(low_now, low_then, rtol=0, atol=1e-5 * scale)
        assert float((now - low_now - (then - low_then)).abs().max()) > 1e-4 * scale
    assert [n for n in stats["notes"] if n.startswith("FreqCa")] == []


def test_order_zero_output_is_taylorseers_order_zero(ck):
    """With no differences (order 0) both bands are reused as they were: the stack's last computed output, as
    TaylorSeer forecasts it at order 0 on the same schedule (interval 2: both methods compute the same steps)."""
    m, lat, pos, neg = tm.wan()
    mine = tm.sample(freqca(ck, m, cache_interval=2, max_order=0), lat, pos, neg, steps=STEPS, cfg=3.0)
    assert last_stats(ck)["streams"]["cond"]["reused_steps"]
    theirs = tm.sample(pack.node(ck, "ApplyTaylorSeerCache", model=m, cache_interval=2, warmup_steps=2, max_order=0,
                                 target="output", factors_dtype="float32", final_steps=1)[0],
                       lat, pos, neg, steps=STEPS, cfg=3.0)
    assert torch.equal(mine, theirs)


@pytest.mark.parametrize("transform", ["dct", "fft"])
def test_one_host_sync_per_model_call(ck, transform):
    """As the other span methods (test_host_syncs.py): the call's step, read once; the split reads nothing back
    (the DCT's mask is built on the host, the FFT's stays on the device)."""
    m, lat, pos, neg = tm.wan()
    extra = extra_host_syncs(m, freqca(ck, m, transform=transform), lat, pos, neg, steps=STEPS, cfg=3.0)
    assert last_stats(ck)["streams"]["cond"]["reused_steps"]
    assert STEPS <= extra <= STEPS + 1
