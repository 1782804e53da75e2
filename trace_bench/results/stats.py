"""Means and seeded bootstrap confidence intervals of the result tables (every reduction says how
many values it counted), the two-sample jackknife of set-level metrics, and the split of the reference
set that gives the GT/GT floor and the methods' half-vs-half values compared with it."""

from __future__ import annotations

from dataclasses import dataclass
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


def jackknife_groups(case_ids: Sequence[str], max_groups: int, seed: int = 0) -> list[tuple[str, ...]]:
    """Delete-a-group jackknife groups: the cases ordered by ``sha256(f"{seed}:{case_id}")`` and dealt
    round robin into ``min(n, max_groups)`` groups (one case per group when n <= max_groups)."""
    import hashlib

    ids = sorted(set(case_ids), key=lambda c: (hashlib.sha256(f"{seed}:{c}".encode("utf-8")).hexdigest(), c))
    g = max(1, min(len(ids), int(max_groups)))
    groups: list[list[str]] = [[] for _ in range(g)]
    for i, c in enumerate(ids):
        groups[i % g].append(c)
    return [tuple(sorted(x)) for x in groups if x]


def jackknife_variance(estimates: Sequence[float]) -> tuple[float, int]:
    """Delete-a-group jackknife variance ``(G - 1) / G * sum_g (theta_(g) - mean)^2`` over the finite
    leave-out estimates (Efron & Tibshirani 1993, ch. 11), and how many were finite."""
    a = np.asarray(estimates, dtype=np.float64)
    a = a[np.isfinite(a)]
    g = int(a.size)
    if g < 2:
        return float("nan"), g
    return float((g - 1) / g * np.sum((a - a.mean()) ** 2)), g


#: the leave-out estimates of a side with an excess kurtosis above this make the interval "heavy-tailed":
#: in the coverage simulations (tests/results/test_stats_intervals.py) such intervals covered the estimator's
#: expected value far below the nominal rate (heavy-tailed features), Gaussian-like ones at or above it
HEAVY_TAIL_KURTOSIS = 3.0
#: the flag :func:`two_sample_jackknife` gives such an interval (summary.csv ``ci_flag``)
HEAVY_TAILED = "heavy-tailed"


@dataclass(frozen=True)
class JackknifeInterval:
    """A two-sample jackknife interval (:func:`two_sample_jackknife`): an interval of the estimator's
    expected value at this sample size (its sampling variability), not of the population distance itself
    (a biased estimator such as FID sits above the distance by its bias, whatever the interval)."""

    lo: float
    hi: float
    #: leave-out evaluations that gave a finite value, of those tried
    n_ok: int
    n_tried: int
    #: the larger of the two sides' excess kurtosis of the leave-out estimates (nan below 4 values)
    kurtosis: float = float("nan")

    @property
    def flag(self) -> str:
        """:data:`HEAVY_TAILED` when a side's leave-out estimates are heavy-tailed (kurtosis above
        :data:`HEAVY_TAIL_KURTOSIS`), else ``""``."""
        return HEAVY_TAILED if np.isfinite(self.kurtosis) and self.kurtosis > HEAVY_TAIL_KURTOSIS else ""


def two_sample_jackknife(estimate: float, gen_groups: Sequence[tuple[str, ...]], ref_groups: Sequence[tuple[str, ...]],
                         compute: Callable[[tuple[str, ...], tuple[str, ...]], float], *,
                         confidence: float = 0.95) -> JackknifeInterval:
    """Interval of a set-level statistic of two independent samples of cases (a generated set, a
    reference set) by the two-sample jackknife (Arvesen 1969): leave out each group of generated cases
    (reference fixed), then each group of reference cases (generated fixed); the variance is the sum of
    the two one-sample jackknife variances; the interval is ``estimate +- t_{df} * sqrt(var)`` with
    ``df = min(G_gen, G_ref) - 1``. Cases are never duplicated (unlike the bootstrap, which inflates
    Fréchet distances by repeating samples), and the interval is centred on the full-sample value.

    What it covers: the expected value of the estimator at these sample sizes (:class:`JackknifeInterval`).
    Its coverage, simulated (tests/results/test_stats_intervals.py), is at or above the nominal level for
    Gaussian-like features and far below it for heavy-tailed ones, which the leave-out estimates show:
    ``kurtosis`` and ``flag``.

    ``compute(gen_case_ids, ref_case_ids)`` recomputes the statistic on a subset. A side with fewer
    than 2 groups contributes no variance estimate: the interval is (nan, nan)."""
    from scipy import stats

    all_g = tuple(c for grp in gen_groups for c in grp)
    all_r = tuple(c for grp in ref_groups for c in grp)
    tried = ok = 0
    var = 0.0
    dfs = []
    kurt = float("nan")
    for groups, side in ((gen_groups, "gen"), (ref_groups, "ref")):
        if len(groups) < 2:
            if side == "gen" or ref_groups:
                return JackknifeInterval(float("nan"), float("nan"), ok, tried)
            continue
        ests = []
        for grp in groups:
            drop = set(grp)
            g = tuple(c for c in all_g if side != "gen" or c not in drop)
            r = tuple(c for c in all_r if side != "ref" or c not in drop)
            tried += 1
            try:
                ests.append(float(compute(g, r)))
            except Exception:  # noqa: BLE001 - counted below (n_ok < n_tried), never silent
                ests.append(float("nan"))
        v, n = jackknife_variance(ests)
        ok += n
        if not np.isfinite(v):
            return JackknifeInterval(float("nan"), float("nan"), ok, tried)
        var += v
        dfs.append(len(groups) - 1)
        fin = np.asarray(ests, dtype=np.float64)
        fin = fin[np.isfinite(fin)]
        if fin.size >= 4 and float(np.ptp(fin)) > 0.0:
            k = float(stats.kurtosis(fin))
            kurt = k if not np.isfinite(kurt) else max(kurt, k)
    if not dfs or not np.isfinite(estimate):
        return JackknifeInterval(float("nan"), float("nan"), ok, tried, kurt)
    t = float(stats.t.ppf(0.5 + confidence / 2.0, min(dfs)))
    half = t * float(np.sqrt(var))
    return JackknifeInterval(float(estimate - half), float(estimate + half), ok, tried, kurt)


def two_sample_jackknife_ci(estimate: float, gen_groups: Sequence[tuple[str, ...]],
                            ref_groups: Sequence[tuple[str, ...]], compute: Callable[[tuple[str, ...], tuple[str, ...]], float], *,
                            confidence: float = 0.95) -> tuple[float, float, int, int]:
    """:func:`two_sample_jackknife` as ``(lo, hi, n_ok, n_tried)``."""
    r = two_sample_jackknife(estimate, gen_groups, ref_groups, compute, confidence=confidence)
    return r.lo, r.hi, r.n_ok, r.n_tried


def split_half(case_ids: Sequence[str], seed: int = 0) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The reference set split in two by case: ordered by ``sha256(f"{seed}:split:{case_id}")``,
    alternately to half A and half B (A gets the extra case of an odd count)."""
    import hashlib

    ids = sorted(set(case_ids), key=lambda c: (hashlib.sha256(f"{seed}:split:{c}".encode("utf-8")).hexdigest(), c))
    return tuple(sorted(ids[0::2])), tuple(sorted(ids[1::2]))


#: fewer reference cases than this in either half of the split: no GT/GT floor and no half-vs-half values
#: (the jackknife needs two cases per side for an interval)
MIN_HALF_CASES = 2


def cross_halves(ref_ids: Sequence[str], gen_ids: Sequence[str], seed: int = 0
                 ) -> tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...], tuple[str, ...]]:
    """``(ref_a, ref_b, gen_a, gen_b)``: the reference cases split in halves A and B (:func:`split_half`) and
    the generated cases on the side of their case id (generated ids without a reference case are split
    among themselves the same way). The GT/GT floor scores A against B; a method's half-vs-half value
    scores its A cases against the reference's B and its B cases against the reference's A
    (:func:`half_vs_half`): the sample sizes of the floor, so a perfect generator's expected value is the
    floor's expected value, whatever the metric (both are the metric of two independent samples of the
    reference distribution of the same sizes)."""
    a, b = split_half(ref_ids, seed)
    sa, sb = set(a), set(b)
    extra = sorted(set(gen_ids) - sa - sb)
    ea, eb = split_half(extra, seed) if extra else ((), ())
    gen_a = tuple(sorted([c for c in set(gen_ids) if c in sa] + list(ea)))
    gen_b = tuple(sorted([c for c in set(gen_ids) if c in sb] + list(eb)))
    return a, b, gen_a, gen_b


def half_vs_half(compute: Callable[[tuple[str, ...], tuple[str, ...]], float], gen_a: Sequence[str],
                 gen_b: Sequence[str], ref_a: Sequence[str], ref_b: Sequence[str]) -> float:
    """``(compute(gen_a, ref_b) + compute(gen_b, ref_a)) / 2``: a set-level statistic at the sample sizes of the
    GT/GT floor, both ways (the floor itself is ``half_vs_half(compute_ref_ref, A, B, A, B)``)."""
    return 0.5 * (float(compute(tuple(gen_a), tuple(ref_b))) + float(compute(tuple(gen_b), tuple(ref_a))))
