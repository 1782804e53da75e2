"""Do the probe's intervals cover what their captions say? Simulations with known true AUROCs.

Binormal scores: a positive case scores ``d + u + e``, a negative ``u + e`` with ``u ~ N(0, su^2)`` shared
by two probes scoring the same case and ``e ~ N(0, se^2)`` their own, so each AUROC is
``Phi(d / sqrt(2 (su^2 + se^2)))`` and the paired difference of two probes is known too. A nominal 95%
interval must cover the truth in 95% of repetitions; with 150 repetitions the binomial SD is 1.8 points,
so the accepted band is [0.89, 0.99] (measured at this seed: see the assertion messages).
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
from scipy.stats import norm

from trace_bench.utility.probe import auroc_difference_interval, auroc_interval
from trace_bench.utility.protocol import PROBE_TINY

REPS = 150
N_POS, N_NEG = 20, 40
PROTO = replace(PROBE_TINY, n_resamples=999, confidence=0.95)


def _scores(rng, d: float, shared: np.ndarray, se: float) -> np.ndarray:
    return shared + rng.normal(0.0, se, shared.size)


def test_auroc_interval_covers_the_true_auroc():
    d, su, se = 1.2, 0.0, 1.0
    truth = norm.cdf(d / np.sqrt(2 * (su ** 2 + se ** 2)))
    y = np.r_[np.ones(N_POS, bool), np.zeros(N_NEG, bool)]
    cover = 0
    for r in range(REPS):
        rng = np.random.default_rng(r)
        s = _scores(rng, d, d * y + rng.normal(0.0, su, y.size), se)
        lo, hi, note = auroc_interval(y, s, PROTO, seed=10_000 + r)
        assert lo <= hi and not note
        cover += lo <= truth <= hi
    assert 0.89 <= cover / REPS <= 0.99, f"coverage {cover / REPS:.3f} of a nominal 95% interval"


def test_paired_difference_interval_covers_the_true_difference():
    d_a, d_b, su, se = 1.4, 0.8, 0.8, 0.6
    scale = np.sqrt(2 * (su ** 2 + se ** 2))
    truth = norm.cdf(d_a / scale) - norm.cdf(d_b / scale)
    y = np.r_[np.ones(N_POS, bool), np.zeros(N_NEG, bool)]
    cover = 0
    for r in range(REPS):
        rng = np.random.default_rng(r)
        shared = rng.normal(0.0, su, y.size)  # the case's own difficulty, seen by both probes
        a = _scores(rng, d_a, d_a * y + shared, se)
        b = _scores(rng, d_b, d_b * y + shared, se)
        lo, hi, note = auroc_difference_interval(y, a, b, PROTO, seed=20_000 + r)
        assert lo <= hi and not note
        cover += lo <= truth <= hi
    assert 0.89 <= cover / REPS <= 0.99, f"coverage {cover / REPS:.3f} of a nominal 95% interval"


def test_degenerate_and_tiny_test_sets_say_why():
    y = np.r_[np.ones(5, bool), np.zeros(5, bool)]
    lo, hi, note = auroc_interval(y, y.astype(float), PROTO, seed=0)  # perfectly separated: no spread
    assert lo == hi == 1.0 and "percentile" in note
    lo, hi, note = auroc_interval(np.r_[True, False, False], np.r_[0.9, 0.1, 0.2], PROTO, seed=0)
    assert np.isnan(lo) and np.isnan(hi) and "needs >= 2 of each" in note
