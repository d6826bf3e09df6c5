"""What ComfyUI changed after 0.3.75 that touches CacheKit, one test per change, run on every supported line:
each failed on ComfyUI 0.33.0 before CacheKit read the change from the call (see docs/comfyui-versions.md).

- HunyuanVideo's forward joins text and image text-first for the single blocks (and says where the image sits in
  transformer_options["img_slice"]); 0.3.75 joined them image-first. A reused span crossing the join rebuilt the
  hidden state in the wrong order.
- Reference latents "index_timestep_zero" (Flux 2 / Klein, Qwen-Image-Edit 2511, Z-Image omni): the reference
  tokens are modulated at timestep 0, the split handed to the blocks outside the replace args. TeaCache's and
  SeaCache's probe of block 0's modulated input crashed on the doubled modulation or measured a doubled batch.
"""
import pytest
import torch

from harness import tiny_models as tm
from harness.node_calls import STEPS, block_attrs, dbcache, fbc, last_stats, seacache, teacache

pytestmark = pytest.mark.every_runtime   # what can differ between ComfyUI versions: make test runs it on each


def _twice_sampler(outs: list):
    """A sampler that evaluates the same x at the same sigma twice: the second call sees an unchanged input."""
    import comfy.samplers

    def twice(model, x, sigmas, extra_args=None, callback=None, disable=None):
        s = sigmas[0] * x.new_ones([x.shape[0]])
        outs.append(model(x, s, **extra_args))
        outs.append(model(x, s, **extra_args))
        return outs[-1]
    return comfy.samplers.KSAMPLER(twice)


SPANS = {"fbc": lambda ck, m: fbc(ck, m, 0.05),
         # front block 0, back the last single block: the span runs from double block 1 across the join
         "dbcache": lambda ck, m: dbcache(ck, m, 0.05, fn=1, bn=1)}


@pytest.mark.parametrize("method", SPANS)
@pytest.mark.parametrize("family", ["hunyuan_video", "hunyuan_video15", "flux"])
def test_span_reused_across_the_join_rebuilds_the_computed_output(ck, family, method):
    """The second call reuses the span cached on the first, which ends in the single blocks: the cached residual
    must be taken against the hidden state joined in the order this ComfyUI joins it."""
    import comfy.sample
    m, lat, pos, neg = tm.FAMILIES[family]()
    outs = []
    noise = torch.randn(lat.shape, generator=torch.Generator().manual_seed(3))
    comfy.sample.sample_custom(SPANS[method](ck, m), noise, 3.0, _twice_sampler(outs), torch.tensor([0.8, 0.4, 0.0]),
                               pos, neg, lat, disable_pbar=True, seed=3)
    streams = last_stats(ck)["streams"]
    assert all(s["computed_calls"] == s["reused_calls"] == 1 for s in streams.values()), streams
    torch.testing.assert_close(outs[1], outs[0], rtol=1e-4, atol=1e-4)


TIMESTEP_ZERO = {
    # Klein: Flux 2 without the guidance input (Flux 2 dev's guidance embedding cannot take the doubled time batch
    # of a batched cfg call in ComfyUI itself)
    "flux2_klein": lambda **kw: tm.with_references(lambda: tm.flux2(guidance_embed=False),
                                                   reference_latents_method="index_timestep_zero", **kw),
    "qwen_image_edit_2511": lambda **kw: tm.with_references(tm.qwen_image,
                                                            reference_latents_method="index_timestep_zero", **kw),
    "z_image_omni": lambda **kw: tm.with_references(tm.z_image, **kw),
}
_SITE = {"flux2_klein": "flux2", "qwen_image_edit_2511": "qwen_image", "z_image_omni": "lumina2"}
PROBES = {"teacache": lambda ck, m, thr: teacache(ck, m, thr), "seacache": lambda ck, m, thr: seacache(ck, m, thr)}


@pytest.mark.parametrize("cfg", [1.0, 3.0])
@pytest.mark.parametrize("method", PROBES)
@pytest.mark.parametrize("case", TIMESTEP_ZERO)
def test_modulated_input_probe_with_references_at_timestep_zero(ck, case, method, cfg):
    """Off is the uncached sample; the probe is exactly what block 0 feeds its attention, call for call (its
    reference tokens modulated at timestep 0); a threshold that reuses runs to a finite sample."""
    import importlib
    pol = importlib.import_module(f"cachekit.cache_core.policies.{method}")
    policy_cls = pol.SeaCache if method == "seacache" else pol.TeaCache
    m, lat, pos, neg = TIMESTEP_ZERO[case]()
    base = tm.sample(m, lat, pos, neg, steps=STEPS, cfg=cfg)

    module, get = tm.MODULATED_SITE[_SITE[case]]
    block0 = tm.resolve(m.model.diffusion_model, block_attrs(ck, m)[0])[0]
    seen, probes = [], []
    hook = module(block0).register_forward_pre_hook(lambda mod, a, k: seen.append(get(a, k).clone()),
                                                    with_kwargs=True)
    original = policy_cls.measure

    def spy(self, state, probe, **at):
        probes.append(None if probe is None else probe.clone())
        return original(self, state, probe, **at)
    policy_cls.measure = spy
    try:
        off = tm.sample(PROBES[method](ck, m, 0.0), lat, pos, neg, steps=STEPS, cfg=cfg)
    finally:
        policy_cls.measure = original
        hook.remove()
    assert torch.equal(off, base)
    # one measure per stream and call; the streams of a batched call are measured on their own rows
    streams = 2 if cfg > 1 else 1
    assert len(probes) == STEPS * streams and len(seen) == STEPS
    assert all(p.shape[0] == 1 for p in probes)         # a stream's own row, not a doubled time batch
    if method == "teacache":
        measured = torch.cat(probes).reshape(STEPS, -1, *probes[0].shape[1:])
        for p, s in zip(measured, seen):
            torch.testing.assert_close(p, s, rtol=1e-5, atol=1e-6)

    out = tm.sample(PROBES[method](ck, m, 0.5), lat, pos, neg, steps=STEPS, cfg=cfg)
    stats = last_stats(ck)
    assert stats["streams"]["cond"]["reused_steps"] and torch.isfinite(out).all() and not torch.equal(out, base)


@pytest.mark.parametrize("family", ["wan", "qwen_image", "lumina2"])
def test_block_patches_between_blocks_make_span_methods_compute(ck, family):
    """patches["double_block"] (Wan Uni3C, Z-Image Fun and Qwen DiffSynth ControlNets) run after every block, outside
    it: Qwen-Image read them in 0.3.75 already, Wan and Lumina / Z-Image do on the current line. A reused span
    would replay the step it was computed on, so every call with them computes, and says why."""
    m, lat, pos, neg = tm.FAMILIES[family]()
    patched_model = m.clone()
    patched_model.set_model_patch(lambda a: {**a, "img": a["img"] * 1.01}, "double_block")
    base = tm.sample(patched_model, lat, pos, neg, steps=STEPS, cfg=3.0)
    out = tm.sample(fbc(ck, patched_model, 1.0), lat, pos, neg, steps=STEPS, cfg=3.0)
    stats = last_stats(ck)
    assert torch.equal(out, base)
    assert all(s["reused_calls"] == 0 for s in stats["streams"].values())
    assert any("block patches" in reason for reason in stats["forced"]), stats["forced"]
