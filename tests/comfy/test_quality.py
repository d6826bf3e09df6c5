"""Quality measures (cache_core/quality.py) against scikit-image's and the formula, and the Compare Cache
Quality node in-process (the server test runs it in a graph: test_server.py)."""
import math

import pytest
import torch

from harness import pack


@pytest.fixture(scope="module")
def quality():
    return pack.load_core().quality


def _pair(shape, noise, seed=0):
    g = torch.Generator().manual_seed(seed)
    ref = torch.rand(shape, generator=g)
    return (ref + noise * torch.randn(shape, generator=g)).clamp(0, 1), ref


@pytest.mark.parametrize("shape, noise", [((2, 32, 40, 3), 0.1), ((1, 11, 11, 1), 0.02), ((3, 64, 48, 3), 0.3)])
def test_ssim_equals_scikit_image(quality, shape, noise):
    from skimage.metrics import structural_similarity
    test, ref = _pair(shape, noise)
    want = sum(structural_similarity(ref[i].numpy(), test[i].numpy(), data_range=1.0, channel_axis=-1,
                                     gaussian_weights=True, sigma=1.5, use_sample_covariance=False)
               for i in range(shape[0])) / shape[0]
    assert quality.ssim(test, ref, 1.0) == pytest.approx(want, abs=1e-6)
    assert quality.ssim(ref, ref, 1.0) == pytest.approx(1.0)


def test_psnr_is_the_formula(quality):
    test, ref = _pair((1, 16, 16, 3), 0.05)
    mse = float(((test.double() - ref.double()) ** 2).mean())
    assert quality.psnr(test, ref, 1.0) == pytest.approx(10 * math.log10(1 / mse))
    assert quality.psnr(ref, ref, 1.0) == math.inf
    assert quality.psnr(test, ref, 2.0) == pytest.approx(quality.psnr(test, ref, 1.0) + 20 * math.log10(2))


def test_compare_node_on_images_and_latents(ck, quality):
    test, ref = _pair((1, 24, 24, 3), 0.05)
    node = ck.NODE_CLASS_MAPPINGS["CompareCacheQuality"]
    ui_and_result = node().compare(**{**node.defaults(), "cached_image": test, "uncached_image": ref})
    report, p, s = ui_and_result["result"]
    assert p == pytest.approx(quality.psnr(test, ref, 1.0)) and s == pytest.approx(quality.ssim(test, ref, 1.0))
    assert report.startswith(f"PSNR {p:.2f} dB, SSIM {s:.4f}") and ui_and_result["ui"]["text"] == [report]
    # latents (video: frames compared as images), over the uncached latent's range
    lat = torch.randn(1, 16, 3, 12, 12)
    out = pack.node(ck, "CompareCacheQuality", cached_latent={"samples": lat + 0.01},
                    uncached_latent={"samples": lat})
    assert out[1] == pytest.approx(quality.psnr(lat + 0.01, lat, float(lat.max() - lat.min())))
    assert pack.node(ck, "CompareCacheQuality", cached_latent={"samples": lat},
                     uncached_latent={"samples": lat})[1] == math.inf


@pytest.mark.parametrize("inputs, message", [
    ({}, "connected: nothing"),
    ({"cached_image": torch.zeros(1, 8, 8, 3)}, "connected: cached_image"),
    ({"cached_image": torch.zeros(1, 8, 8, 3), "uncached_latent": {"samples": torch.zeros(1, 4, 8, 8)}},
     "connected: cached_image, uncached_latent"),
    ({"cached_image": torch.zeros(1, 8, 8, 3), "uncached_image": torch.zeros(1, 16, 8, 3)},
     "must be the same size"),
])
def test_compare_node_refuses_what_it_cannot_compare(ck, inputs, message):
    with pytest.raises(ValueError, match=f"Compare Cache Quality: .*{message}"):
        pack.node(ck, "CompareCacheQuality", **inputs)
