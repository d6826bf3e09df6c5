"""Apply TaylorSeer Cache: MODEL in, MODEL out (docs/methods.md §1.6)."""
from __future__ import annotations

import torch

from ..cache_core.policies.taylorseer import FORECASTERS, TARGETS, TaylorSeer
from . import common
from .examples import Case, Examples, Sweep, Template

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


_TEST = dict(warmup_steps=2, max_order=1, target="residual", factors_dtype="float32")   # the tests' fixed inputs

class ApplyTaylorSeerCache(common.CacheNode):
    NODE_NAME = "Apply TaylorSeer Cache"
    DESCRIPTION = ("Computes the transformer every few steps and forecasts the steps between with a Taylor "
                   "series fitted to the computed steps (a static schedule, no probe); `forecaster` swaps in "
                   "HiCache's Hermite weights or FoCa's Heun step.")

    # optional: workflows saved before it existed still load (and get the default)
    OPTIONAL = {"final_steps": ("INT", {
        "default": 2, "min": 0, "max": 1000,
        "tooltip": "The last steps always compute: they are where the output changes most, and forecasting them "
                   "costs the most quality. 0 = diffusers' schedule."}),
        "forecaster": (list(FORECASTERS), {
            "default": "taylor",
            "tooltip": "taylor: TaylorSeer's Taylor series; holds max_order+1 tensors of the target's size per "
                       "stream. hermite: HiCache (arXiv 2508.16984), the same differences weighted by scaled "
                       "Hermite polynomials (scale 0.5); the same memory. foca: FoCa (arXiv 2508.16211), a Heun "
                       "step from the last computed step, recursive over the forecast ones; ignores max_order, "
                       "holds up to 4 tensors of the target's size per stream."})}

    @classmethod
    def own_inputs(cls):
        return {
            "cache_interval": ("INT", {
                "default": 5, "min": 1, "max": 50,
                "tooltip": "One computed step in every N after warmup; the others are forecast. 1 = off. "
                           "Published: diffusers 5; TaylorSeer Flux 6, HunyuanVideo/Wan 5 (Wan 2-3 for "
                           "conservative)."}),
            "warmup_steps": ("INT", {
                "default": 3, "min": 0, "max": 1000,
                "tooltip": "Steps computed before forecasting starts (diffusers 3; TaylorSeer Flux 3, Wan 1)."}),
            "max_order": ("INT", {"default": 1, "min": 0, "max": 4,
                                  "tooltip": "Taylor order: 0 = plain reuse, 1 = linear (published default), "
                                             "2 = HiDream."}),
            "target": (list(TARGETS), {
                "default": "residual",
                "tooltip": "residual: forecast the whole-stack residual (light). output: forecast the stack's "
                           "output features (as diffusers' TaylorSeer on every block)."}),
            "factors_dtype": (list(DTYPES), {
                "default": "float32", "tooltip": "Precision of the stored Taylor factors (bf16 halves memory)."}),
        }

    def method(self, model, v):
        args = (v["cache_interval"], v["warmup_steps"], v["max_order"], v["target"], DTYPES[v["factors_dtype"]],
                v["final_steps"], v["forecaster"])
        return (lambda: TaylorSeer(*args)), {}

    METHOD, SHORT, RANK = "TaylorSeer", "TaylorSeer", 4
    EXAMPLES = Examples(
        cases={"taylorseer": Case(off=dict(cache_interval=1, **_TEST), on=dict(cache_interval=3, **_TEST),
                                  runs_on_reuse=0),
               "taylorseer_output": Case(off=dict(_TEST, cache_interval=1, target="output"),
                                         on=dict(_TEST, cache_interval=3, target="output", max_order=2),
                                         runs_on_reuse=0),
               "taylorseer_hermite": Case(off=dict(_TEST, cache_interval=1, forecaster="hermite"),
                                          on=dict(_TEST, cache_interval=3, forecaster="hermite"), runs_on_reuse=0),
               "taylorseer_foca": Case(off=dict(_TEST, cache_interval=1, forecaster="foca"),
                                       on=dict(_TEST, cache_interval=3, forecaster="foca"), runs_on_reuse=0)},
        speed=(dict(cache_interval=3, warmup_steps=2, max_order=1, final_steps=0), dict(cache_interval=1)),
        sweeps={"TaylorSeer (order 1)": Sweep("interval", (2, 3, 4, 5, 6), lambda v, *_: dict(
            cache_interval=v, warmup_steps=2, max_order=1, final_steps=2), reference="TaylorSeer (diffusers)"),
                "TaylorSeer (HiCache)": Sweep("interval", (2, 3, 4, 5, 6), lambda v, *_: dict(
            cache_interval=v, warmup_steps=2, max_order=1, final_steps=2, forecaster="hermite")),
                "TaylorSeer (FoCa)": Sweep("interval", (2, 3, 4, 5, 6), lambda v, *_: dict(
            cache_interval=v, warmup_steps=2, final_steps=2, forecaster="foca"))},
        note="Apply TaylorSeer Cache: computes every N-th step after the warmup and forecasts the others with a "
             "first-order Taylor series.",
        templates={
            "flux_dev": Template("N 6 is TaylorSeer's Flux setting.",
                                 dict(cache_interval=6, warmup_steps=3, max_order=1)),
            "*": Template("N 5 is TaylorSeer's Wan setting (2-3 is more conservative).",
                          dict(cache_interval=5, warmup_steps=3, max_order=1))})
