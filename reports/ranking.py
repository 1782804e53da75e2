"""Methods ranked per metric, with the uncertainty of each rank, and an overall order that states its rule.

Per metric (the columns of Tables 1 and 2 that have a direction; per-class and profile columns are left
out) the methods other than GT are ranked by the column's declared rule: higher or lower is better, or
closest to the GT row (``|method - GT|``). Ties share the average rank.

How sure a rank is:

* per-case metrics: a paired bootstrap of the cases every ranked method (and GT, for closest-to-GT
  columns) has: each resample draws cases with replacement, recomputes every method's mean over the same
  drawn cases and ranks them again. Reported: how often a method keeps its observed rank, and the range
  holding the central 95% of its ranks (seeded, :func:`~trace_bench.results.stable_seed`);
* distribution metrics (one value per method, intervals from the jackknife): the range of ranks the
  intervals allow: best = 1 + the methods whose whole interval is better, worst = n - the methods whose
  whole interval is worse (:func:`reports.intervals.shown_interval` decides which intervals count).

Overall: the mean of the per-metric ranks over the metrics where every method has a rank (stated with
the count), methods sorted by it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from scipy.stats import rankdata

from trace_bench.results import GT, PROFILE_METRICS, Results, base_metric, column_info, direction, stable_seed
from trace_bench.results.table_model import DASH, Cell, Column, Row, Table

from .intervals import MIN_INTERVAL_N, shown_interval
from .tables import TABLES, arrow, label, table_columns

__all__ = ["MetricRanking", "Ranking", "rank_methods", "ranking_table"]

#: bootstrap resamples of the rank uncertainty (the run's ``bootstrap`` setting when it is larger)
MIN_RESAMPLES = 1000
#: rank ranges from fewer cases get a note
FEW_CASES = 10


@dataclass
class MetricRanking:
    """One metric's ranks: ``rank[m]`` (1 = best, ties averaged), ``low[m]`` / ``high[m]`` the rank range,
    ``keep[m]`` the share of bootstrap resamples in which ``m`` kept its rank (NaN without a bootstrap) and
    ``how`` ("bootstrap:B over n cases", "intervals" or "")."""

    metric: str
    rank: dict[str, float]
    low: dict[str, float] = field(default_factory=dict)
    high: dict[str, float] = field(default_factory=dict)
    keep: dict[str, float] = field(default_factory=dict)
    how: str = ""
    n_cases: int = 0


@dataclass
class Ranking:
    """Every metric's ranking, the overall mean rank and the metrics it averages."""

    metrics: list[MetricRanking]
    overall: dict[str, float]
    counted: list[str]
    methods: list[str]


def ranked_columns(res: Results) -> list[str]:
    """The columns ranked: Tables 1 and 2 base columns with a direction, without profile columns."""
    cols = [c for key, _, _ in TABLES if key != "table1b" for c in table_columns(res, key)]
    return [c for c in cols if c not in PROFILE_METRICS and c != "vram" and base_metric(c) == c
            and direction(c, res.metrics) is not None]


def _scores(values: np.ndarray, hib: bool, gt: float | np.ndarray | None) -> np.ndarray:
    """Per-method "smaller is better" scores of ``values`` (last axis: methods)."""
    if gt is not None:
        return np.abs(values - (gt[..., None] if isinstance(gt, np.ndarray) else gt))
    return -values if hib else values


def _bootstrap(res: Results, c: str, methods: list[str], hib: bool, closest: bool, observed: dict[str, float],
               n_boot: int, seed: int) -> MetricRanking | None:
    pc = res.per_case
    pc = pc[pc.metric == c]
    wide = pc.pivot_table(index="case_id", columns="method", values="value", aggfunc="first")
    need = methods + ([GT] if closest else [])
    if any(m not in wide.columns for m in need):
        return None
    wide = wide[need].dropna()
    n = len(wide)
    if n < MIN_INTERVAL_N:  # no rank range from fewer cases than any printed interval rests on
        return None
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n, size=(n_boot, n))
    vals = wide[methods].to_numpy(dtype=float)[idx].mean(axis=1)  # (B, methods)
    gt = wide[GT].to_numpy(dtype=float)[idx].mean(axis=1) if closest else None
    ranks = rankdata(_scores(vals, hib, gt), axis=1, method="average")
    out = MetricRanking(c, observed, how=f"bootstrap: {n_boot} resamples of {n} cases", n_cases=n)
    for j, m in enumerate(methods):
        out.low[m], out.high[m] = (float(x) for x in np.percentile(ranks[:, j], [2.5, 97.5], method="nearest"))
        out.keep[m] = float(np.mean(ranks[:, j] == observed[m]))
    return out


def _overlap(res: Results, c: str, methods: list[str], hib: bool, rows: dict, observed: dict[str, float]
             ) -> MetricRanking:
    ivs = {m: shown_interval(c, rows[m].value, rows[m].ci_low, rows[m].ci_high, res.metrics, n=rows[m].n,
                             ci_method=getattr(rows[m], "ci_method", None)) for m in methods}
    out = MetricRanking(c, observed)
    if any(iv is None for iv in ivs.values()):
        return out
    out.how = "intervals"
    for m in methods:
        lo, hi = ivs[m]
        better = sum(1 for o in methods if o != m and (ivs[o][0] > hi if hib else ivs[o][1] < lo))
        worse = sum(1 for o in methods if o != m and (ivs[o][1] < lo if hib else ivs[o][0] > hi))
        out.low[m], out.high[m] = float(1 + better), float(len(methods) - worse)
    return out


def rank_methods(res: Results) -> Ranking:
    """Every ranked column's :class:`MetricRanking` and the overall mean rank (see the module docstring)."""
    by = {(r.method, r.metric): r for r in res.summary.itertuples(index=False)}
    cfg = res.provenance.get("config") or {}
    n_boot = max(MIN_RESAMPLES, int(cfg.get("bootstrap") or 0))
    seed = int(cfg.get("seed") or 0)
    all_methods = [m for m in res.methods if m != GT]
    metrics: list[MetricRanking] = []
    for c in ranked_columns(res):
        info = column_info(c, res.metrics)
        hib = bool(direction(c, res.metrics))
        closest = bool(info is not None and info.closest_to_reference)
        rows = {m: by[(m, c)] for m in all_methods if (m, c) in by and math.isfinite(float(by[(m, c)].value))}
        methods = [m for m in all_methods if m in rows]
        gt = float(by[(GT, c)].value) if (GT, c) in by and math.isfinite(float(by[(GT, c)].value)) else None
        if len(methods) < 2 or (closest and gt is None):
            continue
        vals = np.array([float(rows[m].value) for m in methods])
        observed = dict(zip(methods, (float(x) for x in rankdata(_scores(vals, hib, gt if closest else None),
                                                                 method="average"))))
        mr = None
        if info is not None and info.kind == "case":
            mr = _bootstrap(res, c, methods, hib, closest, observed, n_boot, stable_seed(seed, "rank", c))
        if mr is None:
            mr = _overlap(res, c, methods, hib, rows, observed) if not closest else MetricRanking(c, observed)
        metrics.append(mr)
    complete = [mr for mr in metrics if set(mr.rank) == set(all_methods)]
    overall = {m: float(np.mean([mr.rank[m] for mr in complete])) for m in all_methods} if complete else {}
    return Ranking(metrics, overall, [mr.metric for mr in complete], all_methods)


def _rank_text(x: float) -> str:
    return f"{x:g}"


def ranking_table(res: Results, ranking: Ranking | None = None) -> Table | None:
    """The ranking as a :class:`Table`: one row per method (overall order), per metric its rank with the
    rank range (and how often it kept the rank), then the mean rank; ``None`` with fewer than two methods."""
    rk = ranking or rank_methods(res)
    if not rk.metrics:
        return None
    order = sorted(rk.methods, key=lambda m: (rk.overall.get(m, math.inf), rk.methods.index(m)))
    columns = [Column(mr.metric, label(mr.metric, res.metrics), arrow(mr.metric, res)) for mr in rk.metrics]
    columns.append(Column("overall", "Mean rank"))
    rows = []
    for m in order:
        cells = {}
        for mr in rk.metrics:
            if m not in mr.rank:
                cells[mr.metric] = Cell()
                continue
            r = mr.rank[m]
            ci, hover = "", ""
            if m in mr.low:
                lo, hi = _rank_text(mr.low[m]), _rank_text(mr.high[m])
                rng = lo if lo == hi else f"{lo}–{hi}"
                keep = mr.keep.get(m, float("nan"))
                ci = f"range {rng}" + (f", kept {100 * keep:.0f}%" if math.isfinite(keep) else "")
                hover = mr.how
            cells[mr.metric] = Cell(_rank_text(r), ci, r, best=(r == min(mr.rank.values())), hover=hover)
        ov = rk.overall.get(m)
        cells["overall"] = Cell(DASH if ov is None else f"{ov:.2f}", value=float("nan") if ov is None else ov)
        rows.append(Row(m, cells))
    counted = ", ".join(label(c, res.metrics) for c in rk.counted) or "none"
    few = sorted({mr.n_cases for mr in rk.metrics if 0 < mr.n_cases < FEW_CASES})
    notes = [
        "Rank 1 = best by each column's rule (↑ higher, ↓ lower, ≈GT closest to the GT row); GT is the reference, "
        "not ranked; ties share the average rank.",
        "Per-case metrics: 'range' holds the central 95% of the method's ranks over a paired bootstrap of the cases "
        "(every method's mean recomputed on the same resampled cases), 'kept' is how often it kept its rank. "
        "Distribution metrics: the ranks their intervals allow (an interval entirely better or worse than another "
        "fixes the order of the two).",
        f"Mean rank (rows sorted by it): the mean of the per-metric ranks over the {len(rk.counted)} metric(s) "
        f"where every method has a value ({counted}); FPS, memory and per-class columns are not counted. "
        "It weighs every metric equally: read it with the per-metric ranks.",
    ]
    if few:
        notes.append(f"Rank ranges from {', '.join(map(str, few))} case(s) are a rough guide: a bootstrap of so few "
                     "cases can only draw a few distinct resamples.")
    return Table("ranking", "Ranking", columns, rows, notes, stub="Method")
