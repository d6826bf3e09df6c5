"""HTTP route for the web extension and tools: GET /cachekit/stats -> recent runs' stats (JSON)."""
from __future__ import annotations

from . import stats_feed


def register(prompt_server) -> None:
    from aiohttp import web

    @prompt_server.routes.get("/cachekit/stats")
    async def _stats(_request):
        return web.json_response({"runs": stats_feed.recent()})
