"""Label-map granularities and the VISTA3D collapse tables (``--classes full|3|2``).

The TRACE paper (section "mask granularity") compares three setups; trace-bench scores any of them:

=========== ====================================================================================
``full``    the segmenter's own labels (VISTA3D: its label ids 1..132, see :data:`VISTA3D_LABELS`)
``3``       0 background, 1 lungs, 2 other organs / skeletal structures (the paper's best setup)
``2``       0 background, 1 every anatomical structure ("all structures vs background")
=========== ====================================================================================

VISTA3D collapse (label ids and names from the MONAI model-zoo bundle ``vista3d``,
``docs/labels.json`` and ``configs/metadata.json``):

* **lungs (3-class label 1)**: 20 lung, 23 lung tumor, 28 left lung upper lobe, 29 left lung lower
  lobe, 30 right lung upper lobe, 31 right lung middle lobe, 32 right lung lower lobe
  (:data:`VISTA3D_LUNG_LABELS`). In "segment everything" mode VISTA3D outputs the lobes 28-32, never
  20 itself (the bundle's ``subclass`` table expands 20 into 28-32);
* **other organs and skeleton (3-class label 2)**: every other VISTA3D label 1..132, including the
  airway (132) and trachea (57), bones (21 expands to 33-56, 63-97, 114, 120, 122) and lesions;
* **background (0)**: 0, plus anything the bundle writes for "no label" (255 after its NaN fill).

The ``threshold`` segmenter produces the 3-class map directly (lungs = air inside the body,
other = the rest of the body); its 2-class map is body vs background. Its ``full`` is its 3-class map.
"""

from __future__ import annotations

import numpy as np

from ..errors import ConfigError

CLASS_CHOICES = ("full", "3", "2")

#: names of the collapsed classes, used in column names such as ``dice[lungs]``
CLASS_NAMES: dict[str, dict[int, str]] = {
    "3": {1: "lungs", 2: "other"},
    "2": {1: "body"},
}

#: VISTA3D label ids -> names (MONAI model zoo, models/vista3d/docs/labels.json)
VISTA3D_LABELS: dict[int, str] = {
    1: "liver", 2: "kidney", 3: "spleen", 4: "pancreas", 5: "right kidney", 6: "aorta",
    7: "inferior vena cava", 8: "right adrenal gland", 9: "left adrenal gland", 10: "gallbladder",
    11: "esophagus", 12: "stomach", 13: "duodenum", 14: "left kidney", 15: "bladder",
    16: "prostate or uterus", 17: "portal vein and splenic vein", 18: "rectum", 19: "small bowel",
    20: "lung", 21: "bone", 22: "brain", 23: "lung tumor", 24: "pancreatic tumor", 25: "hepatic vessel",
    26: "hepatic tumor", 27: "colon cancer primaries", 28: "left lung upper lobe", 29: "left lung lower lobe",
    30: "right lung upper lobe", 31: "right lung middle lobe", 32: "right lung lower lobe",
    **{33 + i: f"vertebrae {n}" for i, n in enumerate(
        ["L5", "L4", "L3", "L2", "L1", "T12", "T11", "T10", "T9", "T8", "T7", "T6", "T5", "T4", "T3", "T2",
         "T1", "C7", "C6", "C5", "C4", "C3", "C2", "C1"])},
    57: "trachea", 58: "left iliac artery", 59: "right iliac artery", 60: "left iliac vena",
    61: "right iliac vena", 62: "colon",
    **{63 + i: f"left rib {i + 1}" for i in range(12)},
    **{75 + i: f"right rib {i + 1}" for i in range(12)},
    87: "left humerus", 88: "right humerus", 89: "left scapula", 90: "right scapula", 91: "left clavicula",
    92: "right clavicula", 93: "left femur", 94: "right femur", 95: "left hip", 96: "right hip", 97: "sacrum",
    98: "left gluteus maximus", 99: "right gluteus maximus", 100: "left gluteus medius",
    101: "right gluteus medius", 102: "left gluteus minimus", 103: "right gluteus minimus",
    104: "left autochthon", 105: "right autochthon", 106: "left iliopsoas", 107: "right iliopsoas",
    108: "left atrial appendage", 109: "brachiocephalic trunk", 110: "left brachiocephalic vein",
    111: "right brachiocephalic vein", 112: "left common carotid artery", 113: "right common carotid artery",
    114: "costal cartilages", 115: "heart", 116: "left kidney cyst", 117: "right kidney cyst", 118: "prostate",
    119: "pulmonary vein", 120: "skull", 121: "spinal cord", 122: "sternum", 123: "left subclavian artery",
    124: "right subclavian artery", 125: "superior vena cava", 126: "thyroid gland", 127: "vertebrae S1",
    128: "bone lesion", 129: "kidney mass", 130: "liver tumor", 131: "vertebrae L6", 132: "airway",
}
VISTA3D_LUNG_LABELS: frozenset[int] = frozenset({20, 23, 28, 29, 30, 31, 32})
#: labels the bundle's "segment everything" mode asks for (configs/inference.json ``everything_labels``)
VISTA3D_EVERYTHING_LABELS: tuple[int, ...] = tuple(sorted(
    set(range(1, 133)) - {2, 16, 18, 20, 21, 23, 24, 25, 26, 27, 128, 129, 130, 131, 132}))


def check_classes(classes: str | int) -> str:
    c = str(classes).strip().lower()
    if c not in CLASS_CHOICES:
        raise ConfigError(f"unknown --classes {classes!r}. Expected one of: {', '.join(CLASS_CHOICES)}")
    return c


def vista3d_table(classes: str | int) -> np.ndarray | None:
    """Lookup table ``lut[vista_label] -> collapsed label`` (length 256), or None for ``full``."""
    c = check_classes(classes)
    if c == "full":
        return None
    lut = np.zeros(256, dtype=np.uint8)
    for l in VISTA3D_LABELS:
        lut[l] = 1 if c == "2" else (1 if l in VISTA3D_LUNG_LABELS else 2)
    return lut


def collapse_vista3d(labels: np.ndarray, classes: str | int) -> np.ndarray:
    """Map a VISTA3D label map (ids 0..132, 255 = none) to the ``classes`` granularity."""
    lut = vista3d_table(classes)
    a = np.asarray(labels)
    if lut is None:
        out = a.astype(np.int32)
        out[(out < 0) | (out > 132)] = 0
        return out
    ai = a.astype(np.int64)
    ai[(ai < 0) | (ai > 255)] = 0
    return lut[ai]


def collapse_three(labels3: np.ndarray, classes: str | int) -> np.ndarray:
    """Map a 3-class map (0 bg, 1 lungs, 2 other) to ``classes`` (``full`` and ``3`` keep it)."""
    c = check_classes(classes)
    a = np.asarray(labels3).astype(np.uint8)
    return (a > 0).astype(np.uint8) if c == "2" else a


def class_name(label: int, classes: str, names: dict[int, str] | None = None) -> str:
    """Column-friendly name of a label at a granularity (``lungs``, ``other``, ``body``, VISTA3D names)."""
    table = CLASS_NAMES.get(classes) or names or {}
    return table.get(int(label), str(int(label))).replace(" ", "_")
