"""Which value and interval a report prints for a summary row, and what that interval is an interval of.

Every renderer (Tables 1 / 2 and the Anatomy table in Markdown, LaTeX, HTML and the console, the ranking
view, the leaderboard, ``results.json``) asks :func:`shown` (or :func:`shown_interval`) for a summary row, so
the rules about printed numbers live here and nowhere else:

* std-type columns (``kid_std``, ...: a spread, not an estimate) get no interval;
* a missing or non-finite bound or value: no interval;
* fewer than :data:`MIN_INTERVAL_N` cases (per set for a two-sample jackknife: its groups of cases) behind
  the interval: no interval, the table prints a dash and says "n too small" (:data:`N_TOO_SMALL`);
* a declared ``value_range`` (:class:`~trace_bench.results.tables.ColumnStyle`: the values the quantity can
  take) clips the interval's ends, marked :data:`CLIPPED`; an interval entirely outside it is not printed;
* a value outside ``value_range`` is printed only when the column's ``estimate_range`` allows it (an
  unbiased KID estimate or an FD extrapolated to infinite samples below 0), marked :data:`ESTIMATE`;
  otherwise (which a correct metric never writes: float round-off) it is printed at the nearest end of the
  range, marked :data:`CLIPPED`;
* an interval whose ``ci_flag`` is ``heavy-tailed`` is marked :data:`HEAVY_TAILED_MARK`.

"Printed" formats: the console, ``report.md``, ``report.tex`` / ``tables/*.tex``, ``report.html`` and
``results.json`` (its ``ci_low`` / ``ci_high`` are the printed interval; ``value`` stays the stored estimate,
with ``value_shown`` when that differs). The CSV files (``summary.csv``, ``per_case.csv``, ``table*.csv``)
keep the raw numbers the run computed.

:func:`interval_meaning` says, from ``summary.csv``'s ``ci_method``, what an interval covers: for the
per-case bootstrap, the mean per-case value over cases; for the two-sample jackknife of a distribution
metric, the sampling variability of the estimate at this n, not the distance itself.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

from trace_bench.results import HEAVY_TAILED, MetricInfo, column_info, half_base

__all__ = ["CLIPPED", "ESTIMATE", "HEAVY_TAILED_MARK", "MARK_NOTES", "MIN_INTERVAL_N", "N_TOO_SMALL", "Shown",
           "interval_kind", "interval_meaning", "interval_n", "is_std_column", "shown", "shown_interval"]

#: fewer cases than this behind an interval (per set for the two-sample jackknife): not printed. With n = 2 a
#: percentile bootstrap of a mean has only three distinct resampled means (coverage about 50-60 % for a nominal
#: 95 %) and a two-sample jackknife t-interval has 1 degree of freedom (t = 12.7): neither says anything
MIN_INTERVAL_N = 3
#: what a table prints in place of an interval below :data:`MIN_INTERVAL_N`, explained in the notes
N_TOO_SMALL = "n too small"
#: footnote marks after a printed cell
HEAVY_TAILED_MARK = "†"
CLIPPED = "‡"
ESTIMATE = "§"
#: what each mark means (a table's note)
MARK_NOTES = {
    HEAVY_TAILED_MARK: "† the interval's leave-out estimates are heavy-tailed: in simulations such intervals covered "
                       "less often than stated (summary.csv ci_flag = heavy-tailed); a rough guide.",
    CLIPPED: "‡ interval clipped to the column's range (the values the quantity can take).",
    ESTIMATE: "§ an estimate outside the quantity's range (an unbiased or extrapolated estimator can fall below "
              "0 when the true value is near 0); not clipped, so averages over runs stay unbiased.",
}


def is_std_column(metric: str, info: MetricInfo | None = None) -> bool:
    """A column holding a standard deviation (``kid_std``, ``kid_astra_std``): no interval is shown."""
    label = (info.label if info is not None else "") or ""
    return metric.split("[", 1)[0].endswith("_std") or label.lower().endswith(" std")


def _float(x: Any) -> float:
    try:
        return float(x)
    except (TypeError, ValueError):
        return float("nan")


def interval_n(n: Any, ci_method: Any = None) -> float:
    """The number of cases an interval rests on: for the two-sample jackknife (``jackknife-2sample-t:G+H``) the
    smaller number of leave-out groups of the two sets (a one-sample jackknife: G), else ``n``."""
    g = re.search(r"jackknife[^:]*:(\d+)(?:\+(\d+))?", str(ci_method or ""))
    if g:
        sides = [int(x) for x in g.groups() if x is not None and int(x) > 0]
        return float(min(sides)) if sides else float("nan")
    return _float(n)


@dataclass(frozen=True)
class Shown:
    """What a report prints for one summary row: ``value`` (stored units; NaN = a dash), ``interval``
    (``(lo, hi)`` or None), ``too_small`` (no interval because n is too small: print a dash), and the
    footnote marks (:data:`MARK_NOTES` keys) of the value (:data:`ESTIMATE`, :data:`CLIPPED`) and of the
    interval (:data:`HEAVY_TAILED_MARK`, :data:`CLIPPED`)."""

    value: float
    interval: tuple[float, float] | None
    too_small: bool = False
    value_mark: str = ""
    interval_mark: str = ""

    @property
    def marks(self) -> str:
        """Every mark of the printed cell, once each."""
        return "".join(dict.fromkeys(self.interval_mark + self.value_mark))


def _clip(x: float, rng: tuple[float | None, float | None]) -> float:
    lo, hi = rng
    if lo is not None and x < lo:
        return float(lo)
    if hi is not None and x > hi:
        return float(hi)
    return x


def _inside(x: float, rng: tuple[float | None, float | None] | None) -> bool:
    if rng is None:
        return True
    lo, hi = rng
    return (lo is None or x >= lo) and (hi is None or x <= hi)


def shown(metric: str, value: Any, lo: Any = None, hi: Any = None, infos: dict[str, MetricInfo] | None = None, *,
          n: Any = None, ci_method: Any = None, ci_flag: Any = None) -> Shown:
    """The value and interval printed for ``value`` [``lo``, ``hi``] of column ``metric`` (stored units), by the
    rules of the module docstring. ``n`` / ``ci_method`` (summary.csv) decide "n too small" (unknown: not
    applied); ``ci_flag`` marks a heavy-tailed interval."""
    info = info_with_half(metric, infos or {})
    v = _float(value)
    vmark = ""
    vr = info.value_range if info is not None else None
    er = info.estimate_range if info is not None else None
    if math.isfinite(v) and not _inside(v, vr):
        if er is not None and _inside(v, er):
            vmark = ESTIMATE
        else:
            v = _clip(v, vr)  # type: ignore[arg-type]
            vmark = CLIPPED
    if is_std_column(metric, info) or not math.isfinite(v):
        return Shown(v, None, False, vmark)
    a, b = _float(lo), _float(hi)
    if not (math.isfinite(a) and math.isfinite(b)):
        return Shown(v, None, False, vmark)
    k = interval_n(n, ci_method) if (n is not None or ci_method is not None) else float("nan")
    if math.isfinite(k) and k < MIN_INTERVAL_N:
        return Shown(v, None, True, vmark)
    imark = HEAVY_TAILED_MARK if str(ci_flag or "") == HEAVY_TAILED else ""
    if vr is not None:
        ca, cb = _clip(a, vr), _clip(b, vr)
        if ca == cb and (ca != a or cb != b):  # the whole interval lies outside what the quantity can take
            return Shown(v, None, False, vmark, CLIPPED)
        if (ca, cb) != (a, b):
            imark += CLIPPED
        a, b = ca, cb
    return Shown(v, (a, b), False, vmark, imark)


def info_with_half(metric: str, infos: dict[str, MetricInfo]) -> MetricInfo | None:
    """A column's info (:func:`~trace_bench.results.column_info`); a half-vs-half column without its own
    takes its full-sample column's."""
    info = column_info(metric, infos)
    hb = half_base(metric)
    return column_info(hb, infos) if info is None and hb is not None else info


def shown_interval(metric: str, value: Any, lo: Any, hi: Any, infos: dict[str, MetricInfo] | None = None, *,
                   n: Any = None, ci_method: Any = None) -> tuple[float, float] | None:
    """The interval a report prints for ``value`` of column ``metric`` (stored units), or ``None``
    (:func:`shown`)."""
    return shown(metric, value, lo, hi, infos, n=n, ci_method=ci_method).interval


def interval_kind(ci_method: Any) -> str:
    """``"bootstrap"``, ``"jackknife"``, ``""`` (no interval) or the method's own name."""
    m = str(ci_method or "")
    if not m or m == "none" or m == "nan":
        return ""
    if m.startswith("bootstrap"):
        return "bootstrap"
    if m.startswith("jackknife"):
        return "jackknife"
    return m


def interval_meaning(ci_method: Any, confidence: float = 0.95) -> str:
    """What an interval of ``ci_method`` (``summary.csv``) is an interval of, in one sentence ('' when none)."""
    kind = interval_kind(ci_method)
    pct = f"{100 * confidence:g}%"
    if kind == "bootstrap":
        b = re.search(r":(\d+)", str(ci_method))
        return (f"{pct} percentile bootstrap interval of the mean per-case value over cases (cases resampled"
                + (f", {b.group(1)} resamples)" if b else ")"))
    if kind == "jackknife":
        g = re.search(r":(\d+)\+(\d+)", str(ci_method))
        groups = f", {g.group(1)} + {g.group(2)} groups of cases left out" if g else ""
        return (f"{pct} two-sample jackknife interval{groups}: an interval of the estimator's expected value at "
                "this sample size — not an interval of the distance itself")
    return f"interval by {kind}" if kind else ""
