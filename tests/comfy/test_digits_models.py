"""The benchmark's trained models (scripts/harness/digits_models.py): data bundled in scikit-learn's wheel, latent
round trip, the mosaics and the drifting video of the 256-token models, training deterministic from its seed through
ComfyUI's apply_model, samples through ComfyUI."""
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


def test_mosaics_tile_digits_of_the_label_and_the_video_drifts():
    img, labels = dm.digits()
    r = dm.RECIPES["wan16"]
    lab = torch.tensor([3, 7])
    m = dm.mosaics(r, img, labels, lab, torch.Generator().manual_seed(5))
    assert m.shape == (2, 1, 128, 128)
    # every 32x32 tile is a digit of the image's own label, as it is in the data
    for i, label in enumerate(lab.tolist()):
        for ty in range(4):
            for tx in range(4):
                tile = m[i, 0, 32 * ty:32 * ty + 32, 32 * tx:32 * tx + 32]
                hits = [j for j in torch.nonzero(labels == label).flatten().tolist() if torch.equal(img[j, 0], tile)]
                assert hits, (i, ty, tx)
    v = dm.mosaics(dm.RECIPES["wan_video"], img, labels, lab, torch.Generator().manual_seed(5))
    assert v.shape == (2, 1, 4, 64, 64)
    for i in range(2):
        shift = next(s for s in range(-4, 5) if torch.equal(v[i, 0, 1], v[i, 0, 0].roll(s, dims=-1)))
        assert all(torch.equal(v[i, 0, f], v[i, 0, 0].roll(shift * f, dims=-1)) for f in range(4))
    z = dm.latent_of(dm.RECIPES["wan_video"], v)
    assert z.shape == (2, 16, 4, 16, 16) == (2, *dm.RECIPES["wan_video"].latent_shape)
    assert torch.allclose(dm.to_image(z), torch.cat(((v + 1) / 2).unbind(2), dim=-1), atol=1e-6)   # frames side by side
    assert [dm.RECIPES[k].image_tokens for k in ("wan", "wan16", "flux16", "wan_video")] == [16, 256, 256, 256]


def test_the_first_recipes_keep_the_names_of_their_cached_weights():
    """grid, frames and start were added later: at 1, 1 and "" they stay out of the key, so cached weights still
    load; a recipe that starts from another's weights changes its key when that one's recipe changes."""
    import hashlib
    import json
    for name in ("wan", "flux"):
        r = dm.RECIPES[name]
        old = {k: v for k, v in dataclasses.asdict(r).items() if k not in ("grid", "frames", "start")}
        assert r.key() == hashlib.sha1(json.dumps(old, sort_keys=True).encode()).hexdigest()[:10]
    assert len({r.key() for r in dm.RECIPES.values()}) == len(dm.RECIPES)
    wan16 = dm.RECIPES["wan16"].key()
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(dm.RECIPES, "wan", dataclasses.replace(dm.RECIPES["wan"], steps=10))
        assert dm.RECIPES["wan16"].key() != wan16


def test_a_larger_latent_starts_from_the_smaller_models_weights(comfy, monkeypatch):
    """wan16 / flux16 / wan_video go on from the trained 16-token model of their class (its weights fit any token
    count): one step at the recipe's rate moves them by about the warmup's first rate, far from a fresh init."""
    r = dataclasses.replace(dm.RECIPES["wan16"], steps=1, batch=2)
    start = dm.build(dataclasses.replace(dm.RECIPES["wan"], seed=7))
    asked = []
    monkeypatch.setattr(dm, "load", lambda family, log=print: asked.append(family) or start)
    trained = dm.train(r, log=lambda *_: None).model.diffusion_model.state_dict()
    fresh = dm.build(r).model.diffusion_model.state_dict()
    begun = start.model.diffusion_model.state_dict()
    assert asked == ["wan"]
    assert max(float((trained[k] - begun[k]).abs().max()) for k in trained) < 1e-3
    assert max(float((trained[k] - fresh[k]).abs().max()) for k in trained) > 0.1


@pytest.mark.parametrize("family", ["wan", "flux", "wan_video"])
def test_training_is_deterministic_and_learns(comfy, family):
    r = dataclasses.replace(dm.RECIPES[family], steps=6, batch=8, start="")
    a = dm.train(r, log=lambda *_: None).model.diffusion_model.state_dict()
    b = dm.train(r, log=lambda *_: None).model.diffusion_model.state_dict()
    untrained = dm.build(r).model.diffusion_model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert any(not torch.equal(a[k], untrained[k]) for k in a)


def test_samples_through_comfy_in_image_range(comfy):
    m = dm.build(dataclasses.replace(dm.RECIPES["flux"], blocks=3))
    out = dm.sample(m, "flux", 3, seed=1, steps=3)
    assert out.shape == (1, 1, 32, 32) and 0 <= float(out.min()) and float(out.max()) <= 1
    video = dm.sample(dm.build(dataclasses.replace(dm.RECIPES["wan_video"], blocks=2)), "wan_video", 3, seed=1, steps=2)
    assert video.shape == (1, 1, 64, 256)
