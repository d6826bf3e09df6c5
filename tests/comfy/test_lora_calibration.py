"""A calibration made on a model without the LoRA now loaded (or with another) is said on the node: a LoRA shifts
what the blocks compute, and the model's fingerprint, which hashes its own weights, does not see it (ComfyUI keeps
a LoRA as weight patches on the MODEL). The LoRA is loaded by ComfyUI's own LoRA loading (comfy.sd.
load_lora_for_models, what Load LoRA calls) from a LoRA state dict in the standard key format."""
import pytest
import torch

from harness import pack
from harness import tiny_models as tm
from harness.node_calls import STEPS, last_stats

pytestmark = pytest.mark.every_runtime   # what can differ between ComfyUI versions: make test runs it on each


def lora(model, seed: int, strength: float = 1.0, rank: int = 4):
    """`model` with a seeded rank-`rank` LoRA on each block's self-attention q and k (Wan), loaded as Load LoRA does."""
    names = [f"blocks.{i}.self_attn.{name}" for i in range(len(model.model.diffusion_model.blocks)) for name in "qk"]
    return tm.lora_on(model, names, seed=seed, scale=0.1, rank=rank, strength=strength)


def calibrated(ck, model, lat, pos, neg):
    return pack.node(ck, "CalibrateMagCache", model=model, seed=0, steps=STEPS, cfg=3.0, sampler_name="euler",
                     scheduler="simple", positive=pos, negative=neg, latent_image={"samples": lat}, denoise=1.0)[0]


def notes_with(ck, model, calibration, lat, pos, neg) -> list[str]:
    applied = pack.node(ck, "ApplyMagCache", model=model, threshold=0.1, max_skips=2, retention_ratio=0.2,
                        ratios="auto", calibration=calibration)[0]
    tm.sample(applied, lat, pos, neg, steps=STEPS, cfg=3.0)
    return [n for n in last_stats(ck)["notes"] if "LoRA" in n]


def test_a_calibration_made_without_the_loaded_lora_is_said_on_the_node(ck):
    m, lat, pos, neg = tm.wan()
    with_lora = lora(m, seed=1)
    assert not torch.equal(tm.sample(with_lora, lat, pos, neg, steps=STEPS, cfg=3.0),
                           tm.sample(m, lat, pos, neg, steps=STEPS, cfg=3.0))       # the LoRA changes the output
    base_cal = calibrated(ck, m, lat, pos, neg)
    lora_cal = calibrated(ck, with_lora, lat, pos, neg)
    assert base_cal["model"]["weight_patches"] is None and lora_cal["model"]["weight_patches"]["weights"] == 8

    assert notes_with(ck, m, base_cal, lat, pos, neg) == []
    assert notes_with(ck, with_lora, lora_cal, lat, pos, neg) == []
    without = notes_with(ck, with_lora, base_cal, lat, pos, neg)
    assert len(without) == 1 and "without the LoRA (weight patches on 8 weights) now loaded" in without[0]
    assert "with a LoRA" in notes_with(ck, m, lora_cal, lat, pos, neg)[0]
    assert "other LoRAs or strengths" in notes_with(ck, lora(m, seed=1, strength=0.5), lora_cal, lat, pos, neg)[0]
    assert "other LoRAs or strengths" in notes_with(ck, lora(m, seed=2, rank=2), lora_cal, lat, pos, neg)[0]


def test_calibrations_saved_before_weight_patches_were_recorded_load_without_a_note(ck):
    """Files from before CacheKit recorded the LoRAs (no weight_patches key) are not second-guessed."""
    m, lat, pos, neg = tm.wan()
    old = calibrated(ck, m, lat, pos, neg)
    old["model"] = {k: v for k, v in old["model"].items() if k != "weight_patches"}
    assert notes_with(ck, lora(m, seed=1), old, lat, pos, neg) == []
