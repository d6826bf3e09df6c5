"""Save Cache Calibration and Load Cache Calibration: calibrations as files users keep and share."""
from __future__ import annotations

import logging
import os

from ..cache_core.calibration_data import check_any
from .host import calibration_files as files
from . import common
from .charts import ui

_log = logging.getLogger("CacheKit")


class SaveCacheCalibration(common.CacheKitNode):
    DESCRIPTION = ("Writes a CacheKit calibration (MagCache ratios, SmoothCache calibration or schedule, TeaCache "
                   "coefficients) as JSON into models/cache_calibrations, with the model and sampling it was made "
                   "with. Load Cache Calibration lists it in later workflows. Never overwrites a file.")
    NODE_NAME = "Save Cache Calibration"
    CATEGORY = common.FILES
    RETURN_TYPES = ()
    OUTPUT_NODE = True
    FUNCTION = "save"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "calibration": (files.ANY_CALIBRATION, {"tooltip": "Output of a CacheKit calibrate node (or schedule)."}),
            "filename_prefix": ("STRING", {"default": "cachekit/calibration",
                                           "tooltip": "File name start, subfolders allowed; a counter follows."}),
        }}

    def save(self, **inputs):
        v = self.checked(inputs)
        try:
            check_any(v["calibration"])
        except ValueError as e:
            self.fail(f"calibration {e}")
        try:
            name = files.save(v["calibration"], v["filename_prefix"])
        except ValueError as e:
            self.fail(str(e))
        _log.info("%s: wrote %s (%s)", self.NODE_NAME, name, files.summary(v["calibration"]))
        # the node says where the file went: Load Cache Calibration lists it under this name
        saved = {"name": name, "path": files.path_of(name), "summary": files.summary(v["calibration"])}
        return {"ui": {"cachekit_calibration": [name], "cachekit_saved": [saved]}}


class LoadCacheCalibration(common.CacheKitNode):
    DESCRIPTION = ("Loads a calibration saved with Save Cache Calibration (models/cache_calibrations, refreshed "
                   "like other model lists). Connect it where the calibrate node's output would go.")
    NODE_NAME = "Load Cache Calibration"
    CATEGORY = common.FILES
    RETURN_TYPES = (files.ANY_CALIBRATION,)
    RETURN_NAMES = ("calibration",)
    FUNCTION = "load"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"calibration": (files.names(), {"tooltip": "A file in models/cache_calibrations."})}}

    @classmethod
    def checked(cls, values):
        # the file name is checked by load(), which says which folders were searched
        return {k: v for k, v in values.items() if k == "calibration"}

    @classmethod
    def VALIDATE_INPUTS(cls, calibration):
        # in place of ComfyUI's "value not in list": a missing file is most often one a calibrate workflow
        # writes, not run yet here; say which
        if calibration in files.names():
            return True
        return f"{cls.NODE_NAME}: {files.missing(calibration)}"

    @classmethod
    def IS_CHANGED(cls, calibration):
        path = files.path_of(calibration)
        return f"{os.path.getmtime(path)}:{os.path.getsize(path)}" if path else calibration

    def load(self, **inputs):
        name = self.checked(inputs).get("calibration")
        try:
            data = files.load(name)
        except ValueError as e:
            self.fail(str(e))
        _log.info("%s: loaded %s: %s, made with CacheKit %s on %s", self.NODE_NAME, name, files.summary(data),
                  data.get("cachekit_version", "?"), data.get("created", "?"))
        return {"ui": ui(data), "result": (data,)}
