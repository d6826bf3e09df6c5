"""One module per method: its decision rule (and calibration recorder). Each module's __all__ is exported here
and from cache_core, so a new method's module needs no entry in a list (docs/architecture.md)."""
import importlib
import pkgutil

__all__: list[str] = []
for _module in pkgutil.iter_modules(__path__):
    _loaded = importlib.import_module(f"{__name__}.{_module.name}")
    globals().update({name: getattr(_loaded, name) for name in _loaded.__all__})
    __all__ += _loaded.__all__
