"""``trace-bench doctor DIR...``: what a generator's folder holds and how ``run`` must read it.

One :class:`FolderReport` per folder: the adapter that reads it (detected, or given), every volume file
with its format, shape ``(z, y, x)``, spacing, header orientation, dtype, a sampled value range and the
intensity convention that range implies, the geometry warnings of its header (the words of
:func:`trace_bench.geometry.volume_warnings`, as in ``inspect`` and ``run``'s ``warnings.csv``), the
pairing with the reference folder (matched / unmatched case ids) and the reading options that read it
right, as the ``run`` command (``--method NAME=DIR[:FORMAT]``, ``--read NAME.KEY=VALUE``) and the TOML
(``[methods.NAME]`` with ``path``, ``format``, ``convention``, ``spacing``, ``layout``).

Fast: NIfTI files are read header-only (the header's geometry notes are exact, nothing else is decoded)
except the :data:`SAMPLE_FILES` files whose values are sampled (a few whole slices through nibabel's
array proxy); other formats are decoded for those files only. Nothing is guessed: an option the folder
needs but whose value cannot be told from the files (a layout when shapes do not match the reference)
is printed as ``CODE`` with the reason (a placeholder ``run`` refuses, so nothing runs on a guess).

Suggestion rules (per folder, from the sampled files; the first file that disagrees with another is named):

* ``format``: the auto-detected adapter (:func:`baselines.auto.detect_folder_adapter`) when it is not
  ``nifti``; ``npy`` / ``png-stack`` for arrays and slice stacks.
* ``convention``: from the value range (:func:`implied_convention`): plain HU needs none; ``[0, 1]`` ->
  ``unit`` (HU window -1000..1000 assumed: ``unit:-1024:600`` for MedSyn-style data), ``[-1, 1]`` ->
  ``symmetric``, HU + 1024 -> ``hu+1024``, ``[0, 255]`` integers -> ``byte``.
* ``layout`` / ``spacing`` for headers without geometry and for arrays: ``reference`` when every sampled
  file has the reference case's shape (its file's index order or trace-bench's ``(z, y, x)``);
  otherwise ``CODE`` / ``z,y,x`` placeholders.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .errors import ConfigError, TraceBenchError

#: files per folder whose voxel values are sampled (spread over the sorted list)
SAMPLE_FILES = 5
#: axial positions sampled per file (whole slices along the last stored axis)
SAMPLE_SLICES = 5


@dataclass
class FileReport:
    """One volume file, as the doctor saw it (``error`` set when it could not be read)."""

    path: str
    case_id: str
    format: str | None = None
    stored_shape: tuple[int, ...] | None = None  # the reader's index order
    shape_zyx: tuple[int, int, int] | None = None
    spacing_zyx: tuple[float, float, float] | None = None
    orientation: str | None = None  # header layout code (axis letters of the index axes)
    dtype: str | None = None
    value_range: tuple[float, float] | None = None  # sampled
    convention: str | None = None  # implied by the values (None: cannot tell)
    convention_note: str = ""
    geometry: str | None = None  # header | trivial | none (no geometry in the format)
    warnings: list[str] = field(default_factory=list)
    error: str | None = None


@dataclass
class FolderReport:
    folder: str
    name: str
    adapter: str
    adapter_reason: str
    files: list[FileReport]
    problems: list[str]  # discovery problems (one line each)
    reference: str | None = None
    matched: list[str] = field(default_factory=list)
    only_here: list[str] = field(default_factory=list)
    only_reference: list[str] = field(default_factory=list)
    options: dict[str, str] = field(default_factory=dict)  # reading options to give (KEY -> value)
    notes: list[str] = field(default_factory=list)  # why an option is suggested / cannot be told

    @property
    def format_option(self) -> str | None:
        return self.options.get("format")


def implied_convention(lo: float, hi: float, integer: bool, sample: np.ndarray | None = None,
                       rescaled: bool = False) -> tuple[str | None, str]:
    """``(convention, note)`` implied by a value range (module docstring); convention None: cannot tell."""
    from .intensity import offset_hu_problem

    if lo <= -500.0 and hi >= 50.0 and lo >= -4000.0 and hi <= 40000.0:
        if integer and not rescaled and sample is not None and offset_hu_problem(sample) is not None:
            return "hu+1024", "HU + 1024 (air near 0, padding below -1024)"
        return "hu", "plain HU"
    if 0.0 <= lo and hi <= 1.6:
        return "unit", "[0, 1]: unit = HU window -1000..1000 assumed (MedSyn-style data: unit:-1024:600)"
    if -1.6 <= lo and hi <= 1.6:
        return "symmetric", "[-1, 1]: symmetric = HU window -1000..1000 assumed"
    if integer and 0.0 <= lo and hi <= 255.0:
        return "byte", "[0, 255] bytes: byte = HU window -1000..1000 assumed"
    if -200.0 <= lo <= 200.0 and 1000.0 <= hi <= 70000.0:
        return "hu+1024", "air near 0, not -1000: HU + 1024"
    return None, f"values in [{lo:.4g}, {hi:.4g}] fit no known convention"


def _sample_nifti(img: Any) -> np.ndarray:
    n = int(img.shape[2]) if len(img.shape) >= 3 else 1
    ks = sorted({int(round(k)) for k in np.linspace(0, n - 1, min(SAMPLE_SLICES, n))})
    return np.concatenate([np.asarray(img.dataobj[:, :, k]).ravel() for k in ks])


def examine_file(path: Path, case_id: str, adapter: Any, *, sample: bool, name: str | None = None) -> FileReport:
    """What the doctor reports for one file (see the module docstring; never raises for a bad file). ``name``:
    the folder's method name, which the warnings' ``--read NAME.KEY=VALUE`` hints then spell."""
    from .geometry import volume_warnings
    from .io import canonical_grid, detect_format, read_nifti_header, read_raw
    from .volume import Volume

    rep = FileReport(str(path), case_id)
    generic = adapter.name in ("nifti", "npy", "png-stack", "dicom", "maisi")
    try:
        fmt = detect_format(path)
        rep.format = fmt
        values: np.ndarray | None = None
        meta: dict[str, Any] = {}
        if not generic:  # a peer adapter: its own layout and convention; read it as `run` would
            if not sample:
                return rep
            vol = adapter.read(path)
            rep.stored_shape = tuple(int(s) for s in vol.meta.get("source_shape") or vol.shape)
            rep.shape_zyx, rep.spacing_zyx = vol.shape, tuple(float(s) for s in vol.spacing)  # type: ignore[assignment]
            rep.dtype = str(vol.meta.get("source_dtype"))
            rep.geometry = str(vol.meta.get("geometry") or "adapter")
            rep.warnings = list(vol.meta.get("warnings") or [])
            rep.value_range = (float(vol.array.min()), float(vol.array.max()))
            rep.convention = vol.meta.get("convention")
            rep.convention_note = f"adapter {adapter.name}: {vol.meta.get('convention_reason')}"
            return rep
        if fmt == "nifti":
            img, affine, meta = read_nifti_header(path)
            rep.stored_shape = tuple(int(s) for s in img.shape)
            if sample:
                values = _sample_nifti(img)
        elif sample:
            try:
                data, affine, meta = read_raw(path)
            except TraceBenchError as e:
                if "voxel spacing" not in str(e):
                    raise
                data, affine, meta = read_raw(path, spacing=(1.0, 1.0, 1.0))  # geometry-free format: shape only
                meta["geometry"], meta["spacing_unknown"] = "none", True
            rep.stored_shape = tuple(int(s) for s in meta["index_shape"])
            from .intensity import sample_values

            values = sample_values(data)
        else:
            return rep
        rep.dtype = str(meta.get("source_dtype"))
        rep.geometry = meta.get("geometry")
        rep.orientation = meta.get("implied_layout")
        shape_xyz = rep.stored_shape[:3] if fmt not in ("npy", "png") else rep.stored_shape[:3][::-1]
        rep.shape_zyx, spacing = canonical_grid(shape_xyz, affine)
        if not meta.get("spacing_unknown"):
            rep.spacing_zyx = tuple(round(s, 6) for s in spacing)  # type: ignore[assignment]
        rep.warnings = volume_warnings(Volume(np.zeros((1, 1, 1), np.float32), (1.0, 1.0, 1.0), affine, meta), name)
        if values is not None and values.size:
            lo, hi = float(values.min()), float(values.max())
            rep.value_range = (lo, hi)
            integer = bool(np.issubdtype(np.dtype(rep.dtype or values.dtype), np.integer))
            rep.convention, rep.convention_note = implied_convention(lo, hi, integer, values,
                                                                     bool(meta.get("rescale_in_header")))
    except TraceBenchError as e:
        rep.error = str(e)
    except Exception as e:  # noqa: BLE001 - a bad file is a row, never an abort
        rep.error = f"{path}: {type(e).__name__}: {e}"
    return rep


def _layout(affine: np.ndarray) -> str:
    from .read_options import affine_layout

    return affine_layout(affine)


def _generic_adapter(folder: Path) -> str:
    """The generic adapter for the most common format among the folder's volume entries (``nifti`` if none)."""
    from baselines.auto import folder_entries

    from .io import detect_format

    counts: dict[str, int] = {}
    for e in folder_entries(folder):
        try:
            f = detect_format(e)
        except TraceBenchError:
            continue
        counts[f] = counts.get(f, 0) + 1
    best = max(counts, key=lambda k: counts[k]) if counts else "nifti"
    return {"npy": "npy", "png": "png-stack", "dicom": "dicom"}.get(best, "nifti")


def _spread(n: int, k: int) -> set[int]:
    return set() if n == 0 else {int(round(i)) for i in np.linspace(0, n - 1, min(k, n))}


def _reference_shapes(reference: Path | None, adapter: str) -> dict[str, tuple[tuple[int, ...], tuple[int, ...], str]]:
    """case id -> (stored index shape, canonical (z, y, x) shape, header layout code) of the reference files
    (headers only)."""
    from .cases import discover

    if reference is None:
        return {}
    found, _ = discover(reference, adapter, "reference")
    from .io import canonical_grid, detect_format, read_nifti_header, read_raw

    out = {}
    for cid, cf in found.items():
        try:
            if detect_format(cf.path) == "nifti":
                img, affine, _ = read_nifti_header(cf.path)
                stored = tuple(int(s) for s in img.shape[:3])
            else:
                data, affine, _ = read_raw(cf.path)
                stored = tuple(int(s) for s in data.shape)
            out[cid] = (stored, canonical_grid(stored, affine)[0], _layout(affine))
        except Exception:  # noqa: BLE001 - an unreadable reference file only loses its shape
            continue
    return out


def default_name(folder: Path) -> str:
    """The folder's name as a method name ``run`` accepts (:func:`trace_bench.config.check_method_name`):
    characters outside its rules become ``_``, so the printed command runs as printed."""
    from .config import METHOD_NAME_EXTRA, METHOD_NAME_MAX, check_method_name

    raw = Path(folder).resolve().name
    name = "".join(c if c.isalnum() or c in METHOD_NAME_EXTRA else "_" for c in raw)[:METHOD_NAME_MAX].rstrip(" .")
    if not name or not (name[0].isalnum() or name[0] in "_("):
        name = ("_" + name)[:METHOD_NAME_MAX].rstrip(" .") or "method"
    if name.upper() == "GT":
        name += "_"
    return check_method_name(name)


def examine_folder(folder: str | Path, name: str | None = None, *, fmt: str = "auto",
                   reference: str | Path | None = None, reference_format: str = "nifti") -> FolderReport:
    """The doctor's report of one folder (module docstring). ``fmt``: the adapter (``auto`` detects)."""
    from baselines import get_adapter
    from baselines.auto import detect_folder_adapter

    from .cases import discover

    folder = Path(folder)
    if not folder.is_dir():
        raise ConfigError(f"{folder}: not a folder")
    if name:
        from .config import check_method_name

        name = check_method_name(name)  # the printed command must run: a name `run` refuses is refused here
    else:
        name = default_name(folder)
    if fmt == "auto":
        try:
            adapter, why = detect_folder_adapter(folder)
        except TraceBenchError:
            generic = _generic_adapter(folder)
            adapter, why = get_adapter(generic), f"no peer writer recognised; read with the generic '{generic}' adapter"
    else:
        adapter, why = get_adapter(fmt), "given with --format"
    found, problems = discover(folder, adapter.name, name)
    ids = sorted(found)
    chosen = _spread(len(ids), SAMPLE_FILES)
    files = [examine_file(found[cid].path, cid, adapter, sample=i in chosen, name=name) for i, cid in enumerate(ids)]
    rep = FolderReport(str(folder), name, adapter.name, why, files,
                       [f"{p.path or p.case_id}: {p.reason}" for p in problems])
    ref_shapes: dict[str, tuple[tuple[int, ...], tuple[int, ...], str]] = {}
    if reference is not None:
        rep.reference = str(reference)
        ref_found, _ = discover(reference, reference_format, "reference")
        rep.matched = sorted(set(ids) & set(ref_found))
        rep.only_here = sorted(set(ids) - set(ref_found))
        rep.only_reference = sorted(set(ref_found) - set(ids))
        ref_shapes = _reference_shapes(Path(reference), reference_format)
    suggest_options(rep, ref_shapes)
    return rep


def suggest_options(rep: FolderReport, ref_shapes: dict[str, tuple[tuple[int, ...], tuple[int, ...], str]]) -> None:
    """Fill ``rep.options`` and ``rep.notes`` from the examined files (rules: module docstring)."""
    from .read_options import CANONICAL_LAYOUT

    if rep.adapter not in ("nifti", "auto"):
        rep.options["format"] = rep.adapter
    seen = [f for f in rep.files if f.error is None]
    sampled = [f for f in seen if f.value_range is not None]
    if rep.adapter in ("nifti", "npy", "png-stack", "dicom", "maisi"):
        convs = {f.convention for f in sampled}
        if len(convs) > 1:
            rep.notes.append("the sampled files disagree on the intensity convention: "
                             + ", ".join(f"{Path(f.path).name}: {f.convention}" for f in sampled))
        conv = next(iter(convs)) if len(convs) == 1 else None
        if conv is None and sampled:
            rep.options["convention"] = "CONVENTION"
            rep.notes.append(f"convention: cannot tell ({sampled[0].convention_note})")
        elif conv is not None and conv != "hu":
            rep.options["convention"] = conv
            rep.notes.append(f"convention={conv}: {sampled[0].convention_note}")
    from .geometry import orientation_text

    for f in seen:
        if f.geometry == "header" and f.orientation and f.case_id in ref_shapes:
            text = orientation_text(f.orientation, ref_shapes[f.case_id][2], rep.name)
            if text:  # a warning in `run`, not a refusal: no option is needed when the header is true
                rep.notes.append(f"{Path(f.path).name}: {text}; check one visually")
                break
    untrusted = [f for f in seen if f.geometry in ("trivial", "none")]
    if not untrusted:
        return
    fits_file = bool(ref_shapes) and all(f.case_id in ref_shapes and f.stored_shape is not None
                                         and tuple(f.stored_shape[:3]) == ref_shapes[f.case_id][0] for f in untrusted)
    fits_canon = bool(ref_shapes) and all(f.case_id in ref_shapes and f.stored_shape is not None
                                          and tuple(f.stored_shape[:3]) == ref_shapes[f.case_id][1] for f in untrusted)
    kind = "no geometry in the format" if all(f.geometry == "none" for f in untrusted) else "headers without geometry"
    if fits_file or fits_canon:
        rep.options["layout"] = "reference"
        rep.notes.append(f"layout=reference: {len(untrusted)} file(s) with {kind} have the reference case's shape "
                         f"({'its file order' if fits_file else 'trace-bench (z, y, x) order'}); check one visually")
        return
    if any(f.geometry == "trivial" for f in untrusted):
        rep.options["layout"] = "CODE"
        rep.notes.append(f"layout: {len(untrusted)} file(s) with {kind} and no reference shape to match; give the "
                         f"orientation code of the stored axes (e.g. {CANONICAL_LAYOUT} for a (z, y, x) array stored "
                         "inferior-first, LPS / RAS for NIfTI written with an (x, y, z) array)")
    else:
        rep.notes.append(f"layout: arrays are read by the format rule as (z, y, x) inferior-first (layout "
                         f"{CANONICAL_LAYOUT}); give layout=CODE if yours are stored otherwise")
    if any(f.spacing_zyx is None or f.geometry == "none" for f in untrusted) or any(
            f.spacing_zyx == (1.0, 1.0, 1.0) for f in untrusted):
        rep.options["spacing"] = "z,y,x"
        rep.notes.append("spacing: not in the files; give the voxel size z,y,x in mm")


def toml_value(v: str) -> str:
    return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'


#: option values the doctor prints when the files cannot tell (``run`` refuses them): kept out of the
#: printed command and TOML, listed by :func:`undecided` instead, so the printed command always runs
PLACEHOLDERS = frozenset({"CODE", "CONVENTION", "z,y,x"})
#: the reference folder in the printed command when the doctor was not given one (``run`` needs it)
REFERENCE_PLACEHOLDER = "REFERENCE_DIR"


def decided(rep: FolderReport) -> dict[str, str]:
    """The reading options of ``rep`` whose values the doctor could tell (no placeholder)."""
    return {k: v for k, v in rep.options.items() if v not in PLACEHOLDERS}


def undecided(reports: list[FolderReport]) -> list[str]:
    """``--read NAME.KEY=VALUE`` flags (POSIX-quoted) the user still has to fill in (placeholder values)."""
    import shlex

    return [shlex.quote(f"{r.name}.{k}={v}") for r in reports for k, v in r.options.items() if v in PLACEHOLDERS]


def run_command(reports: list[FolderReport], reference: str | None, out: str = "OUT",
                reference_format: str = "nifti") -> str:
    """The ``trace-bench run`` command that reads every folder right (POSIX shell quoting; ``--method
    NAME=DIR[:FORMAT]``, ``--read NAME.KEY=VALUE``); options the files cannot tell are left out
    (:func:`undecided`): without them ``run`` refuses those files in one line naming the option."""
    import shlex

    parts = ["trace-bench", "run", "--reference", reference or REFERENCE_PLACEHOLDER]
    if reference_format != "nifti":
        parts += ["--reference-format", reference_format]
    for r in reports:
        opts = decided(r)
        fmt = opts.get("format")
        parts += ["--method", f"{r.name}={r.folder}" + (f":{fmt}" if fmt else "")]
        for k in ("convention", "spacing", "layout"):
            if k in opts:
                parts += ["--read", f"{r.name}.{k}={opts[k]}"]
    parts += ["--out", out]
    return " ".join(shlex.quote(p) for p in parts)


def run_toml(reports: list[FolderReport], reference: str | None, reference_format: str = "nifti") -> str:
    """The same as TOML (``--config``): ``reference`` and one ``[methods.NAME]`` table per folder; an option
    the files cannot tell is a comment."""
    lines = [f"reference = {toml_value(reference)}" if reference else
             f"# reference = {toml_value(REFERENCE_PLACEHOLDER)}  (run needs the folder of real volumes)"]
    if reference_format != "nifti":
        lines.append(f"reference_format = {toml_value(reference_format)}")
    for r in reports:
        lines += ["", f"[methods.{toml_value(r.name)}]", f"path = {toml_value(r.folder)}"]
        for k in ("format", "convention", "spacing", "layout"):
            if k in r.options:
                prefix = "# " if r.options[k] in PLACEHOLDERS else ""
                lines.append(f"{prefix}{k} = {toml_value(r.options[k])}")
    return "\n".join(lines).strip() + "\n"


def diagnose(folders: list[tuple[str | None, str | Path]], *, reference: str | Path | None = None,
             fmt: str = "auto", reference_format: str = "nifti") -> list[FolderReport]:
    """One :class:`FolderReport` per ``(name or None, folder)``."""
    from .io import check_reader_environment

    check_reader_environment()
    return [examine_folder(f, n, fmt=fmt, reference=reference, reference_format=reference_format) for n, f in folders]
