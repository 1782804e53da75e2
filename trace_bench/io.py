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
anything ambiguous is refused naming the file and the ``convention`` option.

Files are owned by their reader (issue 27): the path is checked before anything opens it (a FIFO or
device is refused by its type); NRRD / MetaImage data files must be regular files beside their header
(:func:`trace_bench.inputs.detached_files`); gzip and zlib streams are verified to their end (checksums,
lengths, no trailing bytes) before a volume is used. Header truth: what a header says (or fails to say)
about geometry is recorded as ``meta["geometry"]`` and ``meta["geometry_notes"]`` (:func:`read_raw`);
:mod:`trace_bench.geometry` turns it into warnings and refusals. ``layout`` / ``spacing`` options
(:mod:`trace_bench.read_options`) state the geometry of files that carry none.
"""

from __future__ import annotations

import os
import re
import zlib
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np
import nibabel as nib

from .atomic import atomic_path
from .geometry import REFUSING_NOTES
from .errors import (ConventionError, CorruptFileError, InvalidVolumeError, SpacingError, UnknownFormatError,
                     VolumeError)
from .intensity import Convention, parse_convention, suggest_convention
from .volume import Volume, from_xyz, to_nifti, validate_array

if TYPE_CHECKING:
    from .inputs import HeaderInfo

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


# --------------------------------------------------------------------------------------- compressed streams
#: decompressed bytes a NIfTI ``.gz`` may hold beyond ``vox_offset + voxel array`` (extensions, padding)
GZIP_SLACK_BYTES = 1 << 20
_GZIP_MAGIC = b"\x1f\x8b"


def _inflate(path: Path, offset: int, kind: str, limit: int | None):
    """Yield the decompressed chunks of the ``kind`` stream (``gzip`` or ``zlib``) that starts at byte
    ``offset`` of ``path``, verified to the end: every gzip member's CRC-32 and length, a zlib stream's
    Adler-32 (zlib checks them); a stream cut short, any byte after the last member that does not start
    another gzip member (trailing garbage, zero padding included), and more than ``limit`` decompressed
    bytes are refused with :class:`CorruptFileError`."""
    wbits = 16 + zlib.MAX_WBITS if kind == "gzip" else zlib.MAX_WBITS
    what = "gzip" if kind == "gzip" else "zlib (deflate)"
    total = 0
    d = zlib.decompressobj(wbits)
    done = False  # the current stream reached its end marker
    with open(path, "rb") as fh:
        fh.seek(offset)
        pending = b""
        while True:
            if len(pending) < (2 if done else 1):
                more = fh.read(1 << 20)
                if not more and not pending:
                    break
                pending += more
            if done:  # bytes after a complete stream: another gzip member, or garbage
                if kind != "gzip" or not pending.startswith(_GZIP_MAGIC):
                    raise CorruptFileError(path, f"trailing data after the end of the {what} stream (a damaged or "
                                                 "padded file)")
                d, done = zlib.decompressobj(wbits), False
            try:
                out = d.decompress(pending, 1 << 24)
            except zlib.error as e:
                raise CorruptFileError(path, f"corrupt {what} stream ({_zlib_reason(e)})") from None
            pending = d.unconsumed_tail
            total += len(out)
            if limit is not None and total > limit:
                raise CorruptFileError(path, f"the {what} stream decompresses to more than the {_fmt_bytes(limit)} "
                                             "its header declares")
            if out:
                yield out
            if d.eof:
                done = True
                pending = d.unused_data + pending
    if not done:
        raise CorruptFileError(path, f"truncated: the {what} stream ends before its end marker "
                                     f"({_fmt_bytes(total)} decompressed)")


def _zlib_reason(e: BaseException) -> str:
    text = str(e)
    if "incorrect data check" in text:
        return "checksum mismatch: the data were altered"
    if "incorrect length check" in text:
        return "length field mismatch"
    return text


def gunzip_verified(path: str | Path, limit: int) -> bytes:
    """The whole decompressed content of a gzip file, verified to the end (:func:`_inflate`): CRC-32 and
    length of every member, no trailing garbage, at most ``limit`` bytes."""
    return b"".join(_inflate(Path(path), 0, "gzip", limit))


def verify_stream(path: str | Path, offset: int, kind: str) -> int:
    """Decompress the ``kind`` stream at ``offset`` of ``path`` without keeping it, verifying it to the end
    (:func:`_inflate`); returns the decompressed size. For NRRD / MetaImage data, whose ITK decoders do
    not all check (a MetaImage zlib stream with a flipped bit decodes to garbage with only a log line)."""
    return sum(len(c) for c in _inflate(Path(path), offset, kind, None))


# --------------------------------------------------------------------------------------- header truth
#: a note about a header's geometry is ``[kind, text]``; kinds in :data:`trace_bench.geometry.REFUSING_NOTES`
#: make the volume's geometry untrusted (``meta["geometry"] = "trivial"``): :mod:`trace_bench.geometry`
#: refuses it for reference-based metrics under the default policy unless the user says how to read it.
GEOMETRY_TOL = 1e-4


def _note(meta: dict[str, Any], kind: str, text: str) -> None:
    meta.setdefault("geometry_notes", []).append([kind, " ".join(text.split())])


def _unit_at_origin(aff: np.ndarray) -> bool:
    """Axis-aligned unit voxels at the origin: what writers without geometry produce (np.eye(4), SimpleITK's
    default, nibabel's ``affine=None`` fallback is caught by its codes)."""
    m = aff[:3, :3]
    perm = np.abs(np.round(m))
    return bool(np.allclose(np.abs(m), perm, atol=GEOMETRY_TOL) and np.allclose(perm.sum(axis=0), 1)
                and np.allclose(perm.sum(axis=1), 1) and np.allclose(aff[:3, 3], 0, atol=GEOMETRY_TOL))


def _layout_of(aff: np.ndarray) -> str:
    from .read_options import affine_layout

    return affine_layout(aff)


def nifti_geometry_notes(raw_header: Any, affine: np.ndarray, meta: dict[str, Any]) -> None:
    """Record what a NIfTI header says about geometry, from its raw fields (nibabel fixes some on load):

    * ``qform_code`` and ``sform_code`` both 0 -> ``no_geometry`` (nibabel falls back to an LAS grid from
      pixdim: an orientation nobody wrote);
    * the affine used (sform if its code > 0, else qform) is unit voxels at the origin (``np.eye(4)``,
      SimpleITK's ``diag(-1, -1, 1)``) -> ``no_geometry``;
    * qform and sform both set with different axis codes -> ``ambiguous_orientation`` (one of them mirrors);
      same codes but other voxel sizes / origin (> 1e-3 relative / 0.1 mm) -> ``inconsistent`` (warning);
    * a voxel size ``pixdim[1..3]`` <= 0: with the qform in use, 0 -> ``zero_spacing`` (nibabel reads 1 mm),
      negative -> ``ambiguous_orientation`` (nibabel takes its absolute value; a flip may have been meant);
      with the sform in use -> ``inconsistent`` (the sform's voxel sizes are used).
    """
    qc, sc = int(raw_header["qform_code"]), int(raw_header["sform_code"])
    pix = [float(v) for v in np.asarray(raw_header["pixdim"])[1:4]]
    meta["nifti_codes"] = {"qform_code": qc, "sform_code": sc}
    implied = _layout_of(affine)
    meta["implied_layout"] = implied
    if qc == 0 and sc == 0:
        _note(meta, "no_geometry", f"qform_code and sform_code are both 0: the header has no orientation (read as "
                                   f"written: nibabel's fallback grid, layout {implied})")
    elif _unit_at_origin(affine):
        what = "identity affine (np.eye(4))" if np.allclose(affine, np.eye(4), atol=GEOMETRY_TOL) else \
            "1 mm axis-aligned voxels at the origin (a writer's default, e.g. SimpleITK's)"
        _note(meta, "no_geometry", f"{what}: the header carries no real geometry (read as written: layout {implied} "
                                   "at 1 mm)")
    if qc > 0 and sc > 0:
        q = np.asarray(raw_header.get_qform(), dtype=np.float64)
        s = np.asarray(raw_header.get_sform(), dtype=np.float64)
        lq, ls = _layout_of(q), _layout_of(s)
        if lq != ls:
            _note(meta, "ambiguous_orientation", f"qform ({lq}) and sform ({ls}) disagree on the orientation; the "
                                                 "sform was used, one of them mirrors the volume")
        elif not (np.allclose(q[:3, :3], s[:3, :3], rtol=1e-3, atol=1e-3)
                  and np.allclose(q[:3, 3], s[:3, 3], atol=0.1)):
            _note(meta, "inconsistent", "qform and sform differ in voxel size or origin (same orientation); the sform "
                                        "was used")
    for axis, v in zip("ijk", pix):
        if v > 0:
            continue
        if sc > 0:
            _note(meta, "inconsistent", f"pixdim voxel size along {axis} is {v:g}; the sform's was used")
        elif qc > 0 and v == 0:
            _note(meta, "zero_spacing", f"voxel size along {axis} is 0 in the header (nibabel reads 1 mm): the "
                                        "spacing is unknown")
        elif qc > 0:
            _note(meta, "ambiguous_orientation", f"negative voxel size {v:g} mm along {axis} in the header (read as "
                                                 f"{abs(v):g} mm; a flip of that axis may have been meant)")


#: NRRD / MetaImage header fields holding voxel sizes (lower-case key -> as written in the format)
_SPACING_FIELDS = {"spacings": "spacings", "elementspacing": "ElementSpacing", "elementsize": "ElementSize"}


def sitk_geometry_notes(info: HeaderInfo | None, affine: np.ndarray, meta: dict[str, Any]) -> None:
    """Record what a NRRD / MetaImage header says about geometry: unit voxels at the origin with the
    identity direction (what ITK assumes when the header has none) -> ``no_geometry``; a negative voxel size
    in ``spacings`` / ``ElementSpacing`` / ``ElementSize`` (ITK turns it into a flipped axis) ->
    ``ambiguous_orientation``."""
    implied = _layout_of(affine)
    meta["implied_layout"] = implied
    if _unit_at_origin(affine):
        _note(meta, "no_geometry", f"1 mm voxels at the origin with the identity direction: the header carries no "
                                   f"real geometry (read as written: layout {implied} at 1 mm)")
    if info is None:
        return
    for key, field in _SPACING_FIELDS.items():
        text = info.fields.get(key)
        if not text:
            continue
        try:
            vals = [float(t) for t in text.replace(",", " ").split()]
        except ValueError:
            continue
        neg = [f"{v:g}" for v in vals if v < 0]
        if neg:
            _note(meta, "ambiguous_orientation", f"negative voxel size {', '.join(neg)} in the header's {field} (read "
                                                 "by ITK as a flipped axis)")


# --------------------------------------------------------------------------------------- readers
def nifti_class(raw: bytes) -> tuple[Any, int]:
    """nibabel's image class for the NIfTI bytes ``raw`` (NIfTI-1 or NIfTI-2, by ``sizeof_hdr``)."""
    import struct

    for order in "<>":
        n = struct.unpack(order + "i", raw[:4])[0] if len(raw) >= 4 else 0
        if n == 348:
            return nib.Nifti1Image, 348
        if n == 540:
            return nib.Nifti2Image, 540
    raise ValueError("not a NIfTI file (sizeof_hdr is neither 348 nor 540)")


def _read_nifti(path: Path) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """Decode a NIfTI file. A ``.gz`` is decompressed once, in full, and verified to the end (CRC-32, length,
    no trailing garbage) before nibabel parses it; the header's declared size is checked first."""
    import io as _io

    compressed = path.name.lower().endswith(".gz")
    try:
        img = nib.load(str(path))  # header only
        raw_dtype = img.get_data_dtype()
        offset = int(img.header.get_data_offset())
    except (EOFError, zlib.error, OSError, ValueError, nib.filebasedimages.ImageFileError) as e:
        raise CorruptFileError(path, f"cannot decode NIfTI ({type(e).__name__}: {e})".strip()) from None
    except Exception as e:  # nibabel raises a zoo of types for broken headers
        raise CorruptFileError(path, f"cannot decode NIfTI ({type(e).__name__}: {e})") from None
    declared = check_declared_size(path, tuple(int(s) for s in img.shape), np.dtype(raw_dtype).itemsize,
                                   offset=offset, compressed=compressed)
    try:
        if compressed:
            raw = gunzip_verified(path, offset + declared + GZIP_SLACK_BYTES)
            if len(raw) < offset + declared:
                raise CorruptFileError(path, f"truncated: the header declares {_fmt_bytes(declared)} of voxels from "
                                             f"byte {offset}, the gzip stream holds {len(raw)} bytes")
        else:
            with open(path, "rb") as fh:
                raw = fh.read(540)
        klass, hdr_size = nifti_class(raw)
        raw_header = klass.header_class.from_fileobj(_io.BytesIO(raw[:hdr_size]), check=False)
        if compressed:
            img = klass.from_bytes(raw)
            del raw
        data = np.asanyarray(img.dataobj)
    except CorruptFileError:
        raise
    except (EOFError, zlib.error, OSError, ValueError, nib.filebasedimages.ImageFileError) as e:
        raise CorruptFileError(path, f"cannot decode NIfTI ({type(e).__name__}: {e})".strip()) from None
    except Exception as e:  # nibabel raises a zoo of types for broken headers
        raise CorruptFileError(path, f"cannot decode NIfTI ({type(e).__name__}: {e})") from None
    affine = img.affine
    if affine is None:
        affine = np.eye(4)
    affine = np.asarray(affine, dtype=np.float64)
    meta: dict[str, Any] = {"source_dtype": str(raw_dtype), "source_shape": list(data.shape),
                            "rescale_in_header": nifti_rescaled(img)}
    nifti_geometry_notes(raw_header, affine, meta)
    return data, affine, meta


def nifti_rescaled(img: Any) -> bool:
    """Whether a loaded NIfTI's voxels are rescaled by its header (``scl_slope`` / ``scl_inter`` other than
    1 / 0; nibabel moves them from the header to the array proxy on load)."""
    slope = float(getattr(img.dataobj, "slope", 1.0))
    inter = float(getattr(img.dataobj, "inter", 0.0))
    return not (slope == 1.0 and inter == 0.0)


def read_nifti_header(path: str | Path) -> tuple[Any, np.ndarray, dict[str, Any]]:
    """Header only (no voxel decoded): the nibabel image, its affine and the meta a full read records about
    geometry and rescale (``geometry``, ``geometry_notes``, ``implied_layout``, ``rescale_in_header``)."""
    import gzip
    import io as _io

    p = Path(path)
    try:
        img = nib.load(str(p))
        opener = gzip.open if p.name.lower().endswith(".gz") else open
        with opener(p, "rb") as fh:
            raw = fh.read(540)
        klass, size = nifti_class(raw)
        raw_header = klass.header_class.from_fileobj(_io.BytesIO(raw[:size]), check=False)
    except Exception as e:  # noqa: BLE001 - nibabel raises a zoo of types for broken headers
        raise CorruptFileError(p, f"cannot decode NIfTI header ({type(e).__name__}: {e})") from None
    affine = np.asarray(img.affine if img.affine is not None else np.eye(4), dtype=np.float64)
    meta: dict[str, Any] = {"path": str(p), "format": "nifti", "source_dtype": str(img.get_data_dtype()),
                            "rescale_in_header": nifti_rescaled(img)}
    nifti_geometry_notes(raw_header, affine, meta)
    meta["geometry"] = "trivial" if any(k in REFUSING_NOTES for k, _ in meta.get("geometry_notes", [])) else "header"
    return img, affine, meta


def canonical_grid(shape: Sequence[int], affine: np.ndarray) -> tuple[tuple[int, int, int], tuple[float, float, float]]:
    """``(shape_zyx, spacing_zyx)`` of the canonical volume an ``(i, j, k)`` array of ``shape`` with ``affine``
    becomes (:func:`trace_bench.volume.from_xyz`), without building it."""
    from .read_options import layout_spacing_axes

    aff = np.asarray(affine, dtype=np.float64)
    axes = layout_spacing_axes(_layout_of(aff))
    norms = np.sqrt((aff[:3, :3] ** 2).sum(axis=0))
    shape_zyx, spacing_zyx = [0, 0, 0], [0.0, 0.0, 0.0]
    for n, c in enumerate(axes):
        shape_zyx[c], spacing_zyx[c] = int(shape[n]), float(norms[n])
    return tuple(shape_zyx), tuple(spacing_zyx)  # type: ignore[return-value]


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


def _check_sitk_header(path: Path, what: str) -> HeaderInfo | None:
    """Before ITK opens anything: the data files a NRRD / MetaImage header names (inside its folder, regular,
    :func:`trace_bench.inputs.detached_files`), a zero voxel size, and the compressed stream verified to
    its end (:func:`verify_stream`)."""
    from .inputs import InputError, detached_files, read_header

    try:
        info = read_header(path)
        files = detached_files(path)
    except InputError as e:
        raise CorruptFileError(e.path, e.reason) from None
    if info is None:
        return None
    for key, field in _SPACING_FIELDS.items():
        text = info.fields.get(key, "")
        try:
            vals = [float(t) for t in text.replace(",", " ").split()]
        except ValueError:
            continue
        if any(v == 0 for v in vals):
            raise InvalidVolumeError(path, f"the header's {field} ({text}) has a zero voxel size: the spacing is "
                                           f"unknown and ITK cannot read it; fix the header ({what})")
    if info.compression in ("gzip", "zlib"):  # bzip2: libbz2 checks its block and stream CRCs itself
        if files:
            skip = max(0, int(float(info.fields.get("headersize", "0") or 0))) if info.format == "mha" else 0
            for f in files:
                try:
                    verify_stream(f, skip, info.compression)
                except CorruptFileError as e:
                    raise CorruptFileError(path, f"data file {f.name!r}: {e.reason}") from None
        elif info.data_offset is not None:
            verify_stream(path, info.data_offset, info.compression)
    return info


def _read_sitk(path: Path, what: str) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    import SimpleITK as sitk

    info = _check_sitk_header(path, what)
    try:
        reader = sitk.ImageFileReader()
        reader.SetFileName(str(path))
        reader.ReadImageInformation()  # header only: size and pixel type, no voxels
        check_declared_size(path, tuple(int(s) for s in reader.GetSize()),
                            _sitk_pixel_bytes(reader.GetPixelID(), reader.GetNumberOfComponents()))
        image = sitk.ReadImage(str(path))
    except RuntimeError as e:
        msg = str(e).strip().splitlines()
        detail = next((m for m in msg if "ERROR" in m.upper() or "exception" in m.lower()), msg[-1] if msg else "")
        detail = re.sub(r"^.*?(?:\.cxx|\.h|\.hxx|\.txx):\d+:\s*", "", detail.strip())  # no ITK source lines
        raise CorruptFileError(path, f"cannot decode {what} ({detail.strip()[:200]})") from None
    try:
        data, aff = _sitk_to_xyz(image)
    except InvalidVolumeError as e:
        raise InvalidVolumeError(path, e.reason) from None
    meta: dict[str, Any] = {"source_dtype": str(data.dtype), "source_shape": list(np.transpose(data, (2, 1, 0)).shape),
                            "rescale_in_header": False}
    if info is not None and info.data_names:
        meta["data_files"] = list(info.data_names)
    sitk_geometry_notes(info, aff, meta)
    return data, aff, meta


#: DICOM tags of the HU rescale (PS3.3 C.11.1.1.2: both or neither)
DICOM_INTERCEPT, DICOM_SLOPE = "0028|1052", "0028|1053"


def _dicom_rescale(files: Sequence[str]) -> str:
    """``both`` / ``none`` / ``slope only`` / ``intercept only``: the rescale tags of the series' first file."""
    import SimpleITK as sitk

    r = sitk.ImageFileReader()
    r.SetFileName(str(files[0]))
    try:
        r.ReadImageInformation()
    except RuntimeError:
        return "unknown"
    has_i, has_s = r.HasMetaDataKey(DICOM_INTERCEPT), r.HasMetaDataKey(DICOM_SLOPE)
    if has_i and has_s:
        return "both"
    return "none" if not (has_i or has_s) else "slope only" if has_s else "intercept only"


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
    rescale = _dicom_rescale(files)
    reader.SetFileNames(files)
    try:
        image = reader.Execute()
    except RuntimeError as e:
        raise CorruptFileError(folder, f"cannot decode DICOM series ({str(e).strip().splitlines()[-1][:200]})") from None
    data, aff = _sitk_to_xyz(image)
    return data, aff, {"source_dtype": str(data.dtype), "source_shape": [len(files)] + list(data.shape[1::-1]),
                       "dicom_files": len(files), "dicom_rescale": rescale, "rescale_in_header": rescale == "both"}


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
    hidden: list[str] = []
    try:
        if path.is_dir():
            images = [f for f in path.iterdir() if f.suffix.lower() in IMAGE_SLICE_SUFFIXES]
            hidden = sorted(f.name for f in images if f.name.startswith("."))
            files = sorted((f for f in images if not f.name.startswith(".")), key=_natural_key)
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
    meta: dict[str, Any] = {"source_dtype": str(arr.dtype), "source_shape": list(arr.shape), "slices": len(slices),
                            "rescale_in_header": False}
    if hidden:
        meta["warnings"] = [f"{path}: {len(hidden)} hidden image file(s) not read as slices (e.g. {hidden[0]})"]
    return arr, meta


def _read_numpy(path: Path) -> tuple[np.ndarray, dict[str, Any]]:
    """A ``.npy`` array, or one array of a ``.npz`` (zip members are CRC-checked as they are read)."""
    import zipfile

    _check_numpy_size(path)
    try:
        obj = np.load(str(path), allow_pickle=False)
    except (ValueError, OSError, EOFError, zlib.error, zipfile.BadZipFile) as e:
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
            except (ValueError, OSError, EOFError, zlib.error, zipfile.BadZipFile) as e:
                raise CorruptFileError(path, f"cannot decode array {key!r} ({e})") from None
    else:
        arr = obj
    return arr, {"source_dtype": str(arr.dtype), "source_shape": list(arr.shape), "rescale_in_header": False}


def read_raw(path: str | Path, fmt: str | None = None, spacing: "Spacing | str | None" = None, *,
             layout: str | None = None, reference: "Volume | None" = None
             ) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """Decode a file into ``(data_xyz, ras_affine, meta)`` without intensity conversion.

    ``data_xyz`` is indexed like the file (NIfTI / NRRD / MetaImage / DICOM index ``(i, j, k)``; NumPy and
    image stacks: array axes ``(0, 1, 2)`` reversed, so that the default reading is the array as
    ``(z, y, x)`` in LPS). The path is checked first (:func:`trace_bench.inputs.check_input`: a FIFO,
    device or detached data file outside the folder is refused by its type, never opened).

    Geometry (:mod:`trace_bench.read_options`): ``layout`` (a code or ``reference``) and ``spacing``
    (``(z, y, x)`` mm or ``reference``) say how to read a file whose header has no real geometry; they
    replace the header's (:func:`apply_read_geometry`). ``reference``: the paired reference case's
    :class:`Volume`, needed by ``reference`` values. Formats without geometry (npy, png) need a spacing.
    ``meta["geometry"]``: ``header`` (real geometry in the file), ``trivial`` (the header has none, or an
    ambiguous one: ``meta["geometry_notes"]`` says why), ``user`` or ``reference`` (the options set it),
    ``none`` (npy / png: spacing from the user, orientation by the format's rule).
    """
    from .inputs import InputError, check_input

    p = Path(path)
    if not p.exists() and not p.is_symlink():
        raise VolumeError(p, "no such file or folder")
    try:
        check_input(p)
    except InputError as e:
        raise VolumeError(e.path, e.reason) from None
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
        data = np.transpose(arr, (2, 1, 0))
        aff = None  # type: ignore[assignment]
    meta["format"] = fmt
    meta["path"] = str(p)
    data, aff = apply_read_geometry(data, aff, meta, layout=layout, spacing=spacing, reference=reference)
    reversed_index = fmt in ("npy", "png")  # their index order is the array's (0, 1, 2) = data_xyz reversed
    meta["index_shape"] = [int(n) for n in (data.shape[::-1] if reversed_index else data.shape)]
    meta["index_affine"] = (aff[:, [2, 1, 0, 3]] if reversed_index else aff).tolist()
    return data, aff, meta


def _spacing_value(spacing: "Spacing | str | None", path: object) -> "Spacing | str | None":
    if spacing is None or isinstance(spacing, tuple) and len(spacing) == 3 and not isinstance(spacing[0], str):
        return spacing if spacing is None else tuple(float(s) for s in spacing)  # type: ignore[return-value]
    if isinstance(spacing, str) and spacing.strip().lower() == "reference":
        return "reference"
    try:
        return parse_spacing(spacing)  # type: ignore[arg-type]
    except SpacingError as e:
        raise SpacingError(path, e.reason) from None


def _need_reference(reference: "Volume | None", key: str, path: object) -> "Volume":
    from .errors import ConfigError

    if reference is None:
        raise ConfigError(f"{path}: {key}=reference needs the paired reference case, and there is none (a case "
                          "without a reference volume, or a folder read outside `run`)")
    return reference


def apply_read_geometry(data_xyz: np.ndarray, aff: "np.ndarray | None", meta: dict[str, Any], *,
                        layout: str | None, spacing: "Spacing | str | None",
                        reference: "Volume | None") -> tuple[np.ndarray, np.ndarray]:
    """Give ``data_xyz`` the geometry the user stated (rules of :func:`read_raw`); returns ``(data, affine)``.

    * ``layout=header``: the header as written, confirmed by the user (its notes no longer refuse it).
    * ``layout=reference``: the array is on the reference case's grid. Its shape (in this reader's index
      order) must equal either the reference file's own index shape (``meta["index_shape"]``: the reference
      file's affine is used) or the canonical ``(z, y, x)`` shape (array read as ``(z, y, x)``, LPS, with
      the reference's canonical affine). When both fit and mean different grids it is refused (say the
      layout code).
    * ``layout=CODE``: the affine of :func:`trace_bench.read_options.layout_affine` with the voxel sizes
      of ``spacing`` (``(z, y, x)`` mm or ``reference``, each index axis given the size along the patient
      axis its letter names) or, without one, the header's (unknown when the header has none: scoring
      then maps the grid by extent) and the header's origin when it has a real one.
    * ``spacing`` alone: the header's (or the format rule's) orientation, the user's voxel sizes.
    """
    from .errors import ConfigError
    from .read_options import CANONICAL_LAYOUT, layout_affine, layout_spacing_axes, option_hint, parse_layout

    path = meta.get("path")
    sp = _spacing_value(spacing, path)
    lay = None if layout is None else parse_layout(layout)
    no_geometry = aff is None  # npy / png
    notes = meta.get("geometry_notes", [])
    trivial = any(k in REFUSING_NOTES for k, _ in notes)
    header_spacing_known = not no_geometry and not any(k in ("no_geometry", "zero_spacing") for k, _ in notes)
    if lay == "header":
        if no_geometry:
            raise ConfigError(f"{path}: layout=header: {meta.get('format')} files have no header; give a layout code "
                              f"(e.g. {option_hint('layout', CANONICAL_LAYOUT)}) or layout=reference")
        if sp is not None:
            raise ConfigError(f"{path}: layout=header keeps the header's voxel sizes; drop spacing= (or give a layout "
                              "code with it)")
        meta["geometry_notes"] = [[k, t] for k, t in notes if k == "inconsistent"]
        meta.update(geometry="user", read_layout="header (confirmed by the user)", spacing_known=True)
        return data_xyz, np.asarray(aff, dtype=np.float64)
    if lay == "reference":
        ref = _need_reference(reference, "layout", path)
        if isinstance(sp, tuple):
            raise ConfigError(f"{path}: layout=reference takes the reference case's spacing too; drop spacing=")
        stored = np.transpose(data_xyz, (2, 1, 0)) if no_geometry else data_xyz  # the reader's index order
        shape = tuple(int(n) for n in stored.shape)
        idx_shape = tuple(int(n) for n in ref.meta.get("index_shape") or ())
        idx_aff = ref.meta.get("index_affine")
        canon_aff = np.asarray(ref.affine, dtype=np.float64)
        fits_file = idx_aff is not None and shape == idx_shape
        fits_canon = shape == tuple(int(n) for n in ref.shape)
        if fits_file and fits_canon:
            same = np.allclose(np.asarray(idx_aff, dtype=np.float64)[:, [2, 1, 0, 3]], canon_aff, atol=1e-4)
            if not same:
                raise ConfigError(f"{path}: layout=reference is ambiguous: shape {shape} fits both the reference "
                                  f"file's own index order (layout {_layout_of(np.asarray(idx_aff))}) and "
                                  f"trace-bench's (z, y, x) order (layout {CANONICAL_LAYOUT}); give the layout code "
                                  "instead, e.g. "
                                  f"{option_hint('layout', CANONICAL_LAYOUT)}")
            fits_file = False
        if fits_file:
            data_xyz, aff = stored, np.asarray(idx_aff, dtype=np.float64)
            how = f"the reference file's grid (layout {_layout_of(aff)})"
        elif fits_canon:
            data_xyz, aff = np.transpose(stored, (2, 1, 0)), canon_aff
            how = f"the reference's (z, y, x) grid (layout {CANONICAL_LAYOUT})"
        else:
            want = " or ".join(str(s) for s in ([idx_shape] if idx_aff is not None else []) + [tuple(ref.shape)])
            raise InvalidVolumeError(path, f"layout=reference: array of shape {shape} (this reader's index order) is "
                                           f"not on the reference case's grid {want} ({ref.meta.get('path')})")
        meta["geometry_notes"] = [[k, t] for k, t in notes if k == "inconsistent"]
        meta.update(geometry="reference", read_layout=f"reference: {how}", spacing_source="reference case",
                    spacing_known=True, source_orientation=_layout_of(aff), reference_path=ref.meta.get("path"))
        return data_xyz, aff
    if lay is not None:
        eff = lay[::-1] if no_geometry else lay  # npy / png: the code names array axes (0, 1, 2) = data_xyz reversed
        axes = layout_spacing_axes(eff)
        if isinstance(sp, tuple):
            per_index = [sp[a] for a in axes]
            sp_src, sp_known = "user", True
        elif sp == "reference":
            ref = _need_reference(reference, "spacing", path)
            per_index = [ref.spacing[a] for a in axes]
            sp_src, sp_known = "reference case", True
        elif not no_geometry:
            per_index = list(np.sqrt((np.asarray(aff)[:3, :3] ** 2).sum(axis=0)))
            sp_src, sp_known = ("file header" if header_spacing_known else "unknown (none in the header; mapped by "
                                "extent)"), header_spacing_known
        else:
            raise SpacingError(path, f"{meta.get('format')} files carry no voxel spacing; add "
                                     f"{option_hint('spacing', 'z,y,x')} (mm) or spacing=reference")
        origin = tuple(np.asarray(aff)[:3, 3]) if aff is not None and not trivial else None
        aff = layout_affine(eff, per_index, origin)
        meta["geometry_notes"] = [[k, t] for k, t in notes if k == "inconsistent"]
        if not sp_known:
            _note(meta, "spacing_unknown", "voxel size not in the header: the grid is mapped onto the reference by "
                                           "extent; add spacing=z,y,x or spacing=reference for the true size")
        meta.update(geometry="user", read_layout=lay, spacing_source=sp_src, source_orientation=lay,
                    spacing_known=sp_known)
        return data_xyz, aff
    if no_geometry:
        if sp is None:
            raise SpacingError(path, f"{meta.get('format')} files carry no voxel spacing; add "
                                     f"{option_hint('spacing', 'z,y,x')} (mm) or spacing=reference")
        if sp == "reference":
            sp = tuple(_need_reference(reference, "spacing", path).spacing)
            meta["spacing_source"] = "reference case"
        else:
            meta["spacing_source"] = "user"
        meta.update(geometry="none", read_layout=f"{CANONICAL_LAYOUT} (format rule: array (z, y, x), inferior first)",
                    source_orientation=f"none in the file ({CANONICAL_LAYOUT} by the format rule)")
        from .volume import lps_affine

        return data_xyz, lps_affine(sp)  # type: ignore[arg-type]
    if sp is not None:
        if sp == "reference":
            canon = _need_reference(reference, "spacing", path).spacing
            sp = (canon[0], canon[1], canon[2])
            meta["spacing_source"] = "reference case (overrides file)"
        else:
            meta["spacing_source"] = "user (overrides file)"
        aff = _replace_spacing(np.asarray(aff), sp)  # type: ignore[arg-type]
        meta["geometry_notes"] = [[k, t] for k, t in notes if k != "zero_spacing"]
    meta["geometry"] = "trivial" if any(k in REFUSING_NOTES for k, _ in meta.get("geometry_notes", [])) else "header"
    return data_xyz, np.asarray(aff, dtype=np.float64)


def _replace_spacing(aff: np.ndarray, spacing_zyx: Spacing) -> np.ndarray:
    """``aff`` with each index axis' voxel size replaced by the spacing of the canonical axis it runs along
    (the affine's axis codes decide which of z, y, x that is)."""
    out = aff.copy()
    cols = out[:3, :3]
    norms = np.sqrt((cols ** 2).sum(axis=0))
    norms[norms == 0] = 1.0
    ras_axis = np.argmax(np.abs(cols), axis=0)  # 0 = x (R/L), 1 = y (A/P), 2 = z (S/I) per index axis
    zyx = {0: 2, 1: 1, 2: 0}
    sizes = np.array([spacing_zyx[zyx[int(a)]] for a in ras_axis], dtype=np.float64)
    out[:3, :3] = cols / norms * sizes
    return out


def read_volume(path: str | Path, *, convention: "str | Convention | None" = None, spacing: "Spacing | str | None" = None,
                fmt: str | None = None, layout: str | None = None, reference: "Volume | None" = None) -> Volume:
    """Read any supported file or folder as a canonical :class:`Volume` in HU (LPS, (z, y, x)).

    ``layout`` / ``spacing`` / ``reference``: see :func:`read_raw`. Intensity: ``convention=None`` accepts
    only unmistakable HU (:func:`trace_bench.intensity.suggest_convention`, including the HU + offset
    check for integer files without a rescale); a DICOM series with only one of RescaleSlope /
    RescaleIntercept is refused unless a convention is given (then read with a warning).
    """
    data, aff, meta = read_raw(path, fmt=fmt, spacing=spacing, layout=layout, reference=reference)
    data = validate_array(data, path)
    partial = meta.get("dicom_rescale") in ("slope only", "intercept only")
    given = convention is not None and str(getattr(convention, "spec", convention)) != "auto"
    if partial and not given:
        from .read_options import option_hint

        has, lacks = (("RescaleSlope", "RescaleIntercept") if meta["dicom_rescale"] == "slope only"
                      else ("RescaleIntercept", "RescaleSlope"))
        raise ConventionError(path, f"the DICOM series has {has} but no {lacks} (the standard requires both): its "
                                    "values cannot be mapped to HU; say how with "
                                    f"{option_hint('convention', 'hu+1024')} (stored = HU + 1024) or another convention")
    conv, reason = _resolve_convention(data, convention, path, meta)
    if partial:
        meta.setdefault("warnings", []).append(
            f"{Path(path).name}: DICOM series with {meta['dicom_rescale']} (RescaleSlope / RescaleIntercept): "
            f"read with the given convention {conv.spec} on the values as decoded")
    hu = conv.to_hu(data)
    meta.update(convention=conv.spec, convention_reason=reason)
    return from_xyz(hu, aff, meta)


def read_label_map(path: str | Path, *, spacing: "Spacing | str | None" = None, fmt: str | None = None,
                   threshold: float | None = None, layout: str | None = None,
                   reference: "Volume | None" = None) -> Volume:
    """Read an integer label map (0 = background) into the canonical grid (LPS, (z, y, x)).

    The values are kept as labels (no intensity convention); they are stored in the float32
    ``array`` and are exact integers (``volume.array.astype(np.int32)`` recovers them). Soft
    masks (values in [0, 1], e.g. MedSyn's) need ``threshold`` (label = value >= threshold).
    """
    data, aff, meta = read_raw(path, fmt=fmt, spacing=spacing, layout=layout, reference=reference)
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


def _resolve_convention(data: np.ndarray, convention: "str | Convention | None", path: object,
                        meta: dict[str, Any] | None = None) -> tuple[Convention, str]:
    if convention is not None and str(getattr(convention, "spec", convention)) != "auto":
        return parse_convention(convention, path), "given by the user or adapter"
    meta = meta or {}
    try:
        integer = bool(np.issubdtype(np.dtype(str(meta.get("source_dtype", data.dtype))), np.integer))
    except TypeError:
        integer = bool(np.issubdtype(data.dtype, np.integer))
    return suggest_convention(data, path, integer_without_rescale=integer and not meta.get("rescale_in_header"))


def check_reader_environment() -> None:
    """Validate the readers' environment variables up front (one-line :class:`ConfigError`), so a run or a
    command fails at its start rather than on every volume: ``TRACE_BENCH_MAX_VOLUME_BYTES``."""
    max_volume_bytes()


def write_nifti(volume: Volume, path: str | Path) -> Path:
    """Write ``volume`` as NIfTI (float32 HU) with its RAS affine; atomic (temp file + rename)."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    suffix = ".nii.gz" if out.name.endswith(".nii.gz") else ".nii"
    with atomic_path(out, suffix) as tmp:
        nib.save(to_nifti(volume), str(tmp))
    return out


def check_output_path(dst: str | Path, sources: Sequence[str | Path], *, force: bool = False,
                      flag: str = "--force") -> Path:
    """Refuse to write ``dst`` when it is one of the input files (``sources``, with their detached data
    files) or lies inside an input folder, and, without ``force``, when it already exists. One-line
    :class:`~trace_bench.errors.ConfigError` naming the file; returns ``dst``."""
    from .errors import ConfigError
    from .inputs import InputError, detached_files

    out = Path(dst)
    real = os.path.realpath(out)
    for src in sources:
        s = Path(src)
        files = [s]
        try:
            files += detached_files(s)
        except InputError:
            pass
        for f in files:
            fr = os.path.realpath(f)
            if real == fr or (out.exists() and f.exists() and os.path.samefile(out, f)):
                raise ConfigError(f"{out}: is the input {f}; refusing to overwrite an input (choose another output)")
            if os.path.isdir(fr) and real.startswith(fr.rstrip(os.sep) + os.sep):
                raise ConfigError(f"{out}: lies inside the input folder {f}; refusing to write into an input "
                                  "(choose an output outside it)")
    if (out.exists() or out.is_symlink()) and not force:
        raise ConfigError(f"{out}: already exists; pass {flag} to replace it")
    if out.is_dir():
        raise ConfigError(f"{out}: is a folder; expected a file name")
    return out
