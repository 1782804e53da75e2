"""Inter-rater agreement and proportion intervals for reader studies.

* :func:`icc_2_1` -- ICC(2,1): two-way random effects, absolute agreement, single rater
  (Shrout & Fleiss 1979, "Intraclass correlations: uses in assessing rater reliability",
  Psychol. Bull. 86:420, case 2; McGraw & Wong 1996, Psychol. Methods 1:30, ICC(A,1)), from the
  two-way ANOVA of an n targets x k raters table x (no missing cells)::

      SSR = k * sum_i (mean_i. - mean)^2          MSR = SSR / (n - 1)            (targets)
      SSC = n * sum_j (mean_.j - mean)^2          MSC = SSC / (k - 1)            (raters)
      SSE = sum (x_ij - mean)^2 - SSR - SSC       MSE = SSE / ((n - 1)(k - 1))   (residual)
      ICC(2,1) = (MSR - MSE) / (MSR + (k - 1) MSE + k (MSC - MSE) / n)

  Its 1 - alpha interval is the F-based one of McGraw & Wong (1996, case 2A, ICC(A,1)), as in
  Shrout & Fleiss (1979) with Satterthwaite's approximate degrees of freedom v:

      a = k r / (n (1 - r)),  b = 1 + k r (n - 1) / (n (1 - r)),  r = ICC(2,1)
      v = (a MSC + b MSE)^2 / ((a MSC)^2 / (k - 1) + (b MSE)^2 / ((n - 1)(k - 1)))
      F_L = F_{1-alpha/2}(n - 1, v),  F_U = F_{1-alpha/2}(v, n - 1)
      lower = n (MSR - F_L MSE) / (F_L (k MSC + (k n - k - n) MSE) + n MSR)
      upper = n (F_U MSR - MSE) / (k MSC + (k n - k - n) MSE + n F_U MSR)

  and the test of ICC = 0 is F = MSR / MSE on (n - 1, (n - 1)(k - 1)) df.
* :func:`weighted_kappa` -- Cohen's kappa with quadratic weights (Cohen 1968), computed by
  ``sklearn.metrics.cohen_kappa_score(weights="quadratic")`` over the full scale's labels, with a
  seeded percentile bootstrap interval over items (resamples where kappa is undefined are dropped
  and counted).
* :func:`wilson_interval` -- Wilson's (1927) score interval for a proportion x / n (Newcombe 1998,
  Stat. Med. 17:857, method 3): with p = x / n and z = Phi^-1(1 - alpha/2),
  centre = (p + z^2 / (2n)) / (1 + z^2 / n), half-width = z / (1 + z^2 / n) * sqrt(p (1 - p) / n + z^2 / (4 n^2)).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np


@dataclass(frozen=True)
class IccResult:
    """ICC(2,1) of an n x k table with its interval, the ANOVA mean squares and the F test."""

    icc: float
    ci_low: float
    ci_high: float
    n: int
    k: int
    msr: float
    msc: float
    mse: float
    f: float
    df1: int
    df2: int
    p: float


def anova_two_way(x: np.ndarray) -> tuple[float, float, float]:
    """(MSR, MSC, MSE) of the two-way ANOVA without replication of an n x k table (module docstring)."""
    a = np.asarray(x, dtype=np.float64)
    n, k = a.shape
    gm = a.mean()
    ssr = k * float(((a.mean(axis=1) - gm) ** 2).sum())
    ssc = n * float(((a.mean(axis=0) - gm) ** 2).sum())
    sse = float(((a - gm) ** 2).sum()) - ssr - ssc
    return ssr / (n - 1), ssc / (k - 1), max(sse, 0.0) / ((n - 1) * (k - 1))


def icc_2_1(x: np.ndarray | Sequence[Sequence[float]], confidence: float = 0.95) -> IccResult:
    """ICC(2,1) of ``x`` (n targets x k raters, complete) with McGraw & Wong's F-based interval.

    Undefined values (fewer than 2 targets or raters, no variance at all) are NaN."""
    from scipy.stats import f as fdist

    a = np.asarray(x, dtype=np.float64)
    if a.ndim != 2 or not np.isfinite(a).all():
        raise ValueError(f"expected a complete 2-D table of finite scores, got shape {a.shape}")
    n, k = a.shape
    nan = float("nan")
    if n < 2 or k < 2:
        return IccResult(nan, nan, nan, n, k, nan, nan, nan, nan, n - 1, (n - 1) * (k - 1), nan)
    msr, msc, mse = anova_two_way(a)
    den = msr + (k - 1) * mse + k * (msc - mse) / n
    r = (msr - mse) / den if den > 0 else nan
    df1, df2 = n - 1, (n - 1) * (k - 1)
    fstat = msr / mse if mse > 0 else (math.inf if msr > 0 else nan)
    p = float(fdist.sf(fstat, df1, df2)) if math.isfinite(fstat) else (0.0 if fstat == math.inf else nan)
    lo = hi = nan
    alpha = 1.0 - confidence
    if math.isfinite(r) and r < 1.0 and mse > 0:
        aa = k * r / (n * (1.0 - r))
        bb = 1.0 + k * r * (n - 1) / (n * (1.0 - r))
        num = (aa * msc + bb * mse) ** 2
        dv = (aa * msc) ** 2 / (k - 1) + (bb * mse) ** 2 / ((n - 1) * (k - 1))
        v = num / dv if dv > 0 else math.inf
        fl = float(fdist.ppf(1.0 - alpha / 2.0, n - 1, v))
        fu = float(fdist.ppf(1.0 - alpha / 2.0, v, n - 1))
        c = k * msc + (k * n - k - n) * mse
        lo = n * (msr - fl * mse) / (fl * c + n * msr)
        hi = n * (fu * msr - mse) / (c + n * fu * msr)
    elif r == 1.0:
        lo = hi = 1.0
    return IccResult(float(r), float(lo), float(hi), n, k, msr, msc, mse, float(fstat), df1, df2, p)


@dataclass(frozen=True)
class KappaResult:
    """Quadratic-weighted kappa of two raters, its bootstrap interval and how many resamples counted."""

    kappa: float
    ci_low: float
    ci_high: float
    n: int
    resamples: int
    undefined_resamples: int


def _kappa(a: np.ndarray, b: np.ndarray, labels: list[int]) -> float:
    from sklearn.metrics import cohen_kappa_score  # a core dependency (PRDC's distances need it too)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        v = cohen_kappa_score(a, b, labels=labels, weights="quadratic")
    return float(v)


def weighted_kappa(a: Sequence[int], b: Sequence[int], labels: Sequence[int], *, resamples: int = 1000,
                   seed: int = 0, confidence: float = 0.95) -> KappaResult:
    """Quadratic-weighted Cohen's kappa of paired scores ``a``, ``b`` over the scale ``labels`` and
    its percentile bootstrap interval: ``resamples`` draws of the items with replacement from
    ``numpy.random.default_rng(seed)``; the (alpha/2, 1 - alpha/2) quantiles of the defined values."""
    x, y = np.asarray(a, dtype=np.int64), np.asarray(b, dtype=np.int64)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError("kappa needs two equally long 1-D score lists")
    n = len(x)
    nan = float("nan")
    if n < 2:
        return KappaResult(nan, nan, nan, n, 0, 0)
    labs = [int(v) for v in labels]
    k = _kappa(x, y, labs)
    rng = np.random.default_rng(seed)
    vals = []
    bad = 0
    for _ in range(int(resamples)):
        idx = rng.integers(0, n, n)
        v = _kappa(x[idx], y[idx], labs)
        if math.isfinite(v):
            vals.append(v)
        else:
            bad += 1
    alpha = 1.0 - confidence
    lo, hi = (float(np.quantile(vals, alpha / 2.0)), float(np.quantile(vals, 1.0 - alpha / 2.0))) if vals else (nan, nan)
    return KappaResult(k, lo, hi, n, int(resamples), bad)


def wilson_interval(successes: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of the proportion ``successes / n`` (formula in the module docstring)."""
    if n <= 0:
        return float("nan"), float("nan")
    z = NormalDist().inv_cdf(1.0 - (1.0 - confidence) / 2.0)
    p = successes / n
    den = 1.0 + z * z / n
    centre = (p + z * z / (2.0 * n)) / den
    half = z / den * math.sqrt(p * (1.0 - p) / n + z * z / (4.0 * n * n))
    lo = 0.0 if successes <= 0 else max(0.0, centre - half)  # exact ends (the formula gives them up to rounding)
    hi = 1.0 if successes >= n else min(1.0, centre + half)
    return lo, hi
