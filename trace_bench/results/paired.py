"""Paired comparison of two runs' per-case values (pure functions on the two ``per_case.csv`` tables).

For every (method, metric) with per-case values in both runs (``case_id`` not ``(all)`` /
``(profile)``), the values are paired by case id; only cases present and finite in both runs count.
With ``d_i = candidate_i - baseline_i`` (i = 1..n) and ``m`` = the number of non-zero ``d_i``:

* ``paired_delta`` = mean(d);
* ``paired_ci_low`` / ``paired_ci_high``: studentised bootstrap (bootstrap-t) interval of mean(d)
  (Efron & Tibshirani 1993, ch. 12.5; DiCiccio & Efron 1996): ``t*_b = (mean(d*_b) - mean(d)) /
  se(d*_b)`` with ``se(x) = sd(x, ddof=1) / sqrt(n)`` over :data:`N_RESAMPLES` resamples drawn by
  :func:`scipy.stats.bootstrap` (generator ``numpy.random.default_rng(seed)``, :data:`PAIRED_SEED`
  unless told otherwise), ``q_lo, q_hi`` = the ``(1 -/+ c) / 2`` quantiles of ``t*`` (scipy's
  percentile interval of ``t*``) and the interval ``[mean(d) - q_hi * se(d), mean(d) - q_lo * se(d)]``.
  Studentised, not percentile or BCa: at small n those two are too narrow (measured coverage of a
  nominal 95% interval, normal differences: percentile 83% at n = 5 and 89% at n = 8, BCa 83% / 89%;
  studentised 96% / 94%; ``tests/results/test_compare_coverage.py`` measures it). All differences equal
  (e.g. a constant shift) gives the point ``[d, d]``; fewer than :data:`MIN_PAIRS_INTERVAL` pairs,
  or an interval that is not finite (resamples without spread dominate a tail), gives NaN and a note;
* ``p_signflip``: exact two-sided sign-flip (paired permutation) test of mean(d) = 0 under the null
  that each d_i is symmetric about 0 (Fisher 1935; :func:`scipy.stats.permutation_test`,
  ``permutation_type="samples"``): all 2^n sign patterns up to n = :data:`EXACT_MAX_PAIRS`, else
  :data:`N_PERMUTATIONS` random ones (seeded, p counted conservatively as (k + 1) / (B + 1)). This is
  the ``--significance`` gate: it tests the quantity the tolerance gate judges (the mean). Its
  smallest possible p-value is ``2 ** (1 - m)`` (every non-zero difference of one sign), so a level
  alpha can only be reached with ``m >= min_nonzero_pairs(alpha)`` (6 at alpha = 0.05);
* ``p_wilcoxon``: two-sided Wilcoxon signed-rank test of the median of d being 0
  (:func:`scipy.stats.wilcoxon`, ``zero_method="wilcox"``: zero differences are dropped before
  ranking, Wilcoxon 1945; ``method="auto"``: exact null distribution for small n), given beside the
  gate as a rank-based check (less sensitive to one outlying case). Its floor is the same ``2 ** (1 - m)``;
* all differences zero gives p = 1.0 (nothing changed); fewer than 2 pairs: no interval, no test.

This module imports neither ``trace_bench.run`` nor ``trace_bench.metrics``; the set-level
(distribution) metrics' paired interval is computed in :mod:`trace_bench.run.paired_distribution`
and reaches :func:`~trace_bench.results.compare.compare_results` as a table with the same columns.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .tables import ALL_CASES, PROFILE_CASE

#: seed of the bootstrap / permutation generators (``numpy.random.default_rng(PAIRED_SEED)``, fresh for
#: every (method, metric), so a row's interval does not depend on which other rows exist)
PAIRED_SEED = 0
#: bootstrap resamples of the paired mean difference
N_RESAMPLES = 9999
#: fewest pairs for an interval (below, bootstrap-t is undefined or unusably wide: a tail made of
#: resamples that repeat one case)
MIN_PAIRS_INTERVAL = 5
#: the sign-flip test enumerates all 2^n sign patterns up to this many pairs
EXACT_MAX_PAIRS = 16
#: random sign patterns above :data:`EXACT_MAX_PAIRS` pairs (smallest p: 2 / (N + 1))
N_PERMUTATIONS = 9999
#: zero-difference handling of :func:`scipy.stats.wilcoxon` (zeros are dropped)
ZERO_METHOD = "wilcox"
#: columns the paired analysis adds to a comparison row (``paired_note``: why a value is NaN)
PAIRED_COLUMNS = ["n_pairs", "paired_delta", "paired_ci_low", "paired_ci_high", "p_wilcoxon", "p_signflip",
                  "n_nonzero", "paired_note"]
NAN = float("nan")


@dataclass(frozen=True)
class PairedStat:
    """The paired statistics of one (method, metric)."""

    n_pairs: int
    delta: float
    ci_low: float
    ci_high: float
    p_wilcoxon: float
    p_signflip: float = NAN
    n_nonzero: int = 0
    note: str = ""

    def row(self) -> tuple[int, float, float, float, float, float, int, str]:
        """The values in :data:`PAIRED_COLUMNS` order."""
        return (self.n_pairs, self.delta, self.ci_low, self.ci_high, self.p_wilcoxon, self.p_signflip,
                self.n_nonzero, self.note)


def min_nonzero_pairs(alpha: float) -> int:
    """Fewest non-zero paired differences m for which the exact two-sided sign-flip (or Wilcoxon) test
    can give p < alpha: the smallest p is ``2 ** (1 - m)``, so m > 1 + log2(1 / alpha)."""
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must lie in (0, 1), got {alpha}")
    return int(math.floor(1.0 + math.log2(1.0 / alpha))) + 1


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
        return NAN
    if not np.any(d != 0):
        return 1.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # small-sample / ties notes of the normal approximation
        return float(wilcoxon(d, zero_method=ZERO_METHOD, alternative="two-sided").pvalue)


def signflip_p(diffs: np.ndarray, seed: int = PAIRED_SEED) -> float:
    """Two-sided sign-flip permutation p-value of mean(d) (:func:`scipy.stats.permutation_test`, one
    sample, ``permutation_type="samples"``): exact up to :data:`EXACT_MAX_PAIRS` differences, else
    :data:`N_PERMUTATIONS` seeded random sign patterns. 1.0 when every difference is zero, NaN for
    fewer than 2 differences."""
    from scipy.stats import permutation_test

    d = np.asarray(diffs, dtype=np.float64)
    if d.size < 2:
        return NAN
    if not np.any(d != 0):
        return 1.0
    n_res = 2 ** d.size if d.size <= EXACT_MAX_PAIRS else N_PERMUTATIONS
    res = permutation_test((d,), np.mean, permutation_type="samples", vectorized=True, n_resamples=n_res,
                           alternative="two-sided", rng=np.random.default_rng(seed))
    return float(min(1.0, res.pvalue))


def bootstrap_mean_ci(diffs: np.ndarray, confidence: float = 0.95, seed: int = PAIRED_SEED,
                      n_resamples: int = N_RESAMPLES) -> tuple[float, float]:
    """Studentised bootstrap interval of mean(d) (see the module docstring). ``(d, d)`` when every
    difference is equal; NaN below :data:`MIN_PAIRS_INTERVAL` pairs or when the interval is not finite."""
    from scipy.stats import bootstrap

    d = np.asarray(diffs, dtype=np.float64)
    n = d.size
    if n < MIN_PAIRS_INTERVAL:
        return NAN, NAN
    mean = float(d.mean())
    se = float(d.std(ddof=1)) / math.sqrt(n)
    if se == 0.0:
        return mean, mean

    def t_star(x: np.ndarray, axis: int = -1) -> np.ndarray:
        diff = x.mean(axis=axis) - mean
        s = x.std(ddof=1, axis=axis) / math.sqrt(n)
        with np.errstate(divide="ignore", invalid="ignore"):
            # a resample without spread: +-inf beyond its side, 0 when it sits on the mean
            return np.where(s > 0, diff / np.where(s > 0, s, 1.0), np.where(diff == 0, 0.0, np.sign(diff) * np.inf))

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = bootstrap((d,), t_star, n_resamples=n_resamples, confidence_level=confidence, method="percentile",
                        vectorized=True, rng=np.random.default_rng(seed))
    q_lo, q_hi = float(res.confidence_interval.low), float(res.confidence_interval.high)
    lo, hi = mean - q_hi * se, mean - q_lo * se
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return NAN, NAN
    return lo, hi


def paired_stat(diffs: np.ndarray | pd.Series, confidence: float = 0.95, seed: int = PAIRED_SEED,
                n_resamples: int = N_RESAMPLES) -> PairedStat:
    """mean(d), its interval, the sign-flip and Wilcoxon p-values, n and m (see the module docstring)."""
    d = np.asarray(diffs, dtype=np.float64)
    n = int(d.size)
    if n == 0:
        return PairedStat(0, NAN, NAN, NAN, NAN, note="no case scored in both runs")
    mean = float(d.mean())
    m = int(np.count_nonzero(d))
    if n < 2:
        return PairedStat(n, mean, NAN, NAN, NAN, NAN, m, "1 paired case: no interval, no test")
    lo, hi = bootstrap_mean_ci(d, confidence, seed, n_resamples)
    note = ""
    if n < MIN_PAIRS_INTERVAL:
        note = f"n={n} too small for an interval (needs {MIN_PAIRS_INTERVAL} pairs)"
    elif math.isnan(lo):
        note = f"no finite {confidence:.0%} interval at n={n}"
    return PairedStat(n, mean, lo, hi, wilcoxon_p(d), signflip_p(d, seed), m, note)


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
