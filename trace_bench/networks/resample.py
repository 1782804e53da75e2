"""Resampling an array to a new voxel spacing on MONAI ``Spacing``'s grid: the one definition every network
preprocessing (Astra / Merlin) and every metric (``fid_2p5d``'s isotropic cube) uses.

MONAI ``Spacing`` / ``Spacingd`` (``monai/transforms/spatial/array.py``) keeps the first voxel's centre and
steps by the new spacing: output voxel i sits at input position ``i * new / old`` along each axis. Its
output shape comes from ``monai.data.utils.compute_shape_offset`` (default ``scale_extent=False``)::

    shape = round((n - 1) * old / new + 1)      (numpy round: half to even)

which is NOT ``round((n - 1) * old / new) + 1``: the two differ whenever ``(n - 1) * old / new`` is a
half-integer, i.e. the extent is a half-integer number of target voxels, e.g. every scan with 1.5 mm
slices and an even slice count resampled to 3 mm (``(2k - 1) * 0.5 + 1 = k + 0.5``, rounded to the even
neighbour by MONAI, to ``k + 1`` by the other form half the time). :func:`spacing_shape` calls MONAI's
function itself (diagonal affines of the two spacings), so the shape is MONAI's by construction;
``tests/metrics/test_resample.py`` checks it and the values against ``monai.transforms.Spacing`` on volumes built
to hit the tie (odd / even counts along every axis, 1.5 mm slices, 0.75 mm pixels).

Values: trilinear interpolation by ``torch.nn.functional.grid_sample`` (``align_corners=True``: -1 / 1 =
the first / last input voxel centre), ``padding_mode="border"`` (MONAI ``Spacing``'s default), float32.
Against MONAI's own resampler the difference is float32 round-off (tested to 1e-4 of the value range).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np


def spacing_shape(shape: Sequence[int], spacing: Sequence[float], new: Sequence[float]) -> tuple[int, ...]:
    """Output shape of MONAI ``Spacing`` from ``spacing`` to ``new`` (same axis order as ``shape``):
    ``monai.data.utils.compute_shape_offset`` on the diagonal affines, ``round((n - 1) * old / new + 1)``."""
    from monai.data.utils import compute_shape_offset

    nd = len(shape)
    if not (len(spacing) == len(new) == nd):
        raise ValueError(f"Expected {nd} spacings, got {tuple(spacing)} and {tuple(new)}")
    in_aff = np.diag([*map(float, spacing), 1.0])
    out_aff = np.diag([*map(float, new), 1.0])
    out, _ = compute_shape_offset(tuple(int(n) for n in shape), in_aff, out_aff)
    return tuple(max(1, int(n)) for n in out)


def resample_spacing(a: np.ndarray, spacing: Sequence[float], new: Sequence[float]) -> np.ndarray:
    """Trilinear resampling of a 3-D array from ``spacing`` to ``new`` mm (same axis order as the array) on
    MONAI ``Spacing``'s grid and shape (module doc); float32."""
    import torch
    import torch.nn.functional as F

    arr = np.ascontiguousarray(a, dtype=np.float32)
    if arr.ndim != 3:
        raise ValueError(f"Expected a 3-D array, got shape {arr.shape}")
    shape = spacing_shape(arr.shape, spacing, new)
    # grid_sample's last grid coordinate indexes the input's last axis
    axes = [torch.arange(m, dtype=torch.float64) * (float(t) / float(s)) * (2.0 / max(n - 1, 1)) - 1.0
            for m, n, s, t in zip(shape, arr.shape, spacing, new)]
    g0, g1, g2 = torch.meshgrid(*axes, indexing="ij")
    grid = torch.stack((g2, g1, g0), dim=-1)[None].float()
    t = torch.from_numpy(arr)[None, None]
    return F.grid_sample(t, grid, mode="bilinear", padding_mode="border", align_corners=True)[0, 0].numpy()


__all__ = ["resample_spacing", "spacing_shape"]
