"""Input checks that fail at the node, naming the node, the input and the value, before anything reaches
comfy or the engine. One path for every value: the node's own INPUT_TYPES declaration says what an input
may hold, and `declared` holds a value to it, whether it was typed in a widget, linked from another node
(which skips the frontend's checks) or loaded from a file."""
from __future__ import annotations

import math


class CacheKitInputError(ValueError):
    pass


def number(node: str, name: str, value, lo: float | None = None, hi: float | None = None,
           integer: bool = False):
    kind = "an integer" if integer else "a number"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise CacheKitInputError(f"{node}: {name} must be {kind}, got {value!r}")
    if not math.isfinite(value):
        raise CacheKitInputError(f"{node}: {name} must be finite, got {value!r}")
    if integer and int(value) != value:
        raise CacheKitInputError(f"{node}: {name} must be {kind}, got {value!r}")
    if lo is not None and value < lo:
        raise CacheKitInputError(f"{node}: {name} must be >= {lo}, got {value!r}")
    if hi is not None and value > hi:
        raise CacheKitInputError(f"{node}: {name} must be <= {hi}, got {value!r}")
    return int(value) if integer else float(value)


def declared(node: str, inputs: dict, values: dict) -> dict:
    """Every value checked against its declaration ({name: (type, options)} as in INPUT_TYPES): numbers
    finite, integral where INT, inside min/max; strings and booleans of their type; combo values one of
    the choices. Inputs of other types (MODEL, calibrations) pass as they are: their node checks the
    content. Values with no declaration (hidden inputs) are left out."""
    checked = {}
    for name, value in values.items():
        if name not in inputs:
            continue
        kind, options = (inputs[name] + ({},))[:2]
        if kind in ("INT", "FLOAT"):
            value = number(node, name, value, options.get("min"), options.get("max"), integer=kind == "INT")
        elif kind == "STRING" and not isinstance(value, str):
            raise CacheKitInputError(f"{node}: {name} must be text, got {value!r}")
        elif kind == "BOOLEAN" and not isinstance(value, bool):
            raise CacheKitInputError(f"{node}: {name} must be true or false, got {value!r}")
        elif isinstance(kind, (list, tuple)) and not any(value == c and type(value) is type(c) for c in kind):
            raise CacheKitInputError(f"{node}: {name} must be one of {list(kind)}, got {value!r}")
        checked[name] = value
    return checked


def percent_window(node: str, start: float, end: float) -> tuple[float, float]:
    start = number(node, "start_percent", start, 0.0, 1.0)
    end = number(node, "end_percent", end, 0.0, 1.0)
    if start > end:
        raise CacheKitInputError(f"{node}: start_percent ({start}) must not be greater than end_percent ({end})")
    return start, end
