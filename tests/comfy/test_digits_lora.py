"""The digits LoRA (scripts/harness/digits_lora.py) as ComfyUI loads it: the file in the generic key format
LoraLoaderModelOnly reads, every block Linear patched, the merged model computing what training computed, and a
CacheKit method exact at off and reusing when on with the LoRA loaded before the Apply node and after it.

Fast path: a LoRA trained for a few steps on a digits-shaped Wan / Flux model with seeded random weights
(tiny_models.fill_weights), not the trained benchmark models (those train for minutes on a fresh checkout).
Unmarked: the current line's suite runs it (it passes on 0.3.75 as well; the oldest line runs every_runtime only)."""
import dataclasses

import pytest
import torch

from harness import digits_lora as dl
from harness import digits_models as dm
from harness import tiny_models as tm
from harness.node_calls import fbc, last_stats

STEPS = 10


@pytest.fixture(scope="module", params=["wan", "flux"])
def made(comfy, request, tmp_path_factory):
    """(family, base ModelPatcher, the trained adapters, the LoRA file)."""
    family = request.param
    base = dm.build(dm.RECIPES[family])
    tm.fill_weights(base.model.diffusion_model, 3)
    recipe = dataclasses.replace(dl.RECIPES[family], steps=20, batch=8, lr=0.05)
    adapters = dl.train(recipe, base, log=lambda _: None)
    path = dl.save(adapters, tmp_path_factory.mktemp("loras") / f"digits_{family}_test_lora.safetensors", recipe)
    return family, base, adapters, path


def sample(model, family, label=2):
    return dm.sample(model, family, label, 0, steps=STEPS, cfg=4.0)


def test_the_file_is_comfyui_lora_format_and_patches_every_block_linear(made):
    import safetensors.torch
    family, base, _, path = made
    sd = safetensors.torch.load_file(str(path))
    layers = dl.targets(base.model.diffusion_model)
    assert len({".".join(n.split(".")[:2]) for n in layers}) == dm.RECIPES[family].blocks   # in every block
    assert sorted(sd) == sorted(f"diffusion_model.{n}.{part}" for n in layers
                                for part in ("lora_up.weight", "lora_down.weight", "alpha"))
    lora = dl.load_lora(base, path)
    # the loader matched every key to a weight of the model (an unmatched one is only logged)
    assert set(lora.patches) == {f"diffusion_model.{n}.weight" for n in layers}
    assert not base.patches               # a clone carries them; the base patcher is untouched


def test_the_loaded_lora_computes_what_training_ran_and_changes_the_output(made):
    family, base, adapters, path = made
    before = sample(base, family)
    lora_out = sample(dl.load_lora(base, path), family)
    adapters.attach()                     # training's hooks on the base weights: out + alpha / rank * up(down(x))
    try:
        hooked = sample(base, family)
    finally:
        adapters.detach()
    assert torch.allclose(lora_out, hooked, atol=1e-4), (lora_out - hooked).abs().max()
    assert (lora_out - before).abs().max() > 0.05
    assert torch.equal(sample(base, family), before)      # ComfyUI took the LoRA's patches off the shared weights


@pytest.mark.parametrize("order", ["lora_then_cache", "cache_then_lora"])
def test_cachekit_with_the_lora_before_or_after_it(ck, made, order):
    family, base, _, path = made
    lora = dl.load_lora(base, path)
    ref, ref_base = sample(lora, family), sample(base, family)

    def cached(threshold):
        if order == "lora_then_cache":
            return fbc(ck, lora, threshold)
        return dl.load_lora(fbc(ck, base, threshold), path)
    assert torch.equal(sample(cached(0.0), family), ref)
    s = last_stats(ck)
    assert s["block_evals"] == s["block_evals_full"]
    out = sample(cached(0.5), family)
    s = last_stats(ck)
    assert s["block_evals"] < s["block_evals_full"]
    # a reused step replays the LoRA model's own residual: nearer the LoRA's uncached output than the base's
    assert (out - ref).abs().mean() < 0.5 * (out - ref_base).abs().mean()
