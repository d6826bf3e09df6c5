from .first_block import FirstBlockCache
from .magcache import MagCache, MagCacheCalibration
from .taylorseer import TaylorSeer
from .teacache import TeaCache

__all__ = ["FirstBlockCache", "MagCache", "MagCacheCalibration", "TaylorSeer", "TeaCache"]
