"""ComfyUI glue: node classes, the family table, hook installation. The engine is ../cache_core."""
from .dbcache import ApplyDBCache
from .first_block_cache import ApplyFirstBlockCache
from .magcache import ApplyMagCache, CalibrateMagCache
from .pab import ApplyPyramidAttentionBroadcast
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
}
NODE_DISPLAY_NAME_MAPPINGS = {
    "ApplyFirstBlockCache": "Apply First Block Cache",
    "ApplyTeaCache": "Apply TeaCache",
    "ApplyMagCache": "Apply MagCache",
    "CalibrateMagCache": "Calibrate MagCache",
    "ApplyTaylorSeerCache": "Apply TaylorSeer Cache",
    "ApplyDBCache": "Apply DBCache",
    "ApplyPyramidAttentionBroadcast": "Apply Pyramid Attention Broadcast",
}
