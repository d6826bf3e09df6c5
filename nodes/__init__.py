"""ComfyUI glue: the node classes, on top of the host layer (host/: the family table, installation, the hooks).
The engine is ../cache_core.

The nodes are registered from their classes: every concrete CacheKitNode subclass in this package's modules
(a new node file needs no entry here)."""
import importlib
import inspect
import pkgutil

from .host import calibration_files
from .common import CacheKitNode

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")


def _node_classes(base=CacheKitNode):
    for cls in base.__subclasses__():
        if not inspect.isabstract(cls) and hasattr(cls, "FUNCTION"):
            yield cls
        yield from _node_classes(cls)


_NODES = sorted(set(_node_classes()), key=lambda cls: cls.__name__)
calibration_files.register()
NODE_CLASS_MAPPINGS = {cls.__name__: cls for cls in _NODES}
NODE_DISPLAY_NAME_MAPPINGS = {cls.__name__: cls.NODE_NAME for cls in _NODES}
# the Apply nodes with example settings, in their tables' order: what tests, benchmarks and workflows iterate
METHOD_NODES = sorted((cls for cls in _NODES if getattr(cls, "EXAMPLES", None)), key=lambda cls: cls.RANK)
