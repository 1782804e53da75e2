"""Slice-level nearest-neighbour search: for every query slice, the training slice with the highest
normalised cross-correlation (NCC) on the audit canvas (128 x 128 px of 3.5 mm, 5 mm slices; see
:mod:`trace_bench.audit.features`).

``NCC(a, b) = sum_p (a_p - mean a)(b_p - mean b) / (|a - mean a| |b - mean b|)`` over the canvas pixels.

Two stages, so the cost grows with the number of *candidate* pairs, not all pairs:

1. pruning: every query slice's 16 x 16 thumbnail (centred, unit norm) against all training
   thumbnails, which stay in memory (256 floats per training slice); the ``top_k`` training slices
   of smallest thumbnail distance ``|t_q - t_s|`` (rounded to 1e-9, ties by training order) are kept;
2. exact NCC on the candidates, training volume by training volume (one canvas in memory at a time).

Each query row is computed on its own (row-wise sums in float64), so the result does not depend on
how queries are batched or in which order folders list their files.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from .features import unit_rows


@dataclass
class TrainIndex:
    """Thumbnails of every training slice and where each came from (the training order is canonical:
    sorted by case id)."""

    thumbs: np.ndarray  # (n_slices_total, 256) float64 (8 bytes x 256 per training slice)
    volume: np.ndarray  # (n_slices_total,) training volume index
    slice: np.ndarray  # (n_slices_total,) audit slice index within that volume
    valid: np.ndarray  # (n_slices_total,) bool: not a constant slice

    @classmethod
    def build(cls, per_volume_thumbs: list[np.ndarray]) -> TrainIndex:
        thumbs = np.concatenate(per_volume_thumbs, axis=0) if per_volume_thumbs else np.zeros((0, 256), np.float32)
        vol = np.concatenate([np.full(len(t), i) for i, t in enumerate(per_volume_thumbs)]) if per_volume_thumbs else np.zeros(0, int)
        sl = np.concatenate([np.arange(len(t)) for t in per_volume_thumbs]) if per_volume_thumbs else np.zeros(0, int)
        valid = np.abs(thumbs).sum(axis=1) > 0
        return cls(thumbs.astype(np.float64), vol.astype(np.int64), sl.astype(np.int64), valid)


@dataclass
class SliceMatches:
    """Per query slice: best NCC (NaN for a constant slice), training volume index and audit slice."""

    ncc: np.ndarray
    train_volume: np.ndarray
    train_slice: np.ndarray
    extra: dict = field(default_factory=dict)


def candidates(query_thumbs: np.ndarray, index: TrainIndex, top_k: int) -> np.ndarray:
    """``(n_query, k)`` global training-slice indices: the ``top_k`` smallest thumbnail distances per query
    row (constant training slices excluded; ties by index)."""
    ok = np.flatnonzero(index.valid)
    k = min(top_k, len(ok))
    out = np.empty((len(query_thumbs), k), dtype=np.int64)
    t = index.thumbs[ok] if len(ok) < len(index.valid) else index.thumbs
    tn = (t * t).sum(axis=1)
    for i, q in enumerate(np.asarray(query_thumbs, dtype=np.float64)):  # one query per call: batch independent
        dist = np.round(np.sqrt(np.maximum(tn + q.dot(q) - 2.0 * (t @ q), 0.0)), 9)
        if k == 0:
            continue
        sub = np.flatnonzero(dist <= np.partition(dist, k - 1)[k - 1])  # the k smallest and every tie
        out[i] = ok[sub[np.lexsort((sub, dist[sub]))[:k]]]
    return out


def exact_matches(query_slices: np.ndarray, cand: np.ndarray, index: TrainIndex,
                  load_train_canvas: Callable[[int], np.ndarray], chunk: int = 256) -> SliceMatches:
    """Best NCC among each query slice's candidates. ``query_slices`` is the stack of query canvases
    ``(n_query, 128, 128)``; ``load_train_canvas(v)`` returns training volume ``v``'s canvas."""
    q, q_valid = unit_rows(query_slices)
    n = len(q)
    best = np.full(n, -np.inf)
    best_vol = np.full(n, -1, dtype=np.int64)
    best_sl = np.full(n, -1, dtype=np.int64)
    best_glob = np.full(n, np.iinfo(np.int64).max, dtype=np.int64)
    rows = np.repeat(np.arange(n), cand.shape[1]) if cand.size else np.zeros(0, int)
    cols = cand.ravel()
    keep = q_valid[rows]
    rows, cols = rows[keep], cols[keep]
    vols = index.volume[cols]
    for v in np.unique(vols):
        sel = np.flatnonzero(vols == v)
        t, _ = unit_rows(load_train_canvas(int(v)))
        for s in range(0, len(sel), chunk):
            part = sel[s:s + chunk]
            r, c = rows[part], cols[part]
            ncc = (q[r] * t[index.slice[c]]).sum(axis=1)
            for ri, ci, val in zip(r, c, ncc):
                if val > best[ri] or (val == best[ri] and ci < best_glob[ri]):
                    best[ri], best_glob[ri] = val, ci
                    best_vol[ri], best_sl[ri] = index.volume[ci], index.slice[ci]
    best[~q_valid] = np.nan
    best[np.isneginf(best)] = np.nan
    return SliceMatches(best, best_vol, best_sl)


@dataclass(frozen=True)
class Offset:
    """Per-volume consistency of the slice matches."""

    train_volume: int  # the training volume most matched among the top matches (-1: none)
    offset: float  # median(matched training slice - query slice) in audit slices (NaN: none)
    consistency: float  # fraction of the top matches in that volume with an offset within +-1 of the median
    n_top: int  # number of top matches used


def slice_offset(ncc: np.ndarray, train_volume: np.ndarray, train_slice: np.ndarray,
                 threshold: float) -> Offset:
    """The top matches are the query volume's slices with ``NCC > threshold`` (the held-out calibrated
    slice threshold) or, when none is, its best half by NCC. Among them, the training volume matched most
    often (ties: larger NCC sum, then lower index) gives ``offset = median(train_slice - query_slice)``:
    a shifted copy shows one offset for most of its slices (``consistency`` near 1)."""
    idx = np.flatnonzero(np.isfinite(ncc))
    if len(idx) == 0:
        return Offset(-1, float("nan"), float("nan"), 0)
    top = idx[ncc[idx] > threshold] if np.isfinite(threshold) else idx[:0]
    if len(top) == 0:
        order = idx[np.lexsort((idx, -ncc[idx]))]
        top = order[: max(1, (len(idx) + 1) // 2)]
    vols = train_volume[top]
    best_v, best_key = -1, None
    for v in np.unique(vols):
        key = (int((vols == v).sum()), float(ncc[top][vols == v].sum()), -int(v))
        if best_key is None or key > best_key:
            best_v, best_key = int(v), key
    mine = top[vols == best_v]
    offs = train_slice[mine] - mine
    med = float(np.median(offs))
    return Offset(best_v, med, float(np.mean(np.abs(offs - med) <= 1.0) * len(mine) / len(top)), len(top))
