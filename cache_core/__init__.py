"""CacheKit's engine: training-free caching for diffusion transformers, in plain PyTorch.

Nothing here imports ComfyUI; the host (nodes/) supplies the block layout, per-run and per-call
hooks, and calls run_block in place of each transformer block (and, for component methods,
attention in place of each attention kernel call).
"""
from .layout import BlockLayout
from .metrics import rel_l1, to_floats
from .policy import CachePolicy, CfgCache, ComponentPolicy, ReuseLimits, StepInfo
from .forecast import ChebyshevForecaster, TaylorForecaster
from .policies import (DBCache, FasterCache, FirstBlockCache, MagCache, MagCacheCalibration,
                       PyramidAttentionBroadcast, SeaCache, SmoothCache, SmoothCacheCalibration, Spectrum, TaylorSeer,
                       TeaCache, TeaCacheCalibration)
from . import calibration_data, presets, quality
from .run import CacheRun
from .streams import StreamState
from .component_cache import ComponentCall
from .span_cache import SpanCall
from .stats import RunStats, StreamStats

__all__ = [
    "BlockLayout", "ChebyshevForecaster", "CachePolicy", "CfgCache", "CacheRun", "ComponentCall", "ComponentPolicy",
    "DBCache", "FasterCache", "FirstBlockCache", "MagCache", "MagCacheCalibration", "PyramidAttentionBroadcast",
    "ReuseLimits", "RunStats", "SeaCache", "SmoothCache", "Spectrum", "SmoothCacheCalibration", "SpanCall", "StepInfo",
    "StreamState", "StreamStats", "TaylorForecaster", "TaylorSeer", "TeaCache", "TeaCacheCalibration",
    "calibration_data", "presets", "quality", "rel_l1", "to_floats",
]
