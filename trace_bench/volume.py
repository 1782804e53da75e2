"""The canonical volume every part of trace-bench works on.

Convention (applied to every input, whatever its format):

* ``array``: float32 Hounsfield units, shape ``(z, y, x)``, C-contiguous.
* Orientation **LPS**: the x index grows towards the patient's Left, y towards Posterior,
  z towards Superior. So ``array[k]`` is an axial slice, ``k = 0`` is the most inferior slice,
  and each slice displayed with ``imshow`` (row 0 at the top) is in radiological view:
  anterior at the top, the patient's right on the image's left.
* ``spacing``: voxel size in mm as ``(z, y, x)``.
* ``affine``: 4x4 NIfTI-style matrix mapping the index ``(x, y, z)`` (i.e. ``array`` indices
  reversed) to RAS+ world millimetres, so ``nibabel.Nifti1Image(array.T, affine)`` is correct.
* ``meta``: where it came from (path, format, original dtype/shape/orientation, the intensity
  convention and the spacing source used, ``geometry`` / ``geometry_notes``: what the header said about
  geometry, see :func:`trace_bench.io.read_raw`, and one-line ``warnings``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import nibabel as nib
from nibabel import orientations as nio

from .errors import InvalidVolumeError

CANONICAL_AXCODES = ("L", "P", "S")  # for the (x, y, z) index order of the affine


@dataclass
class Volume:
    array: np.ndarray  # float32 HU, (z, y, x), LPS
    spacing: tuple[float, float, float]  # mm, (z, y, x)
    affine: np.ndarray  # 4x4, (x, y, z) index -> RAS mm
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.array = np.ascontiguousarray(self.array, dtype=np.float32)
        self.spacing = tuple(float(s) for s in self.spacing)  # type: ignore[assignment]
        self.affine = np.asarray(self.affine, dtype=np.float64)

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.array.shape)  # type: ignore[return-value]

    @property
    def orientation(self) -> str:
        return "".join(nib.aff2axcodes(self.affine))

    def with_array(self, array: np.ndarray, **meta: Any) -> "Volume":
        """Same geometry, new voxel values (shape must match)."""
        if array.shape != self.array.shape:
            raise ValueError(f"Expected an array of shape {self.array.shape}, got {array.shape}")
        return Volume(array, self.spacing, self.affine.copy(), {**self.meta, **meta})

    def summary(self) -> dict[str, Any]:
        a = self.array
        return {
            "path": self.meta.get("path"),
            "format": self.meta.get("format"),
            "adapter": self.meta.get("adapter"),
            "shape_zyx": list(self.shape),
            "spacing_zyx_mm": [round(s, 6) for s in self.spacing],
            "orientation": self.orientation,
            "source_orientation": self.meta.get("source_orientation"),
            "source_dtype": self.meta.get("source_dtype"),
            "source_shape": self.meta.get("source_shape"),
            "dtype": str(a.dtype),
            "hu_min": float(a.min()),
            "hu_max": float(a.max()),
            "hu_mean": float(a.mean(dtype=np.float64)),
            "convention": self.meta.get("convention"),
            "convention_reason": self.meta.get("convention_reason"),
            "spacing_source": self.meta.get("spacing_source"),
            "geometry": self.meta.get("geometry"),
            "read_layout": self.meta.get("read_layout"),
            "warnings": list(self.meta.get("warnings") or []),
        }


def validate_array(array: np.ndarray, path: object) -> np.ndarray:
    """Squeeze trailing singleton axes and check the result is a finite, non-empty 3-D array."""
    a = np.asarray(array)
    while a.ndim > 3 and a.shape[-1] == 1:
        a = a[..., 0]
    if a.ndim != 3:
        raise InvalidVolumeError(path, f"expected a 3-D volume, got an array of shape {tuple(np.shape(array))}")
    if a.size == 0 or min(a.shape) == 0:
        raise InvalidVolumeError(path, f"empty volume of shape {a.shape}")
    if not np.issubdtype(a.dtype, np.number) or np.issubdtype(a.dtype, np.complexfloating):
        raise InvalidVolumeError(path, f"unsupported voxel type {a.dtype}")
    if np.issubdtype(a.dtype, np.floating):
        bad = ~np.isfinite(a)
        if bad.any():
            raise InvalidVolumeError(path, f"{int(bad.sum())} of {a.size} voxels are NaN or Inf")
    return a


def from_xyz(data_xyz: np.ndarray, affine: np.ndarray, meta: dict[str, Any] | None = None) -> Volume:
    """Build a canonical :class:`Volume` from an array indexed (x, y, z) and its RAS affine.

    The array may already be in HU or not: intensity conversion is the caller's business;
    this function only reorients to LPS and transposes to (z, y, x).
    """
    meta = dict(meta or {})
    affine = np.asarray(affine, dtype=np.float64)
    if affine.shape != (4, 4) or not np.all(np.isfinite(affine)):
        raise InvalidVolumeError(meta.get("path"), f"invalid affine {affine!r}")
    if abs(np.linalg.det(affine[:3, :3])) < 1e-12:
        raise InvalidVolumeError(meta.get("path"), "singular affine (zero voxel size)")
    meta.setdefault("source_orientation", "".join(nib.aff2axcodes(affine)))
    src = nio.io_orientation(affine)
    dst = nio.axcodes2ornt(CANONICAL_AXCODES)
    xform = nio.ornt_transform(src, dst)
    data = nio.apply_orientation(data_xyz, xform)
    new_affine = affine @ nio.inv_ornt_aff(xform, data_xyz.shape)
    zooms = np.sqrt((new_affine[:3, :3] ** 2).sum(axis=0))  # (x, y, z)
    arr = np.ascontiguousarray(np.transpose(data, (2, 1, 0)))
    return Volume(arr, (zooms[2], zooms[1], zooms[0]), new_affine, meta)


def lps_affine(spacing_zyx: tuple[float, float, float], origin_ras: tuple[float, float, float] = (0.0, 0.0, 0.0)) -> np.ndarray:
    """Affine of a canonical (LPS) volume with the given spacing and no rotation."""
    sz, sy, sx = (float(s) for s in spacing_zyx)
    aff = np.diag([-sx, -sy, sz, 1.0])
    aff[:3, 3] = origin_ras
    return aff


def from_canonical(array_zyx: np.ndarray, spacing_zyx: tuple[float, float, float], meta: dict[str, Any] | None = None,
                   origin_ras: tuple[float, float, float] = (0.0, 0.0, 0.0)) -> Volume:
    """Wrap an array that is already (z, y, x) in LPS orientation."""
    return Volume(array_zyx, spacing_zyx, lps_affine(spacing_zyx, origin_ras), dict(meta or {}))


def to_nifti(volume: Volume) -> nib.Nifti1Image:
    img = nib.Nifti1Image(np.ascontiguousarray(volume.array.transpose(2, 1, 0)), volume.affine)
    img.header.set_xyzt_units("mm")
    img.set_qform(volume.affine, code=1)
    img.set_sform(volume.affine, code=1)
    return img


def orthogonal_slices(arr: np.ndarray) -> dict[str, np.ndarray]:
    """The three mid planes of a (z, y, x) array: axial, coronal, sagittal."""
    z, y, x = arr.shape
    return {"axial": arr[z // 2], "coronal": arr[:, y // 2, :], "sagittal": arr[:, :, x // 2]}
