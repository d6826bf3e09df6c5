"""ComfyUI glue: node classes, the family table, hook installation. The engine is ../cache_core."""
from .first_block_cache import ApplyFirstBlockCache

NODE_CLASS_MAPPINGS = {
    "ApplyFirstBlockCache": ApplyFirstBlockCache,
}
NODE_DISPLAY_NAME_MAPPINGS = {
    "ApplyFirstBlockCache": "Apply First Block Cache",
}
