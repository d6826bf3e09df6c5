from .dbcache import DBCache
from .first_block import FirstBlockCache
from .magcache import MagCache, MagCacheCalibration
from .pab import PyramidAttentionBroadcast
from .taylorseer import TaylorSeer
from .teacache import TeaCache

__all__ = ["DBCache", "FirstBlockCache", "MagCache", "MagCacheCalibration", "PyramidAttentionBroadcast", "TaylorSeer", "TeaCache"]
