from .dbcache import DBCache
from .fastercache import FasterCache
from .first_block import FirstBlockCache
from .magcache import MagCache, MagCacheCalibration
from .pab import PyramidAttentionBroadcast
from .seacache import SeaCache
from .spectrum import Spectrum
from .smoothcache import SmoothCache, SmoothCacheCalibration, make_schedule
from .taylorseer import TaylorSeer
from .teacache import TeaCache, TeaCacheCalibration

__all__ = ["DBCache", "FasterCache", "FirstBlockCache", "MagCache", "MagCacheCalibration", "PyramidAttentionBroadcast",
           "SeaCache", "Spectrum", "SmoothCache", "SmoothCacheCalibration", "TaylorSeer", "TeaCache",
           "TeaCacheCalibration",
           "make_schedule"]
