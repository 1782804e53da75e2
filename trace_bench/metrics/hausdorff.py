"""95th-percentile symmetric Hausdorff distance (HD95) between integer label maps, in mm.

Definition (identical to MONAI ``HausdorffDistanceMetric(percentile=95, directed=False)`` with
``spacing``; see ``monai/metrics/hausdorff_distance.py`` and ``monai/metrics/utils.py``):

* the **surface** (edge) of a binary mask ``M`` is ``M & ~erode(M)``, where ``erode`` is a binary
  erosion with the 6-neighbourhood cross and zeros outside the image (``scipy.ndimage.binary_erosion``
  defaults), so voxels on the image border count as surface;
* ``d(P -> R)`` = for every surface voxel of ``P``, the Euclidean distance in mm (voxel index times
  ``spacing``) to the nearest surface voxel of ``R``;
* ``HD95 = max(q95(d(P -> R)), q95(d(R -> P)))`` with ``q95`` the 95th percentile with linear
  interpolation, computed as MONAI does: distances rounded to float32, ``torch.quantile``.

Speed (same values as MONAI, which loops over classes doing a full-size erosion and two
KD-tree queries per class): the bounding boxes of every label are found in one pass
(``scipy.ndimage.find_objects``), each class is cropped to the union box of prediction and
reference plus a 1-voxel margin (exact: the margin holds no voxel of the class), surfaces come
from six shifted boolean ANDs, surface voxels shared by both masks have distance 0 and are not
queried, the KD-trees are built unbalanced (faster to build, same answers) and queried with all
cores, and classes run in a thread pool (scipy releases the GIL). When so many surface voxels are
shared that the percentile falls among their zero distances, that direction is 0 without a tree
(:func:`quantile_is_zero`: the same number the full computation gives).

GPU: ``hd95(..., device="cuda")`` runs :mod:`.hausdorff_torch` (same per-class driver
:func:`per_class_hd`, same surfaces, the same float64 distances bit for bit, same quantile).

Empty structures (trace-bench policy, see :data:`EMPTY_POLICY`): a class present in one map and
absent in the other is a **miss** and scores the image diagonal ``|| (shape - 1) * spacing ||`` in
mm (the largest distance two voxels of the grid can have), so it counts in the mean instead of
vanishing as MONAI's NaN does (MONAI issue #9095); a class absent from both maps is NaN and is not
counted.
"""

from __future__ import annotations

import math
import os
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Iterable, Sequence

import numpy as np
from scipy import ndimage as ndi
from scipy.spatial import cKDTree

_TORCH_QUANTILE_MAX = 16_000_000  # torch.quantile refuses larger inputs

EMPTY_POLICY = (
    "missing in one map (prediction or reference) = miss: Dice 0, Jaccard 0, HD95 = image diagonal in mm, counted; "
    "missing in both = NaN, not counted"
)


def check_label_maps(pred: np.ndarray, ref: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Validate two integer label maps of equal shape; return them as non-negative integer arrays."""
    p, r = np.asarray(pred), np.asarray(ref)
    if p.shape != r.shape:
        raise ValueError(f"Expected label maps of equal shape (z, y, x), got {p.shape} and {r.shape}")
    if p.ndim not in (2, 3):
        raise ValueError(f"Expected 2-D or 3-D label maps, got {p.ndim}-D arrays of shape {p.shape}")
    out = []
    for name, a in (("pred", p), ("ref", r)):
        if a.dtype == bool:
            a = a.astype(np.uint8)
        elif np.issubdtype(a.dtype, np.floating):
            ai = np.rint(a)
            if not np.array_equal(ai, a):
                raise ValueError(f"Expected integer labels in {name}, got non-integer values (dtype {a.dtype})")
            a = ai.astype(np.int64)
        elif not np.issubdtype(a.dtype, np.integer):
            raise ValueError(f"Expected an integer label map for {name}, got dtype {a.dtype}")
        if a.size and a.dtype.kind == "i" and a.min() < 0:
            raise ValueError(f"Expected non-negative labels in {name}, got min {a.min()}")
        out.append(a)
    return out[0], out[1]


def foreground_labels(pred: np.ndarray, ref: np.ndarray, labels: Iterable[int] | None) -> list[int]:
    """``labels`` as a sorted list, or every non-zero label present in either map."""
    if labels is not None:
        return [int(l) for l in labels]
    present = np.union1d(np.unique(pred), np.unique(ref))
    return [int(l) for l in present if l != 0]


def image_diagonal(shape: Sequence[int], spacing: Sequence[float]) -> float:
    """Largest voxel-centre distance on the grid, ``|| (shape - 1) * spacing ||`` in mm."""
    return float(np.sqrt(np.sum(((np.asarray(shape, float) - 1) * np.asarray(spacing, float)) ** 2)))


def _spacing(spacing: float | Sequence[float] | None, ndim: int) -> np.ndarray:
    if spacing is None:
        return np.ones(ndim)
    s = np.asarray(spacing, dtype=np.float64).reshape(-1)
    if s.size == 1:
        s = np.repeat(s, ndim)
    if s.size != ndim or not np.all(np.isfinite(s)) or np.any(s <= 0):
        raise ValueError(f"Expected spacing as {ndim} positive numbers in mm (z, y, x), got {spacing!r}")
    return s


def surface(mask: np.ndarray) -> np.ndarray:
    """Surface voxels ``mask & ~erode(mask)`` (6-neighbour cross, outside = background).

    Equals ``mask ^ scipy.ndimage.binary_erosion(mask)`` (what MONAI's ``get_mask_edges`` uses)
    but is computed with shifted boolean ANDs.
    """
    m = np.asarray(mask, dtype=bool)
    inner = m.copy()
    for ax in range(m.ndim):
        n = m.shape[ax]
        if n < 3:
            inner[...] = False
            break
        lo = [slice(None)] * m.ndim
        hi = [slice(None)] * m.ndim
        lo[ax], hi[ax] = slice(0, n - 1), slice(1, n)
        inner[tuple(hi)] &= m[tuple(lo)]  # neighbour at -1
        inner[tuple(lo)] &= m[tuple(hi)]  # neighbour at +1
        edge = [slice(None)] * m.ndim
        edge[ax] = 0
        inner[tuple(edge)] = False
        edge[ax] = n - 1
        inner[tuple(edge)] = False
    return m & ~inner


def _directed(src: np.ndarray, dst: np.ndarray, shared: np.ndarray, tree: cKDTree | None,
              scale: np.ndarray, workers: int) -> np.ndarray:
    """Distances (mm) from every surface voxel of ``src`` to the nearest surface voxel of ``dst``."""
    n_shared = int(np.count_nonzero(src & shared))
    rest = np.argwhere(src & ~shared)
    d = np.zeros(n_shared + len(rest), dtype=np.float64)
    if len(rest):
        d[n_shared:] = tree.query(rest * scale, k=1, workers=workers)[0]  # type: ignore[union-attr]
    return d


def quantile_monai(d: np.ndarray, percentile: float) -> float:
    """``percentile`` of the distances ``d`` with MONAI's arithmetic: float32 distances, ``torch.quantile`` (linear). torch.quantile computes
    the interpolation position in float32, which moves the result by up to ~1e-3 mm on 10^5 surface
    voxels; doing the same keeps our values equal to MONAI's instead of merely close."""
    import torch

    d32 = d.astype(np.float32)
    if d32.size <= _TORCH_QUANTILE_MAX:
        return float(torch.quantile(torch.from_numpy(d32), percentile / 100.0))
    return float(np.percentile(d32.astype(np.float64), percentile))  # beyond torch.quantile's input limit


def quantile_is_zero(n_zero: int, n: int, percentile: float) -> bool:
    """True when the ``percentile`` of ``n`` distances, ``n_zero`` of them 0 and the rest > 0, is exactly 0
    under :func:`quantile_monai`: the linear interpolation reads the sorted distances at ``floor(pos)``
    and ``ceil(pos)``, ``pos = q (n - 1)``, and both lie among the zeros. ``pos`` is computed here in
    float64 and kept 2 + n * 1e-6 indices away from the first non-zero, more than the float32 rounding of
    torch's position can move it, so a True answer never depends on that rounding (a False one only
    costs the full computation)."""
    if n <= 0:
        return False
    if n_zero >= n:
        return True
    return math.ceil(percentile / 100.0 * (n - 1) + 2.0 + n * 1e-6) < n_zero


def _class_hd(pm: np.ndarray, rm: np.ndarray, scale: np.ndarray, percentile: float, workers: int) -> float:
    """One class: the directed percentiles both ways. A direction whose shared surface voxels (distance
    0) make its percentile 0 (:func:`quantile_is_zero`; common when the maps nearly agree) scores 0.0
    without a KD-tree: the value the full computation gives, exactly."""
    sp, sr = surface(pm), surface(rm)
    shared = sp & sr
    n_shared = int(np.count_nonzero(shared))
    vals = []
    for src, dst in ((sp, sr), (sr, sp)):
        if quantile_is_zero(n_shared, int(np.count_nonzero(src)), percentile):
            vals.append(0.0)
            continue
        tree = cKDTree(np.argwhere(dst) * scale, leafsize=32, balanced_tree=False, compact_nodes=False)
        vals.append(quantile_monai(_directed(src, dst, shared, tree, scale, workers), percentile))
    return max(vals)


def _box(a: np.ndarray, label: int) -> tuple[slice, ...] | None:
    m = a == label
    box = []
    for ax in range(m.ndim):
        hit = np.flatnonzero(m.any(axis=tuple(x for x in range(m.ndim) if x != ax)))
        if hit.size == 0:
            return None
        box.append(slice(int(hit[0]), int(hit[-1]) + 1))
    return tuple(box)


def _boxes(a: np.ndarray, labels: list[int]) -> dict[int, tuple[slice, ...] | None]:
    """Bounding box of each label (None when absent): per label by projections when there are few
    labels (a few fast passes each), else one ``scipy.ndimage.find_objects`` pass for all."""
    if len(labels) <= 4:
        return {l: _box(a, l) for l in labels}
    if a.dtype.itemsize > 4 or not np.issubdtype(a.dtype, np.integer):
        a = a.astype(np.int32)
    found = ndi.find_objects(a, max_label=max(max(labels), 1))
    return {l: found[l - 1] if 0 < l <= len(found) else None for l in labels}


def hd95(pred: np.ndarray, ref: np.ndarray, spacing: float | Sequence[float] | None = None,
         labels: Iterable[int] | None = None, *, percentile: float = 95.0, threads: int | None = None,
         device: str | None = None) -> dict[int, float]:
    """Symmetric ``percentile`` Hausdorff distance (mm) per label: ``{label: float}``.

    ``pred``/``ref``: integer label maps of equal shape (z, y, x); ``spacing``: voxel size in mm
    (z, y, x), a scalar, or ``None`` for 1. ``labels=None`` scores every non-zero label present in
    either map. ``percentile=100`` gives the classic Hausdorff distance. ``threads``: worker
    threads across classes and KD-tree queries (default all cores; values do not depend on it).
    ``device``: ``None`` / ``"cpu"`` = this numpy/scipy path; a torch device (``"cuda"``,
    ``"cuda:1"``) = :func:`hd95_torch` (:mod:`.hausdorff_torch`) on that device, same values
    (the same set of float64 distances, hence the same quantile).
    Empty-structure policy: :data:`EMPTY_POLICY`.
    """
    if device is not None and str(device) != "cpu":
        return hd95_torch(pred, ref, spacing, labels, percentile=percentile, device=device)
    return per_class_hd(pred, ref, spacing, labels, percentile, threads, _class_hd)


def hd95_torch(pred, ref, spacing: float | Sequence[float] | None = None, labels: Iterable[int] | None = None,
               *, percentile: float = 95.0, device="cpu") -> dict[int, float]:
    """:func:`hd95` computed with torch on ``device`` (any torch device, CPU included, which is how
    the tests compare it with the numpy path); same values. Label maps: numpy arrays or tensors."""
    from .hausdorff_torch import class_hd_torch

    p = pred.cpu().numpy() if hasattr(pred, "cpu") else pred
    r = ref.cpu().numpy() if hasattr(ref, "cpu") else ref

    def one(pm: np.ndarray, rm: np.ndarray, scale: np.ndarray, pct: float, workers: int) -> float:
        return class_hd_torch(pm, rm, scale, pct, device, quantile_monai)

    return per_class_hd(p, r, spacing, labels, percentile, 1, one)


def per_class_hd(pred: np.ndarray, ref: np.ndarray, spacing, labels, percentile: float, threads: int | None,
                 class_hd: Callable[[np.ndarray, np.ndarray, np.ndarray, float, int], float]) -> dict[int, float]:
    """The per-class driver shared by every HD95 engine: input checks, the empty-structure policy,
    one ``find_objects`` pass, each class cropped to the union box of both masks plus a 1-voxel
    margin, then ``class_hd(pred_mask, ref_mask, spacing_mm, percentile, workers)`` on the crops
    (in a thread pool when ``threads`` != 1 and there are several classes)."""
    p, r = check_label_maps(pred, ref)
    if not 0 <= percentile <= 100:
        raise ValueError(f"Expected a percentile in [0, 100], got {percentile}")
    scale = _spacing(spacing, p.ndim)
    labs = foreground_labels(p, r, labels)
    if not labs:
        return {}
    diag = image_diagonal(p.shape, scale)
    bad = [l for l in labs if l <= 0]
    if bad:
        raise ValueError(f"Expected foreground labels > 0, got {bad[0]}")
    bp, br = _boxes(p, labs), _boxes(r, labs)
    workers = threads or (os.cpu_count() or 1)

    def one(label: int) -> float:
        a, b = bp[label], br[label]
        if a is None and b is None:
            return float("nan")
        if a is None or b is None:
            return diag
        box = tuple(slice(max(min(x.start, y.start) - 1, 0), min(max(x.stop, y.stop) + 1, n))
                    for x, y, n in zip(a, b, p.shape))
        return class_hd(p[box] == label, r[box] == label, scale, percentile, workers)

    if len(labs) == 1 or workers == 1:
        vals = [one(l) for l in labs]
    else:
        with ThreadPoolExecutor(max_workers=min(len(labs), workers)) as ex:
            vals = list(ex.map(one, labs))
    return dict(zip(labs, vals))
