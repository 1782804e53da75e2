"""The definition of the ``threshold`` segmenter that its two engines share: the scipy path
(:mod:`.threshold`) and the torch path (:mod:`.threshold_torch`) read their HU thresholds, opening
disc and lung-size rule from here, so they cannot drift apart. (A module of its own because
:mod:`.threshold` dispatches to :mod:`.threshold_torch`, which therefore cannot import it.)
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

BODY_HU = -500.0
LUNG_HU = -400.0
OPEN_MM = 3.0
LUNG_MIN_FRACTION = 0.10


def disc(radius_y: int, radius_x: int) -> np.ndarray:
    """Boolean ellipse of half-axes ``radius_y`` x ``radius_x`` voxels, shape (1, 2 ry + 1, 2 rx + 1):
    always odd-sized and point-symmetric, centred on its middle element."""
    yy, xx = np.mgrid[-radius_y:radius_y + 1, -radius_x:radius_x + 1]
    d = (yy / max(radius_y, 1)) ** 2 + (xx / max(radius_x, 1)) ** 2 <= 1.0
    return d[None]


def opening_disc(spacing: Sequence[float]) -> np.ndarray:
    """The structuring element of the body opening for voxel ``spacing`` (z, y, x) mm: a disc of
    radius :data:`OPEN_MM` in each axial slice, at least 1 voxel per in-plane axis."""
    _, sy, sx = (float(s) for s in spacing)
    return disc(max(1, int(round(OPEN_MM / sy))), max(1, int(round(OPEN_MM / sx))))


def kept_components(sizes: np.ndarray) -> np.ndarray:
    """Which air components are lungs, from their voxel counts (int64): at least
    :data:`LUNG_MIN_FRACTION` of the largest one's (float64 comparison). Boolean, same length."""
    sizes = np.asarray(sizes)
    return sizes >= LUNG_MIN_FRACTION * sizes.max()
