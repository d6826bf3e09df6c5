"""Where finished runs' stats go: one log line per stream, a short history for the HTTP route, and a
websocket event for the web extension. Holds plain dicts only, never tensors."""
from __future__ import annotations

import collections
import logging
import sys

from ..cache_core import RunStats

_log = logging.getLogger("CacheKit")
_RECENT: collections.deque = collections.deque(maxlen=64)
EVENT = "cachekit.stats"


def publish(stats: RunStats, node_id: str | None, family: str) -> dict:
    for line in stats.log_lines():
        _log.info(line)
    record = stats.to_dict() | {"node_id": node_id, "family": family}
    _RECENT.append(record)
    server = sys.modules.get("server")   # only inside the real server, never imported from here
    try:
        instance = getattr(getattr(server, "PromptServer", None), "instance", None)
        if instance is not None:
            instance.send_sync(EVENT, record)
    except Exception:   # noqa: BLE001 - reporting must never fail a finished run
        _log.debug("CacheKit: no server to send stats to", exc_info=True)
    return record


def recent() -> list[dict]:
    return list(_RECENT)
