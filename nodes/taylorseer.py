"""Apply TaylorSeer Cache: MODEL in, MODEL out (methods.md §1.6)."""
from __future__ import annotations

import torch

from ..cache_core import TaylorSeer
from ..cache_core.policies.taylorseer import TARGETS
from . import common, validation
from .hooks import install

NODE_NAME = "Apply TaylorSeer Cache"
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


class ApplyTaylorSeerCache(common.CacheNode):
    DESCRIPTION = ("Computes the transformer every few steps and forecasts the steps between with a Taylor "
                   "series fitted to the computed steps (a static schedule, no probe).")

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

    def apply(self, model, cache_interval, warmup_steps, max_order, target, factors_dtype, start_percent,
              end_percent, unique_id=None):
        interval = validation.number(NODE_NAME, "cache_interval", cache_interval, 1, integer=True)
        warmup = validation.number(NODE_NAME, "warmup_steps", warmup_steps, 0, integer=True)
        order = validation.number(NODE_NAME, "max_order", max_order, 0, 4, integer=True)
        if target not in TARGETS:
            raise validation.CacheKitInputError(f"{NODE_NAME}: target must be one of {list(TARGETS)}, got {target!r}")
        if factors_dtype not in DTYPES:
            raise validation.CacheKitInputError(
                f"{NODE_NAME}: factors_dtype must be one of {list(DTYPES)}, got {factors_dtype!r}")
        fields = common.window_fields(NODE_NAME, start_percent, end_percent)
        dtype = DTYPES[factors_dtype]
        patched = install(model, fields, lambda: TaylorSeer(interval, warmup, order, target, dtype), NODE_NAME,
                          unique_id)
        return (patched,)
