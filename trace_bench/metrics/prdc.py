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
exact (no approximate search) and computed exactly as the prdc package computes them:
``sklearn.metrics.pairwise_distances(a, b, metric="euclidean", n_jobs=8)`` (prdc's
``compute_pairwise_distance``) on the features in their own dtype (float32 as the states hold them), for
the radii (each set against itself: sklearn sets the diagonal to 0) and for the comparisons alike. So a
tie (a generated vector that is an exact copy of a reference vector: the memorising generator) is decided
by the same rounding as in prdc, and the four values equal the package's bit for bit
(``tests/metrics/test_kid_prdc.py``, with duplicated rows). Memory: the package's full matrices up to
:data:`BLOCK_ELEMENTS` entries, then blocks of reference rows (each block against all generated rows,
the column chunks sklearn uses are unchanged). Each set needs more than ``k`` rows.

State per case: ``{"features": float32 (n, d)}`` (:class:`.statistic.FeatureSet`); the rows are put
in a canonical order before computing, so the values do not depend on the merge order.
"""

from __future__ import annotations

import numpy as np


PRDC_COLUMNS = ("precision", "recall", "density", "coverage")
#: distance-matrix entries computed at once (64 Mi: 256 MiB in float32); larger matrices go in row blocks
BLOCK_ELEMENTS = 1 << 26
#: the prdc package's ``n_jobs`` (its column chunks decide sklearn's blocking, hence the rounding)
PRDC_N_JOBS = 8


def _floating(x: np.ndarray) -> np.ndarray:
    a = np.asarray(x)
    return a if a.dtype in (np.float32, np.float64) else a.astype(np.float64)


def euclidean_distances(x: np.ndarray, y: np.ndarray | None = None) -> np.ndarray:
    """Euclidean distances (len(x), len(y)) as the prdc package computes them (``compute_pairwise_distance``:
    sklearn ``pairwise_distances(x, y, metric="euclidean", n_jobs=8)``); ``y`` None: ``x`` against itself
    (diagonal exactly 0)."""
    from sklearn.metrics import pairwise_distances

    x = _floating(x)
    return pairwise_distances(x, x if y is None else _floating(y), metric="euclidean", n_jobs=PRDC_N_JOBS)


def _blocks(n_rows: int, n_cols: int) -> list[slice]:
    step = max(1, BLOCK_ELEMENTS // max(1, n_cols))
    return [slice(i, min(i + step, n_rows)) for i in range(0, n_rows, step)]


def knn_radii(features: np.ndarray, k: int) -> np.ndarray:
    """Distance of every row to its k-th nearest neighbour in ``features`` (the row itself excluded,
    i.e. the (k+1)-th smallest distance counting the zero to itself), as prdc's
    ``compute_nearest_neighbour_distances``."""
    f = _floating(features)
    if len(f) <= k:
        raise ValueError(f"PRDC with nearest_k={k} needs more than {k} samples per set, got {len(f)}")
    if len(f) * len(f) <= BLOCK_ELEMENTS:
        return np.partition(euclidean_distances(f), k, axis=1)[:, k]
    out = np.empty(len(f), dtype=f.dtype)
    for b in _blocks(len(f), len(f)):
        d = euclidean_distances(f[b], f)
        d[np.arange(b.stop - b.start), np.arange(b.start, b.stop)] = 0.0  # self distance exactly 0
        out[b] = np.partition(d, k, axis=1)[:, k]
    return out


def prdc_from_features(real: np.ndarray, fake: np.ndarray, nearest_k: int = 5) -> dict[str, float]:
    """Functional twin: ``{"precision", "recall", "density", "coverage"}`` of generated (``fake``, (m, d))
    against reference (``real``, (n, d)) features, with the prdc package's argument order."""
    real, fake = _floating(real), _floating(fake)
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
            "density": float((1.0 / float(k)) * fake_count.mean()), "coverage": float(real_covered.mean())}


#: regression tolerance of the PRDC columns (trace-bench compare)
PRDC_TOL = {"abs": 0.02}

__all__ = ["PRDC_COLUMNS", "PRDC_TOL", "euclidean_distances", "knn_radii", "prdc_from_features"]
