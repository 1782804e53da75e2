"""Readers and writers: any supported file -> canonical :class:`~trace_bench.volume.Volume`.

Formats (chosen from the path; ``fmt=`` overrides):

=========== ========================== =============================================
format      paths                      geometry
=========== ========================== =============================================
``nifti``   ``.nii``, ``.nii.gz``      affine from the header (sform, else qform)
``nrrd``    ``.nrrd``, ``.nhdr``       space directions/origin (via SimpleITK)
``mha``     ``.mha``, ``.mhd``         spacing/direction/origin (via SimpleITK)
``npy``     ``.npy``, ``.npz``         none: array taken as (z, y, x) in LPS, ``spacing`` required
``dicom``   a folder of DICOM files    the series geometry (via SimpleITK/GDCM), rescale to HU applied
``png``     a folder of ``.png/.tif``  none: files in natural sort order = z inferior->superior,
            or one multi-page ``.tif`` ``spacing`` required
=========== ========================== =============================================

Intensity: ``convention=None`` accepts only unmistakable HU (see :mod:`trace_bench.intensity`);
anything ambiguous is refused naming the file and ``--convention``.
"""

from __future__ import annotations

import os
import re
import tempfile
import zlib
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import nibabel as nib

from .errors import CorruptFileError, InvalidVolumeError, SpacingError, UnknownFormatError, VolumeError
from .intensity import Convention, parse_convention, suggest_convention
from .volume import Volume, from_canonical, from_xyz, to_nifti, validate_array

FORMATS = ("nifti", "nrrd", "mha", "npy", "dicom", "png")
VOLUME_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd", ".npy", ".npz", ".tif", ".tiff")
IMAGE_SLICE_SUFFIXES = (".png", ".tif", ".tiff")

Spacing = tuple[float, float, float]


def detect_format(path: str | Path) -> str:
    p = Path(path)
    name = p.name.lower()
    if p.is_dir():
        files = [f for f in p.iterdir() if f.is_file() and not f.name.startswith(".")]
        if any(f.suffix.lower() in IMAGE_SLICE_SUFFIXES for f in files):
            return "png"
        if files:
            return "dicom"
        raise UnknownFormatError(p, "empty folder: expected DICOM files or PNG/TIFF slices")
    if name.endswith((".nii.gz", ".nii")):
        return "nifti"
    if name.endswith((".nrrd", ".nhdr")):
        return "nrrd"
    if name.endswith((".mha", ".mhd")):
        return "mha"
    if name.endswith((".npy", ".npz")):
        return "npy"
    if name.endswith((".tif", ".tiff")):
        return "png"
    if name.endswith(".dcm"):
        return "dicom"
    raise UnknownFormatError(p, f"unknown volume format (supported: {', '.join(VOLUME_SUFFIXES)}, DICOM or PNG/TIFF folders)")


def parse_spacing(text: "str | Sequence[float] | None") -> Spacing | None:
    """Parse ``"z,y,x"`` (mm) or a 3-sequence; ``None`` stays ``None``."""
    if text is None:
        return None
    if isinstance(text, str):
        parts = [p for p in re.split(r"[,\sx]+", text.strip()) if p]
    else:
        parts = list(text)
    try:
        vals = tuple(float(v) for v in parts)
    except ValueError:
        raise SpacingError(None, f"cannot parse spacing {text!r}; expected 'z,y,x' in mm, e.g. 5,0.7,0.7") from None
    if len(vals) != 3 or not all(np.isfinite(v) and v > 0 for v in vals):
        raise SpacingError(None, f"spacing must be three positive numbers z,y,x in mm, got {text!r}")
    return vals  # type: ignore[return-value]


# --------------------------------------------------------------------------------------- readers
def _read_nifti(path: Path) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    try:
        img = nib.load(str(path))
        raw_dtype = img.get_data_dtype()
        data = np.asanyarray(img.dataobj)
    except (EOFError, zlib.error, OSError, ValueError, nib.filebasedimages.ImageFileError) as e:
        raise CorruptFileError(path, f"cannot decode NIfTI ({type(e).__name__}: {e})".strip()) from None
    except Exception as e:  # nibabel raises a zoo of types for broken headers
        raise CorruptFileError(path, f"cannot decode NIfTI ({type(e).__name__}: {e})") from None
    affine = img.affine
    if affine is None:
        affine = np.eye(4)
    meta = {"source_dtype": str(raw_dtype), "source_shape": list(data.shape),
            "source_affine_is_identity": bool(np.allclose(affine, np.eye(4)))}
    return data, np.asarray(affine, dtype=np.float64), meta


def _sitk_to_xyz(image) -> tuple[np.ndarray, np.ndarray]:
    import SimpleITK as sitk

    if image.GetDimension() != 3:
        raise InvalidVolumeError(None, f"expected a 3-D image, got {image.GetDimension()}-D of size {image.GetSize()}")
    if image.GetNumberOfComponentsPerPixel() != 1:
        raise InvalidVolumeError(None, f"expected one value per voxel, got {image.GetNumberOfComponentsPerPixel()}")
    arr = sitk.GetArrayFromImage(image)  # (z, y, x)
    d = np.array(image.GetDirection(), dtype=np.float64).reshape(3, 3)
    sp = np.array(image.GetSpacing(), dtype=np.float64)  # (x, y, z)
    org = np.array(image.GetOrigin(), dtype=np.float64)
    lps = np.eye(4)
    lps[:3, :3] = d @ np.diag(sp)
    lps[:3, 3] = org
    ras = np.diag([-1.0, -1.0, 1.0, 1.0]) @ lps  # ITK world is LPS; NIfTI affines are RAS
    return np.transpose(arr, (2, 1, 0)), ras


def _read_sitk(path: Path, what: str) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    import SimpleITK as sitk

    try:
        image = sitk.ReadImage(str(path))
    except RuntimeError as e:
        msg = str(e).strip().splitlines()
        detail = next((m for m in msg if "ERROR" in m.upper() or "exception" in m.lower()), msg[-1] if msg else "")
        raise CorruptFileError(path, f"cannot decode {what} ({detail.strip()[:200]})") from None
    try:
        data, aff = _sitk_to_xyz(image)
    except InvalidVolumeError as e:
        raise InvalidVolumeError(path, e.reason) from None
    return data, aff, {"source_dtype": str(data.dtype), "source_shape": list(np.transpose(data, (2, 1, 0)).shape)}


def _read_dicom(path: Path) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    import SimpleITK as sitk

    folder = path if path.is_dir() else path.parent
    reader = sitk.ImageSeriesReader()
    ids = reader.GetGDCMSeriesIDs(str(folder))
    if not ids:
        raise CorruptFileError(folder, "no readable DICOM series in this folder")
    if len(ids) > 1:
        raise InvalidVolumeError(folder, f"{len(ids)} DICOM series in one folder ({', '.join(ids[:3])}...); put each in its own folder")
    files = reader.GetGDCMSeriesFileNames(str(folder), ids[0])
    if len(files) < 2:
        raise InvalidVolumeError(folder, f"a DICOM series of {len(files)} slice(s) is not a volume")
    reader.SetFileNames(files)
    try:
        image = reader.Execute()
    except RuntimeError as e:
        raise CorruptFileError(folder, f"cannot decode DICOM series ({str(e).strip().splitlines()[-1][:200]})") from None
    data, aff = _sitk_to_xyz(image)
    return data, aff, {"source_dtype": str(data.dtype), "source_shape": [len(files)] + list(data.shape[1::-1]),
                       "dicom_files": len(files)}


def _natural_key(p: Path) -> list[Any]:
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", p.name)]


def _read_image_stack(path: Path) -> tuple[np.ndarray, dict[str, Any]]:
    """PNG/TIFF slices (folder) or multi-page TIFF -> (z, y, x) raw values."""
    from PIL import Image, UnidentifiedImageError

    def _grey(img: "Image.Image", name: Path) -> np.ndarray:
        a = np.asarray(img)
        if a.ndim == 3:
            if a.shape[2] == 4:
                a = a[..., :3]
            if not (np.array_equal(a[..., 0], a[..., 1]) and np.array_equal(a[..., 0], a[..., 2])):
                raise InvalidVolumeError(name, "colour slice: CT slices must be grey (equal R, G, B)")
            a = a[..., 0]
        return a

    slices: list[np.ndarray] = []
    try:
        if path.is_dir():
            files = sorted((f for f in path.iterdir() if f.suffix.lower() in IMAGE_SLICE_SUFFIXES), key=_natural_key)
            if not files:
                raise UnknownFormatError(path, "no .png/.tif slices in this folder")
            for f in files:
                try:
                    with Image.open(f) as im:
                        im.load()
                        slices.append(_grey(im, f))
                except (UnidentifiedImageError, OSError, SyntaxError) as e:
                    raise CorruptFileError(f, f"cannot decode image slice ({e})") from None
        else:
            with Image.open(path) as im:
                for i in range(getattr(im, "n_frames", 1)):
                    im.seek(i)
                    slices.append(_grey(im, path))
    except (UnidentifiedImageError, OSError, SyntaxError) as e:
        raise CorruptFileError(path, f"cannot decode image stack ({e})") from None
    shapes = {s.shape for s in slices}
    if len(shapes) != 1:
        raise InvalidVolumeError(path, f"slices differ in size: {sorted(shapes)}")
    if len(slices) < 2:
        raise InvalidVolumeError(path, f"a stack of {len(slices)} slice(s) is not a volume")
    arr = np.stack(slices)
    return arr, {"source_dtype": str(arr.dtype), "source_shape": list(arr.shape), "slices": len(slices)}


def _read_numpy(path: Path) -> tuple[np.ndarray, dict[str, Any]]:
    try:
        obj = np.load(str(path), allow_pickle=False)
    except (ValueError, OSError, EOFError, zlib.error) as e:
        raise CorruptFileError(path, f"cannot decode NumPy file ({e})") from None
    if isinstance(obj, np.lib.npyio.NpzFile):
        with obj:
            keys = list(obj.keys())
            key = next((k for k in ("image", "volume", "ct", "arr_0") if k in keys), None)
            if key is None:
                if len(keys) != 1:
                    raise InvalidVolumeError(path, f"npz holds {keys}; expected one array or a key named 'image'")
                key = keys[0]
            try:
                arr = obj[key]
            except (ValueError, OSError, EOFError, zlib.error) as e:
                raise CorruptFileError(path, f"cannot decode array {key!r} ({e})") from None
    else:
        arr = obj
    return arr, {"source_dtype": str(arr.dtype), "source_shape": list(arr.shape)}


def read_raw(path: str | Path, fmt: str | None = None, spacing: Spacing | None = None) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """Decode a file into ``(data_xyz, ras_affine, meta)`` without intensity conversion.

    For formats without geometry (npy, png) the array is taken as (z, y, x) canonical LPS and
    ``spacing`` (z, y, x) is required.
    """
    p = Path(path)
    if not p.exists():
        raise VolumeError(p, "no such file or folder")
    fmt = fmt or detect_format(p)
    if fmt not in FORMATS:
        raise UnknownFormatError(p, f"unknown format {fmt!r}; expected one of {', '.join(FORMATS)}")
    if p.is_file() and p.stat().st_size == 0:
        raise CorruptFileError(p, "empty file (0 bytes)")
    if fmt == "nifti":
        data, aff, meta = _read_nifti(p)
        meta["spacing_source"] = "file header"
    elif fmt in ("nrrd", "mha"):
        data, aff, meta = _read_sitk(p, fmt.upper())
        meta["spacing_source"] = "file header"
    elif fmt == "dicom":
        data, aff, meta = _read_dicom(p)
        meta["spacing_source"] = "DICOM header"
    else:
        arr, meta = _read_numpy(p) if fmt == "npy" else _read_image_stack(p)
        arr = validate_array(arr, p)
        if spacing is None:
            raise SpacingError(p, f"{fmt} files carry no voxel spacing; pass --spacing z,y,x (mm)")
        vol = from_canonical(np.zeros((1, 1, 1), np.float32), spacing)
        data = np.transpose(arr, (2, 1, 0))
        aff = vol.affine
        meta["spacing_source"] = "user"
    meta["format"] = fmt
    meta["path"] = str(p)
    if spacing is not None and meta["spacing_source"] != "user":
        # explicit spacing overrides the file's (e.g. peers that write identity affines)
        aff = _replace_spacing(aff, spacing)
        meta["spacing_source"] = "user (overrides file)"
    return data, aff, meta


def _replace_spacing(aff: np.ndarray, spacing_zyx: Spacing) -> np.ndarray:
    out = aff.copy()
    cols = out[:3, :3]
    norms = np.sqrt((cols ** 2).sum(axis=0))
    norms[norms == 0] = 1.0
    out[:3, :3] = cols / norms * np.array(spacing_zyx[::-1])
    return out


def read_volume(path: str | Path, *, convention: "str | Convention | None" = None, spacing: "Spacing | str | None" = None,
                fmt: str | None = None) -> Volume:
    """Read any supported file or folder as a canonical :class:`Volume` in HU (LPS, (z, y, x))."""
    sp = parse_spacing(spacing) if not isinstance(spacing, tuple) else spacing
    data, aff, meta = read_raw(path, fmt=fmt, spacing=sp)
    data = validate_array(data, path)
    if len(data.shape) == 3 and meta.get("source_shape") and len(meta["source_shape"]) > 3:
        aff = aff  # trailing singleton axes were squeezed; geometry is unchanged
    conv, reason = _resolve_convention(data, convention, path)
    hu = conv.to_hu(data)
    meta.update(convention=conv.spec, convention_reason=reason)
    return from_xyz(hu, aff, meta)


def read_label_map(path: str | Path, *, spacing: "Spacing | str | None" = None, fmt: str | None = None,
                   threshold: float | None = None) -> Volume:
    """Read an integer label map (0 = background) into the canonical grid (LPS, (z, y, x)).

    The values are kept as labels (no intensity convention); they are stored in the float32
    ``array`` and are exact integers (``volume.array.astype(np.int32)`` recovers them). Soft
    masks (values in [0, 1], e.g. MedSyn's) need ``threshold`` (label = value >= threshold).
    """
    sp = parse_spacing(spacing) if not isinstance(spacing, tuple) else spacing
    data, aff, meta = read_raw(path, fmt=fmt, spacing=sp)
    data = validate_array(data, path)
    if threshold is not None:
        data = (np.asarray(data, dtype=np.float32) >= threshold).astype(np.int32)
    else:
        if np.issubdtype(data.dtype, np.floating):
            r = np.rint(data)
            if not np.allclose(r, data, atol=1e-3):
                raise InvalidVolumeError(path, "label map holds non-integer values; soft masks need a threshold")
            data = r
        if data.min() < 0:
            raise InvalidVolumeError(path, f"label map holds negative labels (min {data.min()})")
        data = np.asarray(data, dtype=np.int32)
    meta.update(kind="labels", convention="labels", convention_reason="label map (no intensity conversion)")
    return from_xyz(data.astype(np.float32), aff, meta)


def _resolve_convention(data: np.ndarray, convention: "str | Convention | None", path: object) -> tuple[Convention, str]:
    if convention is not None and str(getattr(convention, "spec", convention)) != "auto":
        return parse_convention(convention, path), "given by the user or adapter"
    return suggest_convention(data, path)


def write_nifti(volume: Volume, path: str | Path) -> Path:
    """Write ``volume`` as NIfTI (float32 HU) with its RAS affine; atomic (temp file + rename)."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    suffix = ".nii.gz" if out.name.endswith(".nii.gz") else ".nii"
    fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=".tmp-", suffix=suffix)
    os.close(fd)
    try:
        nib.save(to_nifti(volume), tmp)
        os.replace(tmp, out)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return out
