"""Frechet distance between Gaussians fitted to features, with exactly mergeable streaming states.

``d^2 = ||mu_1 - mu_2||^2 + Tr(S_1 + S_2 - 2 (S_1 S_2)^{1/2})`` (Dowson & Landau 1982; Heusel et al.
2017). The default computes the trace term with symmetric eigendecompositions (fast at d = 2048);
``method="sqrtm"`` follows ``pytorch_fid.fid_score.calculate_frechet_distance``
(mseitzer/pytorch-fid ``src/pytorch_fid/fid_score.py``): ``scipy.linalg.sqrtm`` of the product, a
retry with ``eps * I`` added to both covariances when the root is not finite, refusal when the
root's diagonal has an imaginary part above 1e-3, then the real part.

States. A *moment state* is ``{"sum": (d,), "outer": (d, d), "n": ()}`` in float64: the running sums
of x and x x^T and the count, as in torchmetrics' ``FrechetInceptionDistance``. Memory O(d^2) no
matter how many volumes (2048-d Inception: 32 MiB). A *feature state* ``{"features": (n, d)}`` is what
one case produces, float32 when lossless (:func:`lossless_float32`; 48 slices x 2048 x 4 = 0.375 MiB,
instead of 32 MiB for a moment state), so the runner can keep per-case states to resample cases; merged
by the FD statistic (:class:`.statistic.FD`) it also carries ``volume`` (the case of each row), and its
sums are formed volume by volume (:func:`moments`), the very sums of the per-case states.
:func:`merge_states` turns any mix of both into one moment state (or, while the total count is at
most d, into one feature state, which allows an exact low-rank distance). Sums are exact in the sense of
float64 arithmetic: merging in another order changes the result only by rounding (~1e-15 relative).

Saved statistics (``stats/{method}_{metric}.npz``, :func:`export_stats`): the rows when n <= d, else
``mu`` and ``sigma``; :func:`load_stats` reads both (and the earlier form with ``sum`` / ``outer``).

Bias. The plug-in distance is biased upwards at finite n (strongly when n is near or below d);
:func:`frechet_distance_infinity` extrapolates it to infinitely many samples (Chong & Forsyth 2020).

Covariance: ``S = (outer - n mu mu^T) / (n - ddof)``; ``ddof=1`` (unbiased) is pytorch-fid's
``np.cov`` and torchmetrics'; ``ddof=0`` is StyleGAN-V's ``FeatureStats.get_mean_cov`` (used by FVD).

Functional twins of the Frechet metrics on feature matrices: :func:`fid_from_features` (``ddof=1``,
pytorch-fid / torchmetrics) and :func:`fvd_from_features` (``ddof=0``, StyleGAN-V).
"""

from __future__ import annotations

import warnings
from typing import Iterable, Mapping

import numpy as np
import scipy.linalg

from .base import State


def lossless_float32(features: np.ndarray) -> np.ndarray:
    """``features`` as float32 when that loses nothing (every network here emits float32, so its rows
    convert back to the same float64 values and every sum is unchanged), else as float64."""
    f = np.asarray(features)
    if f.dtype == np.float32:
        return f
    f64 = np.asarray(f, dtype=np.float64)
    f32 = f64.astype(np.float32)
    return f32 if np.array_equal(f32.astype(np.float64), f64) else f64


def features_state(features: np.ndarray) -> State:
    """Per-case state: the features themselves (n, d), float32 when lossless (:func:`lossless_float32`:
    half the size of a float64 copy, the same sums), else float64."""
    f = np.asarray(features)
    if f.ndim != 2:
        raise ValueError(f"Expected features (n, d), got shape {f.shape}")
    if not np.isfinite(f).all():
        raise ValueError("features contain NaN or inf")
    return {"features": lossless_float32(f)}


def moments(state: Mapping[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray, float]:
    """(sum, outer, n) of a feature state or a moment state. A merged feature state with ``volume`` ids
    sums volume by volume in id order (the merge order): the very sums :func:`merge_states` forms from the
    per-case states, so keeping rows changes no value."""
    if "features" in state:
        f = np.asarray(state["features"], dtype=np.float64)
        if "volume" not in state or f.shape[0] == 0:
            return f.sum(axis=0), f.T @ f, float(f.shape[0])
        sm, outer = np.zeros(f.shape[1]), np.zeros((f.shape[1], f.shape[1]))
        for idx in volume_rows(state["volume"]):
            if idx.size:
                sm += f[idx].sum(axis=0)
                outer += f[idx].T @ f[idx]
        return sm, outer, float(f.shape[0])
    if not {"sum", "outer", "n"} <= set(state):
        raise ValueError(f"Expected a state with 'features' or 'sum', 'outer', 'n'; got keys {sorted(state)}")
    return (np.asarray(state["sum"], dtype=np.float64), np.asarray(state["outer"], dtype=np.float64),
            float(np.asarray(state["n"])))


def merge_states(states: Iterable[Mapping[str, np.ndarray]]) -> State:
    """Add any number of feature / moment states into one state (float64).

    When every input is a feature state and the total count ``n`` is at most the dimension ``d``,
    the rows are concatenated (a feature state of n x d <= d x d values, so never larger than a moment
    state; it lets :func:`frechet_distance_from_states` use the exact low-rank formula). Otherwise the
    result is a moment state ``{"sum", "outer", "n"}``.
    """
    states = list(states)
    if not states:
        raise ValueError("no states to merge")
    if all("features" in s for s in states):
        dims = {np.asarray(s["features"]).shape[1] for s in states}
        if len(dims) != 1:
            raise ValueError(f"Expected features of one dimension, got {sorted(dims)}")
        if sum(np.asarray(s["features"]).shape[0] for s in states) <= dims.pop():
            return {"features": np.concatenate([np.asarray(s["features"], np.float64) for s in states])}
    total: State | None = None
    for s in states:
        sm, outer, n = moments(s)
        if total is None:
            total = {"sum": sm.copy(), "outer": outer.copy(), "n": np.float64(n)}
        else:
            if total["sum"].shape != sm.shape:
                raise ValueError(f"Expected features of dimension {total['sum'].shape[0]}, got {sm.shape[0]}")
            total["sum"] += sm
            total["outer"] += outer
            total["n"] = np.float64(total["n"] + n)
    assert total is not None
    return total


def mean_cov(state: Mapping[str, np.ndarray], ddof: int = 1) -> tuple[np.ndarray, np.ndarray, int]:
    """``mu = sum / n``, ``S = (outer - n mu mu^T) / (n - ddof)``; returns (mu, sigma, n)."""
    sm, outer, n = moments(state)
    if n - ddof <= 0:
        raise ValueError(f"Expected more than {ddof} feature vector(s) to estimate a covariance, got {int(n)}")
    mu = sm / n
    sigma = (outer - n * np.outer(mu, mu)) / (n - ddof)
    sigma = (sigma + sigma.T) / 2.0  # exact symmetry lost to rounding only
    return mu, sigma, int(n)


def trace_sqrt_product_eigh(sigma1: np.ndarray, sigma2: np.ndarray) -> float:
    """``Tr((S1 S2)^{1/2}) = sum_i sqrt(lambda_i(R S2 R))`` with ``R = S1^{1/2}`` (symmetric eigensolvers).

    Equal to the trace of pytorch-fid's ``sqrtm(S1 S2)`` for PSD covariances (S1 S2 and R S2 R have
    the same eigenvalues). With ``S1 = V W V^T`` restricted to its r numerically non-zero eigenvalues
    (r <= n - 1 for n samples), ``R S2 R`` has the non-zero eigenvalues of the r x r matrix
    ``W^{1/2} V^T S2 V W^{1/2}``: one d x d ``eigh`` plus an r x r one, much faster than the complex
    Schur ``sqrtm`` at d = 2048. Round-off eigenvalues below 0 are clipped to 0.
    """
    w, v = np.linalg.eigh(sigma1)
    keep = w > max(float(w.max()), 0.0) * w.shape[0] * np.finfo(np.float64).eps
    if not keep.any():
        return 0.0
    b = v[:, keep] * np.sqrt(w[keep])
    m = b.T @ sigma2 @ b
    lam = np.linalg.eigvalsh((m + m.T) / 2.0)
    return float(np.sqrt(np.clip(lam, 0.0, None)).sum())


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray,
                     eps: float = 1e-6, method: str = "eigh") -> float:
    """Frechet distance of N(mu1, sigma1) and N(mu2, sigma2).

    ``method="sqrtm"``: pytorch-fid's algorithm verbatim (see module doc). ``method="eigh"``
    (default): the same quantity through :func:`trace_sqrt_product_eigh`; tested equal to pytorch-fid
    to 1e-6 relative.
    """
    mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
    sigma1, sigma2 = np.atleast_2d(np.asarray(sigma1, np.float64)), np.atleast_2d(np.asarray(sigma2, np.float64))
    if mu1.shape != mu2.shape:
        raise ValueError(f"Expected mean vectors of equal length, got {mu1.shape} and {mu2.shape}")
    if sigma1.shape != sigma2.shape or sigma1.shape != (mu1.shape[0],) * 2:
        raise ValueError(f"Expected covariances {(mu1.shape[0],) * 2}, got {sigma1.shape} and {sigma2.shape}")
    diff = mu1 - mu2
    if method == "eigh":
        tr = trace_sqrt_product_eigh(sigma1, sigma2)
        return float(diff.dot(diff) + np.trace(sigma1) + np.trace(sigma2) - 2.0 * tr)
    if method != "sqrtm":
        raise ValueError(f"Expected method 'eigh' or 'sqrtm', got {method!r}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        covmean = scipy.linalg.sqrtm(sigma1.dot(sigma2))
    if not np.isfinite(covmean).all():
        offset = np.eye(sigma1.shape[0]) * eps
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            covmean = scipy.linalg.sqrtm((sigma1 + offset).dot(sigma2 + offset))
    if np.iscomplexobj(covmean):
        if not np.allclose(np.diagonal(covmean).imag, 0, atol=1e-3):
            raise ValueError(f"Frechet distance: imaginary component {np.max(np.abs(covmean.imag)):.3g} in sqrtm "
                             "(covariances far from positive semi-definite)")
        covmean = covmean.real
    return float(diff.dot(diff) + np.trace(sigma1) + np.trace(sigma2) - 2.0 * np.trace(covmean))


def frechet_distance_low_rank(f1: np.ndarray, f2: np.ndarray, ddof: int = 1) -> float:
    """Frechet distance of two small feature sets without forming d x d matrices.

    With centred features ``C_k`` (n_k x d) and ``S_k = C_k^T C_k / (n_k - ddof)``, the non-zero
    eigenvalues of ``S1 S2`` are the squared singular values of ``C1 C2^T`` over
    ``(n1 - ddof)(n2 - ddof)``, so ``Tr((S1 S2)^{1/2}) = ||C1 C2^T||_* / sqrt((n1 - ddof)(n2 - ddof))``
    (nuclear norm). Exact in exact arithmetic; O(n1 n2 d).
    """
    f1, f2 = np.asarray(f1, np.float64), np.asarray(f2, np.float64)
    n1, n2 = f1.shape[0], f2.shape[0]
    if min(n1 - ddof, n2 - ddof) <= 0:
        raise ValueError(f"Expected more than {ddof} feature vector(s) per set, got {n1} and {n2}")
    if f1.shape[1] != f2.shape[1]:
        raise ValueError(f"Expected features of equal dimension, got {f1.shape[1]} and {f2.shape[1]}")
    mu1, mu2 = f1.mean(0), f2.mean(0)
    c1, c2 = f1 - mu1, f2 - mu2
    tr1, tr2 = (c1 * c1).sum() / (n1 - ddof), (c2 * c2).sum() / (n2 - ddof)
    nuclear = np.linalg.svd(c1 @ c2.T, compute_uv=False).sum()
    diff = mu1 - mu2
    return float(diff.dot(diff) + tr1 + tr2 - 2.0 * nuclear / np.sqrt((n1 - ddof) * (n2 - ddof)))


def low_rank_applies(gen: Mapping[str, np.ndarray], ref: Mapping[str, np.ndarray]) -> bool:
    """Both states are feature states of at most d rows each (the exact low-rank formula is then cheaper
    than d x d eigensolvers)."""
    if "features" not in gen or "features" not in ref:
        return False
    g, r = np.shape(gen["features"]), np.shape(ref["features"])
    return g[0] <= g[1] and r[0] <= r[1]


def frechet_distance_from_states(gen: Mapping[str, np.ndarray], ref: Mapping[str, np.ndarray], ddof: int = 1,
                                 eps: float = 1e-6) -> float:
    """Functional twin used by FID / FVD: distance of two states (feature or moment states).

    Two feature states of at most d rows each use :func:`frechet_distance_low_rank`; otherwise means
    and covariances are formed and :func:`frechet_distance` is applied.
    """
    if low_rank_applies(gen, ref):
        return frechet_distance_low_rank(gen["features"], ref["features"], ddof)
    mu1, s1, _ = mean_cov(gen, ddof)
    mu2, s2, _ = mean_cov(ref, ddof)
    return frechet_distance(mu1, s1, mu2, s2, eps)


def export_stats(state: Mapping[str, np.ndarray], ddof: int = 1) -> dict[str, np.ndarray]:
    """What ``stats/{method}_{metric}.npz`` keeps of a merged state, the least that gives back the mean and
    the covariance (exactly from the rows; to rounding from ``sigma``) and the moment sums (:func:`load_stats`
    reads either form):

    * n <= d (a feature state): ``features`` (n, d) as stored (float32 when lossless), ``mu``, ``n``,
      ``ddof``; the covariance is ``np.cov(features, ddof=ddof)`` (n x d values instead of two d x d
      float64 matrices: 0.9 MiB instead of 64 MiB for 109 Inception slices);
    * otherwise: ``mu`` and ``sigma`` (float64; pytorch-fid's ``.npz`` keys), ``n``, ``ddof``; the sums are
      ``n mu`` and ``(n - ddof) sigma + n mu mu^T``.
    """
    if "features" in state and np.shape(state["features"])[0] <= np.shape(state["features"])[1]:
        f = lossless_float32(state["features"])
        n = f.shape[0]
        return {"features": f, "mu": np.asarray(f, np.float64).mean(axis=0) if n else np.zeros(f.shape[1]),
                "n": np.int64(n), "ddof": np.int64(ddof)}
    sm, outer, n = moments(state)
    merged = {"sum": sm, "outer": outer, "n": np.float64(n)}
    mu, sigma, n = mean_cov(merged, ddof) if merged["n"] > ddof else (
        merged["sum"] / max(merged["n"], 1.0), np.full(merged["outer"].shape, np.nan), int(merged["n"]))
    return {"mu": mu, "sigma": sigma, "n": np.int64(n), "ddof": np.int64(ddof)}


def load_stats(stats: Mapping[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray, int, State]:
    """``(mu, sigma, n, state)`` of saved stats (either form of :func:`export_stats`, or the older one with
    ``sum`` / ``outer``); ``state`` merges again like any state (:func:`merge_states`)."""
    ddof = int(np.asarray(stats.get("ddof", 1)))
    if "features" in stats:
        st: State = {"features": np.asarray(stats["features"])}
        mu, sigma, n = mean_cov(st, ddof)
        return mu, sigma, n, st
    n = int(np.asarray(stats["n"]))
    if "sum" in stats and "outer" in stats:
        st = {"sum": np.asarray(stats["sum"], np.float64), "outer": np.asarray(stats["outer"], np.float64),
              "n": np.float64(n)}
    else:
        mu = np.asarray(stats["mu"], np.float64)
        st = {"sum": n * mu, "outer": (n - ddof) * np.asarray(stats["sigma"], np.float64) + n * np.outer(mu, mu),
              "n": np.float64(n)}
    mu, sigma, n = mean_cov(st, ddof)
    return mu, sigma, n, st


def sample_info(state: Mapping[str, np.ndarray]) -> dict[str, int]:
    """``{"samples": n, "dim": d}`` of a feature or moment state (how many feature vectors, of what size)."""
    if "features" in state:
        f = np.asarray(state["features"])
        return {"samples": int(f.shape[0]), "dim": int(f.shape[1])}
    if "sum" in state:
        return {"samples": int(float(np.asarray(state["n"]))), "dim": int(np.asarray(state["sum"]).shape[-1])}
    return {}


# ============================================================================= FD extrapolated to infinite samples
#: the extrapolation's defaults: fitted points, smallest subset (fraction of the volumes of each set), and the
#: fewest volumes per set below which it is not computed (NaN, with the reason in the row's note)
INF_POINTS = 8
INF_MIN_FRACTION = 0.5
INF_MIN_VOLUMES = 10


def volume_rows(volume: np.ndarray) -> list[np.ndarray]:
    """The row indices of each volume id 0..V-1 of a merged state's ``volume`` array."""
    v = np.asarray(volume, dtype=np.int64)
    order = np.argsort(v, kind="stable")
    bounds = np.searchsorted(v[order], np.arange(int(v.max()) + 2 if v.size else 1))
    return [order[bounds[i]:bounds[i + 1]] for i in range(len(bounds) - 1)]


def infinity_blocker(gen_volume: np.ndarray, ref_volume: np.ndarray, dim: int,
                     min_fraction: float = INF_MIN_FRACTION, min_volumes: int = INF_MIN_VOLUMES) -> str:
    """Why :func:`frechet_distance_infinity` is not computed for sets with these row volumes ('' when it is):
    fewer than ``min_volumes`` volumes in a set, or a smallest subset (``min_fraction`` of the volumes, the
    smallest ones) holding no more rows than ``dim``: with rank-deficient covariances FD is far from linear in
    1 / n (measured: the line then removes under half the bias) and the extrapolation is not the estimate
    it claims to be."""
    out = []
    for what, vol in (("generated", gen_volume), ("reference", ref_volume)):
        counts = np.sort(np.unique(np.asarray(vol, np.int64), return_counts=True)[1])
        if counts.size < min_volumes:
            return (f"FD extrapolated to infinite samples needs at least {min_volumes} volumes per set "
                    f"({what}: {counts.size})")
        k = max(2, int(round(min_fraction * counts.size)))
        if int(counts[:k].sum()) <= dim:
            out.append(f"{what}: {k} of {counts.size} volumes can hold only {int(counts[:k].sum())} vectors")
    if out:
        return (f"FD extrapolated to infinite samples needs more vectors than feature dimensions ({dim}) in its "
                f"smallest subsets ({'; '.join(out)})")
    return ""


def frechet_distance_infinity(gen: np.ndarray, gen_volume: np.ndarray, ref: np.ndarray, ref_volume: np.ndarray,
                              ddof: int = 1, points: int = INF_POINTS, min_fraction: float = INF_MIN_FRACTION,
                              seed: int = 0) -> float:
    """Frechet distance extrapolated to infinitely many samples.

    Chong & Forsyth 2020, "Effectively Unbiased FID and Inception Score and where to find them" (CVPR),
    mchong6/FID_IS_infinity ``score_infinity.py`` ``calculate_FID_infinity_path``: FID_N is computed on
    subsets of N generated samples (``np.linspace(min_fake, num_fake, num_points)``, one random subset
    each), a line is fitted to FID_N against 1/N (``LinearRegression``), and its value at 1/N = 0 is
    FID_inf. The bias of FID_N is, to first order, linear in 1/N; the intercept removes it.

    The variant here (checked in ``tests/metrics/test_fd_infinity.py``): the subsets are drawn of VOLUMES, not rows
    (the slices of one volume are correlated, so the bias scales with the number of volumes, the unit every
    interval of the run resamples), and of BOTH sets at the same fraction f (the reference set is finite
    too: the bias ``a / n_gen + b / n_ref`` of FD on a fraction f of each is ``(a / n_gen + b / n_ref) / f``,
    linear in 1 / f). ``points`` fractions from ``min_fraction`` to 1 (the last = all volumes: FD at n);
    volumes drawn without replacement with ``numpy.random.default_rng([seed, point])`` from the volumes in
    the order given (canonical: :func:`.kid.canonical_volumes`); abscissa ``x = (V_gen / v_gen + V_ref /
    v_ref) / 2`` (1 / f, exactly when the two fractions round alike); the least-squares line
    (``scipy.stats.linregress``) at x = 0. Where it applies: :func:`infinity_blocker` (the caller checks).
    Cost: ``points`` Frechet distances.
    """
    from scipy.stats import linregress

    groups_g, groups_r = volume_rows(gen_volume), volume_rows(ref_volume)
    vg, vr = len(groups_g), len(groups_r)
    xs, ys = [], []
    for k, f in enumerate(np.linspace(float(min_fraction), 1.0, int(points))):
        rng = np.random.default_rng([int(seed), k])
        kg, kr = max(2, int(round(f * vg))), max(2, int(round(f * vr)))
        pick_g = np.sort(rng.choice(vg, kg, replace=False)) if kg < vg else np.arange(vg)
        pick_r = np.sort(rng.choice(vr, kr, replace=False)) if kr < vr else np.arange(vr)
        g = gen[np.concatenate([groups_g[i] for i in pick_g])]
        r = ref[np.concatenate([groups_r[i] for i in pick_r])]
        ys.append(frechet_distance_from_states({"features": g}, {"features": r}, ddof))
        xs.append((vg / kg + vr / kr) / 2.0)
    if len(set(xs)) < 2:
        return float(ys[-1])  # one subset size (points = 1): nothing to extrapolate
    return float(linregress(xs, ys).intercept)


def fid_from_features(gen: np.ndarray, ref: np.ndarray, ddof: int = 1) -> float:
    """Functional twin of ``fid`` (and ``fd_*``): Frechet distance of two feature matrices (n, d), covariance
    with ``n - ddof`` (1: pytorch-fid's ``np.cov``, torchmetrics)."""
    return frechet_distance_from_states(features_state(gen), features_state(ref), ddof)


def fvd_from_features(gen: np.ndarray, ref: np.ndarray) -> float:
    """Functional twin of ``fvd``: Frechet distance of two I3D feature matrices (n, 400), covariance with ``n``
    (StyleGAN-V's ``FeatureStats.get_mean_cov``)."""
    return frechet_distance_from_states(features_state(gen), features_state(ref), 0)
