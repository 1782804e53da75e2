"""MedSyn (Xu et al., IEEE TMI 2024): low-res ``.npy`` and high-res NIfTI outputs, with soft anatomy masks.

Facts from ``batmanlab/MedSyn`` (read, not copied):

* Training grid (``preprocess/3_transform_image.py``): every CT is registered (ANTs) to one atlas,
  read with ``sitk.GetArrayFromImage`` -> ``(z, y, x)`` of the atlas, resized to 256^3, HU clipped to
  [-1024, 600] and scaled to [-1, 1]. The atlas (``preprocess/Patient_..._Reg_mask.nii.gz``) is
  316 x 316 x 292 voxels (x, y, z) of 1 mm with direction ``diag(1, -1, 1)``: its y index runs
  **anterior** (RAS code LAS). So the network's ``(F, H, W)`` axes are the atlas ``(z, y, x)``, and the
  volumes span 292 x 316 x 316 mm (z, y, x).
* Low-res stage (``src/eval_low_res_given_prompt.py``): ``np.save('{textstem}_sample_{k}.npy', x)``
  with ``x`` of shape ``(1, 4, 64, 64, 64)`` = (batch, [image, lobe, airway, vessel], F, H, W), values
  in [0, 1] (``unnormalize_img``), i.e. HU = 1624 x - 1024 for the image channel.
* High-res stage (``src/eval_super_res.py: save_nii``): the image channel ``(F, H, W)`` in [0, 1] is
  clipped to [-1, 1], **flipped along H** (``np.flip(img, 1)``), mapped to HU = 1624 x - 1024, cast with
  ``astype(np.int16)`` (truncation towards zero), and written by SimpleITK with default geometry
  (1 mm, identity direction, origin 0) as ``{textstem}_sample_{k}.nii.gz``. The flip turns the atlas'
  anterior-running y into posterior-running y, so the file is LPS under its identity direction.
  With ``--save_mask``, ``save_mask_nii`` writes ``{stem}_lobe/_airway/_vessel.nii.gz``: the soft
  float masks **without** the flip (the vessel one as a 4-D ``(1, F, H, W)`` array).

Headers that contradict the writer (``--format medsyn`` chosen explicitly; ``auto`` never picks these):
an **identity** affine (``np.eye(4)``: re-saved without geometry, e.g. by nibabel) carries no
orientation either, so the file is read in MedSyn's layout like the SimpleITK-default one, not mirrored
in x and y by trusting the identity header, with a warning in ``volume.meta["warnings"]``; a **real**
affine (re-saved with geometry) is read with its own header, with a warning. The same holds for masks.

Geometry applied: orientation as above (the image flip is kept, masks get the flip the writer
forgot, low-res arrays get it too); spacing = atlas field of view 292 x 316 x 316 mm (z, y, x) divided
by the stored shape (1.140625 x 1.234375 x 1.234375 mm at 256^3, 4.5625 x 4.9375 x 4.9375 mm at 64^3),
overridable with ``--spacing``. Masks are thresholded at 0.5 (label 1 = structure).
"""

from __future__ import annotations

import re
import zlib
from pathlib import Path

import nibabel as nib
import numpy as np

from trace_bench.errors import CorruptFileError, InvalidVolumeError
from trace_bench.io import read_raw, read_volume
from trace_bench.volume import Volume, from_canonical, validate_array

from .base import NO, Adapter, Detection, add_warning, nifti_header, register_adapter, strip_volume_suffix

MASK_CHANNELS = ("lobe", "airway", "vessel")  # channels 1..3 of the network output; suffixes of the mask files
_MASK_SUFFIX = tuple(f"_{m}" for m in MASK_CHANNELS)
_SAMPLE = re.compile(r"^(?P<name>.+)_sample_(?P<k>\d+)$")
_ATLAS_FOV = (292.0, 316.0, 316.0)  # (z, y, x) mm: the MedSyn atlas, 1 mm voxels
HU_LOW, HU_HIGH = -1024.0, 600.0


def _is_nii(p: Path) -> bool:
    return p.is_file() and not p.name.startswith(".") and p.name.lower().endswith((".nii.gz", ".nii"))


def _is_mask_name(p: Path) -> bool:
    return strip_volume_suffix(p.name).endswith(_MASK_SUFFIX)


def _load_npy(path: Path) -> np.ndarray:
    try:
        return np.load(str(path), mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError, EOFError, zlib.error) as e:
        raise CorruptFileError(path, f"cannot decode NumPy file ({e})") from None


@register_adapter
class MedSynAdapter(Adapter):
    name = "medsyn"
    description = ("MedSyn high-res {stem}.nii.gz (int16 HU [-1024,600], np.flip(img,1), SimpleITK default geometry) "
                   "with soft _lobe/_airway/_vessel masks; also its low-res .npy (1,4,64,64,64) in [0,1]")
    default_fov_mm = _ATLAS_FOV
    geometry_note = "MedSyn atlas 316x316x292 voxels of 1 mm (x,y,z), resampled to the stored grid"
    default_convention = "hu"
    convention_note = "high-res files hold int16 HU = 1624 x - 1024, in [-1024, 600]"
    lowres_convention = "unit:-1024:600"
    lowres_note = "low-res output in [0, 1], HU = 1624 x - 1024 (MedSyn's [-1024, 600] window)"
    mask_threshold = 0.5

    # --------------------------------------------------------------- discovery
    def is_candidate(self, path: Path) -> bool:
        p = Path(path)
        if not p.is_file() or p.name.startswith("."):
            return False
        if p.name.lower().endswith(".npy"):
            return True
        return _is_nii(p) and not _is_mask_name(p)

    def case_id(self, path: Path) -> str:
        """``{textstem}_sample_0.nii.gz`` / ``.npy`` -> ``textstem``; other sample indices keep ``_sample_{k}``."""
        stem = strip_volume_suffix(Path(path).name)
        m = _SAMPLE.match(stem)
        if m and m.group("k") == "0":
            return m.group("name")
        return stem

    def masks(self, path: Path) -> dict[str, Path]:
        """High-res: the ``{stem}_lobe/_airway/_vessel`` files that exist. Low-res: channels 1-3 of the ``.npy``
        (same path; :meth:`read_mask` picks the channel by name)."""
        p = Path(path)
        if p.name.lower().endswith(".npy"):
            try:
                shape = _load_npy(p).shape
            except CorruptFileError:
                return {}
            if len(shape) == 5 and shape[1] == 1 + len(MASK_CHANNELS):
                return {m: p for m in MASK_CHANNELS}
            return {}
        stem = strip_volume_suffix(p.name)
        suf = p.name[len(stem):]
        return {m: p.parent / f"{stem}_{m}{suf}" for m in MASK_CHANNELS if (p.parent / f"{stem}_{m}{suf}").is_file()}

    # --------------------------------------------------------------- reading
    def read(self, path: Path, *, spacing=None, convention=None, layout=None, reference=None) -> Volume:
        path = Path(path)
        spacing = self._peer_spacing(path, spacing, layout, reference)
        if path.name.lower().endswith(".npy"):
            arr = self._lowres_channel(path, 0)
            return self.canonical(path, arr, spacing=spacing, convention=convention,
                                  meta={"format": "npy", "layout": "npy (1,4,F,H,W)[0,0] -> flip H -> (z,y,x) LPS"},
                                  default_convention=self.lowres_convention, convention_note=self.lowres_note)
        data, aff, meta = read_raw(path, fmt="nifti")
        identity = bool(np.allclose(aff, np.eye(4)))
        if not _itk_default(aff) and not identity:
            # a real header: a re-saved file; trust its geometry, and say so
            vol = read_volume(path, convention=self.resolve_convention(path, convention)[0], spacing=self._user_spacing(spacing))
            vol.meta.update(adapter=self.name, convention_reason="adapter medsyn on a file with a real header (geometry kept)",
                            geometry_in_file=True)
            add_warning(vol.meta, contradiction_warning(path, aff))
            return vol
        data = validate_array(data, path)
        meta = {k: v for k, v in meta.items() if k not in ("path", "spacing_source")}
        arr = np.transpose(data, (2, 1, 0))  # = the SimpleITK array (F, H flipped, W): LPS already
        vol = self.canonical(path, arr, spacing=spacing, convention=convention,
                             meta={**meta, "layout": "SimpleITK array (F,H,W) with the writer's flip of H = (z,y,x) LPS",
                                   "source_orientation": "LPS (SimpleITK default direction, made right by the writer's flip)"})
        if identity:
            add_warning(vol.meta, contradiction_warning(path, aff))
        return vol

    def read_mask(self, path: Path, *, name: str | None = None, threshold: float | None = None,
                  spacing=None) -> Volume:
        """A MedSyn soft mask, on the image's canonical grid, thresholded (default 0.5) to 0/1."""
        path = Path(path)
        thr = self.mask_threshold if threshold is None else threshold
        warning: str | None = None
        if path.name.lower().endswith(".npy"):
            if name not in MASK_CHANNELS:
                raise InvalidVolumeError(path, f"low-res MedSyn masks are channels {', '.join(MASK_CHANNELS)}; got name={name!r}")
            soft = self._lowres_channel(path, 1 + MASK_CHANNELS.index(name))
            how = "npy channel, flipped along H like the image"
        else:
            arr, default_geometry, vector = _read_sitk_array(path)
            h = nifti_header(path)
            if h is not None and not h.itk_default:
                warning = contradiction_warning(path, h.affine)
                if not h.identity_affine and not vector:
                    vol = super().read_mask(path, name=name, threshold=thr, spacing=spacing)
                    add_warning(vol.meta, warning)
                    return vol
                default_geometry = True  # identity affine: no geometry either; MedSyn's layout applies
            if not default_geometry and not vector:
                return super().read_mask(path, name=name, threshold=thr, spacing=spacing)
            how = "SimpleITK array (F,H,W) written without the image's flip: flipped along H"
            if vector:
                # save_mask_nii got the vessel frames as (1, F, H, W); SimpleITK writes a 4-D array as a 3-D image
                # of size (H, F, 1) with W-component vectors (NIfTI dims (H, F, 1, 1, W)); read back, ITK drops the
                # unit z and GetArrayFromImage gives (F, H, W) (or (1, F, H, W) if kept 3-D)
                while arr.ndim > 3 and arr.shape[0] == 1:
                    arr = arr[0]
                if arr.ndim != 3:
                    raise InvalidVolumeError(path, f"unexpected vector mask of array shape {arr.shape}")
                how = "SimpleITK vector image of (1,F,H,W) (MedSyn's vessel quirk) -> (F,H,W), flipped along H"
            arr = validate_array(arr, path)
            soft = arr[:, ::-1, :]  # save_mask_nii skipped the image's np.flip(img, 1)
        labels = (np.asarray(soft, dtype=np.float32) >= thr).astype(np.float32)
        sp, sp_src = self.resolve_spacing(path, labels.shape, spacing)  # type: ignore[arg-type]
        meta = {"path": str(path), "adapter": self.name, "kind": "labels", "mask_name": name,
                "mask_threshold": thr, "convention": "labels", "layout": how,
                "convention_reason": f"soft mask thresholded at {thr}", "spacing_source": sp_src, "geometry_in_file": False}
        if warning:
            add_warning(meta, warning)
        return from_canonical(labels, sp, meta)

    def _lowres_channel(self, path: Path, channel: int) -> np.ndarray:
        """Channel ``channel`` of a low-res ``(1, C, F, H, W)`` array, flipped along H -> (z, y, x) LPS."""
        a = _load_npy(path)
        if a.ndim == 5 and a.shape[0] == 1 and a.shape[1] > channel:
            ch = np.asarray(a[0, channel])
        else:
            raise InvalidVolumeError(path, f"expected MedSyn's low-res array of shape (1, 4, F, H, W), got {tuple(a.shape)}")
        ch = validate_array(ch, path)
        return np.ascontiguousarray(ch[:, ::-1, :])

    # --------------------------------------------------------------- detection
    def detect(self, path: Path) -> Detection:
        p = Path(path)
        if _is_mask_name(p):
            return NO
        h = nifti_header(p)
        if h is None or not h.itk_default or len(h.shape) != 3:
            return NO
        why = ["NIfTI with SimpleITK's default geometry (1 mm, identity direction)"]
        score = 0.1
        if h.dtype == "int16":
            score += 0.35
            why.append("int16 (MedSyn's astype(np.int16))")
        if h.shape == (256, 256, 256):
            score += 0.3
            why.append("shape 256^3")
        if _SAMPLE.match(strip_volume_suffix(p.name)):
            score += 0.15
            why.append("name {stem}_sample_{k}")
        if self.masks(p):
            score += 0.2
            why.append("_lobe/_airway/_vessel masks beside it")
        return Detection(min(score, 1.0), ", ".join(why))


@register_adapter
class MedSynLowResAdapter(MedSynAdapter):
    name = "medsyn-lowres"
    description = "MedSyn low-res stage only: {textstem}_sample_{k}.npy, (1,4,64,64,64) = image, lobe, airway, vessel in [0,1]"
    default_convention = MedSynAdapter.lowres_convention
    convention_note = MedSynAdapter.lowres_note

    def is_candidate(self, path: Path) -> bool:
        p = Path(path)
        return p.is_file() and not p.name.startswith(".") and p.name.lower().endswith(".npy")

    def detect(self, path: Path) -> Detection:
        p = Path(path)
        if not (p.is_file() and p.name.lower().endswith(".npy")):
            return NO
        try:
            shape = _load_npy(p).shape
        except CorruptFileError:
            return NO
        if len(shape) != 5 or shape[0] != 1:
            return NO
        why = ["NumPy array of shape (1, C, F, H, W)"]
        score = 0.4
        if shape[1] == 4:
            score += 0.3
            why.append("4 channels (image, lobe, airway, vessel)")
        if shape[2:] == (64, 64, 64):
            score += 0.2
            why.append("64^3")
        if _SAMPLE.match(strip_volume_suffix(p.name)):
            score += 0.15
            why.append("name {textstem}_sample_{k}")
        return Detection(min(score, 1.0), ", ".join(why))


def _read_sitk_array(path: Path) -> tuple[np.ndarray, bool, bool]:
    """SimpleITK array of a mask file, whether its geometry is SimpleITK's default, whether it is a vector image."""
    import SimpleITK as sitk

    try:
        img = sitk.ReadImage(str(path))
    except RuntimeError as e:
        lines = [ln for ln in str(e).strip().splitlines() if ln.strip()]
        raise CorruptFileError(path, f"cannot decode mask ({(lines[-1] if lines else 'unreadable')[:200]})") from None
    d = img.GetDimension()
    default = (np.allclose(img.GetSpacing(), 1.0) and np.allclose(img.GetOrigin(), 0.0)
               and np.allclose(np.array(img.GetDirection()).reshape(d, d), np.eye(d)))
    return sitk.GetArrayFromImage(img), bool(default), img.GetNumberOfComponentsPerPixel() > 1


def contradiction_warning(path: Path, aff: np.ndarray) -> str:
    """One line: the file's affine is not the SimpleITK default MedSyn's writer produces, and what was done."""
    name = Path(path).name
    if np.allclose(aff, np.eye(4)):
        return (f"{name}: identity affine, not the SimpleITK default diag(-1,-1,1) that MedSyn's writer produces "
                "(re-saved without geometry): read in MedSyn's layout (x=W, y=H, z=F, writer's flip kept) instead of "
                "mirroring x and y by the identity header; if it was re-saved with another axis order, read it with "
                "--format nifti --spacing z,y,x")
    codes = "".join(str(c) for c in nib.aff2axcodes(aff))
    zooms = " x ".join(f"{z:g}" for z in np.sqrt((np.asarray(aff)[:3, :3] ** 2).sum(axis=0)))
    return (f"{name}: real affine ({codes}, voxel {zooms} mm x,y,z), not the SimpleITK default that MedSyn's writer "
            "produces (a re-saved file): read with its own header geometry, not MedSyn's layout")


def _itk_default(aff: np.ndarray) -> bool:
    return bool(np.allclose(aff, np.diag([-1.0, -1.0, 1.0, 1.0])))
