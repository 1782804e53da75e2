"""``auto``: propose an adapter from file names, shapes, headers and layouts, and say why.

Rules (never a guess):

* every peer adapter scores a file from cheap evidence (name pattern, header shape/dtype/affine,
  sibling files) with :meth:`~baselines.base.Adapter.detect`; scores >= :data:`CANDIDATE_SCORE` are
  candidates;
* exactly one candidate: it is used, and the reason is reported (``inspect`` and ``convert`` print it,
  ``volume.meta['adapter_reason']`` keeps it);
* several candidates: refused, listing each candidate and its evidence;
* no candidate: a file with real geometry (a NIfTI with a non-trivial affine, NRRD, MHA, DICOM) goes to
  the generic reader; a file without geometry (identity / SimpleITK-default affine, ``.npy``, PNG) is
  refused with the flags that settle it (``--format``, ``--spacing``, ``--convention``);
* a folder: every volume in it (and one level below, for GenerateCT's ``samples.*`` / ``images``
  layout) is detected; masks that the detected adapter pairs with a volume are not counted; all
  must agree, otherwise the folder is refused with the adapters found and example files.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np

from trace_bench.errors import UnknownFormatError, VolumeError
from trace_bench.io import IMAGE_SLICE_SUFFIXES, VOLUME_SUFFIXES, detect_format
from trace_bench.volume import Volume

from .base import ADAPTERS, Adapter, Detection, nifti_header, register_adapter

CANDIDATE_SCORE = 0.5
GENERIC = frozenset({"nifti", "npy", "dicom", "png-stack", "auto"})
MAX_FOLDER_ENTRIES = 64


class AmbiguousFormatError(UnknownFormatError):
    """More than one adapter fits, or a folder mixes writers: the user must say which (``--format``)."""


def peer_adapters() -> list[type[Adapter]]:
    import baselines  # noqa: F401  (fills the registry)

    return [ADAPTERS.get(n) for n in ADAPTERS.names() if n not in GENERIC]


def score_all(path: str | Path) -> list[tuple[str, Detection]]:
    """Every peer adapter's detection for ``path``, best first."""
    p = Path(path)
    rows = [(cls.name, cls().detect(p)) for cls in peer_adapters()]
    return sorted(rows, key=lambda r: -r[1].score)


def detect_adapter(path: str | Path) -> tuple[Adapter, str]:
    """Propose the adapter for one file (or DICOM/PNG folder): ``(adapter, reason)``; refuse when unsure."""
    from .base import get_adapter

    p = Path(path)
    if not p.exists():
        raise VolumeError(p, "no such file or folder")
    rows = score_all(p)
    cands = [(n, d) for n, d in rows if d.score >= CANDIDATE_SCORE]
    if len(cands) == 1:
        n, d = cands[0]
        return get_adapter(n), f"{n}: {d.reason} (score {d.score:.2f})"
    if len(cands) > 1:
        listed = "; ".join(f"{n} ({d.reason}, score {d.score:.2f})" for n, d in cands)
        raise AmbiguousFormatError(p, f"ambiguous: fits several adapters: {listed}. Pass --format NAME (never guessed)")
    return _generic(p)


def _generic(p: Path) -> tuple[Adapter, str]:
    from .base import get_adapter

    peers = ", ".join(c.name for c in peer_adapters())
    try:
        fmt = detect_format(p)
    except UnknownFormatError as e:
        raise UnknownFormatError(p, f"{e.reason}; no adapter recognises it") from None
    if fmt == "dicom":
        return get_adapter("dicom"), "dicom: a folder of DICOM files (geometry and HU rescale from the headers)"
    if fmt == "png":
        raise AmbiguousFormatError(p, "PNG/TIFF slices carry no geometry and no intensity convention: read them with "
                                      "format png-stack, spacing=z,y,x (or reference) and convention=... "
                                      "(`trace-bench doctor` suggests them)")
    if fmt == "npy":
        shape = _npy_shape(p)
        raise AmbiguousFormatError(p, f"a NumPy array of shape {shape} matches no peer adapter ({peers}) and carries no "
                                      "geometry: read it with format npy and spacing=z,y,x (or reference), plus "
                                      "convention=... unless it holds HU (or name a peer's format; "
                                      "`trace-bench doctor` suggests them)")
    if fmt == "nifti":
        h = nifti_header(p)
        if h is None:
            return get_adapter("nifti"), "nifti: NIfTI file (header unreadable here; the reader will say why)"
        if h.identity_affine or h.itk_default:
            kind = "an identity" if h.identity_affine else "a SimpleITK-default (1 mm, identity direction)"
            hint = ""
            if p.name.lower().split(".")[0].endswith(("_lobe", "_airway", "_vessel", "_label")):
                hint = " (it looks like a mask written beside a volume: `trace-bench convert VOLUME OUT --masks` puts it on the volume's grid)"
            from trace_bench.errors import option_hint

            raise AmbiguousFormatError(p, f"NIfTI of shape {h.shape} with {kind} affine carries no real geometry and "
                                          f"matches no peer adapter ({peers}): name the peer's format (--format NAME), "
                                          f"or read it as nifti saying its layout: {option_hint('layout', 'CODE')}, "
                                          f"e.g. SPL for a (z, y, x) array (`trace-bench doctor` suggests one){hint}")
        codes = "".join(nib.aff2axcodes(h.affine))
        zooms = ", ".join(f"{z:g}" for z in h.zooms[:3])
        return get_adapter("nifti"), f"nifti: real affine ({codes}, voxel {zooms} mm x,y,z), no peer adapter matches"
    return get_adapter("nifti"), f"nifti: {fmt.upper()} file with its own geometry, no peer adapter matches"


def _npy_shape(p: Path) -> Any:
    try:
        return tuple(np.load(str(p), mmap_mode="r", allow_pickle=False).shape)
    except Exception:
        return "unknown"


def folder_entries(folder: Path) -> list[Path]:
    """Volume files (and DICOM/PNG folders) in ``folder`` and one level below."""
    out: list[Path] = []

    def is_vol(f: Path) -> bool:
        return f.is_file() and not f.name.startswith(".") and f.name.lower().endswith(VOLUME_SUFFIXES)

    def is_series_dir(d: Path) -> bool:
        files = [f for f in d.iterdir() if f.is_file() and not f.name.startswith(".")]
        return bool(files) and not any(is_vol(f) for f in files) and not any(f.is_dir() for f in d.iterdir()) and (
            any(f.suffix.lower() in IMAGE_SLICE_SUFFIXES + (".dcm",) or f.suffix == "" for f in files))

    for e in sorted(folder.iterdir()):
        if e.name.startswith("."):
            continue
        if is_vol(e):
            out.append(e)
        elif e.is_dir():
            if is_series_dir(e):
                out.append(e)
            else:
                out += sorted(f for f in e.iterdir() if is_vol(f))
    return out


def detect_folder_adapter(folder: str | Path) -> tuple[Adapter, str]:
    """Propose one adapter for every volume in ``folder``: ``(adapter, reason)``; refuse mixed or ambiguous folders."""
    folder = Path(folder)
    if not folder.is_dir():
        raise VolumeError(folder, "not a folder")
    entries = folder_entries(folder)
    if not entries:
        raise UnknownFormatError(folder, "no volume files in this folder (or one level below)")
    entries = entries[:MAX_FOLDER_ENTRIES]
    found: dict[Path, tuple[Adapter, str]] = {}
    failed: dict[Path, str] = {}
    for e in entries:
        try:
            found[e] = detect_adapter(e)
        except AmbiguousFormatError as err:
            failed[e] = err.reason
        except VolumeError as err:
            failed[e] = err.reason
    masks: set[Path] = set()
    for e, (ad, _) in found.items():
        masks |= {Path(m) for m in ad.masks(e).values() if Path(m) != e}  # MedSyn low-res masks live in the volume's own file
    by_name: dict[str, list[Path]] = {}
    for e, (ad, _) in found.items():
        if e not in masks:
            by_name.setdefault(ad.name, []).append(e)
    failed = {e: r for e, r in failed.items() if e not in masks}
    if len(by_name) > 1:
        listed = "; ".join(f"{n} ({len(fs)} file(s), e.g. {fs[0].relative_to(folder)})" for n, fs in sorted(by_name.items()))
        raise AmbiguousFormatError(folder, f"mixes outputs of several writers: {listed}. Split the folder or pass "
                                           "the format explicitly (never guessed)")
    if failed:
        e, r = next(iter(failed.items()))
        extra = f" (and {len(failed) - 1} more)" if len(failed) > 1 else ""
        have = f"; the other files look like {next(iter(by_name))}" if by_name else ""
        raise AmbiguousFormatError(folder, f"cannot tell the format of {e.relative_to(folder)}{extra}: {r}{have}")
    name, files = next(iter(by_name.items()))
    ad, why = found[files[0]]
    n_masks = len(masks & set(entries))
    tail = f", plus {n_masks} mask file(s) it pairs with them" if n_masks else ""
    return ad, f"{len(files)} volume(s) agree on {why}{tail}"


@register_adapter
class AutoAdapter(Adapter):
    """Resolves the real adapter per folder (``list_files``) or per file, then delegates to it."""

    name = "auto"
    description = "Detect the writer from names, shapes, headers and layout; refuse ambiguous input with the candidates"

    def __init__(self, spacing=None, convention=None, layout=None):
        super().__init__(spacing=spacing, convention=convention, layout=layout)
        self._resolved: dict[Path, tuple[Adapter, str]] = {}
        self._folder: dict[Path, tuple[Adapter, str]] = {}

    def resolve(self, path: str | Path) -> tuple[Adapter, str]:
        """The adapter (and reason) for one path, using the folder decision when there is one."""
        p = Path(path)
        if p in self._resolved:
            return self._resolved[p]
        for parent in (p.parent, p.parent.parent):
            if parent in self._folder:
                return self._folder[parent]
        ad, why = detect_adapter(p)
        self._resolved[p] = (ad, why)
        return ad, why

    def list_files(self, folder: Path) -> list[Path]:
        folder = Path(folder)
        ad, why = detect_folder_adapter(folder)
        self._folder[folder] = (ad, why)
        files = ad.list_files(folder)
        for f in files:
            self._resolved[Path(f)] = (ad, why)
        return files

    def is_candidate(self, path: Path) -> bool:
        p = Path(path)
        if p.parent in self._folder:
            return self._folder[p.parent][0].is_candidate(p)
        return super().is_candidate(p)

    def case_id(self, path: Path) -> str:
        return self.resolve(path)[0].case_id(path)

    def prompt(self, path: Path) -> str | None:
        return self.resolve(path)[0].prompt(path)

    def input_key(self, path: Path) -> dict[str, Any]:
        return self.resolve(path)[0].input_key(path)

    def masks(self, path: Path) -> dict[str, Path]:
        ad, why = self.resolve(path)
        out = ad.masks(path)
        for m in out.values():  # a mask is read by its volume's adapter (detection on the mask alone may fail)
            self._resolved[Path(m)] = (ad, why)
        return out

    def read(self, path: Path, *, spacing=None, convention=None, layout=None, reference=None) -> Volume:
        ad, why = self.resolve(path)
        vol = ad.read(path, spacing=spacing if spacing is not None else self.spacing,
                      convention=convention or self.convention, layout=layout if layout is not None else self.layout,
                      reference=reference)
        vol.meta["adapter_reason"] = f"auto: {why}"
        return vol

    def read_mask(self, path: Path, *, name=None, threshold=None, spacing=None) -> Volume:
        # masks() and list_files() recorded which adapter owns the path; a mask alone may not be detectable
        return self.resolve(path)[0].read_mask(Path(path), name=name, threshold=threshold, spacing=spacing)

    def detect(self, path: Path) -> Detection:
        return Detection(0.0, "auto is not a writer")
