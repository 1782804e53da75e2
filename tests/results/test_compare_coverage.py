"""Coverage of `compare`'s paired interval (bootstrap-t of the mean per-case difference), measured by
a seeded simulation: draw n differences from a known distribution, compute the nominal 95% interval,
count how often it holds the true mean. Criterion: at least 0.92 for symmetric differences and at
least 0.85 for skewed ones at n >= 5 (with 400 replications one binomial SE is 1.1 points), and
clearly above the percentile bootstrap it replaced, which measures 83% at n = 5 and 89% at n = 8.

``python tests/results/test_compare_coverage.py [REPLICATIONS]`` prints the table (setting, nominal, measured).
"""

from __future__ import annotations

import sys
import warnings
from typing import Callable

import numpy as np
import pytest
import scipy.stats

from trace_bench.results.paired import bootstrap_mean_ci

NOMINAL = 0.95
#: (name, sampler, true mean)
DISTRIBUTIONS: dict[str, tuple[Callable[[np.random.Generator, int], np.ndarray], float]] = {
    "normal": (lambda r, n: r.normal(0.2, 1.0, n), 0.2),
    "t3": (lambda r, n: r.standard_t(3, n), 0.0),
    "exponential": (lambda r, n: r.exponential(1.0, n), 1.0),
    "lognormal": (lambda r, n: r.lognormal(0.0, 1.0, n), float(np.exp(0.5))),
}


def percentile_ci(d: np.ndarray, seed: int, n_resamples: int) -> tuple[float, float]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ci = scipy.stats.bootstrap((d,), np.mean, n_resamples=n_resamples, method="percentile",
                                   rng=np.random.default_rng(seed)).confidence_interval
    return float(ci.low), float(ci.high)


def coverage(dist: str, n: int, reps: int, n_resamples: int = 999, seed: int = 20240) -> dict[str, float]:
    """Fraction of ``reps`` replications whose interval holds the true mean, per interval method."""
    draw, truth = DISTRIBUTIONS[dist]
    rng = np.random.default_rng(seed)
    hits = {"bootstrap-t": 0, "percentile": 0}
    for r in range(reps):
        d = draw(rng, n)
        for name, f in (("bootstrap-t", lambda: bootstrap_mean_ci(d, NOMINAL, seed=r, n_resamples=n_resamples)),
                        ("percentile", lambda: percentile_ci(d, r, n_resamples))):
            lo, hi = f()
            hits[name] += bool(lo <= truth <= hi)
    return {k: v / reps for k, v in hits.items()}


@pytest.mark.parametrize("dist,n,floor", [
    ("normal", 5, 0.92), ("normal", 8, 0.92), ("normal", 20, 0.92),
    ("t3", 8, 0.92), ("exponential", 8, 0.88), ("lognormal", 8, 0.85),
])
def test_bootstrap_t_coverage(dist, n, floor):
    cov = coverage(dist, n, reps=400)
    assert cov["bootstrap-t"] >= floor, cov
    if n <= 8:  # where the percentile interval under-covers, bootstrap-t is the improvement
        assert cov["bootstrap-t"] >= cov["percentile"] + 0.03, cov


if __name__ == "__main__":
    reps = int(sys.argv[1]) if len(sys.argv) > 1 else 400
    print(f"| differences | n | nominal | bootstrap-t | percentile (before) |   ({reps} replications, B = 999)")
    print("|---|---|---|---|---|")
    for dist in DISTRIBUTIONS:
        for n in (5, 8, 12, 20):
            cov = coverage(dist, n, reps)
            print(f"| {dist} | {n} | {NOMINAL:.2f} | {cov['bootstrap-t']:.3f} | {cov['percentile']:.3f} |", flush=True)
