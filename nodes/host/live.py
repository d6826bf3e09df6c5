"""How every hook finds the live run, whatever clones ComfyUI made of the MODEL in between.

ModelPatcher.clone() copies model_options, where hooks live (patches_replace entries, the attention override):
ComfyUI 0.3.75 deep-copies it, later lines copy its dicts and lists and share everything else. Objects kept
there are immutable or shared on purpose, so copying one gives the object itself: cloning a cached MODEL copies
no module, no weight and no run, and every clone's hooks reach the run the sampler started.
"""
from __future__ import annotations

import threading
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ...cache_core import CacheRun


class SharedOnClone:
    def __deepcopy__(self, memo):
        return self

    def __copy__(self):
        return self


class LiveRuns(SharedOnClone):
    """The run a spec's hooks act on while a sampler runs it. A stack, so a sampling run nested inside
    another (a node that samples inside a sampler) ends cleanly."""

    def __init__(self):
        self._stack: list[CacheRun] = []
        self._thread = threading.local()   # per calling thread, as the run's call in progress (run.py)
        self._fronted: set[int] = set()      # the runs that put the override in front of another node's
        # {object patch path the node registered: whether it routes a block} (patches.object_patch): a run checks
        # that no patch added after the node replaced them (patches.replaced_object_patches)
        self.object_patches: dict[str, bool] = {}

    @property
    def kernels_reached(self) -> bool:
        """Whether the model call in progress on this thread reaches its attention kernels through this spec's
        override (another node's override, installed after CacheKit's, takes them instead): q/k/v may be skipped
        only if it does."""
        return getattr(self._thread, "kernels_reached", False)

    @kernels_reached.setter
    def kernels_reached(self, value: bool) -> None:
        self._thread.kernels_reached = value

    @property
    def fronted(self) -> bool:
        """Whether the live run put this spec's attention override in front of another node's (patches.put_in_front):
        the override installed with the node is then reached only through that node's, and must not decide again."""
        run = self.run
        return run is not None and id(run) in self._fronted

    def put_in_front(self, run: CacheRun) -> None:
        self._fronted.add(id(run))

    @property
    def run(self) -> CacheRun | None:
        return self._stack[-1] if self._stack else None

    @property
    def call(self):
        """The model call in progress (SpanCall or ComponentCall), if any."""
        run = self.run
        return run.current if run is not None else None

    def push(self, run: CacheRun) -> None:
        self._stack.append(run)

    def pop(self, run: CacheRun) -> None:
        self._stack = [r for r in self._stack if r is not run]   # by identity: runs hold tensors
        self._fronted.discard(id(run))
