"""CacheKit's engine: training-free caching for diffusion transformers, in plain PyTorch.

Nothing here imports ComfyUI; the host (nodes/) supplies the block layout, per-run and per-call
hooks, and calls run_block in place of each transformer block (and, for component methods,
attention in place of each attention kernel call).
"""
from .layout import BlockLayout
from .metrics import rel_l1, to_floats
from .policy import CachePolicy, CfgCache, ComponentPolicy, ReuseLimits, StepInfo
from .forecast import ChebyshevForecaster, TaylorForecaster
from . import calibration_data, policies, presets, quality
from .run import CacheRun
from .streams import StreamState
from .component_cache import ComponentCall
from .span_cache import SpanCall
from .stats import RunStats, StreamStats

# every method's policy classes, as cache_core.<Name> (each policy module's __all__)
globals().update({name: getattr(policies, name) for name in policies.__all__})

__all__ = [
    "BlockLayout", "ChebyshevForecaster", "CachePolicy", "CfgCache", "CacheRun", "ComponentCall", "ComponentPolicy",
    "ReuseLimits", "RunStats", "SpanCall", "StepInfo", "StreamState", "StreamStats", "TaylorForecaster",
    "calibration_data", "presets", "quality", "rel_l1", "to_floats", *policies.__all__,
]
