"""HTTP routes for the web extension and tools: GET /cachekit/stats -> recent runs' stats (JSON); POST
/cachekit/client {"client_id"} -> this page draws runs itself (no progress text for its prompts)."""
from __future__ import annotations

from . import stats_feed


def register(prompt_server) -> None:
    from aiohttp import web

    @prompt_server.routes.get("/cachekit/stats")
    async def _stats(_request):
        return web.json_response({"runs": stats_feed.recent()})

    @prompt_server.routes.post("/cachekit/client")
    async def _client(request):
        try:
            body = await request.json()
        except ValueError:
            body = None
        client_id = body.get("client_id") if isinstance(body, dict) else None
        if not isinstance(client_id, str) or not 0 < len(client_id) <= 128:
            return web.json_response({"error": "client_id must be a non-empty string"}, status=400)
        stats_feed.client_has_extension(client_id)
        return web.json_response({"ok": True})
