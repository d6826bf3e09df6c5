"""What the calibration nodes show on themselves (web/cachekit.js draws it): a calibration as a small chart's
data, by its format. Plain lists of numbers, made from the checked calibration."""
from __future__ import annotations

from ..cache_core import calibration_data as cd
from ..cache_core.policies.teacache import poly


def _first_lookahead(errors: dict) -> dict[str, list[float]]:
    return {k: [e if e is not None else 0.0 for e in per_j.get("1", [])] for k, per_j in errors.items()}


def _magcache_ratios(c: dict) -> dict:
    return {"kind": "MagCache ratios per step", "series": c["ratios"], "line": 1.0,
            "x": "step", "y": "residual magnitude ratio (1 = unchanged)"}


def _smoothcache_errors(c: dict) -> dict:
    return {"kind": "SmoothCache error of reusing the previous step", "x": "step", "y": "relative error",
            "series": _first_lookahead(c["errors"])}


def _smoothcache_schedule(c: dict) -> dict:
    series = _first_lookahead((c.get("errors") or {}).get("errors", {}))
    return {"kind": "SmoothCache schedule (errors and alpha)", "x": "step",
            "y": "relative error" if series else "1 = computed", "series": series or
            {k: [float(v) for v in row] for k, row in c["schedule"].items()}, "line": c.get("alpha")}


def _teacache_coefficients(c: dict) -> dict:
    xs = [x for s in c.get("samples", {}).values() for x in s["input"]]
    ys = [y for s in c.get("samples", {}).values() for y in s["output"]]
    hi = max(xs, default=1.0) or 1.0
    grid = [hi * i / 40 for i in range(41)]
    return {"kind": "TeaCache fit: output change vs input change", "points": [xs, ys],
            "x": "input change (rel. L1)", "y": "output change",
            "curve": [grid, [poly(c["coefficients"], x) for x in grid]]}


def _threshold_tuning(c: dict) -> dict:
    return {"kind": "Tuning: change per step against the previous step", "x": "step", "y": "change",
            "series": {k: [row[0] if row else 0.0 for row in t["changes"]] for k, t in c["streams"].items()}}


def _lemica_errors(c: dict) -> dict:
    return {"kind": "LeMiCa error of reusing a step at the next", "x": "step", "y": "relative L1 error",
            "series": {k: [(row[0] or 0.0) for row in rows] for k, rows in c["errors"].items()}}


# one chart per calibration format (cache_core/calibration_data.FORMATS)
CHARTS = {cd.MAGCACHE_RATIOS: _magcache_ratios, cd.SMOOTHCACHE_ERRORS: _smoothcache_errors,
          cd.SMOOTHCACHE_SCHEDULE: _smoothcache_schedule, cd.TEACACHE_COEFFICIENTS: _teacache_coefficients,
          cd.THRESHOLD_TUNING: _threshold_tuning, cd.LEMICA_ERRORS: _lemica_errors}


def chart(calibration: dict) -> dict | None:
    draw = CHARTS.get(calibration.get("format"))
    return draw(calibration) if draw else None


def ui(calibration: dict) -> dict:
    try:
        c = chart(calibration)
    except (KeyError, TypeError, AttributeError, ValueError):   # a hand-written file the chart cannot read
        c = None
    return {"cachekit_chart": [c]} if c is not None else {}
