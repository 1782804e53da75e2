"""Grid policy: compare a generated volume's grid with its reference's, and decide to score, warn or refuse.

Both volumes are canonical (:mod:`trace_bench.volume`: (z, y, x), LPS), so their axes correspond
and the comparison is per axis (z, y, x):

* **shape**: voxel counts (z = slices, y = rows, x = columns); equal or not.
* **spacing** (mm): equal when every axis agrees within :data:`SPACING_RTOL` (1 %, relative to the larger).
* **field of view** (FOV, mm) = ``shape * spacing`` per axis: equal when every axis agrees within
  :data:`FOV_RTOL` (5 %, relative to the larger).
* **orientation**: the affines' axis codes (``LPS``...) must be equal and, when both geometries are
  known, each index axis' direction cosines must agree within :data:`ORIENTATION_TOL_DEG` (1 degree);
  origins are not compared (scoring maps grids by extent; generators rarely write a real origin).
* **degenerate**: fewer than :data:`MIN_VOXELS` (2) voxels along any axis, or fewer than
  :data:`MIN_INPLANE` (8) along y or x, in either volume.
* **known geometry** (:func:`geometry_source`): ``file`` when the spacing came from a real header,
  ``user`` when the user gave it (reading options ``spacing=`` / ``layout=``, or ``reference``), ``none``
  when the file carries no geometry: an adapter's documented default (``meta["spacing_source"]`` starts
  with ``adapter default``, ``meta["geometry"] == "adapter"``) or a header without real geometry
  (``meta["geometry"] == "trivial"``, see below; ``meta["geometry_in_file"] is False``). A volume without
  that metadata (built in code) counts as known. With unknown geometry the FOV and direction cosines are
  not compared (they are invented), and the generated volume can only be mapped onto the reference grid
  by extent.

Header truth (issues 26, 27: no silent geometry guess). The readers (:func:`trace_bench.io.read_raw`)
record what a header says about geometry in ``meta["geometry_notes"]`` (kind, text). The kinds
``no_geometry`` (identity affine, unit voxels at the origin, NIfTI qform/sform codes both 0,
``affine=None``), ``ambiguous_orientation`` (qform and sform disagree, a negative voxel size) and
``zero_spacing`` make ``meta["geometry"] == "trivial"``; ``inconsistent`` and ``spacing_unknown`` are
warnings only. :func:`volume_warnings` turns them into one line each, naming the file and the reading
option that settles them (the same words in ``trace-bench inspect``, ``doctor`` and ``run``'s
``warnings.csv``). For reference-based metrics (:func:`check_geometry`), a trivial header on either side
is refused under ``strict`` and ``refuse`` (the default) and warned under ``warn``, unless the user said
how to read the file (``layout=`` / ``spacing=``: ``meta["geometry"]`` is then ``user`` or ``reference``).

Real headers that disagree (:func:`orientation_warning`): a generated header whose orientation differs
from its reference's real header along an axis (``RAS`` vs ``LPS``, ``LAS`` vs ``RAS``) is a warning,
not a refusal, under ``refuse`` and ``warn`` (refused under ``strict`` only). Both volumes are read
through their own headers into the canonical LPS grid, which is right for truthful headers (MAISI writes
RAS, CT-RATE references may be stored LPS; refusing them would refuse correct volumes); the warning
names the one case it cannot tell apart: a writer that copied the reference's voxel array under another
header, whose volume is scored mirrored (``layout=reference`` reads it right; ``layout=header`` confirms
the header and silences the warning).

Policies (``--geometry POLICY``, :data:`GEOMETRY_POLICIES`, default :data:`DEFAULT_POLICY`)::

    situation                                  strict   refuse (default)            warn
    identical grids, geometry known            score    score                       score
    same FOV, other shape/spacing              REFUSE   resample + warning          resample + warning
    geometry not in a file (either side)       REFUSE   resample by extent + warn   resample by extent + warn
    FOV differs by more than 5 % (known)       REFUSE   REFUSE                      resample + warning
    orientation disagrees                      REFUSE   REFUSE                      resample + warning
    degenerate volume (either side)            REFUSE   REFUSE                      warning
    header without geometry (trivial, either)  REFUSE   REFUSE (say layout=)        warning
    real headers, orientations differ          REFUSE   warning (names layout=)     warning

"Resample" means the scorer maps the generated volume onto the reference grid (the reference grid is
the one scored); this module only decides and says so. :func:`check_geometry` returns the warnings
(one line each, for ``warnings.csv``) or raises :class:`~trace_bench.errors.GeometryError`, whose
one-line message names both files, what differs and the ``--geometry`` value that changes the outcome.
Examples: GenerateCT's 201 slices (identity affine) against a 425-slice reference and MedSyn's 256^3
(SimpleITK-default affine) are unknown geometry -> warned and resampled; a copy of the reference whose
z spacing is halved in the header (FOV 50 % of the reference's) is refused; a 1-slice volume is refused.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import nibabel as nib

from .errors import ConfigError, GeometryError
from .volume import Volume

#: policy name -> what it does (used for CLI help and error hints)
GEOMETRY_POLICIES: dict[str, str] = {
    "strict": "score only identical grids whose geometry both files carry; refuse everything else",
    "refuse": ("resample a different grid with the same field of view (or without geometry in the file) onto the "
               "reference grid with a warning; refuse a field-of-view or orientation mismatch and degenerate volumes"),
    "warn": "resample every grid onto the reference's with a warning; never refuse",
}
DEFAULT_POLICY = "refuse"
SPACING_RTOL = 0.01
FOV_RTOL = 0.05
ORIENTATION_TOL_DEG = 1.0
MIN_VOXELS = 2
MIN_INPLANE = 8
AXIS_NAMES = ("z", "y", "x")
_COUNT_NAMES = ("slices", "rows", "columns")


@dataclass(frozen=True)
class Grid:
    """The grid of one canonical volume: shape, spacing and FOV (z, y, x), axis codes, direction cosines."""

    shape: tuple[int, int, int]
    spacing: tuple[float, float, float]  # mm, (z, y, x)
    fov_mm: tuple[float, float, float]  # shape * spacing, (z, y, x)
    axcodes: str  # of the (x, y, z) index axes, "LPS" for canonical volumes
    directions: tuple[tuple[float, float, float], ...]  # unit RAS direction of the x, y, z index axes
    source: str  # "file", "user" or "none" (see geometry_source)
    path: str | None

    @property
    def known(self) -> bool:
        return self.source != "none"

    @property
    def degenerate(self) -> str | None:
        """Why the grid is too small to score, or None."""
        z, y, x = self.shape
        if min(self.shape) < MIN_VOXELS:
            axis = _COUNT_NAMES[int(np.argmin(self.shape))]
            if min(self.shape) == 1:
                axis = axis[:-1]
            return f"{min(self.shape)} {axis} (at least {MIN_VOXELS} needed along every axis)"
        if min(y, x) < MIN_INPLANE:
            return f"{y} x {x} voxels in-plane (at least {MIN_INPLANE} x {MIN_INPLANE} needed)"
        return None


def geometry_source(volume: Volume) -> str:
    """``file``, ``user`` or ``none``: where the volume's spacing and orientation come from (module docstring)."""
    g = volume.meta.get("geometry")
    if g in ("user", "reference"):
        return "user" if volume.meta.get("spacing_known", True) else "none"
    if g in ("trivial", "adapter"):
        return "none"
    src = str(volume.meta.get("spacing_source") or "")
    if src.startswith("user"):
        return "user"
    if (src.startswith("adapter default") or volume.meta.get("geometry_in_file") is False
            or volume.meta.get("source_affine_is_identity") is True):  # the last: set by trace_bench.io for NIfTI
        return "none"
    return "file"


def grid_of(volume: Volume) -> Grid:
    """The :class:`Grid` of a canonical volume."""
    shape = tuple(int(n) for n in volume.shape)
    spacing = tuple(float(s) for s in volume.spacing)
    cols = np.asarray(volume.affine, dtype=np.float64)[:3, :3]
    norms = np.sqrt((cols ** 2).sum(axis=0))
    norms[norms == 0] = 1.0
    dirs = cols / norms
    codes = "".join(str(c) for c in nib.aff2axcodes(volume.affine))
    path = volume.meta.get("path")
    return Grid(shape, spacing, tuple(n * s for n, s in zip(shape, spacing)), codes,  # type: ignore[arg-type]
                tuple(tuple(float(v) for v in dirs[:, i]) for i in range(3)), geometry_source(volume),
                None if path is None else str(path))


@dataclass(frozen=True)
class GridDiff:
    """How a generated grid differs from its reference's (per-aspect flags and one line of text)."""

    generated: Grid
    reference: Grid
    shape_matches: bool
    spacing_matches: bool  # every axis within SPACING_RTOL
    fov_matches: bool  # every axis within FOV_RTOL (numbers only: meaningless when not geometry_known)
    orientation_matches: bool  # axis codes equal; and direction cosines within ORIENTATION_TOL_DEG if both known
    max_angle_deg: float  # largest angle between corresponding index axes
    description: str  # e.g. "slices 61 vs 30; z spacing 2.5 vs 5 mm; FOV matches"

    @property
    def geometry_known(self) -> bool:
        """Both volumes' geometry came from their files or the user."""
        return self.generated.known and self.reference.known

    @property
    def degenerate(self) -> dict[str, str]:
        """``{"generated" | "reference": why}`` for each degenerate volume."""
        out = {}
        for role, g in (("generated", self.generated), ("reference", self.reference)):
            if g.degenerate:
                out[role] = g.degenerate
        return out

    @property
    def identical(self) -> bool:
        """Same shape, spacing and orientation (geometry known or not)."""
        return self.shape_matches and self.spacing_matches and self.orientation_matches

    @property
    def needs_resampling(self) -> bool:
        return not self.shape_matches


def _rel_diff(a: float, b: float) -> float:
    m = max(abs(a), abs(b))
    return 0.0 if m == 0 else abs(a - b) / m


def _g(v: float) -> str:
    return f"{v:.4g}"


def compare_grids(generated: Volume, reference: Volume) -> GridDiff:
    """Compare the grids of two canonical volumes (rules and tolerances: module docstring)."""
    g, r = grid_of(generated), grid_of(reference)
    parts: list[str] = []
    shape_ok = g.shape == r.shape
    for name, a, b in zip(_COUNT_NAMES, g.shape, r.shape):
        if a != b:
            parts.append(f"{name} {a} vs {b}")
    sp_bad = [i for i in range(3) if _rel_diff(g.spacing[i], r.spacing[i]) > SPACING_RTOL]
    for i in sp_bad:
        parts.append(f"{AXIS_NAMES[i]} spacing {_g(g.spacing[i])} vs {_g(r.spacing[i])} mm")
    fov_bad = [i for i in range(3) if _rel_diff(g.fov_mm[i], r.fov_mm[i]) > FOV_RTOL]
    known = g.known and r.known
    if not known:
        who = " and ".join(role for role, x in (("generated", g), ("reference", r)) if not x.known)
        parts.append(f"{who} geometry not in the file (FOV not compared)")
    elif fov_bad:
        for i in fov_bad:
            a, b = g.fov_mm[i], r.fov_mm[i]
            parts.append(f"{AXIS_NAMES[i]} FOV {_g(a)} vs {_g(b)} mm ({(a - b) / b * 100:+.0f}%)" if b else
                         f"{AXIS_NAMES[i]} FOV {_g(a)} vs {_g(b)} mm")
    elif parts:
        parts.append("FOV matches")
    angles = [float(np.degrees(np.arccos(np.clip(np.dot(g.directions[i], r.directions[i]), -1.0, 1.0))))
              for i in range(3)]
    max_angle = max(angles)
    orient_ok = g.axcodes == r.axcodes and (not known or max_angle <= ORIENTATION_TOL_DEG)
    if g.axcodes != r.axcodes:
        parts.append(f"orientation {g.axcodes} vs {r.axcodes}")
    elif not orient_ok:
        parts.append(f"axes rotated by {max_angle:.1f} deg (> {ORIENTATION_TOL_DEG:g})")
    for role, x in (("generated", g), ("reference", r)):
        if x.degenerate:
            parts.append(f"{role} degenerate: {x.degenerate}")
    return GridDiff(g, r, shape_ok, not sp_bad, not fov_bad, orient_ok, max_angle,
                    "; ".join(parts) if parts else "grids match")


def parse_policy(policy: str | None) -> str:
    """Validate a policy name (None = :data:`DEFAULT_POLICY`)."""
    p = DEFAULT_POLICY if policy is None else str(policy).strip().lower()
    if p not in GEOMETRY_POLICIES:
        raise ConfigError(f"unknown geometry policy {policy!r}. Expected one of: {', '.join(GEOMETRY_POLICIES)}")
    return p


def decide(diff: GridDiff, policy: str | None = None) -> tuple[list[str], list[str]]:
    """``(refusals, warnings)`` for ``diff`` under ``policy``: short reasons, and one-line warnings."""
    p = parse_policy(policy)
    refuse: list[str] = []
    warn: list[str] = []
    target = "x".join(str(n) for n in diff.reference.shape)
    if diff.degenerate:
        (warn if p == "warn" else refuse).append("degenerate volume")
    if not diff.orientation_matches:
        (warn if p == "warn" else refuse).append("orientation disagrees")
    if diff.geometry_known and not diff.fov_matches:
        (warn if p == "warn" else refuse).append("field of view differs")
    if not diff.geometry_known:
        (refuse if p == "strict" else warn).append("geometry not in the file")
    elif not diff.identical:
        (refuse if p == "strict" else warn).append("different grid")
    if refuse:
        return refuse, []
    if not warn:
        return [], []
    same_fov = diff.geometry_known and diff.fov_matches and diff.orientation_matches
    how = "by extent (same FOV)" if same_fov else "by extent"
    action = (f"generated resampled onto the reference grid {target} {how}" if not diff.shape_matches
              else "scored on the reference grid as is")
    return [], [f"grid ({', '.join(warn)}): {diff.description}: {action} [--geometry {p}]"]


#: note kinds that make a header's geometry untrusted (``meta["geometry"] == "trivial"``)
REFUSING_NOTES = ("no_geometry", "ambiguous_orientation", "zero_spacing")
_PAIRS = ("RL", "AP", "SI")


def _file(volume: Volume) -> str:
    path = volume.meta.get("path")
    return str(path) if path else "volume"


def note_hint(kind: str, volume: Volume, name: str | None = None) -> str:
    """The reading option that settles a geometry note of ``kind`` (empty for notes that need none)."""
    from .read_options import CANONICAL_LAYOUT, option_hint

    if kind in ("no_geometry", "ambiguous_orientation"):
        implied = str(volume.meta.get("implied_layout") or "")
        as_read = f" (layout {implied})" if len(implied) == 3 else ""
        return (f"say how to read it: {option_hint('layout', CANONICAL_LAYOUT, name)} if the array is stored (z, y, x) "
                "inferior-first, layout=reference if it is on the paired reference case's grid, another code for "
                f"another order, layout=header to accept it as read{as_read}; spacing=z,y,x or spacing=reference "
                "for the voxel size")
    if kind == "zero_spacing":
        return f"add {option_hint('spacing', 'z,y,x', name)} (mm) or spacing=reference"
    return ""


def header_notes(volume: Volume) -> list[tuple[str, str]]:
    """``(kind, text)`` of every note the reader made about the header's geometry (module docstring)."""
    out = []
    for item in volume.meta.get("geometry_notes") or ():
        if isinstance(item, (list, tuple)) and len(item) == 2:
            out.append((str(item[0]), str(item[1])))
    return out


def volume_warnings(volume: Volume, name: str | None = None) -> list[str]:
    """One line per geometry note of ``volume``: ``file: what the header says; the option that settles it``.
    The one wording of ``run`` (``warnings.csv``), ``inspect`` and ``doctor``. ``name``: the folder's name in
    ``run`` (``--read NAME.layout=...``); ``None`` spells the option generically."""
    out = []
    for kind, text in header_notes(volume):
        hint = note_hint(kind, volume, name)
        out.append(f"{_file(volume)}: {text}" + (f"; {hint}" if hint else ""))
    return out


def _codes(volume: Volume) -> str | None:
    code = str(volume.meta.get("source_orientation") or "")
    return code if len(code) == 3 and all(any(c in pair for pair in _PAIRS) for c in code) else None


def mirrored_axes(generated: str, reference: str) -> list[str]:
    """Patient axes along which two layout codes point opposite ways (``LAS`` vs ``RAS`` -> ``["R/L"]``)."""
    out = []
    for pair in _PAIRS:
        a = next((c for c in generated if c in pair), None)
        b = next((c for c in reference if c in pair), None)
        if a is not None and b is not None and a != b:
            out.append(f"{pair[0]}/{pair[1]}")
    return out


def header_problems(generated: Volume, reference: Volume,
                    names: tuple[str | None, str | None] = (None, None)) -> list[tuple[str, str]]:
    """``(reason, hint)`` for what makes the pair's headers untrustworthy for a reference-based metric:
    a header without real geometry (:data:`REFUSING_NOTES`) on either side."""
    out: list[tuple[str, str]] = []
    for role, vol, name in (("generated", generated, names[0]), ("reference", reference, names[1])):
        for kind, text in header_notes(vol):
            if kind in REFUSING_NOTES:
                out.append((f"{role} {_file(vol)}: {text}", note_hint(kind, vol, name)))
    return out


def orientation_text(generated: str, reference: str, name: str | None = None) -> str | None:
    """The one wording (``run``'s ``warnings.csv``, ``doctor``) of two real headers whose layout codes
    point opposite ways along an axis, or None when they agree. ``name``: the generated folder's name
    in ``run`` (for the ``--read NAME.layout=...`` hints)."""
    from .read_options import option_hint

    axes = mirrored_axes(generated, reference)
    if not axes:
        return None
    return (f"header orientation {generated} differs from the reference's {reference} along {', '.join(axes)}: each "
            "volume is read through its own header (right for truthful headers); if the generator copied the "
            f"reference's voxel array under another header, this volume is scored mirrored: then "
            f"{option_hint('layout', 'reference', name)}; {option_hint('layout', 'header', name)} confirms the "
            "header (no warning)")


def orientation_warning(generated: Volume, reference: Volume, name: str | None = None) -> str | None:
    """:func:`orientation_text` for two volumes whose geometry both came from real headers (``meta["geometry"]
    == "header"``; a layout the user gave is never questioned), else None."""
    g, r = _codes(generated), _codes(reference)
    if generated.meta.get("geometry") != "header" or reference.meta.get("geometry") != "header" or not (g and r):
        return None
    return orientation_text(g, r, name)


def check_geometry(generated: Volume, reference: Volume, policy: str | None = DEFAULT_POLICY, *,
                   names: tuple[str | None, str | None] = (None, None)) -> list[str]:
    """Apply ``policy`` to the two grids: the warnings to record (one line each), or raise
    :class:`~trace_bench.errors.GeometryError` naming both files, what differs and the option to change it.

    Header truth first (module docstring): a header without geometry (:func:`header_problems`) is refused
    under ``strict`` / ``refuse`` and warned under ``warn``; real headers of other orientations
    (:func:`orientation_warning`) are warned under ``refuse`` / ``warn`` and refused under ``strict``.
    ``names``: the generated and reference folders' names in ``run`` (for the ``--read NAME.layout=...``
    hints; ``None`` spells them generically)."""
    p = parse_policy(policy)
    header = header_problems(generated, reference, names)
    orient = orientation_warning(generated, reference, names[0])
    if (header and p != "warn") or (orient and p == "strict"):
        gen = generated.meta.get("path") or "generated volume"
        ref = reference.meta.get("path") or "reference volume"
        parts = [f"{why}; {hint}" if hint else why for why, hint in header]
        if orient and p == "strict":
            parts.append(orient)
        other = ("pass --geometry refuse to score it with a warning" if not header else
                 "or pass --geometry warn to score it as read, with a warning")
        raise GeometryError(gen, f"refused against reference {ref} (--geometry {p}): {'; '.join(parts)}; {other}",
                            reference=ref, diff=None)
    header_warnings = [f"header ({why}): scored as read [--geometry warn]" for why, _ in header]
    if orient:
        header_warnings.append(f"orientation: {orient} [--geometry {p}]")
    diff = compare_grids(generated, reference)
    refusals, warnings = decide(diff, p)
    if not refusals:
        return header_warnings + warnings
    if p == "strict" and not decide(diff, "refuse")[0]:
        hint = "pass --geometry refuse (the default) to resample it onto the reference grid with a warning"
    else:
        hint = "pass --geometry warn to score it anyway (resampled by extent, with a warning)"
        if diff.geometry_known and not diff.fov_matches and not diff.degenerate:
            from .read_options import option_hint

            hint = f"check the spacing ({option_hint('spacing', 'z,y,x', names[0])}), or " + hint
    gen = diff.generated.path or "generated volume"
    ref = diff.reference.path or "reference volume"
    reason = (f"grid refused against reference {ref} ({', '.join(refusals)}; --geometry {p}): "
              f"{diff.description}; {hint}")
    raise GeometryError(gen, reason, reference=ref, diff=diff)


def describe_policies() -> list[dict[str, Any]]:
    """Rows for help text: name, default flag, meaning."""
    return [{"name": n, "default": n == DEFAULT_POLICY, "meaning": m} for n, m in GEOMETRY_POLICIES.items()]
