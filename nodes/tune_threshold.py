"""Tune Cache Threshold: the recording run behind a threshold-driven node's target_compute (cache_core/tuning.py)."""
from __future__ import annotations

import logging

from ..cache_core.tuning import TuningRecorder
from . import common
from .host.install import SPEC_KEY

_log = logging.getLogger("CacheKit")


class TuneCacheThreshold(common.CalibrateNode):
    DESCRIPTION = ("Put it after Apply First Block Cache, TeaCache or DBCache (target_compute 0) instead of the "
                   "sampler: samples once like KSampler without reusing anything and records what the method "
                   "decides from, per step and stream. Connect the tuning to that node's 'tuning' input (or save it "
                   "with Save Cache Calibration) and set target_compute: the node then picks the threshold that "
                   "computes that fraction of the blocks.")
    NODE_NAME = "Tune Cache Threshold"
    RETURN_TYPES = (common.TUNING_TYPE, "LATENT")
    RETURN_NAMES = ("tuning", "latent")

    def recorder(self, v, model):
        spec = model.model_options.get("transformer_options", {}).get(SPEC_KEY)
        if spec is None:
            self.fail("the model has no CacheKit node applied: put Apply First Block Cache, Apply TeaCache or "
                      "Apply DBCache before this node")
        try:
            return TuningRecorder(spec.make_policy())
        except ValueError as e:
            self.fail(f"{spec.node_name}: {e}")
