"""CacheKit's engine: training-free caching for diffusion transformers, in plain PyTorch.

Nothing here imports ComfyUI; the host (nodes/) supplies the block layout, per-run and per-call
hooks, and calls SpanCall.run_block in place of each transformer block.
"""
from .layout import BlockLayout
from .metrics import rel_l1, to_floats
from .policy import CachePolicy, ReuseLimits, StepInfo
from .forecast import TaylorForecaster
from .policies import DBCache, FirstBlockCache, MagCache, MagCacheCalibration, TaylorSeer, TeaCache
from . import presets
from .run import CacheRun, StreamState
from .span_cache import SpanCall
from .stats import RunStats, StreamStats

__all__ = [
    "BlockLayout", "CachePolicy", "CacheRun", "DBCache", "FirstBlockCache", "MagCache", "MagCacheCalibration",
    "ReuseLimits", "RunStats", "TaylorForecaster", "TaylorSeer", "TeaCache", "presets",
    "SpanCall", "StepInfo", "StreamState", "StreamStats", "rel_l1", "to_floats",
]
