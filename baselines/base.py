"""Adapter interface and registry: a peer's raw output file -> canonical Volume.

An adapter knows one writer's layout: which files in a folder are volumes, how a file name maps to
a case id, how stored values map to HU, which geometry to assume when the file has none, and which
label maps the writer stores beside each volume. What it used is recorded in ``volume.meta``:

* ``adapter``: the adapter's registry name;
* ``convention`` / ``convention_reason``: the intensity convention applied (see
  :mod:`trace_bench.intensity`) and why (adapter default or user);
* ``spacing_source``: ``file header``, ``user`` or ``adapter default: ...`` (with the rule used);
* ``geometry``: ``header`` (real geometry in the file), ``trivial`` (a header without real geometry, or
  an ambiguous one: ``geometry_notes`` says why, :func:`trace_bench.io.read_raw`), ``adapter`` (a peer's
  documented layout), ``metadata`` (CT-RATE's CSV), ``user`` / ``reference`` (the reading options said
  it), ``none`` (NumPy / image stacks: the format's rule);
* ``geometry_in_file``: False when the file carries no real geometry; :mod:`trace_bench.geometry` then
  maps grids by extent (and refuses a ``trivial`` header for reference-based metrics by default);
* ``warnings``: one-line strings the caller records (``warnings.csv``): a header that contradicts
  the adapter's known geometry, or what :func:`trace_bench.geometry.volume_warnings` says about a header
  without real geometry. Adapters never print.

Reading options (:class:`trace_bench.read_options.ReadOptions`, ``run``'s ``--read NAME.KEY=VALUE``):
``adapter.read(path, spacing=, convention=, layout=, reference=)``; ``layout`` and ``spacing`` may be
``"reference"``, which takes the paired reference case's grid from ``reference`` (its canonical
:class:`~trace_bench.volume.Volume`, read first). :func:`read_with_options` is that call from a
``ReadOptions``. Peer adapters define their files' layout themselves and refuse ``layout=CODE``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from trace_bench.errors import ConfigError, InvalidVolumeError, SpacingError
from trace_bench.intensity import Convention, parse_convention
from trace_bench.io import IMAGE_SLICE_SUFFIXES, VOLUME_SUFFIXES, parse_spacing, read_label_map, read_volume
from trace_bench.registry import Registry
from trace_bench.volume import Volume, from_canonical

ADAPTERS: "Registry[type[Adapter]]" = Registry("adapter")

Spacing = tuple[float, float, float]

_STRIP_SUFFIXES = tuple(sorted(VOLUME_SUFFIXES, key=len, reverse=True))
# GenerateCT's super-resolution collate quirk writes "sample-['name'].nii.gz"
_GENERATECT_WRAPPED = re.compile(r"^sample-\[?'?(?P<name>.*?)'?\]?$")


def strip_volume_suffix(name: str) -> str:
    low = name.lower()
    for suf in _STRIP_SUFFIXES:
        if low.endswith(suf):
            return name[: -len(suf)]
    return name


def volume_suffix(name: str) -> str:
    """The volume extension of ``name`` (``.nii.gz``, ``.nii``, ...) or ``""``."""
    low = name.lower()
    for suf in _STRIP_SUFFIXES:
        if low.endswith(suf):
            return name[-len(suf):]
    return ""


def generic_case_id(path: Path) -> str:
    """Case id rule shared by every adapter (documented in the README):

    1. the file name without its volume extension (``.nii.gz``, ``.nii``, ``.nrrd``, ``.mha``, ...);
       a DICOM or PNG folder's id is the folder name;
    2. GenerateCT's ``sample-['name']`` / ``sample-name`` wrapper is removed.

    Peer adapters may strip further suffixes (e.g. MAISI's ``_image``), see each adapter.
    """
    stem = strip_volume_suffix(Path(path).name)
    m = _GENERATECT_WRAPPED.match(stem)
    if m and stem.startswith("sample-"):
        stem = m.group("name")
    return stem


@dataclass(frozen=True)
class Detection:
    score: float  # 0 = not this adapter, 1 = certain
    reason: str


NO = Detection(0.0, "")


@dataclass(frozen=True)
class NiftiHeader:
    """What detection may look at without decoding voxels."""

    shape: tuple[int, ...]
    dtype: str
    affine: np.ndarray
    zooms: tuple[float, ...]

    @property
    def identity_affine(self) -> bool:
        return bool(np.allclose(self.affine, np.eye(4)))

    @property
    def itk_default(self) -> bool:
        """The RAS affine SimpleITK writes for an image with default geometry (1 mm, identity direction, origin 0)."""
        return bool(np.allclose(self.affine, np.diag([-1.0, -1.0, 1.0, 1.0])))


def add_warning(meta: dict[str, Any], text: str) -> None:
    """Append a one-line warning to ``meta["warnings"]`` (a volume's metadata)."""
    meta.setdefault("warnings", []).append(" ".join(str(text).split()))


def nifti_header(path: Path) -> NiftiHeader | None:
    """Header of a NIfTI file (shape, dtype, affine) or None if it is not a readable NIfTI."""
    p = Path(path)
    if not p.is_file() or not p.name.lower().endswith((".nii", ".nii.gz")):
        return None
    try:
        import nibabel as nib

        img = nib.load(str(p))
        return NiftiHeader(tuple(int(s) for s in img.shape), str(img.get_data_dtype()),
                           np.asarray(img.affine, dtype=np.float64), tuple(float(z) for z in img.header.get_zooms()))
    except Exception:  # detection never raises: an unreadable header just scores 0
        return None


class Adapter:
    """Base adapter: generic file discovery and the generic case-id rule.

    Public interface (used by :mod:`trace_bench.cases`, the runner and the CLI):
    ``list_files(folder)``, ``is_candidate(path)``, ``case_id(path)``, ``prompt(path)``,
    ``masks(path) -> {name: path}``, ``read(path, spacing=, convention=, layout=, reference=) -> Volume``,
    ``read_mask(path, name=, threshold=) -> Volume`` (always use this, not a generic reader, for the
    paths ``masks()`` returns: peers store masks with their own quirks), ``detect(path) -> Detection``.
    """

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    #: spacing (z, y, x) in mm assumed when the file carries none; None = the file must carry it
    default_spacing: ClassVar[Spacing | None] = None
    #: field of view (z, y, x) in mm of the peer's training grid; spacing = fov / shape when the file carries none
    default_fov_mm: ClassVar[Spacing | None] = None
    #: where the default geometry comes from (shown in provenance and `trace-bench adapters`)
    geometry_note: ClassVar[str] = ""
    #: intensity convention of the peer's files; None = detected or given by the user
    default_convention: ClassVar[str | None] = None
    convention_note: ClassVar[str] = ""
    #: threshold applied to the peer's soft masks in :meth:`read_mask` (None = integer label maps)
    mask_threshold: ClassVar[float | None] = None

    def __init__(self, spacing: "Spacing | str | None" = None, convention: str | None = None,
                 layout: str | None = None):
        self.spacing = _spacing_option(spacing)
        self.convention = convention
        self.layout = layout

    # --------------------------------------------------------------- discovery
    def is_candidate(self, path: Path) -> bool:
        """Whether ``path`` (a file or folder inside a method folder) is a volume for this adapter."""
        path = Path(path)
        if path.name.startswith("."):
            return False
        if path.is_dir():
            return any(f.suffix.lower() in IMAGE_SLICE_SUFFIXES or f.suffix.lower() == ".dcm" or f.suffix == ""
                       for f in path.iterdir() if f.is_file())
        return path.name.lower().endswith(VOLUME_SUFFIXES)

    def list_files(self, folder: Path) -> list[Path]:
        return sorted(p for p in Path(folder).iterdir() if self.is_candidate(p))

    def case_id(self, path: Path) -> str:
        return generic_case_id(path)

    def prompt(self, path: Path) -> str | None:
        """The report text stored beside the volume as ``<case_id>.txt`` or ``<stem>.txt``, if any.

        UTF-8 (a byte-order mark is accepted); raises :class:`~trace_bench.inputs.InputError` (one
        line, naming the ``.txt``) when the file cannot be read or decoded.
        """
        from trace_bench.inputs import InputError, check_input

        p = Path(path)
        for cand in (p.parent / (strip_volume_suffix(p.name) + ".txt"), p.parent / (self.case_id(p) + ".txt")):
            if cand.is_file():  # False for FIFOs, devices, dangling links: never opened
                check_input(cand)
                raw = cand.read_bytes()
                try:
                    return raw.decode("utf-8-sig").strip()
                except UnicodeDecodeError as e:
                    raise InputError(cand, f"prompt file is not UTF-8 text (byte 0x{raw[e.start]:02x} at offset "
                                           f"{e.start}); re-save it as UTF-8") from None
        return None

    def masks(self, path: Path) -> dict[str, Path]:
        """Label maps the peer writes beside the volume (name -> path); none by default.

        Read them with :meth:`read_mask` (same adapter), which applies the peer's quirks.
        """
        return {}

    def detect(self, path: Path) -> Detection:
        return Detection(0.0, "generic adapters are never auto-detected over a peer adapter")

    def input_key(self, path: Path) -> dict[str, Any]:
        """What this adapter reads for ``path`` besides the file itself (JSON-able, for the case's cache key;
        the file and its detached data files are :func:`trace_bench.inputs.input_hash`). Empty by default;
        CT-RATE returns the metadata row it applies."""
        return {}

    # --------------------------------------------------------------- reading
    def read(self, path: Path, *, spacing: "Spacing | str | None" = None, convention: str | None = None,
             layout: str | None = None, reference: Volume | None = None) -> Volume:
        """Read ``path`` as a canonical volume. ``spacing`` ((z, y, x) mm or ``"reference"``), ``convention``,
        ``layout`` (code or ``"reference"``): the reading options (module docstring); ``reference``: the
        paired reference case's volume, used by ``"reference"`` values."""
        sp = self._user_spacing(spacing)
        lay = layout if layout is not None else self.layout
        conv = convention or self.convention or self.default_convention
        fallback = None if (sp is not None or lay is not None) else self._fallback_spacing(path)
        vol = read_volume(path, convention=conv, spacing=sp if sp is not None else fallback, layout=lay,
                          reference=reference)
        vol.meta.setdefault("adapter", self.name)
        if sp is None and lay is None and fallback is not None and vol.meta.get("spacing_source") != "file header":
            vol.meta["spacing_source"] = f"adapter default {self.default_spacing}"
        self.note_header_geometry(path, vol)
        return vol

    def note_header_geometry(self, path: Path, vol: Volume, **_: Any) -> None:
        """Set ``geometry_in_file`` and add :func:`trace_bench.geometry.volume_warnings` to the volume's warnings."""
        from trace_bench.geometry import volume_warnings

        vol.meta["geometry_in_file"] = vol.meta.get("geometry") in ("header", "user", "reference") and bool(
            vol.meta.get("spacing_known", True))
        for w in volume_warnings(vol):
            add_warning(vol.meta, w)

    def read_mask(self, path: Path, *, name: str | None = None, threshold: float | None = None,
                  spacing: "Spacing | str | None" = None) -> Volume:
        """Read a label map written by this peer onto the canonical grid (integer labels in float32).

        Soft masks are thresholded (``label = value >= threshold``; default :attr:`mask_threshold`).
        """
        thr = self.mask_threshold if threshold is None else threshold
        vol = read_label_map(path, spacing=self._user_spacing(spacing), threshold=thr)
        vol.meta.update(adapter=self.name, mask_name=name, mask_threshold=thr)
        return vol

    def _fallback_spacing(self, path: Path) -> Spacing | None:
        return self.default_spacing

    # --------------------------------------------------------------- helpers for peer adapters
    def _user_spacing(self, spacing: "Spacing | str | None") -> "Spacing | str | None":
        """The spacing the user gave: ``(z, y, x)`` mm, ``"reference"``, or None."""
        if spacing is not None:
            return _spacing_option(spacing)
        return self.spacing

    def _peer_spacing(self, path: Path, spacing: "Spacing | str | None", layout: str | None,
                      reference: Volume | None) -> "Spacing | None":
        """For peer adapters (their own layout): refuse ``layout=``; resolve ``spacing="reference"``."""
        lay = layout if layout is not None else self.layout
        if lay is not None:
            raise ConfigError(f"{path}: layout={lay}: the '{self.name}' adapter defines the layout of its files "
                              "itself; layout= applies to the generic formats (nifti, npy, png-stack, dicom)")
        sp = self._user_spacing(spacing)
        if sp == "reference":
            if reference is None:
                raise ConfigError(f"{path}: spacing=reference needs the paired reference case, and there is none")
            return tuple(float(v) for v in reference.spacing)  # type: ignore[return-value]
        return sp  # type: ignore[return-value]

    def resolve_spacing(self, path: Path, shape_zyx: tuple[int, int, int],
                        spacing: "Spacing | str | None" = None) -> tuple[Spacing, str]:
        """Spacing (z, y, x) mm for a file without geometry: user's, else the adapter's documented default."""
        sp = self._user_spacing(spacing)
        if sp == "reference":
            raise ConfigError(f"{path}: spacing=reference is resolved by read(..., reference=VOLUME) first")
        if sp is not None:
            return sp, "user"  # type: ignore[return-value]
        if self.default_fov_mm is not None:
            fov = self.default_fov_mm
            sp = tuple(float(f) / int(n) for f, n in zip(fov, shape_zyx))
            return sp, (f"adapter default: {self.name} field of view {_fmt3(fov)} mm (z,y,x) / shape {tuple(shape_zyx)}"
                        + (f"; {self.geometry_note}" if self.geometry_note else ""))  # type: ignore[return-value]
        if self.default_spacing is not None:
            return self.default_spacing, f"adapter default: {self.name} spacing {_fmt3(self.default_spacing)} mm (z,y,x)"
        from trace_bench.read_options import option_hint

        raise SpacingError(path, f"the '{self.name}' files carry no voxel spacing; add "
                                 f"{option_hint('spacing', 'z,y,x')} (mm) or spacing=reference")

    def resolve_convention(self, path: Path, convention: "str | Convention | None" = None, *,
                           default: str | None = None, note: str | None = None) -> tuple[Convention, str]:
        """Intensity convention: user's, else the peer's documented one (``default`` overrides the class's)."""
        spec = convention or self.convention
        if spec is not None and str(spec) != "auto":
            return parse_convention(spec, path), "given by the user"
        default = default or self.default_convention
        note = self.convention_note if note is None else note
        if default is None:
            from trace_bench.read_options import option_hint

            raise ConfigError(f"{path}: adapter {self.name!r} has no default intensity convention; add "
                              f"{option_hint('convention', 'CONVENTION')}")
        return parse_convention(default, path), f"adapter default for {self.name}" + (f": {note}" if note else "")

    def canonical(self, path: Path, array_zyx: np.ndarray, *, spacing: "Spacing | str | None",
                  convention: "str | Convention | None", meta: dict[str, Any],
                  default_convention: str | None = None, convention_note: str | None = None) -> Volume:
        """Finish a read for a peer file without geometry: ``array_zyx`` is already (z, y, x) LPS, stored values."""
        arr = np.asarray(array_zyx)
        if arr.ndim != 3 or min(arr.shape) == 0:
            raise InvalidVolumeError(path, f"expected a 3-D volume after the {self.name} layout, got shape {arr.shape}")
        sp, sp_src = self.resolve_spacing(path, arr.shape, spacing)  # type: ignore[arg-type]
        conv, why = self.resolve_convention(path, convention, default=default_convention, note=convention_note)
        hu = conv.to_hu(arr)
        meta = {k: v for k, v in meta.items() if k not in _RAW_GEOMETRY_KEYS}
        meta = {"source_orientation": "none in the file (orientation from the adapter's layout)", **meta,
                "path": str(path), "adapter": self.name, "convention": conv.spec, "convention_reason": why,
                "spacing_source": sp_src, "geometry_in_file": False,
                "geometry": "user" if sp_src == "user" else "adapter"}
        if sp_src == "user":
            meta["spacing_known"] = True
        return from_canonical(hu, sp, meta)

    @classmethod
    def describe(cls) -> dict[str, Any]:
        """One row of `trace-bench adapters`."""
        if cls.default_fov_mm is not None:
            geom = f"no geometry in file: FOV {_fmt3(cls.default_fov_mm)} mm (z,y,x) / shape"
        elif cls.default_spacing is not None:
            geom = f"no geometry in file: spacing {_fmt3(cls.default_spacing)} mm (z,y,x)"
        else:
            geom = "from the file; files without real geometry need layout= (and spacing=) reading options"
        return {"name": cls.name, "description": cls.description, "geometry": geom,
                "geometry_note": cls.geometry_note, "convention": cls.default_convention or "hu if unmistakable, else --convention",
                "convention_note": cls.convention_note}


#: what :func:`trace_bench.io.read_raw` says about the raw file's own header, dropped by peers that apply
#: their documented layout instead (the canonical volume's geometry is the adapter's, not the header's)
_RAW_GEOMETRY_KEYS = ("geometry", "geometry_notes", "implied_layout", "index_shape", "index_affine", "nifti_codes",
                      "read_layout", "spacing_known")


def _spacing_option(spacing: "Spacing | str | None") -> "Spacing | str | None":
    if spacing is None:
        return None
    if isinstance(spacing, str) and spacing.strip().lower() == "reference":
        return "reference"
    if isinstance(spacing, tuple) and len(spacing) == 3:
        return tuple(float(s) for s in spacing)  # type: ignore[return-value]
    return parse_spacing(spacing)


def read_with_options(path: str | Path, options: "Any", reference: Volume | None = None) -> Volume:
    """Read ``path`` with a :class:`trace_bench.read_options.ReadOptions` (its ``format`` names the adapter):
    ``get_adapter(options.format).read(path, spacing=, convention=, layout=, reference=)``."""
    return get_adapter(options.format).read(Path(path), spacing=options.spacing, convention=options.convention,
                                            layout=options.layout, reference=reference)


def _fmt3(t: "tuple[float, ...]") -> str:
    return " x ".join(f"{v:g}" for v in t)


def register_adapter(cls: type[Adapter]) -> type[Adapter]:
    """Class decorator: register an adapter class under ``cls.name``."""
    if not cls.name:
        raise ConfigError(f"adapter class {cls.__name__} has no name")
    ADAPTERS.register(cls.name, cls)
    return cls


def get_adapter(name: str, **kwargs) -> Adapter:
    import baselines  # noqa: F401  (fills the registry)

    return ADAPTERS.get(name)(**kwargs)
