"""Audit features: one canonical HU volume -> a slice stack on a fixed physical grid, slice thumbnails
and a volume descriptor (registry of named, versioned volume features).

**The audit canvas** (``canvas_v1``). The canonical volume (float32 HU, (z, y, x), LPS) is

1. clipped to [-1000, 1000] HU and scaled to ``u = (HU + 1000) / 2000`` in [0, 1] (air = 0), so that
   everything outside the scanned field is air;
2. centred in-plane on its body box (bounding box of the largest connected component of
   ``HU > -500`` on a 4x in-plane subsampled volume, i.e. the patient without the couch), and
   resampled to a ``128 x 128`` canvas of ``3.5 mm`` pixels (448 mm field of view) by area weighting
   (each output pixel is the overlap-weighted mean of the input pixels it covers; input outside the
   volume counts as air);
3. resampled along z to ``5 mm`` slices starting at the first slice (area weighting, renormalised at
   the two ends), so volumes of different slice spacing are compared at the same anatomical step.

Physical scale is kept on purpose: a copied patient keeps its size, so normalising body size would
only make different patients look alike.

**Slice thumbnails**: each canvas slice 8 x 8 average pooled to ``16 x 16``, centred and L2 normalised,
so that ``|a - b|^2 = 2 - 2 r`` with ``r`` the thumbnails' correlation (cheap candidate pruning).

**Volume features** are looked up by name in :data:`VOLUME_FEATURES`; their ``name`` and
``version`` enter every cache key, so a 3D CT network can replace the default later
(``register_volume_feature``). The default, ``grid16x32x32`` (v1): the canvas 4 x 4 average pooled to
14 mm pixels (32 x 32, 448 mm), resampled along z to 16 rows spanning the volume's whole z extent
(area weighting), flattened (16384 values), centred and L2 normalised. Distances between two such
unit vectors are Euclidean: ``d = |f_a - f_b| = sqrt(2 - 2 cos)`` in [0, 2]. It is a global layout
descriptor: it matches a copy of a whole volume (also under a few slices of shift, which moves each
row by a fraction of the extent); a partial copy (a different z range) is the job of the slice search.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ..volume import Volume

HU_LO, HU_HI = -1000.0, 1000.0
BODY_HU = -500.0
CANVAS = 128  # pixels per side
PIXEL_MM = 3.5  # canvas pixel size
SLICE_MM = 5.0  # audit slice step
THUMB = 16  # thumbnail side
CANVAS_ID = f"canvas_v1:{CANVAS}px@{PIXEL_MM}mm,z{SLICE_MM}mm,hu[{HU_LO:g},{HU_HI:g}],body>{BODY_HU:g}"
THUMB_ID = f"thumb_v1:{THUMB}px-centred-l2"


def area_weights(n_in: int, step_in: float, centres_out: np.ndarray, width_out: float,
                 renormalise: bool = False) -> np.ndarray:
    """Weight matrix ``W`` (len(centres_out), n_in) with ``W[i, j] = overlap(out_i, in_j) / width_out``.

    Input cell ``j`` covers ``[(j - 0.5) step_in, (j + 0.5) step_in]`` mm and output cell ``i`` covers
    ``[c_i - width_out / 2, c_i + width_out / 2]``. Without ``renormalise`` the part of an output cell
    outside the input counts as zero (air on the canvas); with it each row is divided by its sum.
    """
    lo_in = (np.arange(n_in) - 0.5) * step_in
    hi_in = lo_in + step_in
    lo_out = centres_out[:, None] - width_out / 2.0
    hi_out = centres_out[:, None] + width_out / 2.0
    w = np.clip(np.minimum(hi_out, hi_in[None, :]) - np.maximum(lo_out, lo_in[None, :]), 0.0, None) / width_out
    if renormalise:
        s = w.sum(axis=1, keepdims=True)
        w = np.divide(w, s, out=np.zeros_like(w), where=s > 0)
    return w


def body_box(array: np.ndarray) -> tuple[float, float, float, float]:
    """In-plane body box ``(y0, y1, x0, x1)`` in voxel indices (inclusive bounds, float): the bounding box
    of the largest 3-D connected component of ``HU > -500`` on a 4x in-plane subsampled copy (the
    patient without the couch). A volume without such voxels gives the whole slice."""
    from scipy import ndimage

    ny, nx = array.shape[1:]
    sub = array[:, ::4, ::4] > BODY_HU
    if not sub.any():
        return 0.0, float(ny - 1), 0.0, float(nx - 1)
    lab, n = ndimage.label(sub)
    if n > 1:
        sizes = np.bincount(lab.ravel())
        sizes[0] = 0
        sub = lab == int(np.argmax(sizes))
    ys = np.flatnonzero(sub.any(axis=(0, 2)))
    xs = np.flatnonzero(sub.any(axis=(0, 1)))
    return (float(ys[0] * 4), float(min(ys[-1] * 4 + 3, ny - 1)),
            float(xs[0] * 4), float(min(xs[-1] * 4 + 3, nx - 1)))


def audit_canvas(volume: Volume) -> np.ndarray:
    """The audit canvas of ``volume``: float32 ``(n_slices, 128, 128)`` in [0, 1] (module docstring).

    Slice ``k`` lies ``5 k`` mm above the centre of the volume's first (most inferior) slice; it is
    ``k * 5 / spacing_z`` in the volume's own slice indices (:func:`native_slice`)."""
    sz, sy, sx = volume.spacing
    nz, ny, nx = volume.array.shape
    y0, y1, x0, x1 = body_box(volume.array)
    offs = (np.arange(CANVAS) - (CANVAS - 1) / 2.0) * PIXEL_MM
    wy = area_weights(ny, sy, (y0 + y1) / 2.0 * sy + offs, PIXEL_MM)
    wx = area_weights(nx, sx, (x0 + x1) / 2.0 * sx + offs, PIXEL_MM)
    n_out = math.floor((nz - 1) * sz / SLICE_MM + 1e-6) + 1
    wz = area_weights(nz, sz, np.arange(n_out) * SLICE_MM, SLICE_MM, renormalise=True)
    planes = np.empty((nz, CANVAS, CANVAS), dtype=np.float64)
    for z0 in range(0, nz, 16):  # slabs of 16 slices bound the memory for large volumes
        u = (np.clip(volume.array[z0:z0 + 16], HU_LO, HU_HI).astype(np.float64) - HU_LO) / (HU_HI - HU_LO)
        planes[z0:z0 + 16] = np.matmul(wy, u @ wx.T)  # (slab, 128, 128)
    out = np.tensordot(wz, planes, axes=([1], [0]))  # (n_out, 128, 128)
    return np.ascontiguousarray(out, dtype=np.float32)


def native_slice(audit_index: int, volume_spacing_z: float) -> int:
    """The volume's own slice index nearest to audit slice ``audit_index``."""
    return int(np.rint(float(audit_index) * SLICE_MM / float(volume_spacing_z)))


def pool(stack: np.ndarray, factor: int) -> np.ndarray:
    """Average pooling of the last two axes by ``factor`` (they must be divisible by it)."""
    n, h, w = stack.shape
    return stack.reshape(n, h // factor, factor, w // factor, factor).mean(axis=(2, 4))


def unit_rows(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rows centred and L2 normalised (float64) and a boolean ``valid`` (rows that are not constant)."""
    x = np.asarray(x, dtype=np.float64).reshape(len(x), -1)
    x = x - x.mean(axis=1, keepdims=True)
    norm = np.sqrt((x * x).sum(axis=1))
    valid = norm > 1e-6 * np.sqrt(x.shape[1])
    x = np.divide(x, norm[:, None], out=np.zeros_like(x), where=valid[:, None])
    return x, valid


def slice_thumbnails(stack: np.ndarray) -> np.ndarray:
    """``(n_slices, 256)`` float32: each canvas slice pooled to 16 x 16, centred, L2 normalised (a
    constant slice gives a row of zeros)."""
    t, _ = unit_rows(pool(stack, CANVAS // THUMB))
    return t.astype(np.float32)


@dataclass(frozen=True)
class VolumeFeature:
    """A named, versioned volume descriptor. ``fn(volume, canvas) -> 1-D float vector``; ``canvas`` is
    the volume's audit canvas (a 3-D network may ignore it and read ``volume``). ``name`` and
    ``version`` enter the cache key; bump ``version`` whenever the numbers change."""

    name: str
    version: str
    fn: Callable[[Volume, np.ndarray], np.ndarray]
    description: str = ""

    @property
    def id(self) -> str:
        return f"{self.name}@{self.version}"

    def __call__(self, volume: Volume, canvas: np.ndarray) -> np.ndarray:
        return np.asarray(self.fn(volume, canvas), dtype=np.float32).ravel()


VOLUME_FEATURES: dict[str, VolumeFeature] = {}


def register_volume_feature(feature: VolumeFeature) -> VolumeFeature:
    """Add ``feature`` to :data:`VOLUME_FEATURES` (a name registered twice is refused)."""
    if feature.name in VOLUME_FEATURES and VOLUME_FEATURES[feature.name] != feature:
        raise ValueError(f"volume feature {feature.name!r} is already registered")
    VOLUME_FEATURES[feature.name] = feature
    return feature


def get_volume_feature(name: str) -> VolumeFeature:
    """The registered feature called ``name`` (a :class:`~trace_bench.errors.ConfigError` lists the others)."""
    from ..errors import ConfigError

    try:
        return VOLUME_FEATURES[name]
    except KeyError:
        raise ConfigError(f"unknown audit feature {name!r}; known: {', '.join(sorted(VOLUME_FEATURES))}") from None


def grid_feature(volume: Volume, canvas: np.ndarray) -> np.ndarray:
    """``grid16x32x32`` v1 (module docstring): canvas pooled to 32 x 32, 16 rows over the z extent,
    centred, L2 normalised."""
    small = pool(canvas, 4).astype(np.float64)  # (n, 32, 32)
    n = small.shape[0]
    rows = 16
    width = n / rows  # in audit slices
    wz = area_weights(n, 1.0, (np.arange(rows) + 0.5) * width - 0.5, width, renormalise=True)
    g = np.tensordot(wz, small, axes=([1], [0])).reshape(1, -1)
    u, _ = unit_rows(g)
    return u[0].astype(np.float32)


DEFAULT_FEATURE = register_volume_feature(VolumeFeature(
    "grid16x32x32", "1", grid_feature,
    "audit canvas pooled to 32x32 px of 14 mm, 16 rows over the z extent, centred, L2 normalised"))
