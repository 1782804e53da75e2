"""Dice and Jaccard overlap between integer label maps (functional API).

For a label ``l`` with prediction mask ``P`` and reference mask ``R``:

* Dice (DC)     ``2 |P & R| / (|P| + |R|)``  (MONAI ``DiceMetric``, ``monai/metrics/meandice.py``)
* Jaccard (JI)  ``|P & R| / |P | R|``         (MONAI ``MeanIoU``, ``monai/metrics/meaniou.py``)

All labels are counted in one pass: a joint histogram of ``(pred, ref)`` pairs gives every
intersection and every mask size at once (``numpy.bincount``), so cost does not grow with the
number of classes; :func:`confusion` returns those counts (:class:`OverlapCounts`: TP, FP, FN, TN,
Dice, Jaccard) and :func:`overlap_scores` both metrics from that one pass.

Empty structures (trace-bench policy, same as :mod:`.hausdorff`): a label present in exactly one
map scores 0 (a miss, counted); a label absent from both is NaN (not counted). MONAI returns NaN
when the reference is empty (``ignore_empty=True``), hiding hallucinated structures.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

import numpy as np

from .hausdorff import check_label_maps, foreground_labels

CHUNK = 1 << 20  # voxels counted per np.bincount call


@dataclass(frozen=True)
class OverlapCounts:
    """The confusion counts of one label in one label-map pair, from which every overlap metric follows:
    ``inter`` = ``|P & R|`` (true positives), ``pred`` = ``|P|``, ``ref`` = ``|R|``, ``total`` = voxels in the grid."""

    inter: int
    pred: int
    ref: int
    total: int

    @property
    def tp(self) -> int:
        return self.inter

    @property
    def fp(self) -> int:
        return self.pred - self.inter

    @property
    def fn(self) -> int:
        return self.ref - self.inter

    @property
    def tn(self) -> int:
        return self.total - self.pred - self.ref + self.inter

    @property
    def dice(self) -> float:
        """``2|P&R| / (|P|+|R|)``, NaN when both are empty."""
        a = self.pred + self.ref
        return float("nan") if a == 0 else 2.0 * self.inter / a

    @property
    def jaccard(self) -> float:
        """``|P&R| / |P|R|``, NaN when both are empty."""
        u = self.pred + self.ref - self.inter
        return float("nan") if u == 0 else self.inter / u


def _joint_histogram(p: np.ndarray, r: np.ndarray, top: int) -> np.ndarray:
    """``joint[i, j]`` = number of voxels with ``p == i`` and ``r == j`` (labels ``< top``), int64.
    Counted with ``np.bincount`` over chunks of ``CHUNK`` voxels, in a 16-bit code when ``top <= 256``:
    the same counts as one whole-volume call, without its int64 copies of both maps."""
    pf, rf = p.reshape(-1), r.reshape(-1)
    code_t = np.uint16 if top <= 256 else np.int64
    joint = np.zeros(top * top, dtype=np.int64)
    step = max(CHUNK, top * top)
    for i in range(0, pf.size, step):
        code = pf[i:i + step].astype(code_t) * code_t(top)
        code += rf[i:i + step].astype(code_t, copy=False)
        joint += np.bincount(code, minlength=top * top)
    return joint.reshape(top, top)


def _counts(p: np.ndarray, r: np.ndarray, labs: list[int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(|P_l & R_l|, |P_l|, |R_l|) for each label in ``labs`` as int64 arrays."""
    top = int(max(p.max(initial=0), r.max(initial=0), max(labs, default=0))) + 1
    if top <= 4096:
        joint = _joint_histogram(p, r, top)
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


def confusion(pred: np.ndarray, ref: np.ndarray, labels: Iterable[int] | None = None) -> dict[int, OverlapCounts]:
    """``{label: OverlapCounts}`` for the foreground labels (``labels=None``: every non-zero label in
    either map), all from one counting pass over the pair."""
    p, r = check_label_maps(pred, ref)
    labs = foreground_labels(p, r, labels)
    if not labs:
        return {}
    i, a, b = _counts(p, r, labs)
    return {l: OverlapCounts(int(x), int(y), int(z), int(p.size)) for l, x, y, z in zip(labs, i, a, b)}


def overlap_counts(pred: np.ndarray, ref: np.ndarray,
                   labels: Iterable[int] | None = None) -> dict[int, tuple[int, int, int]]:
    """``{label: (intersection, pred voxels, ref voxels)}`` for the foreground labels."""
    return {l: (c.inter, c.pred, c.ref) for l, c in confusion(pred, ref, labels).items()}


def overlap_scores(pred: np.ndarray, ref: np.ndarray,
                   labels: Iterable[int] | None = None) -> dict[str, dict[int, float]]:
    """``{"dice": {label: v}, "jaccard": {label: v}}`` from one counting pass (the values of
    :func:`dice` and :func:`jaccard`, which would each count again)."""
    c = confusion(pred, ref, labels)
    return {"dice": {l: x.dice for l, x in c.items()}, "jaccard": {l: x.jaccard for l, x in c.items()}}


def dice(pred: np.ndarray, ref: np.ndarray, labels: Iterable[int] | None = None) -> dict[int, float]:
    """Dice ``2|P&R| / (|P|+|R|)`` per label ``{label: float}`` (NaN when absent from both maps)."""
    return {l: c.dice for l, c in confusion(pred, ref, labels).items()}


def jaccard(pred: np.ndarray, ref: np.ndarray, labels: Iterable[int] | None = None) -> dict[int, float]:
    """Jaccard ``|P&R| / |P|R|`` per label ``{label: float}`` (NaN when absent from both maps)."""
    return {l: c.jaccard for l, c in confusion(pred, ref, labels).items()}
