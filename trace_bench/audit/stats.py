"""Memorization statistics on volume features: nearest neighbours, the C_T data-copying test and AuthPct.

Ported (numpy/scipy only, no scikit-learn) from layer6ai-labs/dgm-eval
(``dgm_eval/metrics/ct.py``, itself from casey-meehan/data-copying, and ``dgm_eval/metrics/authpct.py``,
from marcojira/fls), with the same formulas and defaults:

* **Z_U** (Meehan, Chaudhuri, Dasgupta 2020, "A Non-Parametric Test to Detect Data-Copying in Generative
  Models", AISTATS): with ``L(x)`` the distance from ``x`` to its nearest training point, held-out
  sample ``P_n`` (n points) and generated sample ``Q_m`` (m points),
  ``U = #{(i, j): L(Q_j) > L(P_i)} + #{ties} / 2`` (the Mann-Whitney U of ``L(Q)`` against ``L(P)``) and
  ``Z_U = (U - (m n / 2 - 0.5)) / sqrt(m n (n + m + 1) / 12)`` (dgm-eval's mean includes the -0.5).
  ``Z_U << 0``: generated samples sit closer to the training set than fresh real data (copying);
  ``>> 0``: farther (underfitting).
* **C_T**: the training set is partitioned into ``k`` cells (k-means on training features, dgm-eval:
  k = 3, 10 restarts, after PCA to 64 components when the dimension exceeds 64); ``Z_U`` is computed
  within each cell and averaged with weights ``P_n(cell)`` over the cells ``Pi_tau`` holding more than
  ``tau m`` generated samples (dgm-eval: ``tau = 20 / m``, i.e. more than 20 generated samples):
  ``C_T = sum_{c in Pi_tau} P_n(c) Z_U(c) / sum_{c in Pi_tau} P_n(c)``. Every cell needs at least one
  training and one held-out sample.
* **AuthPct** (Alaa et al. 2022, "How Faithful is your Synthetic Data?", ICML; authenticity as computed
  in dgm-eval): for each generated ``g`` let ``t`` be its nearest training point, ``d1 = |g - t|`` and
  ``d2`` the distance from ``t`` to its nearest *other* training point; ``g`` is authentic when
  ``d2 < d1``. ``AuthPct = 100 * mean(authentic)``; 100 means no sample is closer to a training point
  than that point's own neighbour.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

CT_CELLS = 3
CT_MIN_GENERATED = 20  # dgm-eval's tau = 20 / m: a cell is used when it holds more than 20 generated samples
CT_PCA_DIM = 64
CT_RESTARTS = 10


def pairwise_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Euclidean distances ``(len(a), len(b))`` in float64 (row by row, so a row's values do not depend
    on how many rows ``a`` holds)."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    out = np.empty((len(a), len(b)))
    for i, row in enumerate(a):
        d = b - row[None, :]
        out[i] = np.sqrt((d * d).sum(axis=1))
    return out


def nearest(a: np.ndarray, b: np.ndarray, exclude_self: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(distance, index) of each row of ``a``'s nearest row of ``b`` (ties: lowest index); with
    ``exclude_self`` (``a is b``) the diagonal is ignored."""
    d = pairwise_distances(a, b)
    if exclude_self:
        np.fill_diagonal(d, np.inf)
    idx = np.argmin(d, axis=1)
    return d[np.arange(len(a)), idx], idx


def z_u(test: np.ndarray, gen: np.ndarray, train: np.ndarray) -> float:
    """Meehan et al.'s Z-scored Mann-Whitney U (module docstring), as ``Zu`` in dgm-eval's ct.py."""
    from scipy.stats import rankdata

    lq, _ = nearest(gen, train)
    lp, _ = nearest(test, train)
    m, n = len(lq), len(lp)
    ranks = rankdata(np.concatenate([lq, lp]))
    u = ranks[:m].sum() - m * (m + 1) / 2.0
    mean = n * m / 2.0 - 0.5
    std = math.sqrt(n * m * (n + m + 1) / 12.0)
    return float((u - mean) / std)


@dataclass(frozen=True)
class CTResult:
    value: float  # NaN when not applicable
    note: str  # why NaN, or the cells used
    cells_used: int = 0


def c_t(test: np.ndarray, test_cells: np.ndarray, gen: np.ndarray, gen_cells: np.ndarray,
        train: np.ndarray, train_cells: np.ndarray, k: int, min_generated: int = CT_MIN_GENERATED) -> CTResult:
    """C_T of Meehan et al. 2020 for given cell labels 0..k-1 (dgm-eval's ``C_T`` with
    ``tau = min_generated / m``). Not applicable (NaN and the reason) when a cell lacks training or
    held-out samples or when no cell holds more than ``min_generated`` generated samples."""
    m, n = len(gen), len(test)
    if m == 0 or n == 0:
        return CTResult(float("nan"), "no generated or no held-out volumes")
    t_cts = np.bincount(train_cells, minlength=k)
    p_cts = np.bincount(test_cells, minlength=k)
    q_cts = np.bincount(gen_cells, minlength=k)
    for i in range(k):
        if t_cts[i] == 0 or p_cts[i] == 0:
            return CTResult(float("nan"), f"not applicable: training cell {i} holds {t_cts[i]} training and "
                                          f"{p_cts[i]} held-out volumes (each cell needs both)")
    use = q_cts > min_generated
    if not use.any():
        return CTResult(float("nan"), f"not applicable: no training cell holds more than {min_generated} generated "
                                      f"volumes (cells hold {', '.join(str(int(c)) for c in q_cts)})")
    zs = np.array([z_u(test[test_cells == i], gen[gen_cells == i], train[train_cells == i]) if use[i] else 0.0
                   for i in range(k)])
    w = p_cts / n
    value = float(w[use].dot(zs[use]) / w[use].sum())
    return CTResult(value, f"{int(use.sum())} of {k} cells", int(use.sum()))


def pca_fit(x: np.ndarray, dim: int) -> tuple[np.ndarray, np.ndarray]:
    """(mean, components (dim, d)) of ``x`` by SVD; component signs fixed (largest ``|loading|`` positive)
    so that the projection does not depend on the row order."""
    x = np.asarray(x, dtype=np.float64)
    mu = x.mean(axis=0)
    _, _, vt = np.linalg.svd(x - mu, full_matrices=False)
    comps = vt[:dim]
    signs = np.sign(comps[np.arange(len(comps)), np.argmax(np.abs(comps), axis=1)])
    signs[signs == 0] = 1.0
    return mu, comps * signs[:, None]


def kmeans(x: np.ndarray, k: int, seed: int = 0, restarts: int = CT_RESTARTS, iters: int = 300) -> np.ndarray:
    """Centres ``(k, d)`` of Lloyd's k-means with k-means++ seeding, best of ``restarts`` by inertia
    (as scikit-learn's ``KMeans(n_clusters=k, n_init=restarts)`` used by dgm-eval)."""
    x = np.asarray(x, dtype=np.float64)
    rng = np.random.default_rng(seed)
    best, best_inertia = None, np.inf
    for _ in range(restarts):
        centres = [x[rng.integers(len(x))]]
        for _ in range(1, k):
            d2 = np.min(pairwise_distances(x, np.array(centres)) ** 2, axis=1)
            p = d2 / d2.sum() if d2.sum() > 0 else np.full(len(x), 1.0 / len(x))
            centres.append(x[rng.choice(len(x), p=p)])
        c = np.array(centres)
        for _ in range(iters):
            lab = np.argmin(pairwise_distances(x, c), axis=1)
            new = np.array([x[lab == i].mean(axis=0) if np.any(lab == i) else c[i] for i in range(k)])
            if np.allclose(new, c):
                break
            c = new
        inertia = float((np.min(pairwise_distances(x, c), axis=1) ** 2).sum())
        if inertia < best_inertia - 1e-12:
            best, best_inertia = c, inertia
    return best  # type: ignore[return-value]


def c_t_score(train: np.ndarray, test: np.ndarray, gen: np.ndarray, *, k: int = CT_CELLS, seed: int = 0,
              min_generated: int = CT_MIN_GENERATED) -> CTResult:
    """dgm-eval's ``compute_CTscore``: PCA to 64 components (fitted on training features) when the
    dimension exceeds 64, k-means cells on training features, then :func:`c_t`. Training rows must come
    in a canonical order (the audit sorts by case id) for the k-means seeding to be reproducible."""
    train = np.asarray(train, dtype=np.float64)
    test = np.asarray(test, dtype=np.float64)
    gen = np.asarray(gen, dtype=np.float64)
    if len(train) < k:
        return CTResult(float("nan"), f"not applicable: {len(train)} training volumes for {k} cells")
    if len(gen) <= min_generated:
        return CTResult(float("nan"), f"not applicable: {len(gen)} generated volumes; C_T needs more than "
                                      f"{min_generated} in at least one of {k} cells")
    if train.shape[1] > CT_PCA_DIM:
        mu, comps = pca_fit(train, min(CT_PCA_DIM, len(train)))
        train, test, gen = ((a - mu) @ comps.T for a in (train, test, gen))
    centres = kmeans(train, k, seed=seed)
    lab = [np.argmin(pairwise_distances(a, centres), axis=1) for a in (train, test, gen)]
    return c_t(test, lab[1], gen, lab[2], train, lab[0], k, min_generated)


def authpct(train: np.ndarray, gen: np.ndarray) -> float:
    """AuthPct in percent (module docstring; dgm-eval ``compute_authpct``). NaN with fewer than two
    training points or no generated point."""
    if len(train) < 2 or len(gen) == 0:
        return float("nan")
    real_nn, _ = nearest(train, train, exclude_self=True)
    d1, idx = nearest(gen, train)
    return float(100.0 * np.mean(real_nn[idx] < d1))


def lower_percentile(values: np.ndarray, q: float) -> float:
    """``np.percentile(values, q)`` with linear interpolation; NaN for an empty sample."""
    values = np.asarray(values, dtype=np.float64)
    values = values[np.isfinite(values)]
    return float(np.percentile(values, q)) if len(values) else float("nan")
