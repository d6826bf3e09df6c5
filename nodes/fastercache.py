"""Apply FasterCache: MODEL in, MODEL out (docs/methods.md §1.8)."""
from __future__ import annotations

from ..cache_core.policies.fastercache import FasterCache
from . import common
from .examples import Case, Examples, Sweep, Template


_TEST = dict(uncond_max_sigma=1.0, attention_max_sigma=1.0, attention_weight=0.5, alpha_low=1.1,   # the tests'
             alpha_high=1.1)

class ApplyFasterCache(common.CacheNode):
    NODE_NAME = "Apply FasterCache"
    DESCRIPTION = ("CFG cache: on most steps the unconditional branch is not run but estimated from the "
                   "conditional one with the low/high-frequency difference kept from the last full step; on "
                   "those steps self attention is also extrapolated every other step. Needs cfg > 1.")
    WINDOW = None   # its own sigma ranges instead

    @classmethod
    def own_inputs(cls):
        return {
            "uncond_interval": ("INT", {"default": 5, "min": 1, "max": 10,
                                        "tooltip": "The uncond branch runs one step in N (1 = always). "
                                                   "Published: 5. At most 10: the estimate drifts (and "
                                                   "alpha compounds) over the steps between."}),
            "uncond_max_sigma": ("FLOAT", {"default": 0.641, "min": 0.0, "max": 1.0, "step": 0.001,
                                           "tooltip": "Uncond skipping only below this sigma (flow models: "
                                                      "timestep/1000; published range (-1, 641))."}),
            "attention_interval": ("INT", {"default": 2, "min": 1, "max": 10,
                                           "tooltip": "On cond-only steps self attention computes one step "
                                                      "in N and is extrapolated between. Published: 2."}),
            "attention_weight": ("FLOAT", {"default": 0.5, "min": 0.0, "max": 1.0, "step": 0.05,
                                           "tooltip": "w in o_t + w (o_t - o_t-2). diffusers: 0.5; the "
                                                      "paper ramps it 0 -> 1 (its maximum)."}),
            "attention_max_sigma": ("FLOAT", {"default": 0.681, "min": 0.0, "max": 1.0, "step": 0.001,
                                              "tooltip": "Attention extrapolation only below this sigma "
                                                         "(published range (-1, 681))."}),
            "alpha_low": ("FLOAT", {"default": 1.1, "min": 0.0, "max": 1.5, "step": 0.01,
                                    "tooltip": "Scale of the low-frequency difference per estimated step "
                                               "while 0.099 < sigma < 0.901 (published 1.1). It compounds "
                                               "over the estimated steps in a row, hence at most 1.5."}),
            "alpha_high": ("FLOAT", {"default": 1.1, "min": 0.0, "max": 1.5, "step": 0.01,
                                     "tooltip": "Scale of the high-frequency difference per estimated step "
                                                "while sigma < 0.301 (published 1.1)."}),
        }

    def method(self, model, v):
        args = {k: v[k] for k in ("uncond_interval", "uncond_max_sigma", "attention_interval", "attention_weight",
                                  "attention_max_sigma", "alpha_low", "alpha_high")}
        return (lambda: FasterCache(**args)), {}

    METHOD, RANK = "FasterCache", 8
    EXAMPLES = Examples(
        cases={"fastercache": Case(off=dict(uncond_interval=1, attention_interval=1, **_TEST),
                                   on=dict(uncond_interval=5, attention_interval=2, **_TEST), runs_on_reuse=None)},
        speed=(dict(attention_interval=3, uncond_interval=3), dict(attention_interval=1, uncond_interval=1)),
        # its saving is the CFG cache (attention extrapolates only on the steps whose uncond it skips)
        sweeps={"FasterCache": Sweep("uncond interval", (2, 3, 4, 6, 10), lambda v, *_: dict(
            uncond_interval=v, attention_interval=2), reference="FasterCache (diffusers)")},
        note="Apply FasterCache: on most steps the uncond branch is not run but estimated from the cond one.",
        templates={
            "flux_dev": Template("It needs real CFG: this Flux.1-dev example uses cfg 2.0 (Flux-dev usually runs at "
                                 "cfg 1, where there is no uncond to skip).", sampler={"cfg": 2.0}),
            "*": Template("Wan runs with cfg 6: about half of each step is the uncond branch.")})
