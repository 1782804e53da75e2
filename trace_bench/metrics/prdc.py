"""Precision, recall, density and coverage (Naeem et al. 2020, "Reliable Fidelity and Diversity Metrics
for Generative Models", ICML): the formula and its functional twin. The statistic on a feature space is
:class:`.statistic.PRDC`; the metrics (``prdc``, ``prdc_i3d``, ``prdc_clip``, ``prdc_astra``, ...) are
rows of :mod:`.catalog`. Table 2, higher is better for all four columns.

Definition (clovaai/generative-evaluation-prdc ``prdc/prdc.py`` ``compute_prdc``; the same in
layer6ai-labs/dgm-eval): with real = reference features Y (n rows), fake = generated features X
(m rows), Euclidean distances D, and ``r(y)`` the distance from y to its k-th nearest neighbour in its
own set (the (k+1)-th smallest distance, the point itself counted), ``k`` = option ``nearest_k``
(default 5, as the prdc package's README)::

    precision = 1/m  sum_j  1[ exists i: D(y_i, x_j) < r(y_i) ]
    recall    = 1/n  sum_i  1[ exists j: D(y_i, x_j) < r(x_j) ]
    density   = 1/(k m) sum_j sum_i 1[ D(y_i, x_j) < r(y_i) ]
    coverage  = 1/n  sum_i  1[ min_j D(y_i, x_j) < r(y_i) ]

Density is not bounded by 1 (about 1 when the two sets come from one distribution). Distances are
exact (no approximate search), float64: ``|a|^2 + |b|^2 - 2 a.b`` by BLAS, with the entries that are
small against ``|a|^2 + |b|^2`` (where that cancels) recomputed as ``|a - b|^2`` directly, and a point's
distance to itself exactly 0; computed in row blocks, so memory is O(block x max(m, n)), not O(m n).
Each set needs more than ``k`` rows.

State per case: ``{"features": float32 (n, d)}`` (:class:`.statistic.FeatureSet`); the rows are put
in a canonical order before computing, so the values do not depend on the merge order.
"""

from __future__ import annotations

import numpy as np


PRDC_COLUMNS = ("precision", "recall", "density", "coverage")
#: float64 entries per distance block (128 MiB)
BLOCK_ELEMENTS = 1 << 24


def euclidean_distances(x: np.ndarray, y: np.ndarray, same: bool = False) -> np.ndarray:
    """Exact Euclidean distances (len(x), len(y)) in float64; ``same``: x and y are the same rows
    (the diagonal is then exactly 0)."""
    x = np.asarray(x, np.float64)
    y = np.asarray(y, np.float64)
    xx = np.einsum("ij,ij->i", x, x)
    yy = np.einsum("ij,ij->i", y, y)
    scale = xx[:, None] + yy[None, :]
    d2 = scale - 2.0 * (x @ y.T)
    # cancellation: where d2 is tiny against the norms, recompute |x_i - y_j|^2 directly
    ii, jj = np.nonzero(d2 <= 1e-6 * scale)
    if ii.size:
        diff = x[ii] - y[jj]
        d2[ii, jj] = np.einsum("ij,ij->i", diff, diff)
    np.maximum(d2, 0.0, out=d2)
    if same:
        np.fill_diagonal(d2, 0.0)
    return np.sqrt(d2, out=d2)


def _blocks(n_rows: int, n_cols: int) -> list[slice]:
    step = max(1, BLOCK_ELEMENTS // max(1, n_cols))
    return [slice(i, min(i + step, n_rows)) for i in range(0, n_rows, step)]


def knn_radii(features: np.ndarray, k: int) -> np.ndarray:
    """Distance of every row to its k-th nearest neighbour in ``features`` (the row itself excluded,
    i.e. the (k+1)-th smallest distance counting the zero to itself), as prdc's
    ``compute_nearest_neighbour_distances``."""
    f = np.asarray(features, np.float64)
    if len(f) <= k:
        raise ValueError(f"PRDC with nearest_k={k} needs more than {k} samples per set, got {len(f)}")
    out = np.empty(len(f))
    for b in _blocks(len(f), len(f)):
        d = euclidean_distances(f[b], f)
        d[np.arange(b.stop - b.start), np.arange(b.start, b.stop)] = 0.0  # self distance exactly 0
        out[b] = np.partition(d, k, axis=1)[:, k]
    return out


def prdc_from_features(real: np.ndarray, fake: np.ndarray, nearest_k: int = 5) -> dict[str, float]:
    """Functional twin: ``{"precision", "recall", "density", "coverage"}`` of generated (``fake``, (m, d))
    against reference (``real``, (n, d)) features, with the prdc package's argument order."""
    real = np.asarray(real, np.float64)
    fake = np.asarray(fake, np.float64)
    if real.ndim != 2 or fake.ndim != 2 or real.shape[1] != fake.shape[1]:
        raise ValueError(f"Expected two feature matrices (n, d) of one dimension, got {real.shape} and {fake.shape}")
    if not (np.isfinite(real).all() and np.isfinite(fake).all()):
        raise ValueError("features contain NaN or inf")
    k = int(nearest_k)
    r_real = knn_radii(real, k)
    r_fake = knn_radii(fake, k)
    fake_hit = np.zeros(len(fake), bool)        # precision: inside some real ball
    fake_count = np.zeros(len(fake), np.int64)  # density: number of real balls containing it
    real_recalled = np.zeros(len(real), bool)   # recall: inside some fake ball
    real_covered = np.zeros(len(real), bool)    # coverage: nearest fake inside its own ball
    for b in _blocks(len(real), len(fake)):
        d = euclidean_distances(real[b], fake)
        inside = d < r_real[b, None]
        fake_hit |= inside.any(axis=0)
        fake_count += inside.sum(axis=0)
        real_recalled[b] = (d < r_fake[None, :]).any(axis=1)
        real_covered[b] = d.min(axis=1) < r_real[b]
    return {"precision": float(fake_hit.mean()), "recall": float(real_recalled.mean()),
            "density": float(fake_count.sum() / (k * len(fake))), "coverage": float(real_covered.mean())}


#: regression tolerance of the PRDC columns (trace-bench compare)
PRDC_TOL = {"abs": 0.02}

__all__ = ["PRDC_COLUMNS", "PRDC_TOL", "euclidean_distances", "knn_radii", "prdc_from_features"]
