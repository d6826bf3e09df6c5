"""Compare Cache Quality: how far a cached output is from the uncached one, inside the graph."""
from __future__ import annotations

import logging

from ..cache_core import quality
from . import common

_log = logging.getLogger("CacheKit")


class CompareCacheQuality(common.CacheKitNode):
    DESCRIPTION = ("Compares a cached output with the uncached one from the same seed: PSNR (dB), SSIM and the "
                   "largest difference, shown on the node and in the log. Connect two IMAGEs (decoded) or two "
                   "LATENTs; images are compared in [0, 1], latents over the uncached latent's range.")
    NODE_NAME = "Compare Cache Quality"
    RETURN_TYPES = ("STRING", "FLOAT", "FLOAT")
    RETURN_NAMES = ("report", "psnr", "ssim")
    OUTPUT_NODE = True
    FUNCTION = "compare"

    @classmethod
    def INPUT_TYPES(cls):
        return {"optional": {
            "cached_image": ("IMAGE", {"tooltip": "The decoded output of the run with the cache node."}),
            "uncached_image": ("IMAGE", {"tooltip": "The decoded output of the same run without it."}),
            "cached_latent": ("LATENT", {"tooltip": "Or the cached run's latent."}),
            "uncached_latent": ("LATENT", {"tooltip": "And the uncached run's latent."}),
        }, "hidden": {"unique_id": "UNIQUE_ID"}}

    def compare(self, cached_image=None, uncached_image=None, cached_latent=None, uncached_latent=None,
                unique_id=None):
        pairs = {"image": (cached_image, uncached_image), "latent": (cached_latent, uncached_latent)}
        complete = [kind for kind, (a, b) in pairs.items() if a is not None and b is not None]
        connected = [f"{side}_{kind}" for kind, pair in pairs.items()
                     for side, x in zip(("cached", "uncached"), pair) if x is not None]
        if len(complete) != 1 or len(connected) != 2:
            self.fail("connect either cached_image and uncached_image, or cached_latent and uncached_latent "
                      f"(connected: {', '.join(connected) or 'nothing'})")
        kind = complete[0]
        a, b = pairs[kind]
        if kind == "latent":
            a, b = a["samples"], b["samples"]
            if a.ndim == 5:                          # video latents: frames become batch items
                a, b = (t.movedim(2, 1).flatten(0, 1) for t in (a, b))
        try:
            r = quality.compare(a, b, data_range=1.0 if kind == "image" else None, channels_last=kind == "image")
        except ValueError as e:
            self.fail(f"cached and uncached {kind}s must be the same size: {e}")
        report = (f"PSNR {r['psnr']:.2f} dB, SSIM {r['ssim']:.4f}, max |diff| {r['max_abs_diff']:.4g} "
                  f"({kind}s, range {r['data_range']:.3g})")
        _log.info("%s: %s", self.NODE_NAME, report)
        _show(report, unique_id)
        return {"ui": {"text": [report]}, "result": (report, r["psnr"], r["ssim"])}


def _show(text: str, node_id) -> None:
    """ComfyUI's own progress-text message to the node: shown by the frontend without any extension."""
    try:
        from server import PromptServer
        server = PromptServer.instance
    except (ImportError, AttributeError):
        return
    if node_id is not None and server is not None:
        server.send_progress_text(text, node_id)
