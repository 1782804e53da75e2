"""Intensity conventions: how stored values map to Hounsfield units (HU).

A convention is written as a short spec string, e.g. ``hu``, ``hu/1000``, ``unit`` (=[0, 1] ->
[-1000, 1000] HU), ``unit:-1024:600`` ([0, 1] -> [-1024, 600] HU, MedSyn), ``symmetric``
([-1, 1] -> [-1000, 1000] HU). The spec is recorded in every volume's metadata.

Detection (:func:`suggest_convention`) only ever *suggests*: a volume whose values fit more than one
convention (anything inside [-1, 1] or [0, 1]) is refused with :class:`ConventionError`, naming
the file and the ``convention`` option that settles it. Plain HU is accepted without an option only
when the values are unmistakably HU (air near -1000 and tissue/bone above 0 present) and, for an
integer file without a rescale in its header, they do not look like HU + offset (:func:`offset_hu_problem`).

HU + offset rule (:func:`offset_hu_problem`; thresholds are the module constants): stored integers
that a writer shifted by +1024 (or +1000) so that air is near 0, often with padding far below -1024
(e.g. -2000 outside the scan circle), pass the plain range test. Such a volume is refused when, among
the voxels at or above :data:`PADDING_BELOW_HU` (-1100; lower values are padding, which real HU files
also use), fewer than :data:`AIR_MIN_FRACTION` (0.1 %) lie at or below :data:`AIR_MAX_HU` (-900: air and
lung in HU) while their 1st percentile is at or above :data:`SHIFTED_AIR_MIN` (-200: the lowest tissue
is near 0, i.e. air shifted by about +1000). Real CT holds air (outside the body, lungs, bowel gas) far
above 0.1 % of its voxels; a shifted one holds none. A real HU volume that is refused (a crop without any
air) is read with ``convention=hu``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from .errors import ConventionError

DEFAULT_WINDOW = (-1000.0, 1000.0)
#: HU + offset rule (module docstring): values below this are padding, not tissue
PADDING_BELOW_HU = -1100.0
#: air and lung in HU lie at or below this
AIR_MAX_HU = -900.0
#: real CT holds at least this fraction of (non-padding) voxels at or below AIR_MAX_HU
AIR_MIN_FRACTION = 0.001
#: a shifted volume's 1st percentile (non-padding) is at or above this (air near 0 instead of -1000)
SHIFTED_AIR_MIN = -200.0
#: at most this many voxels are looked at (a regular stride over the array)
SAMPLE_VOXELS = 262_144


@dataclass(frozen=True)
class Convention:
    """A linear map ``hu = scale * x + offset`` with a canonical spec string."""

    kind: str  # "hu" | "hu/1000" | "unit" | "symmetric" | "byte" | "hu+K"
    lo: float = DEFAULT_WINDOW[0]  # HU that the lower end of the stored range maps to
    hi: float = DEFAULT_WINDOW[1]

    @property
    def spec(self) -> str:
        if self.kind in ("hu", "hu/1000"):
            return self.kind
        if self.kind == "hu+":
            return f"hu+{_fmt(self.lo)}"
        if (self.lo, self.hi) == DEFAULT_WINDOW:
            return self.kind
        return f"{self.kind}:{_fmt(self.lo)}:{_fmt(self.hi)}"

    @property
    def scale_offset(self) -> tuple[float, float]:
        if self.kind == "hu":
            return 1.0, 0.0
        if self.kind == "hu/1000":
            return 1000.0, 0.0
        if self.kind == "unit":  # x in [0, 1]
            return self.hi - self.lo, self.lo
        if self.kind == "symmetric":  # x in [-1, 1]
            return (self.hi - self.lo) / 2.0, (self.hi + self.lo) / 2.0
        if self.kind == "byte":  # x in [0, 255]
            return (self.hi - self.lo) / 255.0, self.lo
        if self.kind == "hu+":  # stored = HU + K, K kept in lo
            return 1.0, -self.lo
        raise AssertionError(self.kind)

    def to_hu(self, x: np.ndarray) -> np.ndarray:
        """Map stored values to float32 HU (no clipping: overshoot is preserved and visible)."""
        scale, offset = self.scale_offset
        out = np.asarray(x, dtype=np.float32)
        if scale == 1.0 and offset == 0.0:
            return out.copy() if out is x else out
        return (out * np.float32(scale) + np.float32(offset)).astype(np.float32, copy=False)

    def from_hu(self, hu: np.ndarray) -> np.ndarray:
        """Inverse of :meth:`to_hu` (used by tests and by writers of peer formats)."""
        scale, offset = self.scale_offset
        return ((np.asarray(hu, dtype=np.float64) - offset) / scale).astype(np.float32)


def _fmt(v: float) -> str:
    return str(int(v)) if float(v).is_integer() else repr(float(v))


KINDS = ("hu", "hu/1000", "unit", "symmetric", "byte", "hu+K")


def parse_convention(spec: "str | Convention", path: object = None) -> Convention:
    """Parse ``hu``, ``hu/1000``, ``unit[:lo:hi]``, ``symmetric[:lo:hi]``."""
    if isinstance(spec, Convention):
        return spec
    text = str(spec).strip().lower()
    m = re.fullmatch(r"hu\+(\d+(?:\.\d*)?)", text)
    if m:
        return Convention("hu+", float(m.group(1)), 0.0)
    parts = text.split(":")
    kind = parts[0]
    if kind not in KINDS or kind == "hu+K":
        raise ConventionError(path, f"unknown intensity convention {spec!r}; expected one of {', '.join(KINDS)} "
                                    "(unit, symmetric and byte take an optional HU window, e.g. unit:-1024:600; hu+K means stored = HU + K)")
    if len(parts) == 1:
        return Convention(kind)
    if kind in ("hu", "hu/1000") or len(parts) != 3:
        raise ConventionError(path, f"malformed intensity convention {spec!r}; expected e.g. 'unit:-1024:600'")
    try:
        lo, hi = float(parts[1]), float(parts[2])
    except ValueError:
        raise ConventionError(path, f"malformed HU window in convention {spec!r}") from None
    if not hi > lo:
        raise ConventionError(path, f"convention {spec!r}: the HU window must have hi > lo")
    return Convention(kind, lo, hi)


def _hint(value: str) -> str:
    from .errors import option_hint

    return option_hint("convention", value)


def sample_values(array: np.ndarray, n: int = SAMPLE_VOXELS) -> np.ndarray:
    """At most ``n`` voxels of ``array`` taken at a regular stride (every voxel when it is small)."""
    flat = np.asarray(array).reshape(-1)
    step = max(1, flat.size // max(1, n))
    return flat[::step]


def offset_hu_problem(array: np.ndarray) -> str | None:
    """Why ``array`` looks like HU + offset rather than HU (rule and thresholds: module docstring), or None."""
    v = sample_values(array).astype(np.float64, copy=False)
    body = v[v >= PADDING_BELOW_HU]
    if body.size == 0:
        return None
    air = float(np.mean(body <= AIR_MAX_HU))
    p1 = float(np.percentile(body, 1))
    if air >= AIR_MIN_FRACTION or p1 < SHIFTED_AIR_MIN:
        return None
    pad = v[v < PADDING_BELOW_HU]
    padding = f", {pad.size / v.size:.0%} padding at {float(pad.min()):.0f}" if pad.size else ""
    return (f"values look like HU + 1024, not HU: the lowest tissue (1st percentile) is {p1:.0f} where air should be "
            f"near -1000 and only {air:.2%} of voxels are air (<= {AIR_MAX_HU:.0f}){padding}, with no rescale in "
            "the header")


def suggest_convention(array: np.ndarray, path: object = None, *,
                       integer_without_rescale: bool = False) -> tuple[Convention, str]:
    """Suggest a convention from the value range, or refuse when ambiguous.

    Returns ``(convention, reason)``. Raises :class:`ConventionError` when the range fits
    several conventions, listing the candidates and the option that settles it, and, for an integer
    file without a rescale in its header (``integer_without_rescale``), when plain-HU values look like
    HU + offset (:func:`offset_hu_problem`).
    """
    a = np.asarray(array)
    lo, hi = float(a.min()), float(a.max())
    if lo <= -500.0 and hi >= 50.0 and lo >= -4000.0 and hi <= 40000.0:
        if integer_without_rescale:
            why = offset_hu_problem(a)
            if why is not None:
                raise ConventionError(path, f"{why}; if they are HU + 1024 add {_hint('hu+1024')} "
                                            "(if they really are HU: convention=hu)")
        return Convention("hu"), f"values span [{lo:.0f}, {hi:.0f}], air near -1000 and tissue above 0: plain HU"
    if lo >= -1.6 and hi <= 1.6:
        if lo >= 0.0:
            cands, example = "unit (e.g. unit:-1000:1000 or unit:-1024:600)", "unit"
        else:
            cands, example = "symmetric (e.g. symmetric:-1000:1000), hu/1000", "symmetric"
        raise ConventionError(
            path,
            f"intensity convention is ambiguous: values lie in [{lo:.3g}, {hi:.3g}], which fits {cands}; "
            f"say which, e.g. {_hint(example)} (never guessed)",
        )
    if -200.0 <= lo <= 200.0 and 1000.0 <= hi <= 70000.0:
        raise ConventionError(
            path,
            f"values in [{lo:.4g}, {hi:.4g}] look like HU + 1024 (air near 0, not -1000) with no rescale in the "
            f"header; if so add {_hint('hu+1024')}",
        )
    raise ConventionError(
        path,
        f"cannot tell the intensity convention of values in [{lo:.4g}, {hi:.4g}] (not HU, not [0, 1], not [-1, 1]); "
        f"say it with {_hint('CONVENTION')} (hu, hu/1000, unit[:lo:hi], symmetric[:lo:hi], byte[:lo:hi], hu+K)",
    )
