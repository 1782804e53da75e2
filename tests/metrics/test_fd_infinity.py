"""FD extrapolated to infinite samples (column ``<name>_inf`` of every catalogue Frechet metric; Chong &
Forsyth 2020, :func:`trace_bench.metrics.frechet.frechet_distance_infinity`).

Seeded simulation with a known answer: Gaussian features, generated N(mu, c^2 I) against reference N(0, I),
so the true Frechet distance of the two row distributions is ``|mu|^2 + d (1 - c)^2``; rows come in volumes
(within-volume correlation rho: each coordinate sqrt(rho) volume effect + sqrt(1 - rho) row noise, the
marginal law unchanged). Criterion, in every setting where the extrapolation is computed (at least 10
volumes per set, more rows than dimensions in the smallest subsets): over 30 replications its mean absolute
error is below that of FD at n by the stated factor. Measured (seeded, 30 replications):

========================  =======  ======================  ======================
setting (d, V, rows, rho)  true FD  FD at n: mean |error|   FD inf: mean |error|
========================  =======  ======================  ======================
16, 20, 8, 0.5             0.73     3.63                    0.85
64, 20, 8, 0.0             2.92     16.75                   0.78
64, 20, 8, 0.5             2.92     34.64                   13.27
========================  =======  ======================  ======================

The last row is the honest limit: with correlated slices the effective sample size is below the row count,
the covariances of the smaller subsets are near rank-deficient, FD is concave in 1 / n there and the line
removes about 60 % of the bias, not all of it (the quadratic term the paper's linear fit ignores).
"""

from __future__ import annotations

import numpy as np
import pytest

from trace_bench.metrics import RunContext, frechet
from trace_bench.metrics.catalog import CLASSES


def _volumes(rng: np.random.Generator, n_volumes: int, rows: int, d: int, rho: float, mu: np.ndarray | float,
             c: float) -> tuple[np.ndarray, np.ndarray]:
    u = rng.normal(size=(n_volumes, 1, d))
    e = rng.normal(size=(n_volumes, rows, d))
    x = (np.sqrt(rho) * u + np.sqrt(1.0 - rho) * e) * c + mu
    return x.reshape(-1, d).astype(np.float32), np.repeat(np.arange(n_volumes), rows)


def _errors(d: int, n_volumes: int, rows: int, rho: float, reps: int = 30) -> tuple[float, float, float]:
    """(true FD, mean |FD_n - true|, mean |FD_inf - true|)."""
    mu = np.zeros(d)
    mu[0] = 0.075 * np.sqrt(d)
    c = 1.2
    true = float(mu @ mu + d * (1.0 - c) ** 2)
    at_n, inf = [], []
    for rep in range(reps):
        rng = np.random.default_rng(rep)
        g, gv = _volumes(rng, n_volumes, rows, d, rho, mu, c)
        r, rv = _volumes(rng, n_volumes, rows, d, rho, 0.0, 1.0)
        assert frechet.infinity_blocker(gv, rv, d) == ""
        at_n.append(frechet.frechet_distance_from_states({"features": g}, {"features": r}))
        inf.append(frechet.frechet_distance_infinity(g, gv, r, rv, seed=rep))
    return true, float(np.mean(np.abs(np.array(at_n) - true))), float(np.mean(np.abs(np.array(inf) - true)))


@pytest.mark.parametrize("d, n_volumes, rows, rho, factor", [(16, 20, 8, 0.5, 0.5), (64, 20, 8, 0.0, 0.2),
                                                              (64, 20, 8, 0.5, 0.6)])
def test_extrapolation_is_closer_to_the_true_distance(d, n_volumes, rows, rho, factor):
    true, err_n, err_inf = _errors(d, n_volumes, rows, rho)
    assert err_inf < factor * err_n, (true, err_n, err_inf)


def test_not_computed_where_n_does_not_allow():
    v10, v9 = np.repeat(np.arange(10), 30), np.repeat(np.arange(9), 30)
    assert frechet.infinity_blocker(v10, v10, 64) == ""
    assert "at least 10 volumes" in frechet.infinity_blocker(v9, v10, 64)
    # 5 of 10 volumes x 30 rows = 150 vectors: not more than 256 dimensions
    assert "more vectors than feature dimensions" in frechet.infinity_blocker(v10, v10, 256)
    # one vector per volume (the volume spaces) at d = 2048: never with a realistic n
    assert frechet.infinity_blocker(np.arange(500), np.arange(500), 2048) != ""


def test_metric_column_seeded_order_free_and_noted():
    rng = np.random.default_rng(7)
    d = 16
    g, gv = _volumes(rng, 12, 6, d, 0.3, 0.2, 1.1)
    r, rv = _volumes(rng, 12, 6, d, 0.3, 0.0, 1.0)
    gen = [{"features": g[gv == i]} for i in range(12)]
    ref = [{"features": r[rv == i]} for i in range(12)]
    fd = CLASSES["fd_ctnet"]()  # any catalogue FD row: the statistic is the same
    ctx = RunContext(seed=5)
    a = fd.compute(fd.merge(gen), fd.merge(ref), ctx)
    assert np.isfinite(a["fd_ctnet_inf"]) and a["fd_ctnet_inf"] != a["fd_ctnet"]
    assert fd.value_notes(fd.merge(gen), fd.merge(ref), ctx) == {}
    # merge order does not move either column (canonical volume order for the subsets)
    b = fd.compute(fd.merge(gen[::-1]), fd.merge(ref[5:] + ref[:5]), ctx)
    assert b["fd_ctnet_inf"] == a["fd_ctnet_inf"] and b["fd_ctnet"] == pytest.approx(a["fd_ctnet"], rel=1e-12)
    # the seed changes the subsets, so the value (a little)
    assert fd.compute(fd.merge(gen), fd.merge(ref), RunContext(seed=6))["fd_ctnet_inf"] != a["fd_ctnet_inf"]
    # too few volumes: NaN and the reason; switched off: NaN and the option named
    few = fd.compute(fd.merge(gen[:4]), fd.merge(ref), ctx)
    assert np.isnan(few["fd_ctnet_inf"]) and np.isfinite(few["fd_ctnet"])
    assert "at least 10 volumes" in fd.value_notes(fd.merge(gen[:4]), fd.merge(ref), ctx)["fd_ctnet_inf"]
    off = CLASSES["fd_ctnet"]({"extrapolation_points": 0})
    assert np.isnan(off.compute(off.merge(gen), off.merge(ref), ctx)["fd_ctnet_inf"])
    assert "extrapolation_points = 0" in off.value_notes(off.merge(gen), off.merge(ref), ctx)["fd_ctnet_inf"]
    assert "|inf:off" in off.protocol_id(ctx) and "|inf:chong-forsyth:" in fd.protocol_id(ctx)
