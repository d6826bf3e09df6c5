"""What the server hands the frontend (web/cachekit.js; the browser test checks it is drawn): the run summary
sent as ComfyUI's own progress text too (a frontend without the extension shows it), the per-step timeline,
and each calibration format as chart data."""
import re
import sys
import types

import pytest

from harness import pack
from harness import tiny_models as tm
from harness.node_calls import last_stats


def test_the_summary_also_goes_out_as_comfyui_progress_text(ck, monkeypatch):
    """To the page whose prompt ran, as ComfyUI's text under the node, unless that page has CacheKit's extension
    (it registers; the browser test shows the one summary it draws)."""
    sent = []
    instance = types.SimpleNamespace(send_sync=lambda *a, **k: None, client_id="page-a",
                                     send_progress_text=lambda text, node_id, sid=None: sent.append((text, node_id,
                                                                                                      sid)))
    monkeypatch.setitem(sys.modules, "server", types.SimpleNamespace(PromptServer=types.SimpleNamespace(
        instance=instance)))
    m, lat, pos, neg = tm.wan()
    cls = ck.NODE_CLASS_MAPPINGS["ApplyFirstBlockCache"]
    patched = cls().apply(model=m, unique_id="42", **{**cls.defaults(), "residual_diff_threshold": 0.3})[0]
    tm.sample(patched, lat, pos, neg, steps=8, cfg=3.0)
    run = last_stats(ck)
    assert run["notes"] and run["notes"][0].startswith("8 steps: few-step")   # shown under the summary
    assert sent == [("\n".join([run["summary"], *run["notes"]]), "42", "page-a")]
    ck.nodes.host.stats_feed.client_has_extension("page-a")
    tm.sample(patched, lat, pos, neg, steps=8, cfg=3.0)
    assert len(sent) == 1 and last_stats(ck)["run"] > run["run"]       # ran, and printed no second summary
    cond = run["streams"]["cond"]
    assert run["summary"].startswith(f"uncond {len(run['streams']['uncond']['computed_steps'])}/8 · cond "
                                     f"{len(cond['computed_steps'])}/8 steps computed · ")
    shown = float(re.search(rf"{run['saved_fraction']:.0%} blocks saved · [\d.]+ \w*B held per stream · "
                            r"(\d+\.\d\d) s$", run["summary"]).group(1))
    assert shown == pytest.approx(run["wall_s"], abs=0.006) and run["wall_s"] > 0
    assert cond["timeline"] == "".join("C" if i in cond["computed_steps"] else "R" for i in range(8))


@pytest.mark.parametrize("node, extra, kind", [
    ("CalibrateMagCache", {}, "MagCache ratios per step"),
    ("CalibrateTeaCache", {"degree": 2}, "TeaCache fit: output change vs input change"),
    ("CalibrateSmoothCache", {"lookahead": 2}, "SmoothCache error of reusing the previous step"),
])
def test_calibrate_nodes_show_their_calibration(ck, node, extra, kind):
    m, lat, pos, neg = tm.wan()
    cls = ck.NODE_CLASS_MAPPINGS[node]
    out = cls().calibrate(model=m, seed=0, steps=6, cfg=3.0, sampler_name="euler", scheduler="simple", positive=pos,
                          negative=neg, latent_image={"samples": lat}, denoise=1.0, **extra)
    (chart,) = out["ui"]["cachekit_chart"]
    cal = out["result"][0]
    assert chart["kind"] == kind
    if node == "CalibrateMagCache":
        assert chart["series"] == cal["ratios"]
    if node == "CalibrateTeaCache":
        xs, ys = chart["curve"]
        y = 0.0
        for c in cal["coefficients"]:
            y = y * xs[-1] + c
        assert ys[-1] == pytest.approx(y) and len(chart["points"][0]) == len(chart["points"][1]) > 0
    if node == "CalibrateSmoothCache":
        assert set(chart["series"]) == set(cal["errors"])


def test_a_loaded_tuning_shows_its_changes(ck):
    m, lat, pos, neg = tm.wan()
    fbc = pack.node(ck, "ApplyFirstBlockCache", model=m, residual_diff_threshold=0.0)
    tuning = pack.node(ck, "TuneCacheThreshold", model=fbc[0], seed=0, steps=6, cfg=3.0, sampler_name="euler",
                       scheduler="simple", positive=pos, negative=neg, latent_image={"samples": lat}, denoise=1.0)[0]
    chart = sys.modules["cachekit.nodes.charts"].chart(tuning)
    assert chart["series"]["cond"] == [row[0] if row else 0.0 for row in tuning["streams"]["cond"]["changes"]]


def test_a_calibration_the_chart_cannot_read_still_loads(ck):
    """A hand-written TeaCache file without recorded samples: no chart, no error."""
    charts = sys.modules["cachekit.nodes.charts"]
    assert charts.ui({"format": "cachekit.teacache_coefficients", "coefficients": [1.0, 0.0],
                      "samples": {"cond": []}}) == {}
