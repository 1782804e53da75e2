"""Generic adapters: files that carry their own geometry, or whose geometry the user states."""

from __future__ import annotations

from pathlib import Path

from .base import Adapter, register_adapter


@register_adapter
class NiftiAdapter(Adapter):
    name = "nifti"
    description = ("Any NIfTI/NRRD/MHA file with real geometry; values in HU unless convention= says otherwise; "
                   "a header without real geometry needs layout= (see `trace-bench doctor`)")


@register_adapter
class NumpyAdapter(Adapter):
    name = "npy"
    description = ("NumPy .npy/.npz arrays taken as (z, y, x) inferior-first (layout SPL) unless layout= says "
                   "otherwise; needs spacing= (or spacing=reference) and usually convention=")

    def is_candidate(self, path: Path) -> bool:
        return path.is_file() and path.name.lower().endswith((".npy", ".npz"))


@register_adapter
class DicomAdapter(Adapter):
    name = "dicom"
    description = "One folder per case holding one DICOM series (geometry and HU rescale from the headers)"

    def is_candidate(self, path: Path) -> bool:
        return path.is_dir() and not path.name.startswith(".")


@register_adapter
class PngStackAdapter(Adapter):
    name = "png-stack"
    description = ("One folder of PNG/TIFF slices per case (natural sort = inferior->superior); needs spacing= (or "
                   "spacing=reference) and convention=")

    def is_candidate(self, path: Path) -> bool:
        return (path.is_dir() and not path.name.startswith(".")) or path.name.lower().endswith((".tif", ".tiff"))
