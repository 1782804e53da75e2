"""KID (Kernel Inception Distance, Binkowski et al. 2018, "Demystifying MMD GANs"): the formula and its
functional twin. The statistic on a feature space is :class:`.statistic.KID`; the metrics (``kid``,
``kid_i3d``, ``kid_clip``, ``kid_astra``, ...) are rows of :mod:`.catalog`. Table 2, lower is better.

Definition (torchmetrics ``src/torchmetrics/image/kid.py`` ``poly_kernel`` / ``maximum_mean_discrepancy``;
GaParmar/clean-fid ``cleanfid/fid.py`` ``kernel_distance``): cubic polynomial kernel
``k(x, y) = (x . y / d + 1)^3`` on d-dimensional features, and the U-statistic estimate of the squared
maximum mean discrepancy between a generated set X (m rows) and a reference set Y (n rows)
(Gretton et al. 2012, JMLR 13, eq. 3)::

    MMD^2_u = sum_{i != j} k(x_i, x_j) / (m (m - 1)) + sum_{i != j} k(y_i, y_j) / (n (n - 1))
              - 2 sum_{i, j} k(x_i, y_j) / (m n)

(torchmetrics' formula is the case m = n). It is unbiased for the MMD^2 of the two row distributions when
the rows of a set are independent draws, and can then be slightly negative for near-identical sets (MMD^2
itself is >= 0). Rows are independent for the one-vector-per-volume spaces (Astra, MedicalNet, CT-Net); the
slices or clips of one volume are not: a pair of neighbouring slices has a larger expected kernel than two
independent draws, so the form above is biased upwards for slice features (two identical generators then
score above 0). For those spaces the default is the cross-volume form :func:`mmd2_cross_volume`: the
within-set means run over pairs of rows of different volumes only, which is unbiased when volumes are
independent (option ``pairs``: ``cross-volume`` or ``all``, the form above, under its own protocol id).

Subsets (options ``subsets`` = 100, ``subset_size`` = 1000, torchmetrics' defaults): each subset draws
``subset_size`` rows of each set without replacement; outputs ``kid`` = mean of the subset estimates
and ``kid_std`` = their standard deviation (population, ``ddof=0``, as torchmetrics'
``std(unbiased=False)``). The draws come from ``numpy.random.default_rng(ctx.seed)`` on the rows in a
canonical order (sorted by their bytes; with volumes, :func:`canonical_volumes`), so the value depends only
on the multisets of feature rows (and of volumes), not on the order cases were merged or sharded. When
either set has at most ``subset_size`` rows (where torchmetrics raises), every subset would be "all rows
of both sets": the estimate is computed once on all rows (unequal m and n allowed) and ``kid_std`` is 0.
Kernel sums are computed in float64.

State per case: ``{"features": float32 (n, d)}``; merged: plus ``volume`` (n,), the volume of each row
(:class:`.statistic.FeatureSet`). Cost per compute: ``subsets x 3`` Gram matrices of ``subset_size^2 x d``
(defaults, d = 2048: about 1.2e12 flops in float64).
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


def canonical_volumes(features: np.ndarray, volume: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rows grouped by volume in a fixed order for a multiset of volumes: each volume's rows in
    :func:`canonical_rows` order, the volumes ordered by the sha256 of those rows' bytes and renumbered
    0..V-1. So a value computed from the result depends on which vectors each volume holds, not on the
    order cases were merged or sharded in."""
    import hashlib

    f = np.ascontiguousarray(features)
    v = np.asarray(volume, dtype=np.int64)
    if v.shape != (f.shape[0],):
        raise ValueError(f"Expected one volume id per row ({f.shape[0]}), got shape {v.shape}")
    groups = [canonical_rows(f[v == i]) for i in np.unique(v)]
    keys = [hashlib.sha256(g.tobytes()).hexdigest() for g in groups]
    order = sorted(range(len(groups)), key=lambda i: keys[i])
    rows = [groups[i] for i in order]
    if not rows:
        return f[:0], v[:0]
    return (np.concatenate(rows), np.concatenate([np.full(len(g), j, np.int64) for j, g in enumerate(rows)]))


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


def _cross_volume_mean(k: np.ndarray, volume: np.ndarray) -> float:
    """Mean of ``k[i, j]`` over the pairs of rows of different volumes (NaN when all rows are of one volume)."""
    same = volume[:, None] == volume[None, :]
    pairs = int(same.size - same.sum())
    if pairs == 0:
        return float("nan")
    return float((k.sum() - k[same].sum()) / pairs)


def mmd2_cross_volume(k_xx: np.ndarray, k_yy: np.ndarray, k_xy: np.ndarray, vx: np.ndarray, vy: np.ndarray) -> float:
    """MMD^2 with the within-set means taken over pairs of DIFFERENT volumes only (``vx``, ``vy``: the volume
    of each row): ``sum_{v_i != v_j} k(x_i, x_j) / #pairs + (same for y) - 2 mean k(x_i, y_j)``. Unbiased for
    the MMD^2 of the row distributions when volumes are independent, whatever the dependence of the rows
    of one volume (same-volume pairs, e.g. neighbouring slices, have a larger expected kernel than
    independent draws and bias the all-pairs form upwards). With one row per volume it is
    :func:`mmd2_unbiased` exactly. NaN when a set's rows all belong to one volume."""
    return float(_cross_volume_mean(k_xx, np.asarray(vx)) + _cross_volume_mean(k_yy, np.asarray(vy))
                 - 2.0 * k_xy.mean())


def kid_from_features(gen: np.ndarray, ref: np.ndarray, subsets: int = 100, subset_size: int = 1000,
                      seed: int = 0, gen_volume: np.ndarray | None = None,
                      ref_volume: np.ndarray | None = None) -> tuple[float, float]:
    """Functional twin: ``(kid, kid_std)`` of generated features (m, d) against reference features (n, d).

    ``subsets`` draws of ``subset_size`` rows per set (seeded, on the canonically ordered rows), or a
    single estimate on all rows when ``min(m, n) <= subset_size`` (std 0). See the module doc.
    ``gen_volume`` / ``ref_volume`` (the volume of each row, both or neither): same-volume pairs are
    left out of the within-set means (:func:`mmd2_cross_volume`); rows then go in
    :func:`canonical_volumes` order, and a subset whose rows of one set come from a single volume is
    left out of the mean and std (NaN when every subset is).
    """
    g = np.asarray(gen, np.float64)
    r = np.asarray(ref, np.float64)
    if g.ndim != 2 or r.ndim != 2 or g.shape[1] != r.shape[1]:
        raise ValueError(f"Expected two feature matrices (n, d) of one dimension, got {g.shape} and {r.shape}")
    if not (np.isfinite(g).all() and np.isfinite(r).all()):
        raise ValueError("features contain NaN or inf")
    if (gen_volume is None) != (ref_volume is None):
        raise ValueError("Expected the volume of every row of both sets, or of neither")
    if gen_volume is None:
        g, r = canonical_rows(g), canonical_rows(r)
        vg = vr = None
    else:
        g, vg = canonical_volumes(g, gen_volume)
        r, vr = canonical_volumes(r, ref_volume)

    def mmd(ig: np.ndarray | slice, ir: np.ndarray | slice) -> float:
        x, y = g[ig], r[ir]
        if vg is None:
            return mmd2_unbiased(poly_kernel(x, x), poly_kernel(y, y), poly_kernel(x, y))
        return mmd2_cross_volume(poly_kernel(x, x), poly_kernel(y, y), poly_kernel(x, y), vg[ig], vr[ir])

    if min(len(g), len(r)) <= subset_size:
        v = mmd(slice(None), slice(None))
        return v, (0.0 if np.isfinite(v) else float("nan"))
    rng = np.random.default_rng(int(seed))
    vals = [mmd(rng.choice(len(g), subset_size, replace=False), rng.choice(len(r), subset_size, replace=False))
            for _ in range(int(subsets))]
    a = np.asarray(vals)
    a = a[np.isfinite(a)]  # cross-volume form: a subset whose rows of one set are all of one volume has no value
    if not a.size:
        return float("nan"), float("nan")
    return float(a.mean()), float(a.std(ddof=0))


#: regression tolerance of the KID columns (trace-bench compare)
KID_TOL = {"abs": 0.002, "rel": 0.05}

__all__ = ["KID_TOL", "canonical_rows", "canonical_volumes", "kid_from_features", "mmd2_cross_volume", "mmd2_unbiased",
           "poly_kernel"]
