"""Calibrate SmoothCache, SmoothCache Schedule and Apply SmoothCache (methods.md §1.7)."""
from __future__ import annotations

from ..cache_core import SmoothCache, SmoothCacheCalibration
from ..cache_core.policies.smoothcache import ERRORS_FORMAT, SCHEDULE_FORMAT, make_schedule
from . import common, validation
from .hooks import install

CALIBRATE_NAME = "Calibrate SmoothCache"
SCHEDULE_NAME = "SmoothCache Schedule"
APPLY_NAME = "Apply SmoothCache"
ERRORS_TYPE = "SMOOTHCACHE_CALIBRATION"
SCHEDULE_TYPE = "SMOOTHCACHE_SCHEDULE"


def _check(node: str, value, fmt: str, what: str) -> dict:
    if not (isinstance(value, dict) and value.get("format") == fmt):
        raise validation.CacheKitInputError(f"{node}: input is not a {what}, got {type(value).__name__}")
    return value


class CalibrateSmoothCache(common.CalibrateNode):
    DESCRIPTION = ("Samples once with no reuse (like KSampler) and records how much each component's output "
                   "(self/cross attention, MLP) changes from step s to s+1..s+n, averaged over blocks. Feed it "
                   "to SmoothCache Schedule.")
    NODE_NAME = CALIBRATE_NAME
    RETURN_TYPES = (ERRORS_TYPE, "LATENT")

    @classmethod
    def own_inputs(cls):
        return {"lookahead": ("INT", {"default": 3, "min": 1, "max": 10,
                                      "tooltip": "Largest gap n whose error is recorded (SmoothCache default 3)."})}

    def recorder(self, lookahead=3):
        return SmoothCacheCalibration(validation.number(CALIBRATE_NAME, "lookahead", lookahead, 1, integer=True))


class SmoothCacheSchedule:
    DESCRIPTION = ("Turns a SmoothCache calibration into a static compute/reuse schedule per component: at each "
                   "computed step, reuse for the longest gap whose recorded error stays within alpha.")
    CATEGORY = "CacheKit"
    RETURN_TYPES = (SCHEDULE_TYPE, "STRING")
    RETURN_NAMES = ("schedule", "schedule_json")
    FUNCTION = "build"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "calibration": (ERRORS_TYPE, {"tooltip": "Output of Calibrate SmoothCache."}),
            "alpha": ("FLOAT", {"default": 0.08, "min": 0.0, "max": 10.0, "step": 0.005,
                                "tooltip": "Largest relative L1 error accepted for a reused step. Published "
                                           "schedules: 0.08, 0.18 (DiT-XL 50 steps), 0.35 (30 steps)."}),
        }}

    def build(self, calibration, alpha):
        import json
        cal = _check(SCHEDULE_NAME, calibration, ERRORS_FORMAT, "SmoothCache calibration")
        a = validation.number(SCHEDULE_NAME, "alpha", alpha, 0.0)
        schedule = make_schedule(cal, a)
        return (schedule, json.dumps(schedule["schedule"]))


class ApplySmoothCache(common.CacheNode):
    DESCRIPTION = "Reuses component outputs (attention, MLP) on the steps where the schedule has 0."

    @classmethod
    def own_inputs(cls):
        return {"schedule": (SCHEDULE_TYPE, {"tooltip": "Output of SmoothCache Schedule."})}

    def apply(self, model, schedule, start_percent, end_percent, unique_id=None):
        rows = _check(APPLY_NAME, schedule, SCHEDULE_FORMAT, "SmoothCache schedule")["schedule"]
        fields = common.window_fields(APPLY_NAME, start_percent, end_percent)
        return (install(model, fields, lambda: SmoothCache(rows), APPLY_NAME, unique_id),)
