"""CT-RATE (Hamamci et al., chest CT + reports; the data GenerateCT, CT-CLIP and TRACE train on).

CT-RATE's ``.nii.gz`` volumes cannot be used as stored: their values are the scanner's stored
integers and their headers do not carry the acquisition geometry. The dataset ships one metadata
row per volume, and every official pipeline takes intensity and spacing from it. Facts (read, not
copied):

* Layout (Hugging Face ``ibrahimhamamci/CT-RATE``, folder ``dataset/``): volumes
  ``{train,valid}/{split}_{patient}/{split}_{patient}_{scan}/{split}_{patient}_{scan}_{recon}.nii.gz``
  (e.g. ``train_1_a_1.nii.gz``); metadata ``metadata/train_metadata.csv`` and
  ``metadata/validation_metadata.csv``; reports ``radiology_text_reports/train_reports.csv`` and
  ``.../validation_reports.csv``.
* Metadata columns (header of ``validation_metadata.csv``, quoted in a public download script):
  ``VolumeName, Manufacturer, SeriesDescription, ManufacturerModelName, PatientSex, PatientAge,
  ReconstructionDiameter, ..., ImagePositionPatient, ImageOrientationPatient, SliceLocation, ...,
  Rows, Columns, XYSpacing, RescaleIntercept, RescaleSlope, RescaleType, NumberofSlices, ZSpacing,
  StudyDate``; a row reads ``valid_1_a_1.nii.gz, ..., M, 036Y, ..., "[-166, 9, 56.2998657]",
  "[1, 0, 0, 0, 1, 0]", ..., "[0.341796875, 0.341796875]", -1024, 1, , 251, 1.5, 20210427``.
  ``VolumeName`` is the file name *with* ``.nii.gz``.
* Intensity (``ibrahimethemhamamci/CT-CLIP`` ``data_preprocess/preprocess_ctrate_valid.py`` and
  ``scripts/data_inference_nii.py: nii_img_to_tensor``): ``HU = RescaleSlope * nib.get_fdata() +
  RescaleIntercept``, looked up by ``df['VolumeName'] == file_name``. (They then clip to
  [-1000, 1000] and divide by 1000 for training; we keep full HU.)
* Spacing (same files): ``XYSpacing`` is a string ``"[dx, dy]"`` (CT-CLIP keeps only its first number),
  ``ZSpacing`` a number; the NIfTI's first two axes are in-plane and the third is the slice axis
  (CT-CLIP transposes ``(2, 0, 1)`` to put slices first; GenerateCT's ``videotextdataset.py`` slices
  ``nifti[:, :, k]``).
* Orientation: a public CT-RATE preprocessing script (``get_affine_from_metadata``) builds the
  DICOM (LPS) affine with array axis 0 along ``ImageOrientationPatient[0:3]`` (row direction) times
  ``XYSpacing[0]``, axis 1 along ``ImageOrientationPatient[3:6]`` times ``XYSpacing[1]``, axis 2
  along their cross product times ``ZSpacing``, origin ``ImagePositionPatient``. We use the same
  convention (then LPS -> RAS for the canonical affine); slice 0 is therefore inferior for the
  usual ``[1, 0, 0, 0, 1, 0]``, as GenerateCT's authors write it (``forithmus/VLM3D-Dockers``).

Metadata lookup rule (first that applies; implemented in :mod:`baselines.ctrate_tables`, see the
README section "CT-RATE"):

1. ``CTRateAdapter(metadata=...)`` (Python API): one CSV path or a list;
2. ``$TRACE_BENCH_CTRATE_METADATA``: one or more CSV paths separated by ``os.pathsep`` (``:``);
3. otherwise the volume's folder and then each parent folder (nearest first, up to
   :data:`SEARCH_LEVELS` levels): the first folder holding any of ``metadata.csv``,
   ``{split}_metadata.csv``, ``metadata/{split}_metadata.csv`` or ``dataset/metadata/{split}_metadata.csv``
   (``split`` = ``train`` or ``validation``, the volume's own split first) supplies every CSV of that
   kind it holds.

A volume whose name has no row in the CSVs found, or a row missing a needed value, is refused with a
:class:`~trace_bench.errors.VolumeError` naming the volume and the CSV(s): never a silent default.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from trace_bench.errors import ConfigError, InvalidVolumeError, VolumeError
from trace_bench.io import read_raw
from trace_bench.volume import Volume, from_xyz, validate_array

from .base import NO, Adapter, Detection, add_warning, nifti_header, register_adapter, strip_volume_suffix
from .ctrate_prompts import PAPER_TEMPLATE, PromptError, build_prompt
from .ctrate_tables import METADATA_ENV, NAME_RE, REPORTS_ENV, REQUIRED_METADATA, lookup, resolve_tables

_NUMBER = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")


def parse_numbers(text: str, n: int | None, *, what: str, where: str) -> list[float]:
    """Numbers in a CT-RATE list cell such as ``"[0.75, 0.75]"`` (exactly ``n`` of them if given)."""
    vals = [float(t) for t in _NUMBER.findall(text or "")]
    if not vals or (n is not None and len(vals) != n) or not all(math.isfinite(v) for v in vals):
        want = f"{n} number(s)" if n is not None else "numbers"
        raise InvalidVolumeError(where, f"{what} is {text!r}; expected {want}")
    return vals


def metadata_affine(row: dict[str, str], where: str, spacing_xyz: tuple[float, float, float]) -> tuple[np.ndarray, str]:
    """RAS affine of the stored array ``(i, j, k)`` from ``ImageOrientationPatient`` / ``ImagePositionPatient``.

    Axis i runs along the row cosine ``IOP[0:3]``, j along the column cosine ``IOP[3:6]``, k along
    their cross product (the convention of the public ``get_affine_from_metadata``, module docstring);
    origin ``ImagePositionPatient`` (0 when absent). DICOM is LPS, so the result is ``diag(-1, -1, 1) @ lps``.
    Returns ``(affine, note)``; without ``ImageOrientationPatient`` axial LPS is assumed and said so.
    """
    iop_text = (row.get("ImageOrientationPatient") or "").strip()
    if iop_text:
        iop = parse_numbers(iop_text, 6, what="ImageOrientationPatient", where=where)
        r, c = np.array(iop[:3]), np.array(iop[3:])
        if not (np.isclose(np.linalg.norm(r), 1, atol=1e-3) and np.isclose(np.linalg.norm(c), 1, atol=1e-3)
                and abs(float(np.dot(r, c))) < 1e-3):
            raise InvalidVolumeError(where, f"ImageOrientationPatient {iop_text!r} is not two orthonormal directions")
        note = f"CT-RATE metadata ImageOrientationPatient {iop_text}"
    else:
        r, c = np.array([1.0, 0.0, 0.0]), np.array([0.0, 1.0, 0.0])
        note = "axial LPS assumed (no ImageOrientationPatient in the CT-RATE metadata)"
    n = np.cross(r, c)
    ipp_text = (row.get("ImagePositionPatient") or "").strip()
    origin = np.array(parse_numbers(ipp_text, 3, what="ImagePositionPatient", where=where)) if ipp_text else np.zeros(3)
    lps = np.eye(4)
    lps[:3, 0] = r * spacing_xyz[0]
    lps[:3, 1] = c * spacing_xyz[1]
    lps[:3, 2] = n * spacing_xyz[2]
    lps[:3, 3] = origin
    return np.diag([-1.0, -1.0, 1.0, 1.0]) @ lps, note


def _number(row: dict[str, str], col: str, where: str) -> float:
    text = (row.get(col) or "").strip()
    try:
        v = float(text)
    except ValueError:
        raise InvalidVolumeError(where, f"{col} is {text!r}; expected a number") from None
    if not math.isfinite(v):
        raise InvalidVolumeError(where, f"{col} is {text!r}; expected a finite number")
    return v


@register_adapter
class CTRateAdapter(Adapter):
    name = "ctrate"
    description = ("CT-RATE volumes {split}_{patient}_{scan}_{recon}.nii.gz: stored values -> HU by the metadata CSV's "
                   "RescaleSlope/RescaleIntercept; spacing XYSpacing/ZSpacing and orientation from the metadata, not "
                   f"the header (CSV: ${METADATA_ENV} or metadata/*_metadata.csv next to the data)")
    geometry_note = "from the CT-RATE metadata CSV (XYSpacing, ZSpacing, ImageOrientationPatient, ImagePositionPatient)"
    default_convention = "hu"
    convention_note = "HU = RescaleSlope * stored + RescaleIntercept from the CT-RATE metadata row (CT-CLIP preprocessing)"

    def __init__(self, spacing: Any = None, convention: str | None = None, layout: str | None = None, *,
                 metadata: "str | Path | Sequence[str | Path] | None" = None,
                 reports: "str | Path | Sequence[str | Path] | None" = None, template: str | None = None):
        super().__init__(spacing=spacing, convention=convention, layout=layout)
        self.metadata = _as_list(metadata)
        self.reports = _as_list(reports)
        self.template = template

    # --------------------------------------------------------------- discovery
    def is_candidate(self, path: Path) -> bool:
        p = Path(path)
        return p.is_file() and not p.name.startswith(".") and p.name.lower().endswith((".nii.gz", ".nii"))

    def list_files(self, folder: Path) -> list[Path]:
        return sorted(p for p in Path(folder).iterdir() if self.is_candidate(p))

    def case_id(self, path: Path) -> str:
        """``train_1_a_1.nii.gz`` -> ``train_1_a_1`` (``VolumeName`` without its extension)."""
        return strip_volume_suffix(Path(path).name)

    def metadata_row(self, path: str | Path) -> tuple[dict[str, str], Path]:
        """The metadata row of ``path`` and its CSV (lookup rule of the module docstring)."""
        p = Path(path)
        tables, how = resolve_tables(p, "metadata", self.metadata)
        if not tables:
            raise VolumeError(p, f"no CT-RATE metadata CSV: set ${METADATA_ENV}=path.csv or put metadata.csv / "
                                 "metadata/{train,validation}_metadata.csv in the volume's folder or a parent")
        return lookup(p, tables, kind="metadata", required=REQUIRED_METADATA)

    def input_key(self, path: Path) -> dict[str, Any]:
        """The metadata row the read uses (rescale, spacing, orientation): part of the case's cache key, so
        editing ``RescaleIntercept`` in the CSV recomputes the case. Empty when no row is found (the read
        then fails and says why)."""
        try:
            row, csv_path = self.metadata_row(Path(path))
        except (VolumeError, ConfigError):
            return {}
        return {"ctrate_metadata": {k: row[k] for k in sorted(row)}, "ctrate_metadata_csv": str(csv_path)}

    # --------------------------------------------------------------- reading
    def read(self, path: Path, *, spacing: Any = None, convention: str | None = None, layout: str | None = None,
             reference: Volume | None = None) -> Volume:
        """Stored values x RescaleSlope + RescaleIntercept (metadata row), geometry from the metadata."""
        p = Path(path)
        spacing = self._peer_spacing(p, spacing, layout, reference)
        conv = convention or self.convention
        if conv is not None and str(conv) not in ("hu", "auto"):
            raise ConfigError(f"{p}: --convention {conv} does not apply to '{self.name}': HU come from the metadata's "
                              "RescaleSlope/RescaleIntercept; read the file with --format nifti to apply a convention")
        row, csv_path = self.metadata_row(p)
        where = f"{p} (metadata row in {csv_path})"
        slope = _number(row, "RescaleSlope", where)
        intercept = _number(row, "RescaleIntercept", where)
        if slope == 0:
            raise InvalidVolumeError(where, "RescaleSlope is 0")
        xy = parse_numbers(row.get("XYSpacing", ""), 2, what="XYSpacing", where=where)
        dz = _number(row, "ZSpacing", where)
        if min(xy[0], xy[1], dz) <= 0:
            raise InvalidVolumeError(where, f"spacing XYSpacing {row.get('XYSpacing')} ZSpacing {dz} is not positive")
        data, header_aff, meta = read_raw(p, fmt="nifti")
        data = validate_array(data, p)
        h = nifti_header(p)
        user = self._user_spacing(spacing)
        sp_xyz = (xy[0], xy[1], dz) if user is None else (user[2], user[1], user[0])
        aff, orient_note = metadata_affine(row, where, sp_xyz)
        hu = np.asarray(data, dtype=np.float64) * slope + intercept
        meta.pop("spacing_source", None)
        for k in ("geometry_notes", "implied_layout", "index_shape", "index_affine", "nifti_codes"):
            meta.pop(k, None)  # the file header's geometry is not used: the metadata's is
        meta.update(adapter=self.name, path=str(p), convention="hu", geometry="metadata",
                    convention_reason=f"CT-RATE metadata: HU = {slope:g} * stored + {intercept:g}",
                    rescale_slope=slope, rescale_intercept=intercept, metadata_csv=str(csv_path),
                    spacing_source=(f"CT-RATE metadata XYSpacing {row.get('XYSpacing')} ZSpacing {row.get('ZSpacing')}"
                                    if user is None else "user (overrides CT-RATE metadata)"),
                    orientation_source=orient_note, geometry_in_file=False,
                    source_orientation=f"CT-RATE metadata ({orient_note})")
        if h is not None:
            zooms = tuple(float(z) for z in h.zooms[:3])
            meta["header_spacing_xyz"] = list(zooms)
            if user is None and not np.allclose(zooms, sp_xyz, rtol=0.01):
                add_warning(meta, f"{p.name}: header spacing {' x '.join(f'{z:g}' for z in zooms)} mm (x,y,z) differs from "
                                  f"the CT-RATE metadata ({' x '.join(f'{z:g}' for z in sp_xyz)}); the metadata was used")
        if abs(xy[0] - xy[1]) > 1e-6 * max(xy):
            add_warning(meta, f"{p.name}: anisotropic XYSpacing {row.get('XYSpacing')}: taken as [x, y] (axis 0, axis 1)")
        if any(part.endswith("_fixed") for part in p.parts[:-1]):
            add_warning(meta, f"{p.name}: read from a CT-RATE '*_fixed' folder; the metadata rescale was applied: check "
                              "that these files still hold stored values, not HU (HU range in `trace-bench inspect`)")
        vol = from_xyz(hu.astype(np.float32), aff, meta)
        return vol

    # --------------------------------------------------------------- prompts
    def prompt(self, path: Path) -> str | None:
        """The paper's prompt ``"{age} years old {sex}: {impression}"`` from the CT-RATE reports CSV.

        Reports CSV: ``CTRateAdapter(reports=...)``, ``$TRACE_BENCH_CTRATE_REPORTS`` or found next to
        the data (``reports.csv``, ``radiology_text_reports/{split}_reports.csv``, ...). Without a
        reports CSV, the generic sidecar ``.txt`` rule applies. A volume missing from the reports or
        metadata CSV raises :class:`~trace_bench.inputs.InputError` (one line naming the CSV), which
        :func:`trace_bench.cases.pair_cases` records as a problem row.
        """
        from trace_bench.inputs import InputError

        p = Path(path)
        reports, _ = resolve_tables(p, "reports", self.reports)
        if not reports:
            return super().prompt(p)
        try:
            rep_row, rep_csv = lookup(p, reports, kind="reports", required=("VolumeName", "Impressions_EN"))
            meta_row, meta_csv = self.metadata_row(p)
            return build_prompt(rep_row, meta_row, self.template or PAPER_TEMPLATE,
                                where=f"{rep_csv} / {meta_csv}")
        except (VolumeError, PromptError) as e:
            raise InputError(getattr(e, "path", None) or p, getattr(e, "reason", None) or str(e)) from None
        except ConfigError as e:  # an unreadable CSV: this case keeps no prompt, the others are unaffected
            raise InputError(p, str(e)) from None

    def detect(self, path: Path) -> Detection:
        p = Path(path)
        cid = strip_volume_suffix(p.name)
        if not NAME_RE.match(cid) or nifti_header(p) is None:
            return NO
        try:
            _, csv_path = self.metadata_row(p)
        except (VolumeError, ConfigError):
            return Detection(0.3, "CT-RATE volume name {split}_{patient}_{scan}_{recon}, but no metadata row found")
        return Detection(0.9, f"CT-RATE volume name and a metadata row in {csv_path}")


def _as_list(v: "str | Path | Iterable[str | Path] | None") -> list[Path]:
    if v is None:
        return []
    if isinstance(v, (str, Path)):
        return [Path(v)]
    return [Path(x) for x in v]


__all__ = ["CTRateAdapter", "METADATA_ENV", "REPORTS_ENV", "metadata_affine", "parse_numbers"]
