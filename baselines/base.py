"""Adapter interface and registry: a peer's raw output file -> canonical Volume.

An adapter knows one writer's layout: which files in a folder are volumes, how a file name maps to
a case id, how stored values map to HU, and which geometry to assume when the file has none. The
geometry it used is recorded in ``volume.meta`` (``spacing_source``, ``adapter``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from trace_bench.errors import ConfigError
from trace_bench.io import IMAGE_SLICE_SUFFIXES, VOLUME_SUFFIXES, read_volume
from trace_bench.registry import Registry
from trace_bench.volume import Volume

ADAPTERS: "Registry[Adapter]" = Registry("adapter")

_STRIP_SUFFIXES = tuple(sorted(VOLUME_SUFFIXES, key=len, reverse=True))
# GenerateCT's super-resolution collate quirk writes "sample-['name'].nii.gz"
_GENERATECT_WRAPPED = re.compile(r"^sample-\[?'?(?P<name>.*?)'?\]?$")


def strip_volume_suffix(name: str) -> str:
    low = name.lower()
    for suf in _STRIP_SUFFIXES:
        if low.endswith(suf):
            return name[: -len(suf)]
    return name


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


class Adapter:
    """Base adapter: generic file discovery and the generic case-id rule."""

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    #: spacing (z, y, x) in mm assumed when the file carries none; None = the file must carry it
    default_spacing: ClassVar[tuple[float, float, float] | None] = None
    #: intensity convention of the peer's files; None = detected or given by the user
    default_convention: ClassVar[str | None] = None

    def __init__(self, spacing: tuple[float, float, float] | None = None, convention: str | None = None):
        self.spacing = spacing
        self.convention = convention

    # --------------------------------------------------------------- discovery
    def is_candidate(self, path: Path) -> bool:
        """Whether ``path`` (a file or folder inside a method folder) is a volume for this adapter."""
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
        """The report text stored beside the volume as ``<case_id>.txt`` or ``<stem>.txt``, if any."""
        p = Path(path)
        for cand in (p.parent / (strip_volume_suffix(p.name) + ".txt"), p.parent / (self.case_id(p) + ".txt")):
            if cand.is_file():
                return cand.read_text(encoding="utf-8").strip()
        return None

    def masks(self, path: Path) -> dict[str, Path]:
        """Label maps the peer writes beside the volume (name -> path); none by default."""
        return {}

    def detect(self, path: Path) -> Detection:
        return Detection(0.0, "generic adapters are never auto-detected over a peer adapter")

    # --------------------------------------------------------------- reading
    def read(self, path: Path, *, spacing: tuple[float, float, float] | None = None,
             convention: str | None = None) -> Volume:
        sp = spacing or self.spacing
        conv = convention or self.convention or self.default_convention
        vol = read_volume(path, convention=conv, spacing=sp or self._fallback_spacing(path))
        vol.meta.setdefault("adapter", self.name)
        if sp is None and self.default_spacing is not None and vol.meta.get("spacing_source") != "file header":
            vol.meta["spacing_source"] = f"adapter default {self.default_spacing}"
        return vol

    def _fallback_spacing(self, path: Path) -> tuple[float, float, float] | None:
        return self.default_spacing


def register_adapter(cls: type[Adapter]) -> type[Adapter]:
    """Class decorator: register an adapter class under ``cls.name``."""
    if not cls.name:
        raise ConfigError(f"adapter class {cls.__name__} has no name")
    ADAPTERS.register(cls.name, cls)  # type: ignore[arg-type]
    return cls


def get_adapter(name: str, **kwargs) -> Adapter:
    import baselines  # noqa: F401  (fills the registry)

    return ADAPTERS.get(name)(**kwargs)  # type: ignore[operator]
