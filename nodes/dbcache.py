"""Apply DBCache: MODEL in, MODEL out (cache-dit's dual block cache, docs/methods.md §1.5)."""
from __future__ import annotations

from ..cache_core.policies.dbcache import CALIBRATORS, DBCache
from . import common
from .examples import Case, Examples, Sweep, Template


_TEST = dict(Fn_compute_blocks=2, Bn_compute_blocks=1, max_warmup_steps=0, warmup_interval=1,   # the tests'
             max_cached_steps=-1, max_continuous_cached_steps=-1, max_accumulated_residual_diff=0.0,
             taylorseer_order=0)

class ApplyDBCache(common.CacheNode):
    NODE_NAME = "Apply DBCache"
    THRESHOLD = "residual_diff_threshold"
    DESCRIPTION = ("Always runs the first Fn and last Bn blocks; reuses the middle blocks' residual while the "
                   "first blocks' residual barely changes (cache-dit DBCache). Bn > 0 lets the last blocks "
                   "correct the approximation; TaylorSeer or FoCa can forecast the middle residual.")

    # optional: workflows saved before it existed still load (and get the default)
    OPTIONAL = {"calibrator": (list(CALIBRATORS), {
        "default": "taylorseer",
        "tooltip": "How the middle residual is forecast on reused steps (cache-dit's calibrators). taylorseer: "
                   "by taylorseer_order (0 = reused as cached; holds order+1 residuals per stream). foca: FoCa "
                   "(arXiv 2508.16211), a Heun step from the last computed step, recursive over the reused ones; "
                   "taylorseer_order is not used; holds up to 4 residuals of the middle's size per stream."})}

    @classmethod
    def own_inputs(cls):
        return {
            "Fn_compute_blocks": ("INT", {"default": 8, "min": 1, "max": 128,
                                          "tooltip": "Front blocks always computed; their residual is the "
                                                     "probe. cache-dit default 8; 1 = First Block Cache."}),
            "Bn_compute_blocks": ("INT", {"default": 0, "min": 0, "max": 128,
                                          "tooltip": "Back blocks always computed, on the approximation."}),
            "residual_diff_threshold": ("FLOAT", {
                "default": 0.08, "min": 0.0, "max": 1.0, "step": 0.005,
                "tooltip": "Reuse the middle while the Fn residual's relative L1 change is below this. 0 = "
                           "never; 1 = always (static). cache-dit: 0.08 (F8B0), Flux DrawBench S: F4 0.12, "
                           "M: F1 0.24."}),
            "max_warmup_steps": ("INT", {"default": 8, "min": 0, "max": 1000,
                                         "tooltip": "Steps range(0, W, interval) always compute."}),
            "warmup_interval": ("INT", {"default": 1, "min": 1, "max": 100,
                                        "tooltip": "Inside the warmup, only every Nth step is forced."}),
            "max_cached_steps": ("INT", {"default": -1, "min": -1, "max": 1000,
                                         "tooltip": "Most reused steps in a run; -1 = no limit."}),
            "max_continuous_cached_steps": ("INT", {"default": -1, "min": -1, "max": 1000,
                                                    "tooltip": "Most reused steps in a row; -1 = no limit."}),
            "max_accumulated_residual_diff": ("FLOAT", {
                "default": 0.0, "min": 0.0, "max": 100.0, "step": 0.01,
                "tooltip": "Once the measured diffs of the run add up to this, every later step computes. "
                           "0 = off."}),
            "taylorseer_order": ("INT", {"default": 0, "min": 0, "max": 4,
                                         "tooltip": "0 = reuse the middle residual as cached; 1-4 = forecast "
                                                    "it with a Taylor series of this order (cache-dit: 1)."}),
        }

    def method(self, model, v):
        args = dict(front_blocks=v["Fn_compute_blocks"], back_blocks=v["Bn_compute_blocks"],
                    threshold=v["residual_diff_threshold"], warmup_steps=v["max_warmup_steps"],
                    warmup_interval=v["warmup_interval"], max_cached_steps=v["max_cached_steps"],
                    max_continuous_cached_steps=v["max_continuous_cached_steps"],
                    max_accumulated_diff=v["max_accumulated_residual_diff"], taylorseer_order=v["taylorseer_order"],
                    calibrator=v["calibrator"])
        return (lambda: DBCache(**args)), {}

    METHOD, RANK = "DBCache", 5
    # F2 B1 in the tests: Hunyuan3D 2.1's last block takes block 1's output as a long skip, so block 1 must compute
    EXAMPLES = Examples(
        cases={"dbcache": Case(off=dict(_TEST, residual_diff_threshold=0.0),
                               on=dict(_TEST, residual_diff_threshold=0.99), runs_on_reuse=3),
               "dbcache_taylorseer": Case(off=dict(_TEST, residual_diff_threshold=0.0, taylorseer_order=1),
                                          on=dict(_TEST, residual_diff_threshold=0.99, Bn_compute_blocks=0,
                                                  taylorseer_order=1), runs_on_reuse=2),
               "dbcache_foca": Case(off=dict(_TEST, residual_diff_threshold=0.0, calibrator="foca"),
                                    on=dict(_TEST, residual_diff_threshold=0.99, Bn_compute_blocks=0,
                                            calibrator="foca"), runs_on_reuse=2)},
        speed=(dict(Fn_compute_blocks=1, Bn_compute_blocks=0, residual_diff_threshold=0.6, max_warmup_steps=2),
               dict(Fn_compute_blocks=1, Bn_compute_blocks=0, residual_diff_threshold=0.0)),
        # F1 B0 on the bench's 6-block models: the share of the stack cache-dit's default F8 B0 always computes
        # on FLUX.1-dev's 57 blocks or Wan 2.1 14B's 40 (14-20%); F1 B1 there computes a third of it every step
        sweeps={
            "DBCache (F1 B0)": Sweep("threshold", (0.03, 0.06, 0.1, 0.15, 0.25), lambda v, *_: dict(
                Fn_compute_blocks=1, Bn_compute_blocks=0, residual_diff_threshold=v, max_warmup_steps=2),
                reference="DBCache (cache-dit)"),
            "DBCache (F1 B0, FoCa)": Sweep("threshold", (0.06, 0.1, 0.15, 0.25, 0.4), lambda v, *_: dict(
                Fn_compute_blocks=1, Bn_compute_blocks=0, residual_diff_threshold=v, max_warmup_steps=2,
                calibrator="foca"))},
        note="Apply DBCache (cache-dit): the first Fn blocks always run and decide; the middle is reused while "
             "their residual barely changes.",
        templates={
            "flux_dev": Template("F4 B0 W4 MC4 R0.12 is cache-dit's Flux DrawBench 'S' setting.",
                                 dict(Fn_compute_blocks=4, Bn_compute_blocks=0, residual_diff_threshold=0.12,
                                      max_warmup_steps=4, max_continuous_cached_steps=4)),
            "*": Template("F8 B0 R0.08 W8 are cache-dit's defaults.",
                          dict(Fn_compute_blocks=8, Bn_compute_blocks=0, residual_diff_threshold=0.08,
                               max_warmup_steps=8, max_continuous_cached_steps=-1))})
