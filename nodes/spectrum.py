"""Apply Spectrum Cache: MODEL in, MODEL out (cache_core/policies/spectrum.py)."""
from __future__ import annotations

from ..cache_core.policies.spectrum import Spectrum
from . import common
from .examples import Case, Examples, Sweep, Template


_TEST = dict(gap_base=2.0, gap_growth=0.75, warmup_steps=2, final_steps=1, degree=1)   # the tests' fixed inputs

class ApplySpectrumCache(common.CacheNode):
    NODE_NAME = "Apply Spectrum Cache"
    DESCRIPTION = ("Computes the transformer on a schedule whose gaps widen as sampling goes on and forecasts the "
                   "steps between from every computed step: a Chebyshev fit of the stack's output over time, "
                   "blended with a Taylor step (Spectrum, CVPR 2026). Holds one output feature per computed step "
                   "and stream (about 14 of them in a 30-step run); history_on_cpu keeps them in system memory.")

    @classmethod
    def own_inputs(cls):
        return {
            "warmup_steps": ("INT", {"default": 5, "min": 0, "max": 1000,
                                     "tooltip": "Steps computed before forecasting starts (published: 5)."}),
            "final_steps": ("INT", {"default": 3, "min": 0, "max": 1000,
                                    "tooltip": "The last steps always compute (the ComfyUI ports: 3)."}),
            "gap_base": ("FLOAT", {"default": 2.0, "min": 1.0, "max": 20.0, "step": 0.25,
                                   "tooltip": "The first gap between computed steps after warmup; the k-th gap is "
                                              "floor(gap_base + gap_growth * k). 1 with growth 0 = every step "
                                              "computes (exact)."}),
            "gap_growth": ("FLOAT", {"default": 0.75, "min": 0.0, "max": 10.0, "step": 0.05,
                                     "tooltip": "How fast the gaps widen (published: 0.75). Higher = faster."}),
            "degree": ("INT", {"default": 4, "min": 1, "max": 8,
                               "tooltip": "Chebyshev degree M (published: 4); forecasting starts after M + 1 "
                                          "computed steps."}),
            "ridge": ("FLOAT", {"default": 0.1, "min": 0.0, "max": 10.0, "step": 0.01,
                                "tooltip": "Ridge penalty of the fit (published: 0.1)."}),
            "blend": ("FLOAT", {"default": 0.5, "min": 0.0, "max": 1.0, "step": 0.05,
                                "tooltip": "Weight of the Chebyshev forecast against a first-order Taylor step "
                                           "(published: 0.5)."}),
            "history_on_cpu": ("BOOLEAN", {"default": False,
                                           "tooltip": "Keep the computed features in system memory (slower on a "
                                                      "GPU, frees its memory)."}),
        }

    def method(self, model, v):
        args = dict(warmup_steps=v["warmup_steps"], final_steps=v["final_steps"], gap_base=v["gap_base"],
                    gap_growth=v["gap_growth"], degree=v["degree"], ridge=v["ridge"], blend=v["blend"],
                    history_on_cpu=v["history_on_cpu"])
        return (lambda: Spectrum(**args)), {}

    METHOD, RANK = "Spectrum", 10
    EXAMPLES = Examples(
        cases={"spectrum": Case(off=dict(_TEST, gap_base=1.0, gap_growth=0.0), on=dict(_TEST), runs_on_reuse=0)},
        speed=(dict(warmup_steps=2, final_steps=1), dict(gap_base=1.0, gap_growth=0.0)),
        sweeps={"Spectrum": Sweep("gap_growth", (0.0, 0.25, 0.5, 0.75, 1.5), lambda v, *_: dict(gap_growth=v))},
        templates={"*": Template(
            "Apply Spectrum Cache: computes the first 5 steps, then steps with widening gaps (2, 2, 3, 4, 5, ...) and "
            "the last 3, and forecasts the others from every computed step (Chebyshev ridge fit blended with a Taylor "
            "step); the published defaults.")})
