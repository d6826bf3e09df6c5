"""What an Apply node installed on a MODEL: its settings, the family, and the live run its hooks act on. Kept in
transformer_options, so every clone ComfyUI makes of the MODEL carries it (live.py)."""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable

import torch

from ...cache_core import CachePolicy, CacheRun, ReuseLimits
from ...cache_core.tuning import Targeted
from . import parallel
from .live import LiveRuns, SharedOnClone

if TYPE_CHECKING:
    from .families import Family

_log = logging.getLogger("CacheKit")


@dataclass(frozen=True, eq=False)
class CacheSpec(SharedOnClone):
    """What a node installed: settings only. The block layout (and block 0, which TeaCache's probe
    reads) is resolved from the model each run, so weight patches added after the node (LoRA) count."""
    node_name: str
    node_id: str | None
    family: Family
    make_policy: Callable[[], CachePolicy]
    start_percent: float = 0.0
    end_percent: float = 1.0
    warmup_steps: int = 0
    max_consecutive: int = -1
    node_class: str | None = None    # the node's class id (ApplyFirstBlockCache): a run shows on its node only
    # (node name, node id, node class) of the CacheKit nodes before this one on the MODEL, which it replaced
    replaces: tuple[tuple[str, str | None, str | None], ...] = ()
    kernel_override: bool = False    # the method reaches attention kernels through ComfyUI's override (patches.py)
    notes: tuple[str, ...] = ()      # what the node warned of when it was applied: shown with every run it makes
    live: LiveRuns = field(default_factory=LiveRuns)

    def new_run(self, model_patcher, sigmas: torch.Tensor) -> CacheRun:
        # get_model_object: what the sampler will run, object patches (ModelSamplingSD3, ...) included;
        # they are applied only when the model loads, after this wrapper starts
        layout, _ = self.family.layout(model_patcher.get_model_object("diffusion_model"))
        ms = model_patcher.get_model_object("model_sampling")
        start = math.inf if self.start_percent <= 0.0 else float(ms.percent_to_sigma(self.start_percent))
        end = -1.0 if self.end_percent >= 1.0 else float(ms.percent_to_sigma(self.end_percent))
        limits = ReuseLimits(start_sigma=start, end_sigma=end, warmup_steps=self.warmup_steps,
                             max_consecutive=self.max_consecutive)
        notes, schedule = list(self.notes), sigmas.tolist()
        if isinstance(self.make_policy, Targeted):   # a target instead of a threshold: picked for this run
            policy, note = self.make_policy.at(schedule, limits, len(layout))
            notes.append(note)
            if "cannot be reached" in note:
                _log.warning("%s: %s", self.node_name, note)
        else:
            policy = self.make_policy()
        run = CacheRun(policy, layout, schedule, limits, sync=parallel.decision_sync())
        run.stats.notes += notes
        return run
