"""Audio and video in one transformer (LTX-2): the audio tokens are decided on their own change, not served the
video's decision (what damaged MiniMax H3's audio under a single decision, ComfyUI issue #15326)."""
import dataclasses

import pytest
import torch

from harness import tiny_models as tm
from harness.node_calls import METHODS, STEPS, fbc, last_stats, teacache

def _twice(ck, patched, lat, pos, neg, change):
    """A first step, then two model calls at the second step's sigma (past the methods' first computed steps): the
    sampler's x, then x with `change` applied to its (video, audio) streams. Returns those two outputs as (video,
    audio)."""
    import comfy.sample
    import comfy.samplers
    import comfy.utils
    shapes = [t.shape for t in lat.unbind()]
    outs = []

    def sampler(model, x, sigmas, extra_args=None, callback=None, disable=None):
        model(x, sigmas[0] * x.new_ones([x.shape[0]]), **extra_args)
        s = sigmas[1] * x.new_ones([x.shape[0]])
        outs.append(model(x, s, **extra_args))
        video, audio = change(*comfy.utils.unpack_latents(x, shapes))
        outs.append(model(comfy.utils.pack_latents([video, audio])[0], s, **extra_args))
        return outs[-1]

    comfy.sample.sample_custom(patched, comfy.sample.prepare_noise(lat, 3), 1.0, comfy.samplers.KSAMPLER(sampler),
                               torch.linspace(0.9, 0.0, 7), pos, neg, lat, disable_pbar=True, seed=3)
    return [comfy.utils.unpack_latents(o, shapes) for o in outs]


def _new_audio(video, audio):
    return video, torch.randn(audio.shape, generator=torch.Generator().manual_seed(9))


def _video_only(ck, monkeypatch):
    """The LTX-2 row as one decision for both modalities would have it (the audio not measured)."""
    fam = ck.nodes.host.families
    monkeypatch.setattr(fam, "FAMILIES", tuple(dataclasses.replace(f, decided=()) if f.name == "LTX-2" else f
                                               for f in fam.FAMILIES))


@pytest.mark.parametrize("decided", ["apart", "video only"])
def test_new_audio_under_the_same_video_is_computed(ck, monkeypatch, decided):
    """The last call keeps the video and brings new audio: block 0's video residual barely changes, its audio's
    does. Decided apart, that call computes and its audio and video are exactly the uncached model's; decided on
    the video alone (one decision for both, as EasyCache's), it reuses the span's residual of the earlier audio
    on the new audio."""
    m, lat, pos, neg = tm.ltx2()
    if decided == "video only":
        _video_only(ck, monkeypatch)
    (_, _), (video, audio) = _twice(ck, fbc(ck, m, 0.3), lat, pos, neg, _new_audio)
    (_, _), (ref_video, ref_audio) = _twice(ck, m, lat, pos, neg, _new_audio)
    if decided == "apart":
        assert torch.equal(audio, ref_audio) and torch.equal(video, ref_video)
    else:
        assert last_stats(ck)["streams"]["cond"]["reused_calls"] >= 1
        assert float((audio - ref_audio).abs().mean() / ref_audio.abs().mean()) > 0.01


def test_teacache_measures_each_modality_as_its_self_attention_gets_it(ck):
    """TeaCache's probe is one per modality: block 0's modulated video as attn1 gets it, its modulated audio as
    audio_attn1 gets it; and each keeps its own accumulator (the audio's state is not the video's)."""
    import importlib
    pol = importlib.import_module("cachekit.cache_core.policies.teacache").TeaCache
    m, lat, pos, neg = tm.ltx2()
    patched = teacache(ck, m, 0.0)
    block0 = patched.model.diffusion_model.transformer_blocks[0]
    seen = {"img": [], "audio": []}
    hooks = [getattr(block0, name).register_forward_pre_hook(lambda mod, a, key=key: seen[key].append(a[0].clone()))
             for key, name in (("img", "attn1"), ("audio", "audio_attn1"))]
    probes, states = [], []
    orig = pol.measure

    def spy(self, state, probe, **at):
        probes.append(probe.clone())
        states.append(state)
        return orig(self, state, probe, **at)
    pol.measure = spy
    try:
        tm.sample(patched, lat, pos, neg, steps=4, cfg=1.0)
    finally:
        pol.measure = orig
        for h in hooks:
            h.remove()
    assert len(probes) == 8 and len(seen["img"]) == len(seen["audio"]) == 4
    for i in range(4):
        torch.testing.assert_close(probes[2 * i], seen["img"][i], rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(probes[2 * i + 1], seen["audio"][i], rtol=1e-5, atol=1e-6)
        assert states[2 * i] is states[0] and states[2 * i + 1] is states[1] and states[0] is not states[1]


def test_audio_follows_the_uncached_run_under_every_method(ck):
    """Every method's caching setting on LTX-2: the audio is cached as the video is (no modality passed through
    unchanged, none left without its residual), so its output stays near the uncached one, no further off than the
    video (random weights: a check of the mechanism, not of quality)."""
    m, lat, pos, neg = tm.ltx2()
    base_video, base_audio = tm.unpack(tm.sample(m, lat, pos, neg, steps=STEPS, cfg=3.0), lat)
    for method, (_, on, _) in METHODS.items():
        video, audio = tm.unpack(tm.sample(on(ck, m), lat, pos, neg, steps=STEPS, cfg=3.0), lat)
        assert any(s["reused_calls"] for s in last_stats(ck)["streams"].values()), method
        v_err = float((video - base_video).abs().mean() / base_video.abs().mean())
        a_err = float((audio - base_audio).abs().mean() / base_audio.abs().mean())
        assert torch.isfinite(audio).all() and a_err <= max(v_err, 1e-3), (method, a_err, v_err)
