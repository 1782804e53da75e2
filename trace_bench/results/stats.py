"""Means and seeded bootstrap confidence intervals of the result tables (every reduction says how
many values it counted)."""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np


def mean_finite_or_inf(values: Sequence[float]) -> tuple[float, int]:
    """Mean over non-NaN values (inf propagates) and how many values counted."""
    a = np.asarray(values, dtype=np.float64)
    a = a[~np.isnan(a)]
    if a.size == 0:
        return float("nan"), 0
    return float(a.mean()), int(a.size)


def bootstrap_ci(values: Sequence[float], *, n_boot: int = 1000, confidence: float = 0.95,
                 seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap CI of the mean: resample the n values with replacement ``n_boot`` times
    (``numpy.random.default_rng(seed)``), take the ``(1-c)/2`` and ``(1+c)/2`` quantiles of the
    resampled means (Efron & Tibshirani 1993, ch. 13). NaN values are dropped first; fewer than 2
    values, or ``n_boot = 0``, give (nan, nan)."""
    a = np.asarray(values, dtype=np.float64)
    a = a[~np.isnan(a)]
    if a.size < 2 or n_boot <= 0:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, a.size, size=(n_boot, a.size))
    with np.errstate(invalid="ignore"):
        means = a[idx].mean(axis=1)
    alpha = (1.0 - confidence) / 2.0
    lo, hi = np.quantile(means, [alpha, 1.0 - alpha])
    return float(lo), float(hi)


def bootstrap_distribution_ci(gen_ids: Sequence[str], ref_ids: Sequence[str],
                              compute: Callable[[tuple[str, ...], tuple[str, ...]], float], *,
                              n_boot: int = 100, confidence: float = 0.95, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap CI of a set-level metric: resample the generated cases and the reference
    cases (independently, with replacement), recompute the metric from the merged states of each
    resample. Results are memoised per multiset of cases, so small sets cost little."""
    g, r = sorted(gen_ids), sorted(ref_ids)
    if len(g) < 2 or n_boot <= 0:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    memo: dict[tuple[tuple[str, ...], tuple[str, ...]], float] = {}
    vals = []
    for _ in range(n_boot):
        gi = tuple(sorted(g[i] for i in rng.integers(0, len(g), size=len(g))))
        ri = tuple(sorted(r[i] for i in rng.integers(0, len(r), size=len(r)))) if r else ()
        key = (gi, ri)
        if key not in memo:
            try:
                memo[key] = float(compute(gi, ri))
            except Exception:
                memo[key] = float("nan")
        vals.append(memo[key])
    a = np.asarray(vals, dtype=np.float64)
    a = a[np.isfinite(a)]
    if a.size < 2:
        return float("nan"), float("nan")
    alpha = (1.0 - confidence) / 2.0
    lo, hi = np.quantile(a, [alpha, 1.0 - alpha])
    return float(lo), float(hi)


