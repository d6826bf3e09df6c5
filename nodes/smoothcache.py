"""Calibrate SmoothCache, SmoothCache Schedule and Apply SmoothCache (docs/methods.md §1.7)."""
from __future__ import annotations

import json

from ..cache_core import calibration_data
from ..cache_core.policies.smoothcache import SmoothCache, SmoothCacheCalibration, make_schedule
from . import common
from .examples import Case, Examples, Sweep, Template
from .host.calibration_files import SOCKET_TYPES, source_name

ERRORS_TYPE = SOCKET_TYPES[calibration_data.SMOOTHCACHE_ERRORS]
SCHEDULE_TYPE = SOCKET_TYPES[calibration_data.SMOOTHCACHE_SCHEDULE]


class CalibrateSmoothCache(common.CalibrateNode):
    DESCRIPTION = ("Samples once with no reuse (like KSampler) and records how much each component's output "
                   "(self/cross attention, MLP) changes from step s to s+1..s+n, averaged over blocks. Feed it "
                   "to SmoothCache Schedule.")
    NODE_NAME = "Calibrate SmoothCache"
    RETURN_TYPES = (ERRORS_TYPE, "LATENT")

    @classmethod
    def own_inputs(cls):
        return {"lookahead": ("INT", {"default": 3, "min": 1, "max": 10,
                                      "tooltip": "Largest gap n whose error is recorded (SmoothCache default 3)."})}

    def recorder(self, v, model):
        return SmoothCacheCalibration(v["lookahead"])


class SmoothCacheSchedule(common.CacheKitNode):
    DESCRIPTION = ("Turns a SmoothCache calibration into a static compute/reuse schedule per component: at each "
                   "computed step, reuse for the longest gap whose recorded error stays within alpha.")
    NODE_NAME = "SmoothCache Schedule"
    RETURN_TYPES = (SCHEDULE_TYPE, "STRING")
    RETURN_NAMES = ("schedule", "schedule_json")
    FUNCTION = "build"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": common.labelled({
            "calibration": (ERRORS_TYPE, {"tooltip": "Output of Calibrate SmoothCache."}),
            "alpha": ("FLOAT", {"default": 0.08, "min": 0.0, "max": 10.0, "step": 0.005,
                                "tooltip": "Largest relative L1 error accepted for a reused step. Published "
                                           "schedules: 0.08, 0.18 (DiT-XL 50 steps), 0.35 (30 steps)."}),
        })}

    def build(self, **inputs):
        v = self.checked(inputs)
        try:
            calibration = calibration_data.smoothcache_errors(v["calibration"])
        except ValueError as e:
            self.fail(f"{source_name(v['calibration'], 'calibration')} {e}")
        schedule = make_schedule(calibration, v["alpha"])
        return (schedule, json.dumps(schedule["schedule"]))


def uniform_schedule(row: list[int]) -> dict:
    """A schedule with the same row for every component kind (the tests' schedules)."""
    return {"format": calibration_data.SMOOTHCACHE_SCHEDULE, "version": 1, "steps": len(row),
            "schedule": {"self": row, "cross": row, "mlp": row}}


class ApplySmoothCache(common.CacheNode):
    DESCRIPTION = "Reuses component outputs (attention, MLP) on the steps where the schedule has 0."
    NODE_NAME = "Apply SmoothCache"

    @classmethod
    def own_inputs(cls):
        return {"schedule": (SCHEDULE_TYPE, {"tooltip": "Output of SmoothCache Schedule or Load Cache Calibration; "
                                                        "for another step count it is rebuilt from its "
                                                        "calibration errors."})}

    def method(self, model, v):
        schedule = v["schedule"]
        self.calibration(calibration_data.SMOOTHCACHE_SCHEDULE, schedule, model, "schedule")
        rows = schedule["schedule"]
        source = (schedule["errors"], schedule["alpha"]) if "errors" in schedule else None
        return (lambda: SmoothCache(rows, source)), {}

    METHOD, RANK = "SmoothCache", 7
    EXAMPLES = Examples(
        cases={"smoothcache": Case(off=dict(schedule=uniform_schedule([1] * 8)),
                                   on=dict(schedule=uniform_schedule([1, 0, 1, 0, 0, 1, 0, 1])),
                                   runs_on_reuse=None)},
        speed=None,        # a schedule is made for one step count: the speed benchmark's is an argument
        sweeps={"SmoothCache (calibrated)": Sweep("alpha", (0.02, 0.05, 0.1, 0.2, 0.4), lambda v, cal, node: dict(
            schedule=node("SmoothCacheSchedule", calibration=cal, alpha=v)))},
        # a graph of its own (calibrate, schedule, sample): scripts/make_workflows.py draws it
        templates={"*": Template(
            "SmoothCache in one graph: Calibrate SmoothCache samples once uncached and records how much each "
            "component changes; SmoothCache Schedule turns that into a reuse schedule (alpha 0.18); the second "
            "KSampler runs with it. Save the schedule (see the calibrate/load examples) to skip the calibration "
            "next time.")})
