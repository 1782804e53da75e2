"""Dice and Jaccard overlap between integer label maps (functional API).

For a label ``l`` with prediction mask ``P`` and reference mask ``R``:

* Dice (DC)     ``2 |P & R| / (|P| + |R|)``  (MONAI ``DiceMetric``, ``monai/metrics/meandice.py``)
* Jaccard (JI)  ``|P & R| / |P | R|``         (MONAI ``MeanIoU``, ``monai/metrics/meaniou.py``)

All labels are counted in one pass: a joint histogram of ``(pred, ref)`` pairs gives every
intersection and every mask size at once (``numpy.bincount``), so cost does not grow with the
number of classes.

Empty structures (trace-bench policy, same as :mod:`.hausdorff`): a label present in exactly one
map scores 0 (a miss, counted); a label absent from both is NaN (not counted). MONAI returns NaN
when the reference is empty (``ignore_empty=True``), hiding hallucinated structures.
"""

from __future__ import annotations

from typing import Iterable

import numpy as np

from .hausdorff import check_label_maps, foreground_labels


def _counts(p: np.ndarray, r: np.ndarray, labs: list[int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(|P_l & R_l|, |P_l|, |R_l|) for each label in ``labs`` as int64 arrays."""
    top = int(max(p.max(initial=0), r.max(initial=0), max(labs, default=0))) + 1
    if top <= 4096:
        p_ = p.ravel().astype(np.int64, copy=False)
        r_ = r.ravel().astype(np.int64, copy=False)
        joint = np.bincount(p_ * top + r_, minlength=top * top).reshape(top, top)
        idx = np.asarray(labs, dtype=np.int64)
        inter = joint[idx, idx]
        return inter, joint.sum(axis=1)[idx], joint.sum(axis=0)[idx]
    inter, sp, sr = [], [], []
    for l in labs:
        pm, rm = p == l, r == l
        inter.append(np.count_nonzero(pm & rm))
        sp.append(np.count_nonzero(pm))
        sr.append(np.count_nonzero(rm))
    return np.asarray(inter, np.int64), np.asarray(sp, np.int64), np.asarray(sr, np.int64)


def overlap_counts(pred: np.ndarray, ref: np.ndarray, labels: Iterable[int] | None = None) -> dict[int, tuple[int, int, int]]:
    """``{label: (intersection, pred voxels, ref voxels)}`` for the foreground labels."""
    p, r = check_label_maps(pred, ref)
    labs = foreground_labels(p, r, labels)
    if not labs:
        return {}
    i, a, b = _counts(p, r, labs)
    return {l: (int(x), int(y), int(z)) for l, x, y, z in zip(labs, i, a, b)}


def dice(pred: np.ndarray, ref: np.ndarray, labels: Iterable[int] | None = None) -> dict[int, float]:
    """Dice ``2|P&R| / (|P|+|R|)`` per label ``{label: float}`` (NaN when absent from both maps)."""
    out = {}
    for l, (i, a, b) in overlap_counts(pred, ref, labels).items():
        out[l] = float("nan") if a + b == 0 else 2.0 * i / (a + b)
    return out


def jaccard(pred: np.ndarray, ref: np.ndarray, labels: Iterable[int] | None = None) -> dict[int, float]:
    """Jaccard ``|P&R| / |P|R|`` per label ``{label: float}`` (NaN when absent from both maps)."""
    out = {}
    for l, (i, a, b) in overlap_counts(pred, ref, labels).items():
        u = a + b - i
        out[l] = float("nan") if u == 0 else i / u
    return out
