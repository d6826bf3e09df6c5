"""Apply FreqCa Cache: MODEL in, MODEL out (cache_core/policies/freqca.py, docs/methods.md §1.13)."""
from __future__ import annotations

from ..cache_core.frequency_bands import TRANSFORMS
from ..cache_core.policies.freqca import TARGETS, FreqCa
from . import common
from .examples import Case, Examples, Sweep, Template

_TEST = dict(warmup_steps=2, final_steps=1, max_order=2, transform="dct", cutoff=0.1, target="output")


class ApplyFreqCaCache(common.CacheNode):
    NODE_NAME = "Apply FreqCa Cache"
    DESCRIPTION = ("Computes the transformer every few steps and, on the steps between, splits the stack's output "
                   "into frequency bands over the image's token grid: the low band is reused as it was, the high "
                   "band forecast with a Hermite series from the computed steps (FreqCa). Holds max_order + 1 "
                   "float32 tensors of the stack's output size per stream (3 at the published order 2), besides "
                   "the cached residual every span method keeps.")

    @classmethod
    def own_inputs(cls):
        return {
            "cache_interval": ("INT", {
                "default": 6, "min": 1, "max": 50,
                "tooltip": "One computed step in every N after warmup; the others are forecast. 1 = off. "
                           "Published: 6 and 9 on 50-step Flux.1-dev and Qwen-Image runs (2 on 4-step schnell); "
                           "3-4 suit 20-30 steps."}),
            "warmup_steps": ("INT", {"default": 3, "min": 0, "max": 1000,
                                     "tooltip": "Steps computed before forecasting starts (published: 3)."}),
            "final_steps": ("INT", {"default": 2, "min": 0, "max": 1000,
                                    "tooltip": "The last steps always compute: they are where the output changes "
                                               "most. 0 = the authors' schedule."}),
            "max_order": ("INT", {"default": 2, "min": 0, "max": 4,
                                  "tooltip": "Hermite order of the high band's forecast (published: 2). 0 = both "
                                             "bands reused as they were."}),
            "transform": (list(TRANSFORMS), {
                "default": "dct",
                "tooltip": "dct: 2-D DCT over the image's token grid (3-D with a video's frames), the authors' Flux "
                           "setting. fft: FFT along the tokens as one sequence, their Qwen-Image setting. Tokens "
                           "that are no grid (text joined to the image, audio) are split along the sequence."}),
            "cutoff": ("FLOAT", {"default": 0.1, "min": 0.0, "max": 1.0, "step": 0.01,
                                 "tooltip": "The low band: frequencies up to this fraction of the highest "
                                            "(published: 0.1). 1 = everything reused as it was."}),
            "target": (list(TARGETS), {
                "default": "output",
                "tooltip": "output: split and forecast the stack's output features (the authors' cumulative "
                           "residual feature). residual: the stack's residual, added to the step's own input."}),
        }

    def method(self, model, v):
        args = dict(interval=v["cache_interval"], warmup_steps=v["warmup_steps"], final_steps=v["final_steps"],
                    max_order=v["max_order"], transform=v["transform"], cutoff=v["cutoff"], target=v["target"])
        return (lambda: FreqCa(**args)), {}

    METHOD, RANK = "FreqCa", 12
    EXAMPLES = Examples(
        cases={"freqca": Case(off=dict(_TEST, cache_interval=1), on=dict(_TEST, cache_interval=3), runs_on_reuse=0)},
        speed=(dict(cache_interval=3, warmup_steps=2, final_steps=0), dict(cache_interval=1)),
        sweeps={"FreqCa": Sweep("interval", (2, 3, 4, 5, 6), lambda v, *_: dict(cache_interval=v))},
        note="Apply FreqCa Cache: computes every N-th step after the warmup; between, reuses the low frequencies of "
             "the stack's output and forecasts the high ones with a second-order Hermite series.",
        templates={
            "flux_dev": Template("N 6 with the DCT is the authors' Flux setting (9 is their fastest).",
                                 dict(cache_interval=6, transform="dct")),
            "qwen_image": Template("N 6 with the FFT is the authors' Qwen-Image setting.",
                                   dict(cache_interval=6, transform="fft")),
            "*": Template("N 4 suits a 20-30 step run (the authors' 6 and 9 are for 50 steps).",
                          dict(cache_interval=4))})
