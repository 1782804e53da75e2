"""The tables of one output folder (``per_case.csv``, ``summary.csv``, ``errors.csv``,
``metrics.json``): their columns, the per-column display information, and loading them.

Files (stable names and columns; other tools and CI read them):

* ``per_case.csv``: ``method, case_id, metric, value, protocol`` (long format). Distribution
  metrics have one row per method with ``case_id = "(all)"``; profile rows use ``"(profile)"``.
* ``summary.csv``: ``method, metric, value, ci_low, ci_high, n, ci_method, n_resamples_ok, note, ci_flag``.
  ``ci_flag``: empty, or ``heavy-tailed`` when the interval's own leave-out estimates say its coverage is
  likely far below the nominal level (:data:`trace_bench.results.stats.HEAVY_TAILED`; reports show it).
* ``errors.csv``: ``method, case_id, stage, error``; ``warnings.csv``: ``method, case_id, stage, warning``.
* ``metrics.json``: for every metric column, the direction of "better", its table, kind, protocol id
  with the meaning of each of its parts (the legend), and display information, so reports and
  ``compare`` work without importing the metric plug-ins.

Determinism: rows sorted by (method order, case id, metric), floats written with
:func:`~trace_bench.results.files.fmt_float`, no timestamps. Text cells starting with ``= + - @`` (tab,
CR) carry a leading ``'`` so spreadsheets do not run them as formulas; :func:`load_results` removes it
(:func:`~trace_bench.results.escape.csv_value`): every string reads back as it was written.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .escape import csv_value

PER_CASE_COLUMNS = ["method", "case_id", "metric", "value", "protocol"]
SUMMARY_COLUMNS = ["method", "metric", "value", "ci_low", "ci_high", "n", "ci_method", "n_resamples_ok", "note",
                   "ci_flag"]
ERROR_COLUMNS = ["method", "case_id", "stage", "error"]
WARNING_COLUMNS = ["method", "case_id", "stage", "warning"]
#: suffix of a distribution metric's half-vs-half columns (``fid_half``, ``anat_ks_volume_ml[lungs]_half``): the
#: methods' halves against the reference's other halves, and the GT/GT floor at the same sample sizes
HALF_SUFFIX = "_half"
ALL_CASES = "(all)"
PROFILE_CASE = "(profile)"
GT = "GT"


# ----------------------------------------------------------------------------- metric info
def base_metric(column: str) -> str:
    """``dice[lungs]`` -> ``dice``."""
    return column.split("[", 1)[0]


def half_base(column: str) -> str | None:
    """The full-sample column a half-vs-half column belongs to (``fid_half`` -> ``fid``,
    ``anat_ks_volume_ml[lungs]_half`` -> ``anat_ks_volume_ml[lungs]``), None for other columns."""
    return column[: -len(HALF_SUFFIX)] if column.endswith(HALF_SUFFIX) and len(column) > len(HALF_SUFFIX) else None


@dataclass(frozen=True)
class ColumnStyle:
    """How one result column reads: direction and display, as its metric declares it (a metric's
    outputs are these: :class:`trace_bench.metrics.base.Output` is this class)."""

    higher_is_better: bool | None
    #: column header in the tables ('' = the column name)
    label: str = ""
    #: "fraction" (shown as a percentage), "mm", "bytes" (shown in GB) or "" (plain number)
    unit: str = ""
    #: decimals shown in the tables
    digits: int = 3
    #: position of the column in its table (lower = further left); per-class columns follow their family
    rank: float = 100.0
    #: bookkeeping column: kept in the CSVs, not shown in the tables
    hidden: bool = False
    #: ``trace-bench compare``: a change worse than ``max(abs, rel * |baseline|)`` is a regression
    #: ({"abs": .., "rel": ..}; None: the default tolerance; a ``--tolerance`` file overrides either)
    tolerance: dict[str, float] | None = None
    #: the best value is the one closest to the GT row's (``|method - GT|``), not the largest / smallest:
    #: for scores a smoothed copy can push past the real data (consistency-type VBench dimensions).
    #: ``higher_is_better`` then still says which way the score grows (reports mark such a column
    #: "closest to GT", never an arrow; ``compare`` reads the direction)
    closest_to_reference: bool = False
    #: the values the QUANTITY this column estimates can take, ``(lo, hi)`` in its own unit (None on a
    #: side = unbounded; None = not declared): e.g. a Frechet distance or MMD^2 (0, None), PRDC precision
    #: (0, 1), density (0, None), Dice (0, 1), ICC (-1, 1). This is the range reports constrain: no value
    #: or interval end is printed outside it (intervals are clipped, with a note)
    value_range: tuple[float | None, float | None] | None = None
    #: the values the ESTIMATOR written in the column can take when that is wider than ``value_range``
    #: (None = inside ``value_range``): KID's unbiased MMD^2 estimate and an FD extrapolated to infinite
    #: samples can fall below 0 although the quantity cannot; ``(None, None)`` = any real number
    estimate_range: tuple[float | None, float | None] | None = None


@dataclass(frozen=True)
class MetricInfo(ColumnStyle):
    """What reports and ``compare`` need to know about a result column: its :class:`ColumnStyle` plus
    where it comes from (table, metric kind, protocol id, metric name); written to ``metrics.json``."""

    table: str = "table1"
    kind: str = "case"
    protocol: str = ""
    spec: str = ""
    #: every ``|``-separated part of ``protocol`` with its meaning, as the metric declares it
    #: (``Metric.protocol_legend``); empty in runs written before legends were recorded
    legend: tuple[tuple[str, str], ...] = ()

    @classmethod
    def of(cls, style: ColumnStyle, **where: Any) -> "MetricInfo":
        """``style``'s fields (tolerance copied) plus ``where`` (table, kind, protocol, spec)."""
        d = {f: getattr(style, f) for f in ColumnStyle.__dataclass_fields__}
        d["tolerance"] = dict(style.tolerance) if style.tolerance else None
        return cls(**d, **where)

    def to_dict(self) -> dict[str, Any]:
        return {"higher_is_better": self.higher_is_better, "table": self.table, "kind": self.kind,
                "protocol": self.protocol, "spec": self.spec, "label": self.label, "unit": self.unit,
                "digits": self.digits, "rank": self.rank, "hidden": self.hidden, "tolerance": self.tolerance,
                "closest_to_reference": self.closest_to_reference, "legend": [list(p) for p in self.legend],
                "value_range": None if self.value_range is None else list(self.value_range),
                "estimate_range": None if self.estimate_range is None else list(self.estimate_range)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "MetricInfo":
        known = {k: v for k, v in d.items() if k in cls.__dataclass_fields__}
        if "legend" in known:
            known["legend"] = tuple((str(p), str(m)) for p, m in known["legend"] or ())
        for key in ("value_range", "estimate_range"):
            if known.get(key) is not None:
                lo, hi = known[key]
                known[key] = (None if lo is None else float(lo), None if hi is None else float(hi))
        return cls(**known)


#: columns every run may carry that no metric plug-in declares
PROFILE_METRICS: dict[str, MetricInfo] = {
    "fps": MetricInfo(True, table="table1", kind="profile", spec="profile",
                      protocol="trace-bench profile: slices per second at volume level", label="FPS", digits=2, rank=90, tolerance={"rel": 0.10},
                      value_range=(0.0, None)),
    "vram": MetricInfo(False, table="table1", kind="profile", spec="profile",
                       protocol="trace-bench profile: peak inference memory, bytes", label="Train/Infer VRAM", unit="bytes", rank=91,
                       tolerance={"rel": 0.10}, value_range=(0.0, None)),
    "vram_train": MetricInfo(False, table="table1", kind="profile", spec="profile",
                             protocol="trace-bench profile: peak training memory, bytes", label="Train VRAM", unit="bytes", rank=92,
                             tolerance={"rel": 0.10}, value_range=(0.0, None)),
}


def column_info(metric: str, infos: dict[str, MetricInfo]) -> MetricInfo | None:
    """The info of a column; per-class columns (``dice[lungs]``) inherit their family's."""
    for key in (metric, base_metric(metric)):
        if key in infos:
            return infos[key]
    return PROFILE_METRICS.get(base_metric(metric))


def direction(metric: str, infos: dict[str, MetricInfo]) -> bool | None:
    """higher_is_better for a column (per-class columns inherit their family's direction)."""
    for key in (metric, base_metric(metric)):
        if key in infos:
            return infos[key].higher_is_better
    if base_metric(metric) in PROFILE_METRICS:
        return PROFILE_METRICS[base_metric(metric)].higher_is_better
    return None


# ----------------------------------------------------------------------------- loading
@dataclass
class Results:
    """The tables of one output directory."""

    out: Path
    per_case: pd.DataFrame
    summary: pd.DataFrame
    errors: pd.DataFrame
    metrics: dict[str, MetricInfo] = field(default_factory=dict)
    provenance: dict[str, Any] = field(default_factory=dict)
    methods: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    warnings: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=WARNING_COLUMNS))


#: text columns of the run's CSVs: written through escape.csv_cell, read back through escape.csv_value
TEXT_COLUMNS = ("method", "case_id", "metric", "stage", "error", "warning", "ci_method", "note", "protocol", "ci_flag")


def _read_csv(path: Path, columns: list[str]) -> pd.DataFrame:
    if not path.is_file():
        return pd.DataFrame(columns=columns)
    df = pd.read_csv(path, dtype={"method": str, "case_id": str, "metric": str, "stage": str, "error": str, "warning": str,
                                  "ci_method": str, "note": str, "ci_flag": str,
                                  "protocol": str}, keep_default_na=False, na_values={"value": ["nan"],
                                  "ci_low": ["nan"], "ci_high": ["nan"]})
    for c in ("value", "ci_low", "ci_high"):
        if c in df:
            df[c] = pd.to_numeric(df[c].replace("", np.nan), errors="coerce")
    for c in TEXT_COLUMNS:  # undo the spreadsheet-formula neutralisation of write_csv (exact round trip)
        if c in df and len(df):
            df[c] = df[c].map(csv_value)
    return df


def load_results(out: str | Path) -> Results:
    """Read ``per_case.csv``, ``summary.csv``, ``errors.csv``, ``metrics.json`` and ``provenance.json``."""
    from ..errors import ConfigError

    o = Path(out)
    if not (o / "summary.csv").is_file():
        raise ConfigError(f"{o}: no summary.csv here; is this the --out folder of a finished `trace-bench run`?")
    infos: dict[str, MetricInfo] = {}
    if (o / "metrics.json").is_file():
        for k, v in json.loads((o / "metrics.json").read_text(encoding="utf-8")).get("columns", {}).items():
            infos[k] = MetricInfo.from_dict(v)
    prov = json.loads((o / "provenance.json").read_text(encoding="utf-8")) if (o / "provenance.json").is_file() else {}
    meta = json.loads((o / "metrics.json").read_text(encoding="utf-8")) if (o / "metrics.json").is_file() else {}
    summary = _read_csv(o / "summary.csv", SUMMARY_COLUMNS)
    methods = meta.get("methods") or list(dict.fromkeys(summary.method.tolist()))
    return Results(o, _read_csv(o / "per_case.csv", PER_CASE_COLUMNS), summary,
                   _read_csv(o / "errors.csv", ERROR_COLUMNS), infos, prov, methods, meta.get("skipped", {}),
                   _read_csv(o / "warnings.csv", WARNING_COLUMNS))


