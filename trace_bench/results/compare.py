"""Regression checks between two runs: direction-aware comparison with tolerances, and the paired
analysis of the per-case values (:mod:`.paired`) beside it. The runs must be comparable
(:mod:`.comparability`: same protocols and weights, shared methods, renamed ones mapped)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from .comparability import comparable_runs
from .paired import PAIRED_COLUMNS, PAIRED_SEED, min_nonzero_pairs, paired_case_stats
from .tables import GT, MetricInfo, Results, base_metric, column_info, direction, load_results

#: status of a change beyond tolerance whose paired test is not significant (``significance`` set):
#: reported, not counted as a regression
NOT_SIGNIFICANT = "worse (n.s.)"
#: the test behind ``significance`` (named in the CLI's output)
SIGNIFICANCE_TEST = "exact two-sided sign-flip test of the mean difference"

# ----------------------------------------------------------------------------- regression checks
#: the tolerance of a column whose metric declares none: a change counts as a regression when it is
#: worse than ``max(abs, rel * |baseline|)``. Metrics declare their own (``Output.tolerance``, carried in
#: metrics.json); a ``--tolerance`` file overrides both.
DEFAULT_TOLERANCES: dict[str, dict[str, float]] = {"default": {"abs": 1e-6, "rel": 0.02}}


def load_tolerances(path: str | Path | None) -> dict[str, dict[str, float]]:
    """Defaults overlaid with a TOML/JSON file: ``metric = number`` (absolute) or
    ``[metric] abs = .. rel = ..``; the key ``default`` applies to metrics not listed."""
    from ..errors import ConfigError

    tol = {k: dict(v) for k, v in DEFAULT_TOLERANCES.items()}
    if path is None:
        return tol
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"--tolerance {p}: file does not exist")
    try:
        if p.suffix.lower() == ".json":
            data = json.loads(p.read_text(encoding="utf-8"))
        else:
            import tomllib

            data = tomllib.loads(p.read_text(encoding="utf-8"))
    except Exception as e:  # noqa: BLE001
        raise ConfigError(f"--tolerance {p}: cannot parse ({e})") from None
    for k, v in data.items():
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            tol[k] = {"abs": float(v)}
        elif isinstance(v, dict) and set(v) <= {"abs", "rel"}:
            tol[k] = {kk: float(vv) for kk, vv in v.items()}
        else:
            raise ConfigError(f"--tolerance {p}: {k!r} must be a number or a table with 'abs' and/or 'rel', got {v!r}")
    return tol


def tolerance_for(metric: str, baseline: float, tol: dict[str, dict[str, float]],
                  infos: dict[str, MetricInfo] | None = None) -> float:
    """Precedence: the ``--tolerance`` file's entry, the metric's declared tolerance, the default."""
    info = column_info(metric, infos or {})
    t = (tol.get(metric) or tol.get(base_metric(metric)) or (info.tolerance if info is not None else None)
         or tol["default"])
    b = abs(baseline) if np.isfinite(baseline) else 0.0
    return max(float(t.get("abs", 0.0)), float(t.get("rel", 0.0)) * b)


@dataclass
class Comparison:
    #: method, metric, higher_is_better, baseline, candidate, delta, tolerance, status, then
    #: n_pairs, paired_delta, paired_ci_low, paired_ci_high, p_wilcoxon, p_signflip, n_nonzero,
    #: paired_note (see .paired)
    rows: pd.DataFrame
    regressions: int
    #: protocol / weights differences compared anyway (``allow_protocol_change``); empty otherwise
    protocol_changes: list[str] = field(default_factory=list)
    #: baseline method -> candidate method (``--map``)
    method_map: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.regressions == 0


def compare_results(baseline: str | Path | Results, candidate: str | Path | Results,
                    tolerances: dict[str, dict[str, float]] | None = None, *, confidence: float = 0.95,
                    significance: float | None = None, paired_extra: pd.DataFrame | None = None,
                    seed: int = PAIRED_SEED, method_map: dict[str, str] | None = None,
                    allow_protocol_change: bool = False) -> Comparison:
    """Compare two runs' summaries, direction-aware. status: ``ok``, ``improved``, ``REGRESSED``
    (worse by more than the tolerance), ``MISSING`` (in the baseline, not in the candidate; counts as a
    regression; a ``GT`` row only in the baseline is ``skip``: the reference is no method), ``new`` (only in the
    candidate), ``skip`` (no direction known).

    Refused first (one-line :class:`~trace_bench.errors.ConfigError`): runs that share no method,
    a bad ``method_map`` (baseline name -> candidate name, for renamed methods; rows carry the
    candidate's name), and, unless ``allow_protocol_change``, runs whose protocol ids or weights differ
    (:mod:`.comparability`; with it, the differences are in ``Comparison.protocol_changes``).

    Every row also carries the paired analysis of its per-case values (:func:`.paired.paired_case_stats`
    at ``confidence``; NaN where the metric has none). ``paired_extra``: rows with the same columns
    for (method, metric) pairs without per-case values (the set-level metrics' jackknife interval of
    :mod:`trace_bench.run.paired_distribution`, keyed by the candidate's method names); it never
    overrides a per-case row.

    ``significance`` (alpha, default None = off): a regression must be both beyond tolerance and
    significant by the exact sign-flip test (``p_signflip``). A finite change worse than the tolerance
    with ``p >= alpha`` becomes ``worse (n.s.)``, which does not count as a regression. The test cannot
    reach ``p < alpha`` with fewer than :func:`.paired.min_nonzero_pairs` non-zero paired differences
    (6 at 0.05): such rows, and rows without a p-value (no per-case values, fewer than 2 pairs,
    set-level metrics), keep the tolerance gate alone, and their ``paired_note`` says so."""
    if significance is not None and not 0.0 < significance < 1.0:
        raise ValueError(f"significance must lie in (0, 1), got {significance}")
    b = baseline if isinstance(baseline, Results) else load_results(baseline)
    c = candidate if isinstance(candidate, Results) else load_results(candidate)
    mapping = dict(method_map or {})
    b, changes = comparable_runs(b, c, mapping, allow_protocol_change=allow_protocol_change)
    tol = tolerances or load_tolerances(None)
    infos = {**c.metrics, **b.metrics}
    bv = {(r.method, r.metric): float(r.value) for r in b.summary.itertuples(index=False)}
    cv = {(r.method, r.metric): float(r.value) for r in c.summary.itertuples(index=False)}
    paired: dict[tuple[str, str], tuple] = {}
    for table in (paired_extra, paired_case_stats(b.per_case, c.per_case, confidence, seed)):
        if table is not None:
            paired.update({(str(r[0]), str(r[1])): tuple(r[2:]) for r in table[["method", "metric", *PAIRED_COLUMNS]]
                           .itertuples(index=False, name=None)})
    none = (0, float("nan"), float("nan"), float("nan"), float("nan"), float("nan"), 0, "")
    need = min_nonzero_pairs(significance) if significance is not None else 0
    order = {m: i for i, m in enumerate(list(dict.fromkeys(b.methods + c.methods)))}
    rows = []
    for key in sorted(set(bv) | set(cv), key=lambda k: (order.get(k[0], 1 << 30), k[0], k[1])):
        m, metric = key
        hib = direction(metric, infos)
        x, y = bv.get(key, float("nan")), cv.get(key, float("nan"))
        t = tolerance_for(metric, x, tol, infos)
        pr = paired.get(key, none)
        if key not in cv and m == GT:  # the reference's rows are no method's output (e.g. a floor moved column)
            status, delta = "skip", float("nan")
        elif key not in cv:
            status, delta = "MISSING", float("nan")
        elif key not in bv:
            status, delta = "new", float("nan")
        elif hib is None:
            status, delta = "skip", y - x
        else:
            delta = y - x
            status, pr = _status(x, y, hib, t, pr, significance, need)
        rows.append((m, metric, hib, x, y, delta, t, status, *pr))
    df = pd.DataFrame(rows, columns=["method", "metric", "higher_is_better", "baseline", "candidate", "delta",
                                     "tolerance", "status", *PAIRED_COLUMNS])
    df["n_pairs"] = df["n_pairs"].astype(int)
    df["n_nonzero"] = df["n_nonzero"].astype(int)
    return Comparison(df, int(df.status.isin(["REGRESSED", "MISSING"]).sum()), changes, mapping)


def _status(x: float, y: float, hib: bool, tol: float, paired: tuple, significance: float | None,
            need: int) -> tuple[str, tuple]:
    """Status of a (baseline, candidate) value pair with a known direction, and the paired columns
    (with a note added where the significance gate could not apply)."""
    if np.isnan(x) and np.isnan(y):
        return "ok", paired
    if np.isnan(y):
        return "REGRESSED", paired
    if np.isnan(x):
        return "improved", paired
    delta = y - x
    gain = delta if hib else -delta
    if np.isinf(x) or np.isinf(y):
        gain = 0.0 if x == y else (1.0 if (y > x) == hib else -1.0) * float("inf")
    status = "REGRESSED" if gain < -tol else ("improved" if gain > tol else "ok")
    if status != "REGRESSED" or significance is None or not np.isfinite(gain):
        return status, paired
    p, nonzero, note = float(paired[5]), int(paired[6]), str(paired[7] or "")
    if not np.isfinite(p):
        return status, paired
    if nonzero < need:
        why = (f"{nonzero} non-zero pair(s): the sign-flip test needs {need} to reach p < {significance:g}; "
               "tolerance gate alone")
        return status, (*paired[:7], f"{note}; {why}" if note else why)
    return (NOT_SIGNIFICANT if p >= significance else status), paired
