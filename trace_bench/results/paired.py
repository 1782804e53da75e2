"""Paired comparison of two runs' per-case values (pure functions on the two ``per_case.csv`` tables).

For every (method, metric) with per-case values in both runs (``case_id`` not ``(all)`` /
``(profile)``), the values are paired by case id; only cases present and finite in both runs count.
With ``d_i = candidate_i - baseline_i`` (i = 1..n):

* ``paired_delta`` = mean(d);
* ``paired_ci_low`` / ``paired_ci_high``: percentile bootstrap interval of mean(d)
  (:func:`scipy.stats.bootstrap`, ``method="percentile"``, :data:`N_RESAMPLES` resamples, generator
  ``numpy.random.default_rng(seed)`` with :data:`PAIRED_SEED` unless told otherwise; Efron &
  Tibshirani 1993, ch. 13). Percentile, not BCa: it is the method of every other interval of the
  toolkit (:mod:`.stats`), and it stays defined when all differences are equal (BCa's acceleration
  is 0/0 there, e.g. a constant shift);
* ``p_wilcoxon``: two-sided Wilcoxon signed-rank test of the median of d being 0
  (:func:`scipy.stats.wilcoxon`, ``zero_method="wilcox"``: zero differences are dropped before
  ranking, Wilcoxon 1945; ``method="auto"``: exact null distribution for small n). All differences
  zero gives p = 1.0 (nothing changed);
* fewer than 2 pairs: interval and p are NaN and ``paired_note`` says so.

This module imports neither ``trace_bench.run`` nor ``trace_bench.metrics``; the set-level
(distribution) metrics' paired interval is computed in :mod:`trace_bench.run.paired_distribution`
and reaches :func:`~trace_bench.results.compare.compare_results` as a table with the same columns.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .tables import ALL_CASES, PROFILE_CASE

#: seed of the bootstrap generator (``numpy.random.default_rng(PAIRED_SEED)``, fresh for every
#: (method, metric), so a row's interval does not depend on which other rows exist)
PAIRED_SEED = 0
#: bootstrap resamples of the paired mean difference
N_RESAMPLES = 9999
#: interval method of :func:`scipy.stats.bootstrap`
BOOTSTRAP_METHOD = "percentile"
#: zero-difference handling of :func:`scipy.stats.wilcoxon` (zeros are dropped)
ZERO_METHOD = "wilcox"
#: columns the paired analysis adds to a comparison row (``paired_note``: why a value is NaN)
PAIRED_COLUMNS = ["n_pairs", "paired_delta", "paired_ci_low", "paired_ci_high", "p_wilcoxon", "paired_note"]


@dataclass(frozen=True)
class PairedStat:
    """The paired statistics of one (method, metric)."""

    n_pairs: int
    delta: float
    ci_low: float
    ci_high: float
    p_wilcoxon: float
    note: str = ""

    def row(self) -> tuple[int, float, float, float, float, str]:
        """The values in :data:`PAIRED_COLUMNS` order."""
        return (self.n_pairs, self.delta, self.ci_low, self.ci_high, self.p_wilcoxon, self.note)


def case_values(per_case: pd.DataFrame, method: str, metric: str) -> pd.Series:
    """The per-case values of one (method, metric), indexed by case id (``(all)`` and ``(profile)``
    rows excluded; a repeated case id keeps its first row)."""
    df = per_case[(per_case.method == method) & (per_case.metric == metric)
                  & ~per_case.case_id.isin([ALL_CASES, PROFILE_CASE])]
    df = df.drop_duplicates(subset="case_id", keep="first")
    return pd.Series(pd.to_numeric(df.value, errors="coerce").to_numpy(dtype=np.float64),
                     index=df.case_id.astype(str).to_numpy(), dtype=np.float64)


def paired_differences(baseline: pd.Series, candidate: pd.Series) -> pd.Series:
    """``candidate - baseline`` on the case ids present and finite in both, sorted by case id."""
    common = sorted(set(baseline.index[np.isfinite(baseline.to_numpy())])
                    & set(candidate.index[np.isfinite(candidate.to_numpy())]))
    return pd.Series(candidate.loc[common].to_numpy() - baseline.loc[common].to_numpy(), index=common,
                     dtype=np.float64)


def wilcoxon_p(diffs: np.ndarray) -> float:
    """Two-sided Wilcoxon signed-rank p-value of the differences (``zero_method="wilcox"``);
    1.0 when every difference is zero, NaN for fewer than 2 differences."""
    from scipy.stats import wilcoxon

    d = np.asarray(diffs, dtype=np.float64)
    if d.size < 2:
        return float("nan")
    if not np.any(d != 0):
        return 1.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # small-sample / ties notes of the normal approximation
        return float(wilcoxon(d, zero_method=ZERO_METHOD, alternative="two-sided").pvalue)


def bootstrap_mean_ci(diffs: np.ndarray, confidence: float = 0.95, seed: int = PAIRED_SEED,
                      n_resamples: int = N_RESAMPLES) -> tuple[float, float]:
    """Percentile bootstrap interval of mean(d) (:func:`scipy.stats.bootstrap`); NaN for n < 2."""
    from scipy.stats import bootstrap

    d = np.asarray(diffs, dtype=np.float64)
    if d.size < 2:
        return float("nan"), float("nan")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = bootstrap((d,), np.mean, n_resamples=n_resamples, confidence_level=confidence,
                        method=BOOTSTRAP_METHOD, vectorized=True, rng=np.random.default_rng(seed))
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


def paired_stat(diffs: np.ndarray | pd.Series, confidence: float = 0.95, seed: int = PAIRED_SEED,
                n_resamples: int = N_RESAMPLES) -> PairedStat:
    """mean(d), its bootstrap interval, the Wilcoxon p-value and n (see the module docstring)."""
    d = np.asarray(diffs, dtype=np.float64)
    n = int(d.size)
    if n == 0:
        return PairedStat(0, float("nan"), float("nan"), float("nan"), float("nan"), "no case scored in both runs")
    mean = float(d.mean())
    if n < 2:
        return PairedStat(n, mean, float("nan"), float("nan"), float("nan"), "1 paired case: no interval, no test")
    lo, hi = bootstrap_mean_ci(d, confidence, seed, n_resamples)
    return PairedStat(n, mean, lo, hi, wilcoxon_p(d))


def paired_case_stats(baseline: pd.DataFrame, candidate: pd.DataFrame, confidence: float = 0.95,
                      seed: int = PAIRED_SEED, n_resamples: int = N_RESAMPLES) -> pd.DataFrame:
    """One row per (method, metric) with per-case values in both ``per_case`` tables:
    ``method, metric`` + :data:`PAIRED_COLUMNS`."""
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must lie in (0, 1), got {confidence}")

    def keys(df: pd.DataFrame) -> set[tuple[str, str]]:
        sub = df[~df.case_id.isin([ALL_CASES, PROFILE_CASE])]
        return set(zip(sub.method.astype(str), sub.metric.astype(str)))

    rows = []
    for method, metric in sorted(keys(baseline) & keys(candidate)):
        d = paired_differences(case_values(baseline, method, metric), case_values(candidate, method, metric))
        rows.append((method, metric, *paired_stat(d.to_numpy(), confidence, seed, n_resamples).row()))
    return pd.DataFrame(rows, columns=["method", "metric", *PAIRED_COLUMNS])
