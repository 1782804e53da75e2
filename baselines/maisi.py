"""MONAI MAISI (``Project-MONAI/tutorials`` ``generation/maisi/scripts/sample.py``).

Facts (read, not copied): each generated pair is written by ``monai.transforms.SaveImage`` with
``separate_folder=False`` from a MetaTensor named ``sample.nii.gz`` and the postfix
``{datetime:%Y%m%d_%H%M%S_%f}_image`` / ``..._label``, i.e. ``sample_{timestamp}_image.nii.gz`` and
``sample_{timestamp}_label.nii.gz`` (the extension comes from ``image_output_ext`` /
``label_output_ext``, ``.nii.gz`` by default). The image carries the label map's real affine (spacing
from the config, default 1.5 x 1.5 x 2.0 mm), values = decoder output clipped to [0, 1] and mapped to
HU [-1000, 1000], background outside the body set to -1000. The label map holds, after
``filter_mask_with_organs``, the values 1..N = the position of each organ in the run's ``anatomy_list``
(0 elsewhere), not MAISI's label ids.

The adapter reads both with their own geometry; the case id is the file name without ``_image``.
"""

from __future__ import annotations

from pathlib import Path

from trace_bench.io import VOLUME_SUFFIXES
from trace_bench.volume import Volume

from .base import NO, Adapter, Detection, nifti_header, register_adapter, strip_volume_suffix, volume_suffix

_IMAGE, _LABEL = "_image", "_label"


@register_adapter
class MaisiAdapter(Adapter):
    name = "maisi"
    description = ("MONAI MAISI sample_{timestamp}_image.nii.gz (HU [-1000,1000], real affine) with its "
                   "sample_{timestamp}_label.nii.gz as provided segmentation")
    default_convention = "hu"
    convention_note = "MAISI maps the decoder's [0, 1] to HU [-1000, 1000] before saving"

    def is_candidate(self, path: Path) -> bool:
        p = Path(path)
        return (p.is_file() and not p.name.startswith(".") and p.name.lower().endswith(VOLUME_SUFFIXES)
                and strip_volume_suffix(p.name).endswith(_IMAGE))

    def case_id(self, path: Path) -> str:
        """``sample_{timestamp}_image.nii.gz`` -> ``sample_{timestamp}``."""
        stem = strip_volume_suffix(Path(path).name)
        return stem[: -len(_IMAGE)] if stem.endswith(_IMAGE) else stem

    def masks(self, path: Path) -> dict[str, Path]:
        """``{case_id}_label`` with any volume extension (MAISI's ``label_output_ext``)."""
        p = Path(path)
        base = self.case_id(p)
        own = volume_suffix(p.name)
        for suf in (own,) + tuple(s for s in VOLUME_SUFFIXES if s != own):
            cand = p.parent / f"{base}{_LABEL}{suf}"
            if cand.is_file():
                return {"label": cand}
        return {}

    def read(self, path: Path, *, spacing=None, convention=None, layout=None, reference=None) -> Volume:
        vol = super().read(path, spacing=spacing, convention=convention, layout=layout, reference=reference)
        conv, why = self.resolve_convention(Path(path), convention)
        vol.meta["convention_reason"] = why
        return vol

    def detect(self, path: Path) -> Detection:
        p = Path(path)
        if not self.is_candidate(p):
            return NO
        why = ["name ends with _image"]
        score = 0.35
        h = nifti_header(p)
        if h is not None:
            if h.identity_affine or h.itk_default:
                return Detection(0.1, "name ends with _image, but the file has no real geometry (MAISI writes a real affine)")
            score += 0.2
            why.append("real affine")
        if self.masks(p):
            score += 0.35
            why.append("its _label map beside it")
        return Detection(min(score, 1.0), ", ".join(why))
