"""KID (Kernel Inception Distance, Binkowski et al. 2018, "Demystifying MMD GANs"): the formula and its
functional twin. The statistic on a feature space is :class:`.statistic.KID`; the metrics (``kid``,
``kid_i3d``, ``kid_clip``, ``kid_astra``, ...) are rows of :mod:`.catalog`. Table 2, lower is better.
Unlike FID, KID is an unbiased estimator, usable when the number of samples is below the feature
dimension.

Definition (torchmetrics ``src/torchmetrics/image/kid.py`` ``poly_kernel`` / ``maximum_mean_discrepancy``;
GaParmar/clean-fid ``cleanfid/fid.py`` ``kernel_distance``): cubic polynomial kernel
``k(x, y) = (x . y / d + 1)^3`` on d-dimensional features, and the unbiased estimate of the squared
maximum mean discrepancy between a generated set X (m rows) and a reference set Y (n rows)
(Gretton et al. 2012, JMLR 13, eq. 3)::

    MMD^2_u = sum_{i != j} k(x_i, x_j) / (m (m - 1)) + sum_{i != j} k(y_i, y_j) / (n (n - 1))
              - 2 sum_{i, j} k(x_i, y_j) / (m n)

(torchmetrics' formula is the case m = n). It can be slightly negative for near-identical sets.

Subsets (options ``subsets`` = 100, ``subset_size`` = 1000, torchmetrics' defaults): each subset draws
``subset_size`` rows of each set without replacement; outputs ``kid`` = mean of the subset estimates
and ``kid_std`` = their standard deviation (population, ``ddof=0``, as torchmetrics'
``std(unbiased=False)``). The draws come from ``numpy.random.default_rng(ctx.seed)`` on the rows in a
canonical order (sorted by their bytes), so the value depends only on the multisets of feature rows,
not on the order cases were merged or sharded. When either set has at most ``subset_size`` rows (where
torchmetrics raises), every subset would be "all rows of both sets": the estimate is computed once on
all rows (unequal m and n allowed) and ``kid_std`` is 0. Kernel sums are computed in float64.

State per case: ``{"features": float32 (n, d)}`` (:class:`.statistic.FeatureSet`).
Cost per compute: ``subsets x 3`` Gram matrices of ``subset_size^2 x d`` (defaults, d = 2048: about
1.2e12 flops in float64).
"""

from __future__ import annotations

import numpy as np



def canonical_rows(features: np.ndarray) -> np.ndarray:
    """The rows of ``features`` (n, d) sorted by their bytes: a fixed order for a multiset of rows."""
    f = np.ascontiguousarray(features)
    if f.shape[0] < 2:
        return f
    key = f.view(np.dtype((np.void, f.dtype.itemsize * f.shape[1]))).ravel()
    return f[np.argsort(key, kind="stable")]


def poly_kernel(x: np.ndarray, y: np.ndarray, degree: int = 3, coef: float = 1.0) -> np.ndarray:
    """``(x y^T / d + coef) ** degree`` in float64 (torchmetrics ``poly_kernel`` with gamma = 1 / d)."""
    x = np.asarray(x, np.float64)
    y = np.asarray(y, np.float64)
    return (x @ y.T / x.shape[1] + coef) ** degree


def mmd2_unbiased(k_xx: np.ndarray, k_yy: np.ndarray, k_xy: np.ndarray) -> float:
    """Unbiased MMD^2 from the kernel matrices (m x m, n x n, m x n); see the module doc."""
    m, n = k_xx.shape[0], k_yy.shape[0]
    if m < 2 or n < 2:
        raise ValueError(f"KID needs at least 2 samples in each set, got {m} and {n}")
    xx = (k_xx.sum() - np.trace(k_xx)) / (m * (m - 1))
    yy = (k_yy.sum() - np.trace(k_yy)) / (n * (n - 1))
    return float(xx + yy - 2.0 * k_xy.sum() / (m * n))


def kid_from_features(gen: np.ndarray, ref: np.ndarray, subsets: int = 100, subset_size: int = 1000,
                      seed: int = 0) -> tuple[float, float]:
    """Functional twin: ``(kid, kid_std)`` of generated features (m, d) against reference features (n, d).

    ``subsets`` draws of ``subset_size`` rows per set (seeded, on the canonically ordered rows), or a
    single estimate on all rows when ``min(m, n) <= subset_size`` (std 0). See the module doc.
    """
    g = canonical_rows(np.asarray(gen, np.float64))
    r = canonical_rows(np.asarray(ref, np.float64))
    if g.ndim != 2 or r.ndim != 2 or g.shape[1] != r.shape[1]:
        raise ValueError(f"Expected two feature matrices (n, d) of one dimension, got {g.shape} and {r.shape}")
    if not (np.isfinite(g).all() and np.isfinite(r).all()):
        raise ValueError("features contain NaN or inf")
    if min(len(g), len(r)) <= subset_size:
        return mmd2_unbiased(poly_kernel(g, g), poly_kernel(r, r), poly_kernel(g, r)), 0.0
    rng = np.random.default_rng(int(seed))
    vals = []
    for _ in range(int(subsets)):
        x = g[rng.choice(len(g), subset_size, replace=False)]
        y = r[rng.choice(len(r), subset_size, replace=False)]
        vals.append(mmd2_unbiased(poly_kernel(x, x), poly_kernel(y, y), poly_kernel(x, y)))
    a = np.asarray(vals)
    return float(a.mean()), float(a.std(ddof=0))


#: regression tolerance of the KID columns (trace-bench compare)
KID_TOL = {"abs": 0.002, "rel": 0.05}

__all__ = ["KID_TOL", "canonical_rows", "kid_from_features", "mmd2_unbiased", "poly_kernel"]
