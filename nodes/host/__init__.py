"""The host: how CacheKit sits inside ComfyUI, below the node classes and above the engine (cache_core/).

  families.py, adapters.py   the family table (data) and how each family's blocks are called
  install.py                 a method onto a cloned MODEL, and the run around every sampling
  patches.py                 where a method reaches into the model: block, attention, MLP and CFG routes
  spec.py, live.py           what a node installed, and the run it is in now
  parallel.py                the decision sync of a multi-GPU run
  stats_feed.py, http_routes.py   what a run reports: the log, the node, GET /cachekit/stats
  calibration_files.py       the calibration files users save and load
  validation.py              the input checks and the error users see

Nothing here imports a node class (nodes/*.py import from here, never the other way; docs/architecture.md).
"""
