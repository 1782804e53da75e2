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
one case produces (per-case memory n * d * 8 bytes, e.g. 48 slices x 2048 x 8 = 0.75 MiB, instead of
32 MiB for a moment state), so the runner can keep per-case states to bootstrap over cases.
:func:`merge_states` turns any mix of both into one moment state (or, while the total count is at
most d, into one feature state, which allows an exact low-rank distance). Sums are exact in the sense of
float64 arithmetic: merging in another order changes the result only by rounding (~1e-15 relative).

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


def features_state(features: np.ndarray) -> State:
    """Per-case state: the features themselves, float64 (n, d)."""
    f = np.asarray(features, dtype=np.float64)
    if f.ndim != 2:
        raise ValueError(f"Expected features (n, d), got shape {f.shape}")
    if not np.isfinite(f).all():
        raise ValueError("features contain NaN or inf")
    return {"features": f}


def moments(state: Mapping[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray, float]:
    """(sum, outer, n) of a feature state or a moment state."""
    if "features" in state:
        f = np.asarray(state["features"], dtype=np.float64)
        return f.sum(axis=0), f.T @ f, float(f.shape[0])
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


def frechet_distance_from_states(gen: Mapping[str, np.ndarray], ref: Mapping[str, np.ndarray], ddof: int = 1,
                                 eps: float = 1e-6) -> float:
    """Functional twin used by FID / FVD: distance of two states (feature or moment states).

    Two feature states use :func:`frechet_distance_low_rank`; otherwise means and covariances are
    formed and :func:`frechet_distance` is applied.
    """
    if "features" in gen and "features" in ref:
        return frechet_distance_low_rank(gen["features"], ref["features"], ddof)
    mu1, s1, _ = mean_cov(gen, ddof)
    mu2, s2, _ = mean_cov(ref, ddof)
    return frechet_distance(mu1, s1, mu2, s2, eps)


def export_stats(state: Mapping[str, np.ndarray], ddof: int = 1) -> dict[str, np.ndarray]:
    """``mu``, ``sigma``, ``n`` plus the raw sums (so saved stats can be merged again)."""
    sm, outer, n = moments(state)
    merged = {"sum": sm, "outer": outer, "n": np.float64(n)}
    mu, sigma, n = mean_cov(merged, ddof) if merged["n"] > ddof else (
        merged["sum"] / max(merged["n"], 1.0), np.full(merged["outer"].shape, np.nan), int(merged["n"]))
    return {"mu": mu, "sigma": sigma, "n": np.int64(n), "sum": merged["sum"], "outer": merged["outer"],
            "ddof": np.int64(ddof)}


def sample_info(state: Mapping[str, np.ndarray]) -> dict[str, int]:
    """``{"samples": n, "dim": d}`` of a feature or moment state (how many feature vectors, of what size)."""
    if "features" in state:
        f = np.asarray(state["features"])
        return {"samples": int(f.shape[0]), "dim": int(f.shape[1])}
    if "sum" in state:
        return {"samples": int(float(np.asarray(state["n"]))), "dim": int(np.asarray(state["sum"]).shape[-1])}
    return {}


def fid_from_features(gen: np.ndarray, ref: np.ndarray, ddof: int = 1) -> float:
    """Functional twin of ``fid`` (and ``fd_*``): Frechet distance of two feature matrices (n, d), covariance
    with ``n - ddof`` (1: pytorch-fid's ``np.cov``, torchmetrics)."""
    return frechet_distance_from_states(features_state(gen), features_state(ref), ddof)


def fvd_from_features(gen: np.ndarray, ref: np.ndarray) -> float:
    """Functional twin of ``fvd``: Frechet distance of two I3D feature matrices (n, 400), covariance with ``n``
    (StyleGAN-V's ``FeatureStats.get_mean_cov``)."""
    return frechet_distance_from_states(features_state(gen), features_state(ref), 0)
