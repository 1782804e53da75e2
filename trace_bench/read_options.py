"""How to read one input folder: the per-folder reading options of ``trace-bench run``.

A generator's folder often holds files whose header does not say how to read them: values in [0, 1]
or [-1, 1], ``.npy`` arrays without spacing, NIfTI files written with an identity affine. The user
says how, once per folder (CLI ``--read NAME.KEY=VALUE``, TOML ``[methods.NAME]`` tables; the same
for the reference and the training reference), and the settings become part of every cache key and of
the provenance (they change the numbers).

* ``format``: adapter name (``nifti``, ``generatect-lowres``, ``npy``, ...; ``trace-bench adapters``);
* ``convention``: intensity convention spec (:mod:`trace_bench.intensity`: ``hu``, ``unit``,
  ``symmetric:-1024:600``, ``hu+1024``, ...);
* ``spacing``: voxel size ``(z, y, x)`` in mm, or ``"reference"``: the paired reference case's spacing;
* ``layout``: what the stored array's axes are, for files without real geometry: a three-letter
  orientation code of the voxel axes in the reader's index order (NIfTI/NRRD/MetaImage index
  ``(i, j, k)``; NumPy / image stacks: array axes ``(0, 1, 2)``), each letter the patient direction the
  index grows toward (R/L, A/P, S/I; e.g. ``LPS``, ``RAS``, ``SPL`` = a ``(z, y, x)`` array stored
  inferior-first with y to posterior and x to the left), ``"reference"``: the paired reference
  case's grid (same shape required), or ``"header"``: the file's header as written (the user confirms a
  header that has no real geometry, or an orientation that differs from the reference's).

This module declares and validates the options, and holds the pure geometry of a layout code
(:func:`layout_affine`, :func:`affine_layout`) and the one wording of "add this option" hints
(:func:`option_hint`); the readers (:mod:`baselines`, :mod:`trace_bench.io`) apply the options.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping

from .errors import ConfigError, option_hint

__all__ = ["CANONICAL_LAYOUT", "HEADER", "KEYS", "REFERENCE", "ReadOptions", "affine_layout", "layout_affine",
           "layout_spacing_axes", "option_hint", "parse_layout", "parse_spacing_option"]

#: the keys a folder's reading options may set
KEYS = ("format", "convention", "spacing", "layout")
#: letter pairs of a layout code (each axis one pair, each pair once)
_AXIS_PAIRS = ({"R", "L"}, {"A", "P"}, {"S", "I"})
REFERENCE = "reference"
#: ``layout=header``: the file's own header, confirmed by the user
HEADER = "header"
#: RAS+ world direction of each layout letter (nibabel's convention: +x Right, +y Anterior, +z Superior)
_LETTER_DIRECTION = {"R": (0, 1.0), "L": (0, -1.0), "A": (1, 1.0), "P": (1, -1.0), "S": (2, 1.0), "I": (2, -1.0)}
#: the layout of trace-bench's own canonical array (z, y, x): inferior-first, rows to posterior, columns to the left
CANONICAL_LAYOUT = "SPL"


def parse_layout(value: Any, where: str = "layout") -> str:
    """A three-letter orientation code (one of R/L, one of A/P, one of S/I, any order), ``reference`` or
    ``header``."""
    if not isinstance(value, str):
        raise ConfigError(f"{where}: expected an orientation code such as LPS, RAS or SPL, 'reference' or 'header', "
                          f"got {value!r}")
    v = value.strip()
    if v.lower() in (REFERENCE, HEADER):
        return v.lower()
    code = v.upper()
    if len(code) != 3 or any(sum(c in pair for c in code) != 1 for pair in _AXIS_PAIRS):
        raise ConfigError(f"{where}: expected an orientation code of three letters, one each of R/L, A/P and S/I "
                          f"(e.g. LPS, RAS, SPL), 'reference' or 'header', got {value!r}")
    return code


def parse_spacing_option(value: Any, where: str = "spacing") -> tuple[float, float, float] | str:
    """``(z, y, x)`` mm from ``"5,1,1"`` / ``"5x1x1"`` / a list / one number (isotropic), or ``reference``."""
    if isinstance(value, str) and value.strip().lower() == REFERENCE:
        return REFERENCE
    if isinstance(value, str):
        parts = [p for p in value.replace("x", ",").replace(" ", ",").split(",") if p]
    elif isinstance(value, (list, tuple)):
        parts = list(value)
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        parts = [value] * 3
    else:
        parts = []
    try:
        nums = [float(p) for p in parts]
    except (TypeError, ValueError):
        nums = []
    if len(nums) == 1:
        nums = nums * 3
    if len(nums) != 3 or not all(math.isfinite(n) and n > 0 for n in nums):
        raise ConfigError(f"{where}: expected three positive voxel sizes in mm (z,y,x), e.g. 5,1,1, or one number, "
                          f"or 'reference', got {value!r}")
    return (nums[0], nums[1], nums[2])


def layout_affine(layout: str, spacing: "tuple[float, float, float] | list[float]",
                  origin: "tuple[float, float, float] | None" = None) -> "Any":
    """The 4x4 RAS affine of an array whose index axes follow ``layout`` (a code, not ``reference``),
    with ``spacing`` mm per index axis (in the array's index order) and ``origin`` (RAS mm, default 0).

    Column ``n`` = (unit RAS direction of letter ``layout[n]``) x ``spacing[n]``; e.g. ``RAS`` with unit
    spacing is the identity, ``LPS`` is ``diag(-1, -1, 1)`` (what SimpleITK writes without geometry).
    """
    import numpy as np

    code = parse_layout(layout)
    if code in (REFERENCE, HEADER):
        raise ConfigError(f"layout {code!r} has no affine of its own")
    aff = np.eye(4)
    aff[:3, :3] = 0.0
    for n, letter in enumerate(code):
        axis, sign = _LETTER_DIRECTION[letter]
        aff[axis, n] = sign * float(spacing[n])
    if origin is not None:
        aff[:3, 3] = [float(v) for v in origin]
    return aff


def affine_layout(affine: "Any") -> str:
    """The layout code an affine gives its index axes (the nearest axis letters: nibabel ``aff2axcodes``)."""
    import nibabel as nib

    return "".join(str(c) for c in nib.aff2axcodes(affine))


def layout_spacing_axes(layout: str) -> tuple[int, int, int]:
    """For each index axis of ``layout``, the canonical axis (0 = z, 1 = y, 2 = x) it runs along; e.g.
    ``LPS`` -> (2, 1, 0), ``SPL`` -> (0, 1, 2). Used to give an index axis the reference's spacing."""
    zyx = {0: 2, 1: 1, 2: 0}  # RAS axis (x, y, z) -> canonical (z, y, x) position
    return tuple(zyx[_LETTER_DIRECTION[c][0]] for c in parse_layout(layout))  # type: ignore[return-value]


@dataclass(frozen=True)
class ReadOptions:
    """How the files of one folder are read (see the module doc). ``None`` = the adapter decides
    from the file (and refuses when the file cannot say)."""

    format: str = "nifti"
    convention: str | None = None
    spacing: tuple[float, float, float] | str | None = None
    layout: str | None = None

    @classmethod
    def parse(cls, given: Mapping[str, Any], where: str = "read options") -> "ReadOptions":
        """Validate a mapping of :data:`KEYS` (unknown keys and bad values raise one-line ConfigErrors)."""
        unknown = sorted(set(given) - set(KEYS))
        if unknown:
            raise ConfigError(f"{where}: unknown reading option {unknown[0]!r} (expected {', '.join(KEYS)})")
        fmt = given.get("format") or "nifti"
        if not isinstance(fmt, str) or not fmt.strip():
            raise ConfigError(f"{where}: format: expected an adapter name, got {fmt!r}")
        conv = given.get("convention")
        if conv is not None:
            from .intensity import parse_convention

            try:
                conv = parse_convention(str(conv)).spec
            except Exception as e:  # noqa: BLE001 - one line, whatever the parser raised
                raise ConfigError(f"{where}: convention: {e}") from None
        sp = given.get("spacing")
        sp = None if sp is None else parse_spacing_option(sp, f"{where}: spacing")
        lay = given.get("layout")
        lay = None if lay is None else parse_layout(lay, f"{where}: layout")
        return cls(format=fmt.strip(), convention=conv, spacing=sp, layout=lay)

    def with_changes(self, **changes: Any) -> "ReadOptions":
        merged = {k: getattr(self, k) for k in KEYS}
        merged.update(changes)
        return ReadOptions.parse(merged)

    def key(self) -> dict[str, Any]:
        """JSON-able form for cache keys and provenance: only the options the user set (so a folder read
        with defaults keeps the key it had before reading options existed), ``format`` always."""
        out: dict[str, Any] = {"format": self.format}
        if self.convention is not None:
            out["convention"] = self.convention
        if self.spacing is not None:
            out["spacing"] = self.spacing if isinstance(self.spacing, str) else list(self.spacing)
        if self.layout is not None:
            out["layout"] = self.layout
        return out

    @property
    def uses_reference(self) -> bool:
        """True when the spacing or grid is taken from the paired reference case."""
        return REFERENCE in (self.spacing, self.layout)

    def describe(self) -> str:
        """``format=npy, spacing=5,1,1`` (what the user set), for messages and the doctor's commands."""
        parts = []
        for k, v in self.key().items():
            parts.append(f"{k}={','.join(f'{x:g}' for x in v) if isinstance(v, list) else v}")
        return ", ".join(parts)
