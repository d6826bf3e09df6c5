"""ComfyUI glue: node classes, the family table, hook installation. The engine is ../cache_core."""
from . import calibration_files
from .calibration_nodes import LoadCacheCalibration, SaveCacheCalibration
from .compare_quality import CompareCacheQuality
from .dbcache import ApplyDBCache
from .fastercache import ApplyFasterCache
from .first_block_cache import ApplyFirstBlockCache
from .magcache import ApplyMagCache, CalibrateMagCache
from .pab import ApplyPyramidAttentionBroadcast
from .ray_workers import CacheKitOnRayWorkers, RaylightCacheKit
from .seacache import ApplySeaCache
from .spectrum import ApplySpectrumCache
from .smoothcache import ApplySmoothCache, CalibrateSmoothCache, SmoothCacheSchedule
from .taylorseer import ApplyTaylorSeerCache
from .teacache import ApplyTeaCache, CalibrateTeaCache
from .tune_threshold import TuneCacheThreshold

_NODES = (ApplyFirstBlockCache, ApplyTeaCache, CalibrateTeaCache, ApplyMagCache, CalibrateMagCache,
          ApplyTaylorSeerCache, ApplyDBCache, ApplyPyramidAttentionBroadcast, CalibrateSmoothCache, SmoothCacheSchedule,
          ApplySmoothCache, ApplyFasterCache, SaveCacheCalibration, LoadCacheCalibration,
          CompareCacheQuality, TuneCacheThreshold, ApplySeaCache,
          ApplySpectrumCache, RaylightCacheKit, CacheKitOnRayWorkers)
calibration_files.register()
NODE_CLASS_MAPPINGS = {cls.__name__: cls for cls in _NODES}
NODE_DISPLAY_NAME_MAPPINGS = {cls.__name__: cls.NODE_NAME for cls in _NODES}
