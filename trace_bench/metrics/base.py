"""The one metric abstraction (STYLE.md principles 1, 4, 11).

A metric is a :class:`Metric` subclass, registered as a class with :func:`register_metric` and
instantiated per run with its validated options (no module-level singletons). It declares:

* ``kind``: ``"case"`` (values per volume, averaged over cases) or ``"distribution"`` (a mergeable
  state per volume; the set-level value comes from the merged states of a method and of the
  reference set);
* ``outputs``: the result columns it writes, each an :class:`Output` with the direction of
  "better", header label, unit, decimals and position in its table (reports, CSVs, ``compare`` and
  the ``--metrics`` choices are generated from these; a new metric needs no edits elsewhere);
* ``options``: :class:`Option` declarations, settable as ``--option NAME.KEY=VALUE`` or in a TOML
  ``[options.NAME]`` table, validated here, written to ``config.toml`` and part of the protocol id;
* its needs: ``needs_reference``, ``needs_prompt``, ``weights`` (weights registry names with the
  default options; :meth:`Metric.required_weights` is the one question asked of a metric; the
  backbone is resolved, loaded lazily and its features cached by :mod:`.backbone`);
* its protocol: :meth:`Metric.protocol_parts`, the parts of its protocol id, each with its meaning in
  plain words; :meth:`Metric.protocol_id` joins them (and the changed options), and
  :meth:`Metric.protocol_legend` is what ``metrics.json`` records beside every column.

Per-case work is pure: ``case_values(data, ctx)`` or ``case_state(data, ctx)``. The same object is
also a torchmetrics-style streaming metric: ``update(data, ctx)`` folds one volume into the
instance's state, ``merge_state(other)`` folds another instance in, ``compute_result(ctx)`` gives
the values (means over cases for per-case metrics; the set-level value against ``reference`` for
distribution metrics). Merging is exact and order-independent, so runs shard and merge.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Callable, ClassVar, Iterable, Literal

import numpy as np

from ..errors import ConfigError, did_you_mean
from ..protocol import DEFAULT_PROTOCOL, FrameProtocol
from ..registry import Registry
from ..volume import Volume
from ..results.tables import ColumnStyle

State = dict[str, np.ndarray]
#: one ``|``-separated part of a protocol id and its meaning in plain words
Part = tuple[str, str]


# ============================================================================= declarations
#: one result column a metric writes and how reports show it (direction, label, unit, digits, rank,
#: hidden, tolerance, closest_to_reference): the results layer's column style, so that what a metric
#: declares is exactly what ``metrics.json`` records
Output = ColumnStyle

#: declared ranges (``Output.value_range`` / ``estimate_range``), named once
Range = tuple[float | None, float | None]
NONNEGATIVE: Range = (0.0, None)  # distances, MMD^2, counts, mm
UNIT_INTERVAL: Range = (0.0, 1.0)  # fractions: overlap, PRDC precision / recall / coverage, VBench scores
COSINE: Range = (-1.0, 1.0)  # a cosine similarity
ANY_REAL: Range = (None, None)  # an estimator that can take any value (an MMD^2 U-statistic, an extrapolation)


@dataclass(frozen=True)
class Option:
    """A documented, validated setting of a metric (``--option METRIC.NAME=VALUE``)."""

    name: str
    default: Any
    help: str
    #: the Python type values are converted to (int, float, str, bool)
    type: type = str
    choices: tuple[Any, ...] | None = None
    minimum: float | None = None
    maximum: float | None = None
    #: values that mean "no limit" besides the typed ones (e.g. "all" for a slice count)
    special: tuple[str, ...] = ()
    #: a parser that validates and normalises the value (raises ConfigError); replaces the type check
    parser: Callable[[Any], Any] | None = None
    #: the value under ``trace-bench run --fast`` (a CPU-practical protocol for quick looks; it shows in
    #: the protocol id, so fast numbers are never mistaken for full ones); None = unchanged
    fast: Any = None
    #: False when the value cannot change any number (e.g. a cache switch), or when the metric's
    #: ``base_protocol_id`` already spells it out; otherwise a changed value is appended to the
    #: protocol id (and so to every cache key)
    in_protocol_id: bool = True

    def parse(self, value: Any, metric: str) -> Any:
        where = f"option {metric}.{self.name}"
        if self.parser is not None:
            try:
                return self.parser(value)
            except ConfigError as e:
                raise ConfigError(f"{where}: {e}") from None
        if isinstance(value, str) and value in self.special:
            return value
        if value is None and self.default is None:
            return None
        t = self.type
        try:
            if t is bool:
                if isinstance(value, bool):
                    v: Any = value
                elif str(value).lower() in ("true", "1", "yes", "on"):
                    v = True
                elif str(value).lower() in ("false", "0", "no", "off"):
                    v = False
                else:
                    raise ValueError
            elif t is int:
                if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                    raise ValueError
                v = int(value)
            elif t is float:
                if isinstance(value, bool):
                    raise ValueError
                v = float(value)
            else:
                if not isinstance(value, str):
                    raise ValueError
                v = value
        except (TypeError, ValueError):
            extra = f" or {', '.join(repr(s) for s in self.special)}" if self.special else ""
            raise ConfigError(f"{where}: expected {t.__name__}{extra}, got {value!r}") from None
        if self.choices is not None and v not in self.choices:
            raise ConfigError(f"{where}: expected one of {', '.join(map(str, self.choices))}, got {v!r}")
        if self.minimum is not None and v < self.minimum:
            raise ConfigError(f"{where}: expected >= {self.minimum:g}, got {v!r}")
        if self.maximum is not None and v > self.maximum:
            raise ConfigError(f"{where}: expected <= {self.maximum:g}, got {v!r}")
        return v

    def describe(self) -> str:
        c = f"; one of {', '.join(map(str, self.choices))}" if self.choices else ""
        return f"{self.name} (default {self.default!r}{c}): {self.help}"


def resolve_declared(options: Iterable[Option], given: dict[str, Any], owner: str) -> dict[str, Any]:
    """Defaults of ``options`` overlaid with ``given``; unknown names and bad values raise ConfigError
    naming ``owner`` (the metric)."""
    known = {o.name: o for o in options}
    for k in given:
        if k not in known:
            avail = ", ".join(sorted(known)) or "none"
            raise ConfigError(f"option {owner}.{k}: {owner} has no option {k!r} (options: {avail})."
                              f"{did_you_mean(k, known)}")
    return {name: o.parse(given[name], owner) if name in given else o.default for name, o in known.items()}


# ============================================================================= per-case inputs
@dataclass
class CaseData:
    """One volume to score, plus what a metric may need about its case.

    Expensive views (``frames``) are computed once on first use and shared by every metric.
    ``shared`` is a scratch dict for intermediates several metrics reuse (e.g. label maps);
    ``warnings`` collects what metrics noticed about the volume (:meth:`warn`).
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
    #: ``"stage: text"`` warnings metrics raise about this volume while scoring it (:meth:`warn`); the run
    #: records those a metric added with that metric's result, so they reach ``warnings.csv`` and the report
    warnings: list[str] = field(default_factory=list)

    def warn(self, stage: str, text: str) -> None:
        """Record a one-line warning about this volume (e.g. stage ``body-region``: a chest protocol on a
        head CT); a metric calls it for every result it writes, even when its features came from a cache."""
        self.warnings.append(f"{stage}: {' '.join(str(text).split())}")

    @cached_property
    def frames(self) -> np.ndarray:
        """uint8 (T, H, W), see :mod:`trace_bench.protocol`."""
        return self.protocol.frames(self.volume, device=self.device)

    @cached_property
    def reference_frames(self) -> np.ndarray | None:
        return None if self.reference is None else self.protocol.frames(self.reference)


@dataclass
class RunContext:
    """Run-wide settings every metric may read (metric-specific settings are its options)."""

    device: str = "cpu"
    protocol: FrameProtocol = DEFAULT_PROTOCOL
    weights: dict[str, str] = field(default_factory=dict)  # registry name -> explicit path
    cache_dir: str | None = None
    segmenter: str = "threshold"
    classes: str = "3"
    batch_size: int = 32
    seed: int = 0


# ============================================================================= the metric
class Metric:
    """Base class of every metric. Subclass, declare the class attributes, decorate with
    :func:`register_metric`."""

    name: ClassVar[str]
    kind: ClassVar[Literal["case", "distribution"]] = "case"
    #: the result columns; ``columns`` (column -> higher_is_better) is derived from it
    outputs: ClassVar[dict[str, Output]] = {}
    #: the table of the paper it belongs to: "table1" or "table2"
    table: ClassVar[str] = "table1"
    needs_reference: ClassVar[bool] = False
    needs_prompt: ClassVar[bool] = False
    #: weights registry names required (preflight checks them before any heavy work)
    weights: ClassVar[tuple[str, ...]] = ()
    options: ClassVar[tuple[Option, ...]] = ()
    description: ClassVar[str] = ""
    #: part of ``--metrics available`` (the default set) when its weights are installed; False for
    #: metrics that are impractical on a CPU (name them explicitly, or use ``all``)
    in_default_set: ClassVar[bool] = True

    def __init__(self, options: dict[str, Any] | None = None) -> None:
        self.opts: dict[str, Any] = self.resolve_options(options or {})
        self.reset()

    def __reduce__(self):
        """Pickled (for worker processes) as class + options: the copy loads its backbone lazily,
        once per process, and starts with no cases folded in."""
        return (type(self), (dict(self.opts),))

    # ------------------------------------------------------------------ declarations
    @classmethod
    def resolve_options(cls, given: dict[str, Any]) -> dict[str, Any]:
        """Defaults overlaid with ``given``; unknown names and bad values raise ConfigError."""
        return resolve_declared(cls.options, given, cls.name)

    @classmethod
    def fast_options(cls) -> dict[str, Any]:
        """The option values of the ``--fast`` protocol (declared per option)."""
        return {o.name: o.fast for o in cls.options if o.fast is not None}

    @classmethod
    def option_protocol(cls, opts: dict[str, Any]) -> str:
        """The options that differ from their defaults, as a protocol-id suffix ('' when none)."""
        part = cls.option_part(opts)
        return "|" + part[0] if part else ""

    @classmethod
    def option_part(cls, opts: dict[str, Any]) -> Part | None:
        """``("opt:NAME=VALUE,...", meaning)`` for the options in the id that differ from their defaults."""
        changed = [o for o in cls.options if o.in_protocol_id and opts.get(o.name, o.default) != o.default]
        if not changed:
            return None
        return ("opt:" + ",".join(f"{o.name}={opts[o.name]}" for o in changed),
                "options changed from their defaults: " + "; ".join(f"{o.name} = {opts[o.name]} ({o.help})"
                                                                     for o in changed))

    @property
    def columns(self) -> dict[str, bool | None]:
        return {c: o.higher_is_better for c, o in self.outputs.items()}

    def output_columns(self, ctx: "RunContext") -> dict[str, Output]:
        """The columns this run writes (a metric may depend on run settings, e.g. label classes)."""
        return dict(self.outputs)

    def required_weights(self, ctx: RunContext | None = None) -> tuple[str, ...]:
        return self.weights

    @property
    def weight_free(self) -> bool:
        """Needs no weights file (with the default run settings)."""
        return not self.required_weights()

    def protocol_parts(self, ctx: RunContext) -> list[Part]:
        """The parts of :meth:`base_protocol_id`, each ``(text, meaning)``: the preprocessing, backbone and
        statistic that produced the values (override this). Default: the frame protocol."""
        return [(ctx.protocol.id, ctx.protocol.meaning)]

    def base_protocol_id(self, ctx: RunContext) -> str:
        """The parts of :meth:`protocol_parts` joined by ``|``."""
        return "|".join(text for text, _ in self.protocol_parts(ctx))

    def protocol_id(self, ctx: RunContext) -> str:
        """:meth:`base_protocol_id` plus the options changed from their defaults (goes into every row
        and every cache key, so changing an option never reuses an old value)."""
        return self.base_protocol_id(ctx) + self.option_protocol(self.opts)

    def protocol_legend(self, ctx: RunContext) -> list[Part]:
        """Every part of :meth:`protocol_id`, in order, with its meaning (``metrics.json`` records it,
        reports render it). A plug-in that overrides :meth:`base_protocol_id` without
        :meth:`protocol_parts` gets its parts listed as declared without a meaning."""
        parts = list(self.protocol_parts(ctx))
        base = self.base_protocol_id(ctx)
        if "|".join(text for text, _ in parts) != base:
            parts = [(t, f"(metric {self.name} declares no meaning for this part)") for t in base.split("|") if t]
        opt = self.option_part(self.opts)
        return parts + ([opt] if opt else [])

    def setup(self, ctx: RunContext) -> None:
        """Load backbones etc. Raise :class:`~trace_bench.errors.WeightsError` when missing."""

    # ------------------------------------------------------------------ per case (pure)
    def case_values(self, data: CaseData, ctx: RunContext) -> dict[str, float]:
        raise TypeError(f"{self.name} is not a per-case metric")

    def case_state(self, data: CaseData, ctx: RunContext) -> State:
        raise TypeError(f"{self.name} is not a distribution metric")

    def merge(self, states: Iterable[State]) -> State:
        """Merge per-case states. Default: add every array (exact for float64 sums and counts)."""
        out: State = {}
        for s in states:
            for k, v in s.items():
                out[k] = np.asarray(v, dtype=np.float64) + out[k] if k in out else np.asarray(v, dtype=np.float64).copy()
        return out

    def compute(self, generated: State, reference: State, ctx: RunContext) -> dict[str, float]:
        raise TypeError(f"{self.name} is not a distribution metric")

    def value_notes(self, generated: State, reference: State, ctx: RunContext) -> dict[str, str]:
        """Distribution metrics: why a column of :meth:`compute` is NaN for these merged states (column ->
        one-line reason, e.g. "needs at least 10 volumes per set"); the run writes it into the row's
        ``note``. Cheap: no value is computed. Default: none."""
        return {}

    def export_stats(self, state: State) -> dict[str, np.ndarray]:
        """Arrays saved as ``stats/{method}_{metric}.npz`` (e.g. ``mu``, ``sigma``, ``n``)."""
        return dict(state)

    def sample_info(self, state: State) -> dict[str, int]:
        """Distribution metrics: ``{"samples": n, "dim": d}`` of a merged state (feature vectors and
        their dimension), so reports can say when n is too small for the estimate. Default: unknown."""
        return {}

    def plot_arrays(self, data: CaseData, ctx: RunContext) -> dict[str, np.ndarray]:
        """Hook: extra arrays this metric contributes to the report's per-case plots (after it ran
        on ``data``). Keys are array names in the plot artifact; default none."""
        return {}

    # ------------------------------------------------------------------ streaming form
    def reset(self) -> None:
        """Forget every case folded in with :meth:`update` / :meth:`merge_state`."""
        self._values: list[dict[str, float]] = []
        self._states: list[State] = []

    def update(self, data: CaseData, ctx: RunContext | None = None) -> dict[str, float] | State:
        """Score one volume and fold it into this instance's state; returns the case's values/state."""
        ctx = ctx or RunContext()
        if self.kind == "case":
            v = {str(k): float(x) for k, x in self.case_values(data, ctx).items()}
            self._values.append(v)
            return v
        s = self.case_state(data, ctx)
        self._states.append(s)
        return s

    def merge_state(self, other: "Metric") -> "Metric":
        """Fold another instance's cases into this one (same metric and options)."""
        if type(other) is not type(self) or other.opts != self.opts:
            raise TypeError(f"Expected a {type(self).__name__} with options {self.opts} to merge, "
                            f"got {type(other).__name__} with {getattr(other, 'opts', None)}")
        self._values += other._values
        self._states += other._states
        return self

    @property
    def n_cases(self) -> int:
        return len(self._values) + len(self._states)

    def state(self) -> State:
        """The merged state of the cases folded in (distribution metrics)."""
        return self.merge(self._states)

    def compute_result(self, ctx: RunContext | None = None, reference: "Metric | State | None" = None) -> dict[str, float]:
        """Per-case metrics: the mean of every column over the cases (NaN skipped). Distribution
        metrics: the set-level values of the merged state against ``reference`` (another instance
        that saw the reference volumes, or its merged state)."""
        if self.n_cases == 0:
            raise ValueError(f"{type(self).__name__}.compute_result() called before any update()")
        if self.kind == "case":
            cols = dict.fromkeys(c for v in self._values for c in v)
            out = {}
            for c in cols:
                a = np.array([v[c] for v in self._values if c in v], dtype=np.float64)
                a = a[~np.isnan(a)]
                out[c] = float(a.mean()) if a.size else float("nan")
            return out
        ref = reference.state() if isinstance(reference, Metric) else (reference or {})
        return self.compute(self.state(), ref, ctx or RunContext())


METRICS: Registry[type[Metric]] = Registry("metric")


def register_metric(cls: type[Metric], *, overwrite: bool = False) -> type[Metric]:
    """Register a :class:`Metric` subclass (the class, not an instance: each run makes its own)."""
    if not (isinstance(cls, type) and issubclass(cls, Metric)):
        raise ConfigError(f"register_metric: expected a Metric subclass, got {cls!r}")
    if not getattr(cls, "name", None):
        raise ConfigError(f"register_metric: {cls.__name__} has no name")
    if not cls.outputs:
        raise ConfigError(f"register_metric: {cls.name} declares no outputs")
    METRICS.register(cls.name, cls, overwrite=overwrite)
    return cls
