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
import zlib
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import nibabel as nib

from .atomic import atomic_path
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


# --------------------------------------------------------------------------------------- guards
#: Environment variable: the largest voxel array (bytes, as declared by a header) a reader may allocate.
MAX_VOLUME_BYTES_ENV = "TRACE_BENCH_MAX_VOLUME_BYTES"
DEFAULT_MAX_VOLUME_BYTES = 8 << 30  # 8 GiB
#: Deflate (gzip) never expands data more than 1032:1 (zlib technical details: the maximum compression
#: ratio of deflate's longest match); a .gz file of n bytes cannot hold more than this many bytes.
DEFLATE_MAX_RATIO = 1032
#: DICOM slice positions are uniform when every step is within max(1 %, 0.01 mm) of the median step.
DICOM_SPACING_REL_TOL = 0.01
DICOM_SPACING_ABS_TOL_MM = 0.01


def max_volume_bytes() -> int:
    """The memory budget for one decoded voxel array: ``$TRACE_BENCH_MAX_VOLUME_BYTES`` or 8 GiB."""
    text = os.environ.get(MAX_VOLUME_BYTES_ENV, "").strip()
    if not text:
        return DEFAULT_MAX_VOLUME_BYTES
    try:
        val = int(float(text))
    except ValueError:
        val = 0
    if val <= 0:
        from .errors import ConfigError

        raise ConfigError(f"{MAX_VOLUME_BYTES_ENV}={text!r}: expected a positive number of bytes, e.g. 8589934592")
    return val


def _fmt_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"


def check_declared_size(path: str | Path, shape: Sequence[int], itemsize: int, *, offset: int | None = None,
                        compressed: bool = False) -> int:
    """Refuse a header whose voxel array cannot be real or is too big, BEFORE anything is allocated.

    ``declared = prod(shape) * itemsize``. Refused with :class:`InvalidVolumeError` when over
    :func:`max_volume_bytes`; refused with :class:`CorruptFileError` when the file cannot hold it:

    * uncompressed (``offset`` given): file size < ``offset + declared`` (truncated; exact);
    * gzip (``compressed=True``): ``offset + declared`` > :data:`DEFLATE_MAX_RATIO` x file size + 1 KiB
      (no gzip stream that small decompresses to that much; sound, never refuses a real file). A
      truncated gzip below that bound is still caught by the decoder; what it may allocate first is
      bounded by both the budget and 1032 x the file size. (The exact decompressed size is only known
      by decompressing, which would cost a second full pass over every file.)

    Returns ``declared``.
    """
    p = Path(path)
    n = 1
    for s in shape:
        if s < 0:
            raise CorruptFileError(p, f"header declares a negative dimension in shape {tuple(shape)}")
        n *= int(s)
    declared = n * int(itemsize)
    dims = "x".join(str(int(s)) for s in shape)
    budget = max_volume_bytes()
    if declared > budget:
        raise InvalidVolumeError(p, f"header declares {dims} voxels of {itemsize} byte(s) = {_fmt_bytes(declared)}, over the "
                                    f"memory budget of {_fmt_bytes(budget)} (raise it with {MAX_VOLUME_BYTES_ENV}=BYTES)")
    if offset is not None and p.is_file():
        size = p.stat().st_size
        need = int(offset) + declared
        if compressed:
            if need > DEFLATE_MAX_RATIO * size + 1024:
                raise CorruptFileError(p, f"truncated or corrupt: header declares {dims} voxels ({_fmt_bytes(declared)}) but a "
                                          f"gzip file of {size} bytes holds at most {_fmt_bytes(DEFLATE_MAX_RATIO * size + 1024)}")
        elif size < need:
            raise CorruptFileError(p, f"truncated: header declares {dims} voxels ({_fmt_bytes(declared)} from byte {offset}) "
                                      f"but the file has {size} bytes")
    return declared


def _sitk_pixel_bytes(pixel_id: int, components: int) -> int:
    """Bytes per voxel of a SimpleITK pixel type (from its name, e.g. 'vector of 32-bit float')."""
    import SimpleITK as sitk

    name = sitk.GetPixelIDValueAsString(pixel_id)
    m = re.search(r"(\d+)-bit", name)
    per = int(m.group(1)) // 8 if m else 8
    if "complex" in name:
        per *= 2
    return per * max(1, int(components))


def _check_numpy_size(path: Path) -> None:
    """Header check of a .npy file (or of every array in a .npz) before numpy allocates the array."""
    import zipfile

    def header(fh) -> tuple[tuple[int, ...], np.dtype]:
        major, _ = np.lib.format.read_magic(fh)
        read = np.lib.format.read_array_header_1_0 if major == 1 else np.lib.format.read_array_header_2_0
        shape, _, dtype = read(fh)
        return tuple(shape), dtype

    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as zf:
                for info in zf.infolist():
                    if not info.filename.endswith(".npy"):
                        continue
                    with zf.open(info) as fh:
                        shape, dtype = header(fh)
                        hdr_len = fh.tell()
                    if dtype.hasobject:
                        continue  # refused by np.load(allow_pickle=False)
                    declared = check_declared_size(path, shape, dtype.itemsize)
                    if info.file_size < hdr_len + declared:
                        raise CorruptFileError(path, f"truncated: array {info.filename!r} declares shape {shape} "
                                                     f"({_fmt_bytes(declared)}) but holds {info.file_size - hdr_len} bytes")
        else:
            with open(path, "rb") as fh:
                shape, dtype = header(fh)
                offset = fh.tell()
            if not dtype.hasobject:
                check_declared_size(path, shape, dtype.itemsize, offset=offset)
    except (ValueError, OSError, EOFError, zlib.error, zipfile.BadZipFile) as e:
        raise CorruptFileError(path, f"cannot decode NumPy file ({e})") from None


def check_dicom_spacing(folder: str | Path, files: Sequence[str]) -> float | None:
    """Refuse a DICOM series whose slices are not evenly spaced (e.g. a missing slice).

    Each slice's position is its ImagePositionPatient projected on the slice normal (the cross
    product of the ImageOrientationPatient row and column directions). Sorted positions must step
    by the median step within ``max(1 %, 0.01 mm)`` (:data:`DICOM_SPACING_REL_TOL`,
    :data:`DICOM_SPACING_ABS_TOL_MM`); otherwise :class:`InvalidVolumeError` names the folder, the
    two slices around the gap and the expected vs found spacing (ITK would only warn and average).
    Series without ImagePositionPatient are not checked. Returns the step (mm) or ``None``.
    """
    import SimpleITK as sitk

    folder = Path(folder)
    pos: list[tuple[float, str]] = []
    normal: np.ndarray | None = None
    for f in files:
        r = sitk.ImageFileReader()
        r.SetFileName(str(f))
        try:
            r.ReadImageInformation()
        except RuntimeError as e:
            raise CorruptFileError(f, f"cannot decode DICOM header ({str(e).strip().splitlines()[-1][:200]})") from None
        if not r.HasMetaDataKey("0020|0032"):
            return None
        if normal is None:
            d = np.array(r.GetDirection(), dtype=np.float64).reshape(3, 3)
            normal = np.cross(d[:, 0], d[:, 1])
            norm = float(np.linalg.norm(normal))
            normal = normal / norm if norm > 0 else np.array([0.0, 0.0, 1.0])
        pos.append((float(np.dot(np.array(r.GetOrigin(), dtype=np.float64), normal)), Path(f).name))
    if len(pos) < 3:
        return None
    pos.sort()
    steps = np.diff([z for z, _ in pos])
    expected = float(np.median(steps))
    if expected <= 0:
        i = int(np.argmin(steps))
        raise InvalidVolumeError(folder, f"slices {pos[i][1]} and {pos[i + 1][1]} share position {pos[i][0]:.3f} mm along "
                                         "the slice normal (duplicate slices); keep one series per folder")
    tol = max(DICOM_SPACING_REL_TOL * expected, DICOM_SPACING_ABS_TOL_MM)
    off = np.flatnonzero(np.abs(steps - expected) > tol)
    if off.size:
        i = int(off[0])
        found = float(steps[i])
        hint = ""
        k = found / expected
        if k > 1.5 and abs(k - round(k)) * expected <= tol:
            hint = f"; {round(k) - 1} slice(s) missing there"
        more = f" ({off.size - 1} more uneven step(s))" if off.size > 1 else ""
        raise InvalidVolumeError(folder, f"non-uniform slice spacing: {found:.3f} mm between {pos[i][1]} "
                                         f"({pos[i][0]:.3f} mm) and {pos[i + 1][1]} ({pos[i + 1][0]:.3f} mm), expected "
                                         f"{expected:.3f} mm (tolerance {tol:.3f} mm){hint}{more}")
    return expected


# --------------------------------------------------------------------------------------- readers
def _read_nifti(path: Path) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    try:
        img = nib.load(str(path))  # header only
        raw_dtype = img.get_data_dtype()
    except (EOFError, zlib.error, OSError, ValueError, nib.filebasedimages.ImageFileError) as e:
        raise CorruptFileError(path, f"cannot decode NIfTI ({type(e).__name__}: {e})".strip()) from None
    except Exception as e:  # nibabel raises a zoo of types for broken headers
        raise CorruptFileError(path, f"cannot decode NIfTI ({type(e).__name__}: {e})") from None
    check_declared_size(path, tuple(int(s) for s in img.shape), np.dtype(raw_dtype).itemsize,
                        offset=int(img.header.get_data_offset()),
                        compressed=path.name.lower().endswith(".gz"))
    try:
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
        info = sitk.ImageFileReader()
        info.SetFileName(str(path))
        info.ReadImageInformation()  # header only: size and pixel type, no voxels
        check_declared_size(path, tuple(int(s) for s in info.GetSize()),
                            _sitk_pixel_bytes(info.GetPixelID(), info.GetNumberOfComponents()))
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
    check_dicom_spacing(folder, files)
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
    _check_numpy_size(path)
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
    with atomic_path(out, suffix) as tmp:
        nib.save(to_nifti(volume), str(tmp))
    return out
