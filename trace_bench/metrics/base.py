"""Two layers every metric provides (STYLE.md principle 1):

* a **streaming class** (:class:`StreamingMetric`: declared states, ``update`` / ``compute`` /
  ``reset`` / ``merge``) with a **pure functional twin** that the class calls;
* a **runner plug-in** (:class:`MetricSpec`) registered in :data:`METRICS`, which tells
  ``trace-bench run`` what the metric needs (reference? weights? prompt?) and how to turn one
  case (:class:`CaseData`) into per-case values or a mergeable per-case state.

Per-case metrics (``kind="case"``) return ``{column: value}`` for one volume. Distribution metrics
(``kind="distribution"``) return a mergeable state per volume (float64 sums, counts); the runner
merges states of one method and of the reference set and calls :meth:`MetricSpec.compute`.
Merging is exact and order-independent, so runs can be sharded and merged.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, ClassVar, Iterable, Literal

import numpy as np

from ..protocol import DEFAULT_PROTOCOL, FrameProtocol
from ..registry import Registry
from ..volume import Volume

State = dict[str, np.ndarray]


class StreamingMetric:
    """Minimal torchmetrics-style base: states declared with :meth:`add_state`.

    ``reduce`` is ``"sum"`` (arrays/scalars added on merge) or ``"cat"`` (lists concatenated).
    """

    def __init__(self) -> None:
        self._defaults: dict[str, tuple[Any, str]] = {}

    def add_state(self, name: str, default: Any, reduce: Literal["sum", "cat"] = "sum") -> None:
        self._defaults[name] = (default, reduce)
        setattr(self, name, self._fresh(default))

    @staticmethod
    def _fresh(default: Any) -> Any:
        if isinstance(default, np.ndarray):
            return default.copy()
        if isinstance(default, list):
            return []
        return default

    def reset(self) -> None:
        for name, (default, _) in self._defaults.items():
            setattr(self, name, self._fresh(default))

    def merge(self, other: "StreamingMetric") -> "StreamingMetric":
        """Fold another instance's states into this one (exact, order-independent for sums)."""
        if type(other) is not type(self):
            raise TypeError(f"Expected a {type(self).__name__} to merge, got {type(other).__name__}")
        for name, (_, reduce) in self._defaults.items():
            a, b = getattr(self, name), getattr(other, name)
            setattr(self, name, a + b if reduce == "sum" and not isinstance(a, list) else list(a) + list(b))
        return self

    def state_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self._defaults}

    def update(self, *args: Any, **kwargs: Any) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def compute(self) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError


@dataclass
class CaseData:
    """One volume to score, plus what a metric may need about its case.

    Expensive views (``frames``) are computed once on first use and shared by every metric.
    ``shared`` is a scratch dict for intermediates several metrics reuse (e.g. label maps).
    """

    method: str
    case_id: str
    volume: Volume
    reference: Volume | None = None
    prompt: str | None = None
    protocol: FrameProtocol = DEFAULT_PROTOCOL
    mask: Volume | None = None  # user-provided label map for this volume (``provided`` segmenter)
    reference_mask: Volume | None = None
    device: str = "cpu"
    shared: dict[str, Any] = field(default_factory=dict)

    @cached_property
    def frames(self) -> np.ndarray:
        """uint8 (T, H, W), see :mod:`trace_bench.protocol`."""
        return self.protocol.frames(self.volume)

    @cached_property
    def reference_frames(self) -> np.ndarray | None:
        return None if self.reference is None else self.protocol.frames(self.reference)


@dataclass
class RunContext:
    """Settings every metric plug-in may read when it is set up."""

    device: str = "cpu"
    protocol: FrameProtocol = DEFAULT_PROTOCOL
    weights: dict[str, str] = field(default_factory=dict)  # registry name -> explicit path
    cache_dir: str | None = None
    segmenter: str = "threshold"
    classes: str = "3"
    batch_size: int = 32
    seed: int = 0
    options: dict[str, Any] = field(default_factory=dict)


class MetricSpec(ABC):
    """Runner plug-in for one metric family. Subclass, set the class attributes, register."""

    name: ClassVar[str]
    kind: ClassVar[Literal["case", "distribution"]] = "case"
    #: per_case.csv metric names this plug-in writes, with the direction of "better"
    columns: ClassVar[dict[str, bool]] = {}  # column -> higher_is_better
    #: the table of the paper it belongs to: "table1" or "table2"
    table: ClassVar[str] = "table1"
    needs_reference: ClassVar[bool] = False
    needs_prompt: ClassVar[bool] = False
    #: weights registry names required (preflight checks them before any heavy work)
    weights: ClassVar[tuple[str, ...]] = ()
    description: ClassVar[str] = ""

    @property
    def weight_free(self) -> bool:
        return not self.required_weights()

    def required_weights(self, ctx: RunContext | None = None) -> tuple[str, ...]:
        return self.weights

    def protocol_id(self, ctx: RunContext) -> str:
        """Identifies the preprocessing + backbone that produced the values (goes into every row)."""
        return ctx.protocol.id

    def setup(self, ctx: RunContext) -> None:
        """Load backbones etc. Raise :class:`~trace_bench.errors.WeightsError` when missing."""

    # kind == "case"
    def case_values(self, data: CaseData, ctx: RunContext) -> dict[str, float]:
        raise TypeError(f"{self.name} is not a per-case metric")

    # kind == "distribution"
    def case_state(self, data: CaseData, ctx: RunContext) -> State:
        raise TypeError(f"{self.name} is not a distribution metric")

    def merge(self, states: Iterable[State]) -> State:
        """Default: add every array (exact for float64 sums and counts)."""
        out: State = {}
        for s in states:
            for k, v in s.items():
                out[k] = np.asarray(v, dtype=np.float64) + out[k] if k in out else np.asarray(v, dtype=np.float64).copy()
        return out

    def compute(self, generated: State, reference: State, ctx: RunContext) -> dict[str, float]:
        raise TypeError(f"{self.name} is not a distribution metric")

    def export_stats(self, state: State) -> dict[str, np.ndarray]:
        """Arrays the runner saves as ``stats/{method}_{metric}.npz`` (e.g. ``mu``, ``sigma``, ``n``)."""
        return dict(state)


METRICS: Registry[MetricSpec] = Registry("metric")


def register_metric(spec_cls: type[MetricSpec]) -> type[MetricSpec]:
    METRICS.register(spec_cls.name, spec_cls())
    return spec_cls
