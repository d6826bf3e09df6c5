"""The benchmark's trained models (scripts/harness/digits_models.py): data bundled in scikit-learn's wheel, latent
round trip, training deterministic from its seed through ComfyUI's apply_model, samples through ComfyUI."""
import dataclasses
from pathlib import Path

import pytest
import torch

from harness import digits_models as dm


def test_digits_come_from_the_installed_wheel():
    import sklearn
    data_file = Path(sklearn.__file__).parent / "datasets" / "data" / "digits.csv.gz"
    assert data_file.is_file()
    img, labels = dm.digits()
    assert img.shape == (1797, 1, 32, 32) and img.min() >= -1 and img.max() <= 1
    assert sorted(set(labels.tolist())) == list(range(10))


def test_latent_round_trip():
    img, _ = dm.digits()
    z = dm.to_latent(img[:4])
    assert z.shape == (4, 16, 8, 8)
    assert torch.allclose(dm.to_image(z), (img[:4] + 1) / 2, atol=1e-6)
    assert torch.equal(dm.to_image(z[:, :, None]), dm.to_image(z))     # Wan's frame axis


@pytest.mark.parametrize("family", ["wan", "flux"])
def test_training_is_deterministic_and_learns(comfy, family):
    r = dataclasses.replace(dm.RECIPES[family], steps=6, batch=8)
    a = dm.train(r, log=lambda *_: None).model.diffusion_model.state_dict()
    b = dm.train(r, log=lambda *_: None).model.diffusion_model.state_dict()
    untrained = dm.build(r).model.diffusion_model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert any(not torch.equal(a[k], untrained[k]) for k in a)


def test_samples_through_comfy_in_image_range(comfy):
    m = dm.build(dataclasses.replace(dm.RECIPES["flux"], blocks=3))
    out = dm.sample(m, "flux", 3, seed=1, steps=3)
    assert out.shape == (1, 1, 32, 32) and 0 <= float(out.min()) and float(out.max()) <= 1
