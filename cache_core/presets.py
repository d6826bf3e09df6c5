"""Published per-model constants shipped as JSON data (cache_core/presets/*.json), with their sources."""
from __future__ import annotations

import functools
import json
from pathlib import Path

_DIR = Path(__file__).resolve().parent / "presets"


@functools.lru_cache(maxsize=None)
def _load(name: str) -> dict:
    return json.loads((_DIR / f"{name}.json").read_text())["presets"]


def teacache(name: str) -> dict:
    return _load("teacache")[name]


def magcache(name: str) -> dict:
    return _load("magcache")[name]


def names(kind: str) -> list[str]:
    return list(_load(kind))


def family(kind: str, name: str) -> str:
    """The model family a preset was published for (a name of the family table, nodes/host/families.py)."""
    return _load(kind)[name]["family"]
