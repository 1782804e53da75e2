"""Segmenters: CT volume -> integer label map on the same grid (registry :data:`SEGMENTERS`).

=============== ==========================================================================
``threshold``   weight-free, deterministic 3-class chest CT segmenter (default)
``vista3d``     NVIDIA VISTA3D (MONAI bundle ``vista3d``), needs the bundle folder
``provided``    label maps supplied by the user, paired by case id
=============== ==========================================================================

Granularity ``classes``: ``full`` | ``3`` | ``2`` (see :mod:`.labels`).
"""

from .base import SEGMENTERS, LabelMap, Segmenter, get_segmenter, register_segmenter
from .labels import CLASS_CHOICES, CLASS_NAMES, VISTA3D_LABELS, VISTA3D_LUNG_LABELS, check_classes, collapse_vista3d
from .overlay import save_overlay
from .provided import ProvidedSegmenter
from .threshold import ThresholdSegmenter, threshold_segment
from .vista3d import Vista3DSegmenter

__all__ = [
    "SEGMENTERS", "LabelMap", "Segmenter", "get_segmenter", "register_segmenter",
    "CLASS_CHOICES", "CLASS_NAMES", "VISTA3D_LABELS", "VISTA3D_LUNG_LABELS", "check_classes", "collapse_vista3d",
    "save_overlay", "ProvidedSegmenter", "ThresholdSegmenter", "threshold_segment", "Vista3DSegmenter",
]
