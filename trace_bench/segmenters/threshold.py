"""``threshold``: weight-free, deterministic 3-class segmentation of chest CT.

Labels: 0 = background (outside the body), 1 = lungs (air inside the body), 2 = other body
tissue and bone. Steps (``scipy.ndimage``; all sizes in mm, converted with the volume's spacing):

1. **body candidates**: ``HU > -500`` (:data:`BODY_HU`; fat is about -100, air -1000);
2. **detach the table and clothes**: binary opening in each axial slice with a disc of radius
   3 mm (:data:`OPEN_MM`, at least 1 voxel);
3. **body** = the largest 3-D connected component (6-connectivity), then its holes filled in each
   axial slice (the lungs are holes of the body in every axial slice, though in 3-D they connect
   to the outside through the trachea);
4. **air inside the body**: ``HU < -400`` (:data:`LUNG_HU`) within the filled body;
5. **lungs** = the air components (6-connectivity) of at least 10 % of the largest one's volume
   (:data:`LUNG_MIN_FRACTION`; keeps left and right lungs, drops bowel gas and small air
   pockets), with the holes of each axial slice filled (vessels, nodules and tumours inside the
   lung belong to it); the trachea and main bronchi are air inside the body and stay in this class;
6. **other** = body minus lungs.

Limitations: a volume whose body touches all four in-plane borders has no "outside" to tell
apart (everything becomes body); in lower slices large bowel gas pockets can pass the 10 % rule.
It is a classical baseline with a fixed definition, not a replacement for VISTA3D's organs.

The scipy path computes these definitions with fewer passes (:mod:`.morphology`): the opening
as shifted boolean ANDs / ORs of row segments instead of one pass per disc element, the axial
hole filling as one labelling of the background with in-plane links only, steps 3-6 on the body's
bounding box, the lung rule as a lookup table; the label maps are those of the direct
``scipy.ndimage`` calls bit for bit (``tests/segmenters/test_seg_threshold_identity.py`` holds a frozen copy of
the direct version), so the id stays ``threshold-v1``.

On a CUDA device (``device="cuda"``, or ``None`` with a GPU present) :class:`ThresholdSegmenter`
runs the same steps in torch (:mod:`.threshold_torch`), giving the same label map bit for bit;
the constants and the opening disc live in :mod:`.threshold_params`, shared by both paths.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

from ..volume import Volume
from .base import LabelMap, Segmenter, register_segmenter
from .labels import collapse_three
from .morphology import bounding_box, component_sizes, fill_holes_axial, open_axial
from .threshold_params import BODY_HU, LUNG_HU, kept_components, opening_disc
from .threshold_params import LUNG_MIN_FRACTION, OPEN_MM  # noqa: F401  (re-exported: threshold.OPEN_MM, ...)

VERSION = "v1"


def _largest(mask: np.ndarray) -> tuple[np.ndarray, tuple[slice, ...]] | None:
    """The largest 6-connected component of ``mask`` (ties: the lowest label, i.e. the first in
    raster order, as ``argmax``) cropped to its bounding box, and that box; ``None`` when empty."""
    lab, n = ndi.label(mask)
    if n == 0:
        return None
    sizes = component_sizes(lab, n)
    sizes[0] = 0
    largest = lab == int(sizes.argmax())
    box = bounding_box(largest)
    return largest[box], box


def threshold_segment(hu: np.ndarray, spacing: tuple[float, float, float]) -> np.ndarray:
    """3-class label map (uint8, 0 bg / 1 lungs / 2 other body) of a (z, y, x) HU array.

    Steps 3-6 run on the bounding box of the body's largest component, and the lungs' hole filling
    on the bounding box of the kept air components: nothing outside them is body (lung), and
    :func:`.morphology.fill_holes_axial` of a mask that is False outside a box is the same on the box
    as on the whole volume (see there)."""
    a = np.asarray(hu, dtype=np.float32)
    if a.ndim != 3:
        raise ValueError(f"Expected a 3-D HU array (z, y, x), got shape {a.shape}")
    out = np.zeros(a.shape, dtype=np.uint8)
    found = _largest(open_axial(a > BODY_HU, opening_disc(spacing)[0]))
    if found is None:
        return out
    body, box = found
    body = fill_holes_axial(body)
    air = body & (a[box] < LUNG_HU)
    lab, n = ndi.label(air)
    out_box = out[box]
    out_box[body] = 2
    if n:
        sizes = component_sizes(lab, n)
        sizes[0] = 0
        lut = kept_components(sizes)
        lut[0] = False
        lungs = lut[lab]
        inner = bounding_box(lungs)
        if inner is not None:
            out_box[inner][fill_holes_axial(lungs[inner]) & body[inner]] = 1
    return out


@register_segmenter
class ThresholdSegmenter(Segmenter):
    name = "threshold"
    description = ("weight-free chest CT segmenter: body = HU > -500 (opened, largest component, holes filled), "
                   "lungs = air (HU < -400) inside the body; 0 background, 1 lungs, 2 other body")

    @property
    def id(self) -> str:
        return f"threshold-{VERSION}"

    def torch_device(self) -> str | None:
        """The CUDA device this segmenter runs on (:mod:`.threshold_torch`, same label maps), or
        ``None`` for the scipy path: ``"cuda"``/``"cuda:N"`` as given; ``None``/``"auto"`` = ``"cuda"``
        when a GPU is present; anything else (``"cpu"``) = scipy."""
        dev = self.device
        if dev is None or str(dev) == "auto":
            import torch

            return "cuda" if torch.cuda.is_available() else None
        return str(dev) if str(dev).startswith("cuda") else None

    def segment(self, volume: Volume, classes: str = "3") -> LabelMap:
        c = self._check(volume, classes)
        dev = self.torch_device()
        if dev is None:
            lab3 = threshold_segment(volume.array, volume.spacing)
        else:
            from .threshold_torch import threshold_segment_torch

            lab3 = threshold_segment_torch(volume.array, volume.spacing, dev)
        lab = collapse_three(lab3, c)
        return LabelMap(lab, volume.spacing, volume.affine, c, self.id,
                        names={1: "lungs", 2: "other"} if c != "2" else {1: "body"},
                        meta={"source": volume.meta.get("path")})
