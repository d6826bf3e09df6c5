"""Classes only the current ComfyUI line ships, where the family x method matrix does not reach: the ones refused
(each with the message the node gives) and TripoSplat's nested latent. Not every_runtime: 0.3.75 has none of them."""
import pytest
import torch

from harness import tiny_models as tm
from harness.node_calls import STEPS, fbc, last_stats


# ComfyUI 0.33's image models it loads as a MODEL that no sampler runs: their real classes, instances left unbuilt
# (their backbones are fixed at full size; detection reads only the class)
NOT_SAMPLED = [
    ("comfy.ldm.rt_detr.rtdetr_v4", "RTv4", "is an object detector"),
    ("comfy.ldm.depth_anything_3.model", "DepthAnything3Net", "is a depth and camera-pose estimator"),
    ("comfy.ldm.sam3.detector", "SAM3Model", "is an object segmentation and tracking model"),
]


@pytest.mark.parametrize("module, name, says", NOT_SAMPLED)
def test_models_no_sampler_runs_are_refused_as_not_diffusion_models(ck, module, name, says):
    import importlib
    from types import SimpleNamespace
    cls = getattr(importlib.import_module(module), name)
    model = SimpleNamespace(model=SimpleNamespace(diffusion_model=object.__new__(cls)))
    with pytest.raises(ValueError) as err:
        ck.nodes.host.families.detect(model, "Apply First Block Cache")
    msg = str(err.value)
    assert msg.startswith(f"Apply First Block Cache: model class '{name}' (") and says in msg
    assert "not a diffusion model" in msg and "never through a sampler" in msg


# audio and video packed into one sequence: refused until its audio can be decided apart (LTX-2's can)
PACKED_AV = [("comfy.ldm.minimax.model", "MiniMaxH3Model")]


@pytest.mark.parametrize("module, name", PACKED_AV)
def test_a_packed_audio_video_model_is_refused_for_its_audio(ck, module, name):
    import importlib
    from types import SimpleNamespace
    cls = getattr(importlib.import_module(module), name)
    with pytest.raises(ValueError) as err:
        ck.nodes.host.families.detect(SimpleNamespace(model=SimpleNamespace(diffusion_model=object.__new__(cls))),
                                      "Apply TeaCache")
    msg = str(err.value)
    assert msg.startswith(f"Apply TeaCache: model class '{name}' (") and "audio tokens apart from its video" in msg


def test_a_model_a_block_hook_changes_is_refused(ck):
    """HiDream-O1 runs another path (no prefix cache) as soon as any block is replaced, off or not: refused,
    and indeed a pass-through block replacement alone leaves its prefix cache unfilled. (Whether that changes the
    output bit for bit depends on the CPU's kernels and thread count: with one thread both paths sum alike.)"""
    m, lat, pos, neg = tm.hidream_o1()
    with pytest.raises(ValueError) as err:
        fbc(ck, m, 0.0)
    assert "key/value cache of its text prefix" in str(err.value) and "exact when off" in str(err.value)
    hooked = m.clone()
    for i in range(len(m.model.diffusion_model.language_model.layers)):
        hooked.set_model_patch_replace(lambda args, extra: extra["original_block"](args), "dit", "double_block", i)
    net = m.model.diffusion_model
    for model, caches in ((m, True), (hooked, False)):
        net.clear_kv_cache()
        tm.sample(model, lat, pos, neg, steps=2)
        assert bool(net._kv_cache_entries) == caches


def test_trellis2_is_refused_for_its_per_stage_sparse_transformers(ck):
    with pytest.raises(ValueError) as err:
        fbc(ck, tm.trellis2(), 0.1)
    msg = str(err.value)
    assert msg.startswith("Apply First Block Cache: model class 'Trellis2' (TRELLIS.2) runs a different transformer "
                          "for each of its sampling stages")
    assert "sparse tensor" in msg and "LazyCache" in msg


def test_triposplat_nested_latent_runs_as_the_packed_one(ck):
    """The TripoSplat builder hands the sampler the packed latent and its shapes in the conds; ComfyUI's own
    TripoSplatConditioning makes a NestedTensor (shape latent, camera) and no shapes: the same run, cached too."""
    import comfy.nested_tensor
    import comfy.sample
    import comfy.utils
    m, lat, pos, neg = tm.triposplat()
    bare = [[c[0], {k: v for k, v in c[1].items() if k != "latent_shapes"}] for c in (pos[0], neg[0])]
    nested = comfy.nested_tensor.NestedTensor((torch.zeros(1, 64, 16), torch.zeros(1, 1, 5)))
    noise = comfy.sample.prepare_noise(nested, 0)
    for model in (m, fbc(ck, m, 1.0)):
        got = comfy.sample.sample(model, noise, STEPS, 3.0, "euler", "simple", [bare[0]], [bare[1]], nested,
                                  seed=0, disable_pbar=True)
        packed = comfy.sample.sample(model, comfy.utils.pack_latents(noise.unbind())[0], STEPS, 3.0, "euler",
                                     "simple", pos, neg, lat, seed=0, disable_pbar=True)
        assert torch.equal(comfy.utils.pack_latents(got.unbind())[0], packed)
    assert last_stats(ck)["streams"]["cond"]["reused_steps"]
