"""Input checks that fail at the node, naming the node and the value, before anything reaches comfy."""
from __future__ import annotations

import math


class CacheKitInputError(ValueError):
    pass


def number(node: str, name: str, value, lo: float | None = None, hi: float | None = None,
           integer: bool = False):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (integer and int(value) != value):
        kind = "an integer" if integer else "a number"
        raise CacheKitInputError(f"{node}: {name} must be {kind}, got {value!r}")
    if not math.isfinite(value):
        raise CacheKitInputError(f"{node}: {name} must be finite, got {value!r}")
    if lo is not None and value < lo:
        raise CacheKitInputError(f"{node}: {name} must be >= {lo}, got {value!r}")
    if hi is not None and value > hi:
        raise CacheKitInputError(f"{node}: {name} must be <= {hi}, got {value!r}")
    return int(value) if integer else float(value)


def percent_window(node: str, start: float, end: float) -> tuple[float, float]:
    start = number(node, "start_percent", start, 0.0, 1.0)
    end = number(node, "end_percent", end, 0.0, 1.0)
    if start > end:
        raise CacheKitInputError(f"{node}: start_percent ({start}) must not be greater than end_percent ({end})")
    return start, end
