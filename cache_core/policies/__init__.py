from .first_block import FirstBlockCache

__all__ = ["FirstBlockCache"]
