"""Where finished runs' stats go: one log line per stream, a short history for the HTTP route, and a
websocket event for the web extension. Holds plain dicts only, never tensors."""
from __future__ import annotations

import collections
import itertools
import logging
import sys

from ...cache_core import RunStats

_log = logging.getLogger("CacheKit")
_RECENT: collections.deque = collections.deque(maxlen=64)
_RUNS = itertools.count(1)   # every published run gets the next number (the deque forgets, this does not)
EVENT = "cachekit.stats"
# the client ids of pages with CacheKit's web extension (it says so on load): they draw the run themselves, so
# ComfyUI's progress text, which would print the summary a second time under the node, goes to the others only
_EXTENDED: collections.deque = collections.deque(maxlen=256)


def client_has_extension(client_id: str) -> None:
    if client_id and client_id not in _EXTENDED:
        _EXTENDED.append(client_id)


def publish(stats: RunStats, spec) -> dict:
    """A finished run of the node `spec` describes (spec.CacheSpec): logged, kept, and sent to the page that queued
    it. The record names the prompt it ran in and the node (id and class) that made it, so the web extension shows
    it on that node of that workflow only."""
    node_name, node_id = spec.node_name, spec.node_id
    for line in stats.log_lines():
        _log.info(line)
    for name, earlier_id, _ in spec.replaces:
        _log.warning("CacheKit: %s (node %s) did not run: %s (node %s) after it replaced it.",
                     name, earlier_id, node_name, node_id)
    prompt_id = getattr(_server(), "last_prompt_id", None)    # the prompt the server is executing
    record = stats.to_dict() | {"run": next(_RUNS), "prompt_id": prompt_id, "node_id": node_id,
                                "node_class": spec.node_class, "node": node_name, "family": spec.family.name,
                                "replaces": [{"node": n, "node_id": i, "node_class": c} for n, i, c in spec.replaces],
                                "summary": stats.summary()}
    _RECENT.append(record)
    _send(record)
    client = getattr(_server(), "client_id", None)    # the page whose prompt runs
    if client is None or client not in _EXTENDED:
        _progress_text("\n".join([record["summary"], *stats.notes]), node_id, client)
    for name, earlier_id, earlier_class in spec.replaces:   # the replaced nodes say so on themselves
        _send({"prompt_id": prompt_id, "node_id": earlier_id, "node_class": earlier_class, "node": name,
               "replaced_by": {"node": node_name, "node_id": node_id}})
    return record


def _server():
    """The running PromptServer, if this process is the real server (never imported from here)."""
    return getattr(getattr(sys.modules.get("server"), "PromptServer", None), "instance", None)


def _send(event: dict) -> None:
    instance = _server()
    try:
        if instance is not None:
            instance.send_sync(EVENT, event)
    except Exception:   # noqa: BLE001 - reporting must never fail a finished run
        _log.debug("CacheKit: no server to send stats to", exc_info=True)


def _progress_text(text: str, node_id: str | None, client: str | None) -> None:
    """ComfyUI's own text-on-the-node message: a frontend without CacheKit's extension shows the summary too."""
    instance = _server()
    if instance is None or node_id is None:
        return
    try:
        instance.send_progress_text(text, node_id, client)   # to that page only (to all without one)
    except Exception:   # noqa: BLE001 - reporting must never fail a finished run
        _log.debug("CacheKit: could not send progress text", exc_info=True)


def recent() -> list[dict]:
    return list(_RECENT)
