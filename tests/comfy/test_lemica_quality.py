"""LeMiCa's searched schedule (docs/methods.md §1.14) against the plain alternative with the same number of computed
steps, on a trained model: the search must buy quality, not only match its definition."""
import dataclasses

import pytest

from harness import digits_models as dm
from harness import pack
from harness.node_calls import last_stats

STEPS, CFG = 20, 4.0


@pytest.fixture(scope="module")
def trained(comfy):
    """The benchmark's Flux-class digits model, trained briefly (deterministic, about 45 s on 2 cores)."""
    return dm.train(dataclasses.replace(dm.RECIPES["flux"], steps=400, batch=32), log=lambda *_: None)


CASES = [(0, 1), (8, 1)]     # (label, seed): labels the calibration (label 3) did not see


@pytest.fixture(scope="module")
def calibrated(ck, trained):
    """Calibrate LeMiCa's output on label 3 (euler), and the uncached samples of CASES to score against."""
    pos, neg = dm.conditioning("flux", 3)
    cal = pack.node(ck, "CalibrateLeMiCa", model=trained, seed=0, steps=STEPS, cfg=CFG, sampler_name="euler",
                    scheduler="simple", positive=pos, negative=neg, latent_image={"samples": dm.empty_latent("flux")},
                    denoise=1.0)[0]
    return cal, {c: dm.sample(trained, "flux", *c, steps=STEPS, cfg=CFG) for c in CASES}


@pytest.mark.parametrize("target", [0.5, 0.4])
def test_searched_schedule_beats_even_spacing_of_the_same_count(ck, trained, calibrated, target):
    """Calibrated on label 3, sampled on labels 0 and 8: the schedule searched from the calibration against the one
    a calibration with equal errors everywhere gives (evenly spaced computed steps), each with the same count of
    computed steps; PSNR of the decoded digits against the uncached run."""
    cal, refs = calibrated
    even = dict(cal, errors={k: [[1.0] * len(row) for row in rows] for k, rows in cal["errors"].items()})
    psnr = ck.cache_core.quality.psnr
    scores, computed = {}, {}
    for name, calibration in (("searched", cal), ("even", even)):
        m = pack.node(ck, "ApplyLeMiCa", model=trained, calibration=calibration, target_compute=target)[0]
        scores[name] = min(psnr(dm.sample(m, "flux", *c, steps=STEPS, cfg=CFG), refs[c], 1.0) for c in CASES)
        computed[name] = last_stats(ck)["streams"]["cond"]["computed_steps"]
    assert len(computed["searched"]) == len(computed["even"]) == round(target * STEPS)
    gaps = [b - a for a, b in zip(computed["even"], computed["even"][1:])]
    assert max(gaps) - min(gaps) <= 1 < max(gaps)                       # the plain schedule: evenly spaced
    assert computed["searched"] != computed["even"]
    assert scores["searched"] > scores["even"] + 4.0, (scores, computed)   # measured: +6 to +18 dB


@pytest.mark.parametrize("target, margin", [(0.5, 2.0), (0.3, 4.0)])    # measured: +3.3 and +6.8 dB
def test_foca_on_the_searched_schedule_beats_reusing_on_it(ck, trained, calibrated, target, margin):
    """The same searched steps compute; the others forecast the residual with FoCa's predictor-corrector from the last
    two computed steps instead of reusing the last one: the forecast must buy quality on a trained model (the bench
    measured +5 to +15 dB at 50% on its 30-step runs, docs/methods.md §1.14)."""
    cal, refs = calibrated
    psnr = ck.cache_core.quality.psnr
    scores, computed = {}, {}
    for forecast in ("reuse", "foca"):
        m = pack.node(ck, "ApplyLeMiCa", model=trained, calibration=cal, target_compute=target, forecast=forecast)[0]
        scores[forecast] = min(psnr(dm.sample(m, "flux", *c, steps=STEPS, cfg=CFG), refs[c], 1.0) for c in CASES)
        computed[forecast] = last_stats(ck)["streams"]["cond"]["computed_steps"]
    assert computed["foca"] == computed["reuse"] and len(computed["foca"]) == round(target * STEPS)
    assert scores["foca"] > scores["reuse"] + margin, scores
