"""Chest phantoms with a known answer: an elliptic-cylinder body holding an air sphere of a given radius.
Used by tests/metrics/test_anatomy.py and tests/run/test_weight_free_metrics_run.py (no tests here).
"""

from __future__ import annotations

import numpy as np

from trace_bench.volume import from_canonical

#: voxel spacing (z, y, x) of every phantom, mm
SPACING = (2.5, 1.25, 1.25)


def phantom(radius: float, seed: int = 0, outside: float = -1000.0, body_hu: float = 40.0):
    """Air around an elliptic-cylinder body (40 HU + noise) holding an air sphere (-850 HU) of ``radius`` mm.
    Returns the volume and the sphere's voxel count."""
    rng = np.random.default_rng(seed)
    shape = (24, 64, 64)
    z, y, x = np.mgrid[:shape[0], :shape[1], :shape[2]].astype(np.float64)
    zz, yy, xx = (z - 11.5) * SPACING[0], (y - 31.5) * SPACING[1], (x - 31.5) * SPACING[2]
    a = np.full(shape, outside, np.float32) + rng.normal(0, 5, shape).astype(np.float32)
    body = (yy / 34) ** 2 + (xx / 30) ** 2 < 1
    a[body] = body_hu + rng.normal(0, 15, int(body.sum()))
    sphere = zz ** 2 + yy ** 2 + xx ** 2 < radius ** 2
    a[sphere] = -850.0 + rng.normal(0, 10, int(sphere.sum()))
    return from_canonical(a, SPACING), int(sphere.sum())
