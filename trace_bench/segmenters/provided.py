"""``provided``: label maps supplied by the user (e.g. VISTA3D or TotalSegmentator run elsewhere).

The runner pairs them by case id (``CaseData.mask`` for a generated volume,
``CaseData.reference_mask`` for its reference; read with :func:`trace_bench.io.read_label_map`).
What the label ids mean is the ``labels`` option (``RunContext.options["provided_labels"]``):

=========== =============================================================================
``auto``    (default) maps holding 0, 1, 2 are taken as already collapsed (0 background,
            1 lungs, 2 other); binary 0/1 maps as one structure (convention ``2``, refused at
            ``--classes 3``); anything with a label above 2 as VISTA3D ids
``vista3d`` VISTA3D ids 1..132, collapsed by the table of :mod:`trace_bench.segmenters.labels`
``3``       already 0 background / 1 lungs / 2 other
``2``       already 0 background / 1 structure (only ``--classes 2`` and ``full`` accept it)
``full``    foreign ids compared as they are (only ``--classes full``)
=========== =============================================================================
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import ConfigError
from ..volume import Volume
from .base import LabelMap, Segmenter, register_segmenter
from .labels import VISTA3D_LABELS, check_classes, collapse_three, collapse_vista3d

LABEL_CONVENTIONS = ("auto", "vista3d", "3", "2", "full")


@register_segmenter
class ProvidedSegmenter(Segmenter):
    name = "provided"
    description = "label maps supplied by the user, paired by case id (VISTA3D ids or already-collapsed 0/1/2)"

    def __init__(self, device: str | None = None, weights: dict[str, str] | None = None,
                 labels: str = "auto", **options: Any) -> None:
        super().__init__(device, weights, **options)
        if labels not in LABEL_CONVENTIONS:
            raise ConfigError(f"unknown provided label convention {labels!r}. Expected one of: {', '.join(LABEL_CONVENTIONS)}")
        self.labels = labels

    @property
    def id(self) -> str:
        return f"provided-{self.labels}"

    def segment(self, volume: Volume, classes: str = "3") -> LabelMap:
        raise ConfigError(
            "the 'provided' segmenter does not segment images: pass the label maps (masks folder paired by case id), "
            "or choose --segmenter threshold / vista3d")

    def from_mask(self, mask: Volume | None, classes: str = "3", *, what: str = "mask") -> LabelMap:
        """Collapse a user label map (a label :class:`Volume`) to ``classes``."""
        c = check_classes(classes)
        if mask is None:
            raise ConfigError(f"segmenter 'provided' needs a label map for the {what}, but none was paired with this case")
        ids = np.rint(mask.array).astype(np.int64)
        path = mask.meta.get("path")
        if ids.min(initial=0) < 0:
            raise ConfigError(f"{path}: label map holds negative labels")
        conv = self.labels
        if conv == "auto":
            top = ids.max(initial=0)
            if top == 1 and c == "3":
                raise ConfigError(
                    f"{path}: provided label map holds only 0/1 (one structure, e.g. a tumour mask); it cannot give "
                    "--classes 3 (background/lungs/other). Use --classes 2 or full, or set the provided label "
                    "convention to '3' if 1 means lungs")
            conv = "2" if top == 1 else ("3" if top in (0, 2) else "vista3d")  # all-background: any convention
        if conv == "vista3d":
            out, names = collapse_vista3d(ids, c), (VISTA3D_LABELS if c == "full" else {})
        elif conv == "3":
            if c == "full":
                out = ids.astype(np.uint8)
            else:
                if ids.max(initial=0) > 2:
                    raise ConfigError(f"{path}: expected labels 0/1/2 (background/lungs/other), found up to {ids.max()}")
                out = collapse_three(ids, c)
            names = {1: "lungs", 2: "other"}
        elif conv == "2":
            if c == "3":
                raise ConfigError(f"{path}: a 2-class label map (structure vs background) cannot give --classes 3")
            out, names = (ids > 0).astype(np.uint8), {1: "body"}
        else:  # full
            if c != "full":
                raise ConfigError(f"{path}: foreign label ids ('full') can only be compared with --classes full")
            out, names = ids, {}
        return LabelMap(out, mask.spacing, mask.affine, c, self.id, names=dict(names), meta={"source": path})
