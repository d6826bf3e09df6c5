"""CacheKit: training-free caching for diffusion transformers in ComfyUI.

ComfyUI loads this folder from custom_nodes/: the node classes come from nodes/, the engine from
cache_core/, the frontend extension from web/.
"""
import logging
import sys

from .nodes import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS

WEB_DIRECTORY = "./web"

_server = sys.modules.get("server")
_instance = getattr(getattr(_server, "PromptServer", None), "instance", None)
if _instance is not None:
    try:
        from .nodes.host.http_routes import register
        register(_instance)
    except Exception:  # noqa: BLE001 - a route failing to register must not take the nodes down
        logging.getLogger("CacheKit").exception("CacheKit: could not register /cachekit/stats")

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS", "WEB_DIRECTORY"]
