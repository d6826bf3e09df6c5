"""Calibrate LeMiCa and Apply LeMiCa Schedule (docs/methods.md §1.14)."""
from __future__ import annotations

import logging

from ..cache_core import calibration_data
from ..cache_core.policies.lemica import FORECASTS, LeMiCa, LeMiCaCalibration
from ..cache_core.schedule_search import edge_weights, solve, worst_of
from . import common
from .examples import Case, Examples, Sweep, Template
from .host.calibration_files import SOCKET_TYPES

ERRORS_TYPE = SOCKET_TYPES[calibration_data.LEMICA_ERRORS]
_log = logging.getLogger("CacheKit")


def example_calibration(steps: int) -> dict:
    """A made-up calibration (no model's: it names none) whose reuse error grows with the gap and along the run, as
    measured ones do: what the family x method tests and the speed benchmark apply, where no calibration of that
    random-weight model exists."""
    errors = [[round(0.05 * (k - i) * (1 + i / steps), 6) for k in range(i + 1, steps)] for i in range(steps - 1)]
    return {"format": calibration_data.LEMICA_ERRORS, "version": 1, "steps": steps, "errors": {"cond": errors}}


def search(calibration: dict, target_compute: float, final_steps: int) -> tuple[list[int], int]:
    """(the steps to compute, how many target_compute asked for): step 0, the last `final_steps`, and the rest along
    the lexicographic minimax path over the worse stream's errors."""
    steps = calibration["steps"]
    forced = {0, *range(max(steps - final_steps, 0), steps)}
    asked = min(max(1, int(target_compute * steps + 0.5)), steps)
    weights = edge_weights(worst_of(calibration["errors"].values()), steps)
    return solve(weights, steps, max(asked, len(forced)), forced), asked


class CalibrateLeMiCa(common.CalibrateNode):
    DESCRIPTION = ("Samples once with no reuse (like KSampler) and records, per condition stream, the error of "
                   "reusing each step's whole-stack residual at every later step. Connect it to Apply LeMiCa "
                   "Schedule (or save it). Holds `samples` fp32 values per step and stream during the run.")
    NODE_NAME = "Calibrate LeMiCa"
    RETURN_TYPES = (ERRORS_TYPE, "LATENT")

    @classmethod
    def own_inputs(cls):
        return {"samples": ("INT", {
            "default": 65536, "min": 1024, "max": 2 ** 24,
            "tooltip": "Residual elements kept per step and stream (drawn at random once, the same every step): "
                       "the errors are estimated from them, about 1/sqrt(samples) off (0.4 % at 65536). Memory: "
                       "steps x samples x 4 bytes per stream."})}

    def recorder(self, v, model):
        return LeMiCaCalibration(v["samples"])


class ApplyLeMiCa(common.CacheNode):
    NODE_NAME = "Apply LeMiCa Schedule"
    DESCRIPTION = ("Computes a fixed set of steps searched from a calibration (Calibrate LeMiCa): of all schedules "
                   "with that many computed steps, the one whose worst reuse error is smallest, then the next worst, "
                   "and so on. The other steps reuse the last computed whole-stack residual, or forecast it. No "
                   "per-step decision. Holds one residual per stream; forecast 'taylor' adds two float32 Taylor "
                   "factors of its size, 'foca' up to four float32 residuals.")
    WINDOW = None   # the schedule decides every step: a window would compute steps it reuses

    @classmethod
    def own_inputs(cls):
        return {
            "calibration": (ERRORS_TYPE, {"tooltip": "Output of Calibrate LeMiCa or Load Cache Calibration, made "
                                                     "with the step count this run uses."}),
            "target_compute": ("FLOAT", {
                "default": 0.5, "min": 0.0, "max": 1.0, "step": 0.01,
                "tooltip": "Fraction of the steps that compute (rounded to whole steps; at least step 0 and the "
                           "final steps). 1 = every step computes (off). The authors' Wan 2.1 schedules compute "
                           "25, 20, 17 or 14 of 50 steps (0.5 to 0.28)."}),
            "final_steps": ("INT", {"default": 1, "min": 0, "max": 1000,
                                    "tooltip": "The last steps always compute (every schedule the authors publish "
                                               "computes the last step). 0 = the search alone decides."}),
            "forecast": (list(FORECASTS), {
                "default": "reuse",
                "tooltip": "reuse: add the last computed residual (the authors' rule). taylor: extrapolate it to "
                           "first order from the last two computed steps. foca: FoCa's predictor-corrector (arXiv "
                           "2508.16211) from the last two computed steps; on the bench's trained models the best "
                           "images at 50% compute, for the most memory (docs/methods.md §1.14)."}),
        }

    def method(self, model, v):
        cal = self.calibration(calibration_data.LEMICA_ERRORS, v["calibration"], model)
        steps, final = cal["steps"], v["final_steps"]
        computed, asked = search(cal, v["target_compute"], final)
        if len(computed) > asked:
            self.warn(f"target_compute {v['target_compute']:g} of {steps} steps asks for {asked} computed, but step "
                      f"0 and the last {min(final, steps)} always compute: {len(computed)} do")
        _log.info("%s: computes steps %s of %d", self.NODE_NAME, computed, steps)
        return (lambda: LeMiCa(computed, steps, v["forecast"], final)), {}

    METHOD, RANK = "LeMiCa", 13
    EXAMPLES = Examples(
        cases={"lemica": Case(off=dict(calibration=example_calibration(8), target_compute=1.0, final_steps=1,
                                       forecast="reuse"),
                              on=dict(calibration=example_calibration(8), target_compute=0.5, final_steps=1,
                                      forecast="reuse"),
                              runs_on_reuse=0)},
        # bench_speed's default of 20 steps: a schedule is searched for one step count
        speed=(dict(calibration=example_calibration(20), target_compute=0.4, final_steps=1, forecast="reuse"),
               dict(calibration=example_calibration(20), target_compute=1.0, final_steps=1, forecast="reuse")),
        sweeps={"LeMiCa (calibrated)": Sweep("target compute", (0.8, 0.6, 0.5, 0.4, 0.3), lambda v, cal, _: dict(
            calibration=cal, target_compute=v, final_steps=1, forecast="reuse")),
            "LeMiCa (FoCa)": Sweep("target compute", (0.6, 0.5, 0.4, 0.3, 0.2), lambda v, cal, _: dict(
                calibration=cal, target_compute=v, final_steps=1, forecast="foca"))},
        note="Apply LeMiCa Schedule: computes the steps searched from a calibration of this model (Calibrate "
             "LeMiCa, same step count) and reuses the residual elsewhere.",
        templates={"*": Template("Half the steps compute (target 0.5), the last one always.",
                                 dict(target_compute=0.5, final_steps=1, forecast="reuse"))})
