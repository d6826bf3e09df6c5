"""ComfyUI glue: node classes, the family table, hook installation. The engine is ../cache_core."""
from .dbcache import ApplyDBCache
from .fastercache import ApplyFasterCache
from .first_block_cache import ApplyFirstBlockCache
from .magcache import ApplyMagCache, CalibrateMagCache
from .pab import ApplyPyramidAttentionBroadcast
from .smoothcache import ApplySmoothCache, CalibrateSmoothCache, SmoothCacheSchedule
from .taylorseer import ApplyTaylorSeerCache
from .teacache import ApplyTeaCache

NODE_CLASS_MAPPINGS = {
    "ApplyFirstBlockCache": ApplyFirstBlockCache,
    "ApplyTeaCache": ApplyTeaCache,
    "ApplyMagCache": ApplyMagCache,
    "CalibrateMagCache": CalibrateMagCache,
    "ApplyTaylorSeerCache": ApplyTaylorSeerCache,
    "ApplyDBCache": ApplyDBCache,
    "ApplyPyramidAttentionBroadcast": ApplyPyramidAttentionBroadcast,
    "CalibrateSmoothCache": CalibrateSmoothCache,
    "SmoothCacheSchedule": SmoothCacheSchedule,
    "ApplySmoothCache": ApplySmoothCache,
    "ApplyFasterCache": ApplyFasterCache,
}
NODE_DISPLAY_NAME_MAPPINGS = {
    "ApplyFirstBlockCache": "Apply First Block Cache",
    "ApplyTeaCache": "Apply TeaCache",
    "ApplyMagCache": "Apply MagCache",
    "CalibrateMagCache": "Calibrate MagCache",
    "ApplyTaylorSeerCache": "Apply TaylorSeer Cache",
    "ApplyDBCache": "Apply DBCache",
    "ApplyPyramidAttentionBroadcast": "Apply Pyramid Attention Broadcast",
    "CalibrateSmoothCache": "Calibrate SmoothCache",
    "SmoothCacheSchedule": "SmoothCache Schedule",
    "ApplySmoothCache": "Apply SmoothCache",
    "ApplyFasterCache": "Apply FasterCache",
}
