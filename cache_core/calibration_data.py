"""The calibration data CacheKit passes between nodes: MagCache ratios, SmoothCache errors and schedules, LeMiCa's
reuse errors.

Plain JSON-shaped dicts, tagged with a format name. Each check below takes such a value from wherever it
came from (a calibrate node, a file, a hand-written JSON) and returns it checked, or raises ValueError
saying where it is wrong ("ratios['cond'][3] must be a finite number > 0, got nan"), so a malformed
value never turns into a silent no-op or a KeyError deep in a run.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, Callable

MAGCACHE_RATIOS = "cachekit.magcache_ratios"
SMOOTHCACHE_ERRORS = "cachekit.smoothcache_errors"
SMOOTHCACHE_SCHEDULE = "cachekit.smoothcache_schedule"
TEACACHE_COEFFICIENTS = "cachekit.teacache_coefficients"
THRESHOLD_TUNING = "cachekit.threshold_tuning"
LEMICA_ERRORS = "cachekit.lemica_errors"
LEMICA_MAX_STEPS = 200   # LeMiCa's schedule search grows with the steps squared (schedule_search.py)
VERSION = 1          # the schema version every format above is written with
MAX_VALUES = 10_000  # KSampler allows at most 10000 steps: no list in a calibration is longer
# component kinds a SmoothCache row may name, alone or for one block ("mlp-3"); "attn" is the published
# schedules' name for self attention
COMPONENT_KINDS = ("self", "cross", "mlp", "attn")
_ROW_KEY = re.compile(r"^(%s)(-\d+)?$" % "|".join(COMPONENT_KINDS))


def _fail(where: str, what: str, value) -> None:
    raise ValueError(f"{where} must be {what}, got {value!r}")


def _dict(value, where: str) -> dict:
    if not isinstance(value, dict) or not value:
        _fail(where, "a non-empty mapping", value)
    return value


def _list(value, where: str, length: int | None = None) -> list:
    if not isinstance(value, list) or not value:
        _fail(where, "a non-empty list", value)
    if len(value) > MAX_VALUES:
        raise ValueError(f"{where} must hold at most {MAX_VALUES} values, got {len(value)}")
    if length is not None and len(value) != length:
        raise ValueError(f"{where} must hold {length} values (one per step), got {len(value)}")
    return value


def _number(value, where: str, lo: float | None = None, strict: bool = False) -> float:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or lo is not None and (value < lo or strict and value == lo):
        bound = "" if lo is None else f" {'>' if strict else '>='} {lo:g}"
        _fail(where, f"a finite number{bound}", value)
    return float(value)


def _count(value, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        _fail(where, "a whole number >= 1", value)
    return value


def _tagged(value, fmt: str, what: str) -> dict:
    if not isinstance(value, dict) or value.get("format") != fmt:
        got = value.get("format") if isinstance(value, dict) else type(value).__name__
        raise ValueError(f"is not a {what} (format {fmt!r}), got {got!r}")
    version = value.get("version", VERSION)
    if version != VERSION:
        raise ValueError(f"has schema version {version!r}; this CacheKit reads version {VERSION}")
    for key in ("model", "sampling"):   # what it was made with (calibrate nodes add these)
        if key in value and not isinstance(value[key], dict):
            _fail(key, "a mapping", value[key])
    return value


def magcache_ratios(value) -> dict[str, list[float]]:
    """{stream kind: [gamma per step]}: every gamma finite and > 0, one per step where "steps" is given."""
    value = _tagged(value, MAGCACHE_RATIOS, "MagCache calibration")
    steps = _count(value["steps"], "steps") if "steps" in value else None
    ratios = _dict(value.get("ratios"), "ratios")
    return {str(k): [_number(g, f"ratios[{k!r}][{i}]", 0.0, strict=True)
                     for i, g in enumerate(_list(v, f"ratios[{k!r}]", steps))]
            for k, v in ratios.items()}


def teacache_coefficients(value) -> list[float]:
    """The rescaling polynomial fitted by Calibrate TeaCache, highest degree first."""
    value = _tagged(value, TEACACHE_COEFFICIENTS, "TeaCache calibration")
    return [_number(c, f"coefficients[{i}]") for i, c in enumerate(_list(value.get("coefficients"), "coefficients"))]


def smoothcache_errors(value) -> dict:
    """Per component kind and lookahead j, the mean error of reusing step s at s + j (None: not seen)."""
    value = _tagged(value, SMOOTHCACHE_ERRORS, "SmoothCache calibration")
    steps, lookahead = _count(value.get("steps"), "steps"), _count(value.get("lookahead"), "lookahead")
    for kind, per_j in _dict(value.get("errors"), "errors").items():
        if kind not in COMPONENT_KINDS:
            _fail("errors keys", f"one of {list(COMPONENT_KINDS)}", kind)
        for j, errs in _dict(per_j, f"errors[{kind!r}]").items():
            if j not in {str(n) for n in range(1, lookahead + 1)}:
                _fail(f"errors[{kind!r}] keys", f"lookaheads '1'..'{lookahead}'", j)
            if not isinstance(errs, list) or len(errs) > steps:
                _fail(f"errors[{kind!r}][{j!r}]", f"a list of at most {steps} values", errs)
            for i, e in enumerate(errs):
                if e is not None:
                    _number(e, f"errors[{kind!r}][{j!r}][{i}]", 0.0)
    return value


def smoothcache_schedule(value) -> dict:
    """{"steps": n, "schedule": {row key: [1 = compute, 0 = reuse] * n}}; row keys name a component kind,
    optionally for one block ("mlp-3")."""
    value = _tagged(value, SMOOTHCACHE_SCHEDULE, "SmoothCache schedule")
    steps = _count(value.get("steps"), "steps")
    for key, row in _dict(value.get("schedule"), "schedule").items():
        if not isinstance(key, str) or not _ROW_KEY.match(key):
            _fail("schedule keys", f"a component kind {list(COMPONENT_KINDS)}, optionally '-<block>'", key)
        for i, flag in enumerate(_list(row, f"schedule[{key!r}]", steps)):
            if isinstance(flag, bool) or flag not in (0, 1):
                _fail(f"schedule[{key!r}][{i}]", "0 (reuse) or 1 (compute)", flag)
    if "errors" in value:   # what it was made from, to rebuild it for another step count
        try:
            errors = smoothcache_errors(value["errors"])
        except ValueError as e:
            raise ValueError(f"errors {e}") from None
        if errors["steps"] != steps:
            raise ValueError(f"errors are for {errors['steps']} steps, the schedule for {steps}")
        _number(value.get("alpha"), "alpha", 0.0)
    return value


def threshold_tuning(value) -> dict:
    """What a tuning run recorded (tuning.py): the method it was made for, and per stream the steps, their
    sigmas and each step's changes against the steps before it (newest first)."""
    value = _tagged(value, THRESHOLD_TUNING, "threshold tuning")
    steps = _count(value.get("steps"), "steps")
    method = _dict(value.get("method"), "method")
    if not isinstance(method.get("name"), str):
        _fail("method['name']", "the method's name", method.get("name"))
    if method.get("reference") not in ("previous_call", "last_computed"):
        _fail("method['reference']", "'previous_call' or 'last_computed'", method.get("reference"))
    for key in ("front_blocks", "back_blocks"):
        if isinstance(method.get(key), bool) or not isinstance(method.get(key), int) or method[key] < 0:
            _fail(f"method[{key!r}]", "a whole number >= 0", method.get(key))
    for label, t in _dict(value.get("streams"), "streams").items():
        where = f"streams[{label!r}]"
        idx = _list(_dict(t, where).get("steps"), f"{where}['steps']")
        n = len(idx)
        if n < 2:
            _fail(f"{where}['steps']", "at least 2 recorded steps", idx)
        if any(isinstance(i, bool) or not isinstance(i, int) or not 0 <= i < steps for i in idx) \
                or idx != sorted(set(idx)):
            _fail(f"{where}['steps']", f"increasing step indices below {steps}", idx)
        for i, g in enumerate(_list(t.get("sigmas"), f"{where}['sigmas']", n)):
            _number(g, f"{where}['sigmas'][{i}]")
        changes = t.get("changes")
        if not isinstance(changes, list) or len(changes) != n:
            _fail(f"{where}['changes']", f"a list of {n} lists (one per step)", changes)
        for i, row in enumerate(changes):
            if not isinstance(row, list) or len(row) > i:
                _fail(f"{where}['changes'][{i}]", f"a list of at most {i} changes", row)
            for k, c in enumerate(row):
                _number(c, f"{where}['changes'][{i}][{k}]", 0.0)
    return value


def lemica_errors(value) -> dict:
    """Per stream, row i (one per step but the last) holds the error of reusing step i's residual at steps
    i+1..steps-1 (None: a step no call landed in); "samples": the residual elements each error was measured on."""
    value = _tagged(value, LEMICA_ERRORS, "LeMiCa calibration")
    steps = _count(value.get("steps"), "steps")
    if steps > LEMICA_MAX_STEPS:
        _fail("steps", f"at most {LEMICA_MAX_STEPS}", steps)
    if "samples" in value:
        _count(value["samples"], "samples")
    for label, rows in _dict(value.get("errors"), "errors").items():
        where = f"errors[{label!r}]"
        if not isinstance(rows, list) or len(rows) != steps - 1:
            _fail(where, f"a list of {steps - 1} rows (one per step but the last)", rows)
        for i, row in enumerate(rows):
            if not isinstance(row, list) or len(row) != steps - 1 - i:
                _fail(f"{where}[{i}]", f"a list of {steps - 1 - i} errors (steps {i + 1}..{steps - 1})", row)
            for k, e in enumerate(row):
                if e is not None:
                    _number(e, f"{where}[{i}][{k}]", 0.0)
    return value


@dataclass(frozen=True)
class Format:
    """One calibration format: the tag in its "format" field, how messages name it, the socket type nodes pass it
    on (a name the host declares to ComfyUI), and its check. A new format is its check and one row below (and a
    chart, nodes/charts.py)."""
    tag: str
    what: str
    socket: str
    check: Callable[[Any], Any]


FORMATS = {f.tag: f for f in (
    Format(MAGCACHE_RATIOS, "MagCache ratios", "MAGCACHE_RATIOS", magcache_ratios),
    Format(SMOOTHCACHE_ERRORS, "SmoothCache calibration", "SMOOTHCACHE_CALIBRATION", smoothcache_errors),
    Format(SMOOTHCACHE_SCHEDULE, "SmoothCache schedule", "SMOOTHCACHE_SCHEDULE", smoothcache_schedule),
    Format(TEACACHE_COEFFICIENTS, "TeaCache coefficients", "TEACACHE_COEFFICIENTS", teacache_coefficients),
    Format(THRESHOLD_TUNING, "threshold tuning", "CACHE_TUNING", threshold_tuning),
    Format(LEMICA_ERRORS, "LeMiCa calibration", "LEMICA_CALIBRATION", lemica_errors),
)}
CHECKS = {tag: f.check for tag, f in FORMATS.items()}


def check_any(value) -> dict:
    """Any CacheKit calibration, checked by its own format's rules (what a file may hold)."""
    fmt = value.get("format") if isinstance(value, dict) else None
    if fmt not in CHECKS:
        raise ValueError(f"is not a CacheKit calibration: format must be one of {sorted(CHECKS)}, got {fmt!r}")
    CHECKS[fmt](value)
    return value
