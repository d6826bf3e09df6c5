"""What the calibration nodes show on themselves (web/cachekit.js draws it): a calibration as a small chart's
data, by its format. Plain lists of numbers, made from the checked calibration."""
from __future__ import annotations

from ..cache_core import calibration_data as cd


def chart(calibration: dict) -> dict | None:
    fmt = calibration.get("format")
    if fmt == cd.MAGCACHE_RATIOS:
        return {"kind": "MagCache ratios per step", "series": calibration["ratios"], "line": 1.0,
                "x": "step", "y": "residual magnitude ratio (1 = unchanged)"}
    if fmt == cd.SMOOTHCACHE_ERRORS:
        return {"kind": "SmoothCache error of reusing the previous step", "x": "step", "y": "relative error",
                "series": {k: [e if e is not None else 0.0 for e in per_j.get("1", [])]
                           for k, per_j in calibration["errors"].items()}}
    if fmt == cd.SMOOTHCACHE_SCHEDULE:
        errors = calibration.get("errors")
        series = {k: [e if e is not None else 0.0 for e in per_j.get("1", [])]
                  for k, per_j in (errors or {}).get("errors", {}).items()}
        return {"kind": "SmoothCache schedule (errors and alpha)", "x": "step",
                "y": "relative error" if series else "1 = computed", "series": series or
                {k: [float(v) for v in row] for k, row in calibration["schedule"].items()},
                "line": calibration.get("alpha")}
    if fmt == cd.TEACACHE_COEFFICIENTS:
        xs = [x for s in calibration.get("samples", {}).values() for x in s["input"]]
        ys = [y for s in calibration.get("samples", {}).values() for y in s["output"]]
        hi = max(xs, default=1.0) or 1.0
        grid = [hi * i / 40 for i in range(41)]

        def poly(x):
            y = 0.0
            for c in calibration["coefficients"]:
                y = y * x + c
            return y
        return {"kind": "TeaCache fit: output change vs input change", "points": [xs, ys],
                "x": "input change (rel. L1)", "y": "output change",
                "curve": [grid, [poly(x) for x in grid]]}
    if fmt == cd.THRESHOLD_TUNING:
        return {"kind": "Tuning: change per step against the previous step", "x": "step", "y": "change",
                "series": {k: [row[0] if row else 0.0 for row in t["changes"]]
                           for k, t in calibration["streams"].items()}}
    return None


def ui(calibration: dict) -> dict:
    try:
        c = chart(calibration)
    except (KeyError, TypeError, AttributeError, ValueError):   # a hand-written file the chart cannot read
        c = None
    return {"cachekit_chart": [c]} if c is not None else {}
