"""Apply FasterCache: MODEL in, MODEL out (methods.md §1.8)."""
from __future__ import annotations

from ..cache_core import FasterCache
from . import common, validation
from .hooks import install

NODE_NAME = "Apply FasterCache"


class ApplyFasterCache(common.CacheNode):
    DESCRIPTION = ("CFG cache: on most steps the unconditional branch is not run but estimated from the "
                   "conditional one with the low/high-frequency difference kept from the last full step; on "
                   "those steps self attention is also extrapolated every other step. Needs cfg > 1.")
    WINDOW = None   # its own sigma ranges instead

    @classmethod
    def own_inputs(cls):
        return {
            "uncond_interval": ("INT", {"default": 5, "min": 1, "max": 50,
                                        "tooltip": "The uncond branch runs one step in N (1 = always). "
                                                   "Published: 5."}),
            "uncond_max_sigma": ("FLOAT", {"default": 0.641, "min": 0.0, "max": 1.0, "step": 0.001,
                                           "tooltip": "Uncond skipping only below this sigma (flow models: "
                                                      "timestep/1000; published range (-1, 641))."}),
            "attention_interval": ("INT", {"default": 2, "min": 1, "max": 20,
                                           "tooltip": "On cond-only steps self attention computes one step "
                                                      "in N and is extrapolated between. Published: 2."}),
            "attention_weight": ("FLOAT", {"default": 0.5, "min": 0.0, "max": 2.0, "step": 0.05,
                                           "tooltip": "w in o_t + w (o_t - o_t-2). diffusers: 0.5; the "
                                                      "paper ramps it 0 -> 1."}),
            "attention_max_sigma": ("FLOAT", {"default": 0.681, "min": 0.0, "max": 1.0, "step": 0.001,
                                              "tooltip": "Attention extrapolation only below this sigma "
                                                         "(published range (-1, 681))."}),
            "alpha_low": ("FLOAT", {"default": 1.1, "min": 0.0, "max": 3.0, "step": 0.01,
                                    "tooltip": "Scale of the low-frequency difference per estimated step "
                                               "while 0.099 < sigma < 0.901 (published 1.1)."}),
            "alpha_high": ("FLOAT", {"default": 1.1, "min": 0.0, "max": 3.0, "step": 0.01,
                                     "tooltip": "Scale of the high-frequency difference per estimated step "
                                                "while sigma < 0.301 (published 1.1)."}),
        }

    def apply(self, model, uncond_interval, uncond_max_sigma, attention_interval, attention_weight,
              attention_max_sigma, alpha_low, alpha_high, unique_id=None):
        n = NODE_NAME
        args = dict(
            uncond_interval=validation.number(n, "uncond_interval", uncond_interval, 1, integer=True),
            uncond_max_sigma=validation.number(n, "uncond_max_sigma", uncond_max_sigma, 0.0),
            attention_interval=validation.number(n, "attention_interval", attention_interval, 1, integer=True),
            attention_weight=validation.number(n, "attention_weight", attention_weight, 0.0),
            attention_max_sigma=validation.number(n, "attention_max_sigma", attention_max_sigma, 0.0),
            alpha_low=validation.number(n, "alpha_low", alpha_low, 0.0),
            alpha_high=validation.number(n, "alpha_high", alpha_high, 0.0),
        )
        fields = common.window_fields(n, 0.0, 1.0)
        return (install(model, fields, lambda: FasterCache(**args), n, unique_id),)
