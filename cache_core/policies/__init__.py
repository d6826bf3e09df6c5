from .first_block import FirstBlockCache
from .magcache import MagCache, MagCacheCalibration
from .teacache import TeaCache

__all__ = ["FirstBlockCache", "MagCache", "MagCacheCalibration", "TeaCache"]
