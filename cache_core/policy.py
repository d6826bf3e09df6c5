"""The contract between the engine and a caching method.

The engine (span_cache.py) runs the model's blocks; at the decision point of every model call it
asks the method, once per stream, whether that stream may reuse its cache. A method owns the state
it keeps per stream (previous probe, accumulators, forecast factors) and never sees other streams.
"""
from __future__ import annotations

import copy
import math
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

import torch

Hidden = dict[str, torch.Tensor]


@dataclass(frozen=True)
class StepInfo:
    """Where a model call sits in the sampling run (steps.py says how it is found from the sigma)."""
    index: int      # 0-based step whose noise interval [sigmas[i], sigmas[i+1]) holds the call's sigma
    total: int      # steps in this run
    sigma: float    # the call's sigma
    position: float | None = None   # fractional step index (midpoint calls lie between); None = index
    grid: tuple[int, ...] = ()      # the call's latent sizes after the channels ((frames,) height, width)
    # where a hidden state joins other tokens (text, reference images) to the image: the index of its first image
    # token, None where the image ends the sequence (the span's stored and replayed states: layout.image_start_at)
    image_start: int | None = 0

    def __post_init__(self):
        if self.position is None:
            object.__setattr__(self, "position", float(self.index))

    def at_edge(self, first: int, last: int) -> bool:
        """Among the first `first` or the last `last` steps of the run."""
        return self.index < first or self.index >= self.total - last


@dataclass(frozen=True)
class ReuseLimits:
    """Schedule limits every method shares: outside them the stream always computes. The first steps compute by the
    node's setting and by the method's own published rule (its edges()), whichever asks more; the last by the
    method's rule."""
    start_sigma: float = math.inf   # reuse allowed only while sigma <= start_sigma ...
    end_sigma: float = -1.0         # ... and sigma > end_sigma (ComfyUI start/end percent, as sigmas)
    warmup_steps: int = 0           # the first steps always compute
    max_consecutive: int = -1       # reuses in a row before a forced compute; -1 = no cap

    def edges(self, total: int, policy=None) -> tuple[int, int]:
        """(first, last): how many steps at each end of a `total`-step run always compute."""
        first, last = policy.edges(total) if policy is not None else (0, 0)
        return max(first, self.warmup_steps), last

    def allow(self, step: StepInfo, consecutive_reuses: int, policy=None) -> bool:
        if step.at_edge(*self.edges(step.total, policy)):
            return False
        if not (self.end_sigma < step.sigma <= self.start_sigma):
            return False
        return self.max_consecutive < 0 or consecutive_reuses < self.max_consecutive


class CachePolicy(ABC):
    """Base class of a method's decision rule over a span of blocks (span_cache.py).

    front_blocks (Fn) always run; back_blocks (Bn) always run after the span. The blocks in between
    are the span whose residual is cached and reused.
    probe says what the decision looks at:
      "front_residual"   the residual of the front blocks (First Block Cache, DBCache; needs Fn >= 1)
      "modulated_input"  the host's timestep-modulated input of block 0 (TeaCache; Fn = 0)
      "modulated_image"  block 0's modulated image tokens (SeaCache; Fn = 0)
      None               nothing from the tensors (MagCache, TaylorSeer: schedule or ratios only)
    """
    name = "cache"
    components: tuple[str, ...] = ()
    front_blocks = 1
    back_blocks = 0
    probe: str | None = "front_residual"

    def new_state(self, label: str) -> Any:
        return {}

    def edges(self, total_steps: int) -> tuple[int, int]:
        """(first, last): how many steps at each end of a run always compute by the method's published rule
        (its own names for them: warmup, retention, final steps). The engine's limits apply them."""
        return (0, 0)

    def prepare(self, total_steps: int) -> list[str]:
        """Once at the start of a run, with its step count: adapt to it and say how (notes for the log),
        or raise ValueError when the method cannot run that many steps."""
        return []

    def run_notes(self) -> list[str]:
        """What the user should know about how this run went (the run's stats carry it)."""
        return []

    # whether condition() changes the probe: it needs the call's step before the metric is measured, which
    # costs a host transfer of its own (the others read the step with the metric)
    conditions_probe = False

    def condition(self, probe: torch.Tensor | None, step: StepInfo, layout) -> torch.Tensor | None:
        """The probe of the whole call (all streams batched) as the method measures it (SeaCache filters it)."""
        return probe

    def measure(self, state: Any, probe: torch.Tensor | None, step: StepInfo | None = None) -> torch.Tensor | None:
        """The partial sums [numerator, denominator] of the metric the decision needs (metrics.rel_l1_parts),
        computed without a host sync: the engine adds them over the ranks of a sequence-parallel run
        (decision_sync.py), divides, and brings every stream's metric to the host at once. `step`: the call's step,
        handed only to a policy that conditions its probe (it was read for condition(); for the others reading it
        here would cost a host sync of its own)."""
        return None

    @abstractmethod
    def wants_reuse(self, state: Any, metric: float | None, step: StepInfo) -> bool:
        """Pure: may this stream reuse on this call? (The engine ANDs it with cache presence and limits.)"""

    def commit(self, state: Any, reused: bool, probe: torch.Tensor | None, metric: float | None,
               step: StepInfo) -> None:
        """Update the stream's state with what actually happened on this call."""

    # --- what is cached: the span residual of this stream ----------------------------------------
    def store(self, state: Any, residual: Hidden, step: StepInfo, span_input: Hidden) -> Hidden:
        """Called on computed calls with the fresh span residual (and the span's input, laid out as the
        residual); returns what to keep for reuse."""
        return residual

    def reuse(self, state: Any, cached: Hidden, step: StepInfo, span_input: Hidden) -> Hidden:
        """The residual to add to `span_input` on a reused call (forecasting methods extrapolate here)."""
        return cached


class ResidualRecorder(CachePolicy):
    """A calibration run: the whole stack computes on every call, and each stream's state (a `state_type` made
    from its label, kept in `streams`) records what `record` takes from the fresh whole-stack residual. `steps` is
    the run's step count once a residual arrived."""
    front_blocks = 0
    back_blocks = 0
    probe = None
    state_type: type = dict

    def __init__(self):
        self.streams: dict[str, Any] = {}
        self.steps = 0

    def new_state(self, label: str) -> Any:
        self.streams[label] = self.state_type(label)
        return self.streams[label]

    def wants_reuse(self, state: Any, metric: float | None, step: StepInfo) -> bool:
        return False

    def store(self, state: Any, residual: Hidden, step: StepInfo, span_input: Hidden) -> Hidden:
        self.steps = step.total
        self.record(state, residual, step)
        return residual

    @abstractmethod
    def record(self, state: Any, residual: Hidden, step: StepInfo) -> None:
        """Keep what the calibration needs from this computed call's residual."""


class Tunable:
    """A method whose saving one threshold sets (more threshold, more reuse): auto-tune (tuning.py) can aim it
    at a target fraction of block evaluations. `reference` says what its probe's change is measured against:
    "previous_call" (TeaCache: every call moves the reference) or "last_computed" (First Block Cache, DBCache)."""
    threshold: float
    reference = "last_computed"

    def tuning_key(self) -> dict:
        """Settings besides the probe that change what a tuning records (a tuning fits only these)."""
        return {}

    def with_threshold(self, threshold: float):
        other = copy.copy(self)
        other.threshold = float(threshold)
        return other


class ComponentPolicy(ABC):
    """Base class of a method that reuses sub-block outputs (component_cache.py): attention kernel calls,
    and MLPs where `components` names them. The decision depends on the component's kind, block and
    the step; what is returned on reuse is derived from the stream's recent outputs of that component."""
    name = "components"
    components: tuple[str, ...] = ("attention",)
    front_blocks = back_blocks = 0
    probe = None
    keep = 1                        # past outputs kept per component and stream
    store_approximations = False    # whether a reused (approximated) output joins that history

    def new_state(self, label: str) -> Any:
        return None

    def edges(self, total_steps: int) -> tuple[int, int]:
        """As CachePolicy.edges."""
        return (0, 0)

    def prepare(self, total_steps: int) -> list[str]:
        """As CachePolicy.prepare."""
        return []

    @abstractmethod
    def component_reuse(self, kind: str, block: int, step: StepInfo) -> bool:
        """May this step reuse the component (all streams of the call have a history for it)?"""

    def reuses(self, kind: str, block: int) -> bool:
        """Whether this run may ever reuse the component: where not, its outputs are not kept (at Wan 14B 720p one
        attention output is 738 MiB per stream)."""
        return True

    def component_value(self, kind: str, history: list, step: StepInfo) -> torch.Tensor:
        """The output to use, from [(step, output), ...] oldest first: by default the newest."""
        return history[-1][1]

    def observe(self, label: str, key, kind: str, out: torch.Tensor, step: StepInfo) -> None:
        """Every computed component output, per stream (calibration runs record here)."""

    def run_notes(self) -> list[str]:
        """What the user should know about how this run went (the run's stats carry it)."""
        return []


class CfgCache(ABC):
    """A method that also works at the CFG level (FasterCache): per sampler step it may skip the uncond
    model call and estimate that output from the cond one. Hosts call these around their CFG batch."""

    @abstractmethod
    def skip_uncond(self, step: StepInfo) -> bool:
        """Decide this step's CFG call: True = run cond alone and estimate uncond."""

    @abstractmethod
    def estimate_uncond(self, cond_out: torch.Tensor, step: StepInfo) -> torch.Tensor:
        """The uncond model output estimated from the cond one (both in model-output space)."""

    @abstractmethod
    def observe_cfg(self, cond_out: torch.Tensor, uncond_out: torch.Tensor) -> None:
        """Both outputs of a step that ran them."""
