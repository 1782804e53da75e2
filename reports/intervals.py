"""Which interval a report prints for a value, and what that interval is an interval of.

Every renderer (Tables 1 / 2 in Markdown, LaTeX, HTML and the console, the ranking view, the leaderboard,
``results.json``) asks :func:`shown_interval` for the interval of a summary row, so a rule about intervals
(a column without one, a declared range that clips or flags it) lives here and nowhere else.

* std-type columns (``kid_std``, ...: a spread, not an estimate) get no interval;
* a missing or non-finite bound: no interval.

:func:`interval_meaning` says, from ``summary.csv``'s ``ci_method``, what an interval covers: for the
per-case bootstrap, the mean per-case value over cases; for the two-sample jackknife of a distribution
metric, the sampling variability of the estimate at this n, not the distance itself.
"""

from __future__ import annotations

import math
import re
from typing import Any

from trace_bench.results import MetricInfo, column_info

__all__ = ["interval_kind", "interval_meaning", "is_std_column", "shown_interval"]


def is_std_column(metric: str, info: MetricInfo | None = None) -> bool:
    """A column holding a standard deviation (``kid_std``, ``kid_astra_std``): no interval is shown."""
    label = (info.label if info is not None else "") or ""
    return metric.split("[", 1)[0].endswith("_std") or label.lower().endswith(" std")


def _finite(x: Any) -> bool:
    try:
        return math.isfinite(float(x))
    except (TypeError, ValueError):
        return False


def shown_interval(metric: str, value: Any, lo: Any, hi: Any,
                   infos: dict[str, MetricInfo] | None = None) -> tuple[float, float] | None:
    """The interval a report prints for ``value`` of column ``metric`` (stored units), or ``None``.

    The one place for interval rules (see the module docstring); a per-column declared range, once
    metrics declare one, clips or flags the bounds here."""
    info = column_info(metric, infos or {})
    if is_std_column(metric, info):
        return None
    if not (_finite(lo) and _finite(hi) and _finite(value)):
        return None
    return float(lo), float(hi)


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
        return (f"{pct} two-sample jackknife interval{groups}: the sampling variability of the estimate at this n "
                "— not an interval of the distance itself")
    return f"interval by {kind}" if kind else ""
