"""Generator-formats corpus (issues 26, 27): the ways generators really write volumes, built in the tests from
crops of the shipped chest CTs (no tests here; used by ``tests/io/test_io_generator_formats.py`` at the reader level and
``tests/run/test_run_generator_formats.py`` through ``python -m trace_bench run``).

A :class:`Kind` writes one case the way one kind of generator does, from the HU array the case should hold
(``truth``, canonical ``(z, y, x)``) and the reference case's grid, and says how ``run`` reads it right: the
documented reading options (``--read NAME.KEY=VALUE``) and, when a first run without them must refuse the
file, the option the one-line refusal names. ``held(truth)`` is what the file holds in HU once read right
(values clipped to the convention's window, padding), i.e. what a correctly written twin holds.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import nibabel as nib
import numpy as np

from trace_bench.io import write_nifti
from trace_bench.volume import Volume

from helpers.paths import DEMO_CTS

#: HU range a plain int16 / uint16 HU+1024 file holds in this corpus
HU_MIN, HU_MAX = -1024.0, 3071.0
#: padding value of the HU + 1024 kind (stored), far below -1024 as scanners write outside the scan circle
PAD_STORED = -2000
PAD_ROWS = 4


def save_nifti(path: Path, data: np.ndarray, affine, **header) -> Path:
    """``data`` (the file's index order) with ``affine`` (None: no orientation codes) and header fields."""
    path.parent.mkdir(parents=True, exist_ok=True)
    img = nib.Nifti1Image(data, affine)
    for k, v in header.items():
        img.header[k] = v
    nib.save(img, str(path))
    return path


def set_scaling(path: Path, slope: float, inter: float) -> None:
    """Write ``scl_slope`` / ``scl_inter`` into an uncompressed ``.nii`` header (bytes 112-119)."""
    raw = bytearray(path.read_bytes())
    struct.pack_into("<ff", raw, 112, slope, inter)
    path.write_bytes(bytes(raw))


def clip_window(hu: np.ndarray) -> np.ndarray:
    """What a [0, 1] / [-1, 1] file can hold: the HU window -1000..1000 of the conventions ``unit`` / ``symmetric``."""
    return np.clip(hu, -1000.0, 1000.0).astype(np.float32)


def padded(hu: np.ndarray) -> np.ndarray:
    """What the HU + 1024 kind holds once read with ``convention=hu+1024``: the padding rows at -2000 - 1024."""
    out = hu.astype(np.float32).copy()
    out[:, :PAD_ROWS, :] = PAD_STORED - 1024
    return out


def noised_truth(ref: Volume, seed: int, sd: float = 20.0) -> np.ndarray:
    """A generated case: the reference plus seeded noise, rounded to whole HU (every kind can hold it exactly)."""
    rng = np.random.default_rng(seed)
    return np.clip(np.round(ref.array + rng.normal(0.0, sd, ref.shape)), HU_MIN, HU_MAX).astype(np.float32)


# ------------------------------------------------------------------------------ writers (truth (z, y, x) HU, grid)
def _unit(hu, ref, folder, cid):
    data = ((clip_window(hu).astype(np.float64) + 1000.0) / 2000.0).astype(np.float32)
    return save_nifti(folder / f"{cid}.nii.gz", data.T.copy(), ref.affine)


def _symmetric(hu, ref, folder, cid):
    return save_nifti(folder / f"{cid}.nii.gz", (clip_window(hu) / 1000.0).astype(np.float32).T.copy(), ref.affine)


def _int16_hu(hu, ref, folder, cid):
    return save_nifti(folder / f"{cid}.nii.gz", hu.astype(np.int16).T.copy(), ref.affine)


def _int16_scaled(hu, ref, folder, cid):
    """Stored = 2 * (HU + 1024) with scl_slope 0.5, scl_inter -1024 in the header."""
    stored = ((hu.astype(np.int32) + 1024) * 2).astype(np.int16)
    p = save_nifti(folder / f"{cid}.nii", stored.T.copy(), ref.affine)
    set_scaling(p, 0.5, -1024.0)
    return p


def _hu_offset(hu, ref, folder, cid):
    """int16 HU + 1024 without rescale in the header, -2000 padding rows."""
    stored = (hu + 1024).astype(np.int16)
    stored[:, :PAD_ROWS, :] = PAD_STORED
    return save_nifti(folder / f"{cid}.nii.gz", stored.T.copy(), ref.affine)


def _npy(hu, ref, folder, cid):
    p = folder / f"{cid}.npy"
    p.parent.mkdir(parents=True, exist_ok=True)
    np.save(p, hu.astype(np.float32))  # (z, y, x), no spacing
    return p


def _png(hu, ref, folder, cid):
    from PIL import Image

    d = folder / cid
    d.mkdir(parents=True, exist_ok=True)
    for k, sl in enumerate(hu):
        Image.fromarray((sl + 1024).astype(np.uint16)).save(d / f"slice_{k:03d}.png")
    return d


def _eye_zyx(hu, ref, folder, cid):
    return save_nifti(folder / f"{cid}.nii.gz", hu.astype(np.float32).copy(), np.eye(4))  # nib.Nifti1Image(zyx, eye)


def _eye_xyz(hu, ref, folder, cid):
    return save_nifti(folder / f"{cid}.nii.gz", hu.astype(np.float32).T.copy(), np.eye(4))  # (x, y, z), eye


def _z_half(hu, ref, folder, cid):
    aff = ref.affine.copy()
    aff[:3, 2] /= 2  # the header says half the slice spacing: half the z field of view
    return save_nifti(folder / f"{cid}.nii.gz", hu.astype(np.float32).T.copy(), aff)


def _ras_true(hu, ref, folder, cid):
    """A truthful RAS header (as MAISI writes) for an LPS reference: the same grid indexed toward R and A."""
    ras = ref.affine.copy()
    nx, ny, _ = hu.T.shape
    ras[:3, 3] = ref.affine[:3, :3] @ np.array([nx - 1.0, ny - 1.0, 0.0]) + ref.affine[:3, 3]  # the new first voxel
    ras[:3, :2] *= -1
    return save_nifti(folder / f"{cid}.nii.gz", hu.astype(np.float32).T[::-1, ::-1, :].copy(), ras)


@dataclass(frozen=True)
class Kind:
    """One way of writing a generated case (module docstring)."""

    name: str
    write: Callable[[np.ndarray, Volume, Path, str], Path]
    fmt: str = "nifti"
    #: the documented reading options that read it right ({}: read right as is)
    options: dict[str, str] = field(default_factory=dict)
    #: the option a first run without ``options`` names in its one-line refusal (None: not refused)
    refusal: str | None = None
    #: whether the first run refuses the file for every metric (a read error) or only reference-based ones
    read_refused: bool = False
    held: Callable[[np.ndarray], np.ndarray] = staticmethod(lambda hu: hu)  # type: ignore[assignment]
    #: name of the correctly written twin with the same held values
    twin: str = "twin"


KINDS: tuple[Kind, ...] = (
    Kind("unit", _unit, options={"convention": "unit"}, refusal="convention=unit", read_refused=True,
         held=clip_window, twin="twin_window"),
    Kind("symmetric", _symmetric, options={"convention": "symmetric"}, refusal="convention=symmetric",
         read_refused=True, held=clip_window, twin="twin_window"),
    Kind("int16_hu", _int16_hu),
    Kind("int16_scaled", _int16_scaled),
    Kind("hu_offset", _hu_offset, options={"convention": "hu+1024"}, refusal="convention=hu+1024", read_refused=True,
         held=padded, twin="twin_padded"),
    Kind("npy", _npy, fmt="npy", options={"spacing": "reference"}, refusal="spacing=z,y,x", read_refused=True),
    Kind("png", _png, fmt="png-stack", options={"spacing": "reference", "convention": "hu+1024"},
         refusal="spacing=z,y,x", read_refused=True),
    Kind("eye_zyx", _eye_zyx, options={"layout": "SPL", "spacing": "reference"}, refusal="layout=SPL"),
    Kind("eye_xyz", _eye_xyz, options={"layout": "reference"}, refusal="layout=SPL"),
    Kind("z_half", _z_half, options={"spacing": "reference"}, refusal="spacing=z,y,x"),
    Kind("ras_true", _ras_true),
)
TWINS = {"twin": lambda hu: hu, "twin_window": clip_window, "twin_padded": padded}


def reference_crops(folder: Path, n_slices: int = 8, step: int = 4) -> dict[str, Volume]:
    """The shipped demo CTs cropped to ``n_slices`` central slices and subsampled in-plane by ``step``, written
    with their real geometry into ``folder``; returns {case id: the volume as ``run`` reads it back}."""
    from baselines import get_adapter
    ad = get_adapter("nifti")
    out = {}
    for p in ad.list_files(DEMO_CTS):
        cid = ad.case_id(p)
        v = ad.read(p)
        z0 = v.shape[0] // 2 - n_slices // 2
        aff = v.affine.copy()
        aff[:3, 0] *= step
        aff[:3, 1] *= step
        aff[:3, 3] = v.affine[:3, :3] @ np.array([0.0, 0.0, z0]) + v.affine[:3, 3]
        small = Volume(v.array[z0:z0 + n_slices, ::step, ::step].copy(), (v.spacing[0], v.spacing[1] * step,
                                                                           v.spacing[2] * step), aff, {})
        out[cid] = ad.read(write_nifti(small, folder / f"{cid}.nii.gz"))
    return out


def build_corpus(root: Path, kinds: tuple[Kind, ...] = KINDS, seed: int = 7) -> tuple[Path, dict[str, Path]]:
    """``root/reference`` (crops) and one folder per kind and per twin, every case noised with a seed of its own:
    returns (reference folder, {method name: folder})."""
    refs = reference_crops(root / "reference")
    folders: dict[str, Path] = {}
    for i, (cid, ref) in enumerate(sorted(refs.items())):
        truth = noised_truth(ref, seed + i)
        for k in kinds:
            k.write(truth, ref, root / k.name, cid)
            folders[k.name] = root / k.name
        for name, held in TWINS.items():
            write_nifti(ref.with_array(held(truth)), root / name / f"{cid}.nii.gz")
            folders[name] = root / name
    return root / "reference", folders
