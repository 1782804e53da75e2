"""GenerateCT (Hamamci et al.): the low-resolution (CT-ViT + MaskGIT) and super-resolution stages.

Facts from ``ibrahimethemhamamci/GenerateCT`` (read, not copied):

* The network's volume tensor is ``(C=1, D, H, W)``. In training (``transformer_maskgit/.../
  videotextdataset.py``) every CT-RATE slice ``nifti[:, :, k]`` becomes a PIL image, so ``H`` is the
  NIfTI's first axis and ``W`` its second; HU are clipped to [-1000, 1000] and divided by 1000.
* Low-res stage (``inference_transformer.py`` -> ``transformer_maskgit/data.py: tensor_to_nifti``):
  ``tensor.squeeze(0).swapaxes(0, 2)`` is saved as float32 ``(W, H, D) = (128, 128, 201)`` with
  ``affine = np.eye(4)`` to ``transformer_inference/samples.{name}_{i}/{name}_0.nii.gz``, and the
  prompt to ``{name}_0.txt``. Values are the decoder's output, about HU/1000, **not clamped**.
* Super-resolution stage (``inference_superres.py``): the low-res file is read back as
  ``(x + 1) / 2`` and ``permute(2, 1, 0)`` -> ``(D, H, W)``; each slice is upsampled x4 and the stack
  ``(D, C, H, W)`` is saved after ``permute(2, 3, 0, 1)`` as ``(H, W, D, 1) = (512, 512, 201, 1)``,
  values in [0, 1] (HU = 2000 x - 1000), ``affine = np.eye(4)``, to
  ``images/sample-{path_name}.nii.gz``. ``path_name`` is the text file name cut at the first ``_``,
  and the DataLoader collates it into a list, so the literal name is ``sample-['name'].nii.gz``
  (names sharing the part before the first ``_`` overwrite each other).

Geometry (none is in the files): orientation as the authors' own challenge pipeline writes it
(``forithmus/VLM3D-Dockers`` ``ct_challenges/ctgen_example_docker/process.py``: the SR stack
``(D, C, H, W)`` -> ``permute(1, 0, 3, 2)`` -> SimpleITK array ``(z, y, x) = (D, W, H)`` with identity
direction, i.e. LPS): slice ``D = 0`` is inferior, ``W`` runs anterior -> posterior and ``H`` right ->
left. Spacing: the CT-RATE harmonised grid (0.75 mm in-plane, 1.5 mm slices; CT-CLIP
``data_inference_nii.py`` target spacing) over a 512 x 512 x 201 volume, i.e. a field of view of
301.5 x 384 x 384 mm (z, y, x) divided by the stored shape: 1.5 x 0.75 x 0.75 mm for the SR output,
1.5 x 3 x 3 mm for the low-res output. The challenge container itself writes 1 mm isotropic: pass
``--spacing 1,1,1`` (SR) to reproduce it.
"""

from __future__ import annotations

import re
from pathlib import Path

import nibabel as nib
import numpy as np

from trace_bench.errors import InvalidVolumeError
from trace_bench.io import read_raw
from trace_bench.volume import Volume, validate_array

from .base import NO, Adapter, Detection, generic_case_id, nifti_header, register_adapter, strip_volume_suffix

_NIFTI = (".nii.gz", ".nii")
_FOV = (301.5, 384.0, 384.0)  # (z, y, x) mm: 201 x 1.5 mm, 512 x 0.75 mm (CT-RATE grid)
_LOWRES_NAME = re.compile(r"^(?P<name>.+)_(?P<k>\d+)$")
_SAMPLES_DIR = re.compile(r"^samples\.(?P<name>.+)_(?P<i>\d+)$")


def _is_nifti(p: Path) -> bool:
    return p.is_file() and not p.name.startswith(".") and p.name.lower().endswith(_NIFTI)


def _read_identity_nifti(adapter: Adapter, path: Path) -> tuple[np.ndarray, dict]:
    """Decode a GenerateCT NIfTI; refuse files whose affine is not GenerateCT's ``np.eye(4)``.

    A file with a real affine was re-saved by someone else, so GenerateCT's axis layout cannot be
    assumed; read such files with ``--format nifti``.
    """
    data, aff, meta = read_raw(path, fmt="nifti")
    if np.allclose(aff, np.diag([-1.0, -1.0, 1.0, 1.0])):
        # re-saved through SimpleITK (e.g. VLM3D-Dockers' container): its array order is not GenerateCT's file layout
        raise InvalidVolumeError(path, "has SimpleITK's default affine (1 mm, identity direction), but GenerateCT writes "
                                       f"np.eye(4); this is not raw '{adapter.name}' output (re-saved through SimpleITK, "
                                       "GenerateCT's axis layout cannot be assumed): read it with --format nifti")
    if not np.allclose(aff, np.eye(4)):
        raise InvalidVolumeError(path, f"has a real affine (orientation {''.join(nib.aff2axcodes(aff))}), "
                                       f"but GenerateCT writes np.eye(4); this is not raw '{adapter.name}' output: "
                                       "read it with --format nifti")
    meta.pop("spacing_source", None)
    meta.pop("path", None)
    return data, meta


@register_adapter
class GenerateCTLowResAdapter(Adapter):
    name = "generatect-lowres"
    description = ("GenerateCT low-res stage: transformer_inference/samples.{name}_{i}/{name}_0.nii.gz, float32 "
                   "(W,H,D)=(128,128,201), ~HU/1000 unclamped, identity affine, prompt in {name}_0.txt")
    default_fov_mm = _FOV
    geometry_note = ("CT-RATE grid 0.75 mm in-plane x 1.5 mm slices over 512x512x201 (GenerateCT has no geometry); "
                     "orientation from VLM3D-Dockers ctgen_example_docker/process.py")
    default_convention = "hu/1000"
    convention_note = "training clipped HU to [-1000, 1000] and divided by 1000; decoder output is not clamped (kept as is)"

    def is_candidate(self, path: Path) -> bool:
        path = Path(path)
        if path.is_dir():  # a samples.{name}_{i} folder holding the volume
            return not path.name.startswith(".") and any(_is_nifti(f) for f in path.iterdir())
        return _is_nifti(path)

    def list_files(self, folder: Path) -> list[Path]:
        """Volumes in ``folder`` and in its ``samples.*`` sub-folders (GenerateCT's layout)."""
        folder = Path(folder)
        out = [p for p in folder.iterdir() if _is_nifti(p)]
        for sub in folder.iterdir():
            if sub.is_dir() and not sub.name.startswith("."):
                out += [p for p in sub.iterdir() if _is_nifti(p)]
        return sorted(out)

    def case_id(self, path: Path) -> str:
        """``{name}_0.nii.gz`` (in ``samples.{name}_{i}``) -> ``name``; other sample indices keep ``_{k}``."""
        p = Path(path)
        stem = strip_volume_suffix(p.name)
        m = _LOWRES_NAME.match(stem)
        d = _SAMPLES_DIR.match(p.parent.name)
        if m and ((d and d.group("name") == m.group("name")) or m.group("k") == "0"):
            return m.group("name")
        return generic_case_id(p)

    def read(self, path: Path, *, spacing=None, convention=None, layout=None, reference=None) -> Volume:
        """File ``(W, H, D)`` -> canonical ``(z, y, x) = (D, W, H)`` (``transpose(2, 0, 1)``), HU = 1000 x."""
        path = Path(path)
        spacing = self._peer_spacing(path, spacing, layout, reference)
        data, meta = _read_identity_nifti(self, path)
        data = validate_array(data, path)
        arr = np.transpose(data, (2, 0, 1))
        return self.canonical(path, arr, spacing=spacing, convention=convention,
                              meta={**meta, "layout": "file (W,H,D) -> (z,y,x)=(D,W,H)"})

    def detect(self, path: Path) -> Detection:
        p = Path(path)
        h = nifti_header(p)
        if h is None or not h.identity_affine or len(h.shape) != 3 or "float" not in h.dtype:
            return NO
        why = ["3-D float NIfTI with GenerateCT's identity affine"]
        score = 0.3
        if h.shape[0] == h.shape[1] == 128 and h.shape[2] == 201:
            score += 0.5
            why.append("shape (128, 128, 201) = (W, H, D) of the low-res stage")
        stem = strip_volume_suffix(p.name)
        if _LOWRES_NAME.match(stem):
            score += 0.15
            why.append("name {name}_{k}")
        if _SAMPLES_DIR.match(p.parent.name):
            score += 0.15
            why.append("inside a samples.{name}_{i} folder")
        if (p.parent / (stem + ".txt")).is_file():
            score += 0.1
            why.append("prompt .txt beside it")
        if p.name.startswith("sample-"):
            score -= 0.3
        return Detection(min(score, 1.0), ", ".join(why))


@register_adapter
class GenerateCTSuperResAdapter(Adapter):
    name = "generatect-sr"
    description = ("GenerateCT super-resolution stage: images/sample-['name'].nii.gz, float (H,W,D,1)=(512,512,201,1) "
                   "in [0,1], HU = 2000x-1000, identity affine")
    default_fov_mm = _FOV
    geometry_note = GenerateCTLowResAdapter.geometry_note
    default_convention = "unit"  # [0, 1] -> [-1000, 1000]
    convention_note = "super-resolution output in [0, 1], HU = 2000 x - 1000 (training: clip [-1000, 1000], /1000, (x+1)/2)"

    def is_candidate(self, path: Path) -> bool:
        path = Path(path)
        if path.is_dir():  # the trainer's images/ folder
            return path.name == "images" and any(self.is_candidate(f) for f in path.iterdir())
        return _is_nifti(path) and path.name.startswith("sample-")

    def list_files(self, folder: Path) -> list[Path]:
        folder = Path(folder)
        out = [p for p in folder.iterdir() if p.is_file() and self.is_candidate(p)]
        img = folder / "images"
        if img.is_dir():
            out += [p for p in img.iterdir() if self.is_candidate(p)]
        return sorted(out)

    def case_id(self, path: Path) -> str:
        """``sample-['name'].nii.gz`` -> ``name`` (the part of the low-res name before its first ``_``)."""
        return generic_case_id(Path(path))

    def read(self, path: Path, *, spacing=None, convention=None, layout=None, reference=None) -> Volume:
        """File ``(H, W, D[, 1])`` -> canonical ``(z, y, x) = (D, W, H)`` (``transpose(2, 1, 0)``)."""
        path = Path(path)
        spacing = self._peer_spacing(path, spacing, layout, reference)
        data, meta = _read_identity_nifti(self, path)
        data = validate_array(data, path)  # drops the trailing channel axis of (H, W, D, 1)
        arr = np.transpose(data, (2, 1, 0))
        return self.canonical(path, arr, spacing=spacing, convention=convention,
                              meta={**meta, "layout": "file (H,W,D,1) -> (z,y,x)=(D,W,H)"})

    def detect(self, path: Path) -> Detection:
        p = Path(path)
        h = nifti_header(p)
        if h is None or not h.identity_affine or "float" not in h.dtype:
            return NO
        shape = h.shape
        if not (len(shape) == 3 or (len(shape) == 4 and shape[3] == 1)):
            return NO
        why = ["float NIfTI with GenerateCT's identity affine"]
        score = 0.1
        if len(shape) == 4:
            score += 0.2
            why.append("trailing channel axis (H, W, D, 1)")
        if shape[:3] == (512, 512, 201):
            score += 0.4
            why.append("shape (512, 512, 201) of the super-resolution stage")
        if p.name.startswith("sample-"):
            score += 0.3
            why.append("name sample-...")
        if p.name.startswith("sample-['"):
            score += 0.15
            why.append("GenerateCT's collate quirk sample-['name']")
        if p.parent.name == "images":
            score += 0.05
        return Detection(min(score, 1.0), ", ".join(why))
