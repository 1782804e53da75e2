"""Demo-sized segmentation cases for the utility protocol (seg-tstr, tiny variant): the two shipped chest CTs
resampled to the tiny protocol's 8 mm grid, threshold-segmented, cut into 18 cases of 12 x 32 x 32 voxels. Used by
tests/utility/test_utility.py and tests/cli/test_console_output.py (no tests here).
"""

from __future__ import annotations

import numpy as np

from helpers.paths import DEMO_CTS


def seg_cases() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    import torch
    import torch.nn.functional as F

    from trace_bench.io import read_volume
    from trace_bench.metrics.segmentation import resample_labels
    from trace_bench.segmenters.threshold import threshold_segment

    cases = {}
    for name in ("lung1", "lung2"):
        v = read_volume(DEMO_CTS / f"{name}.nii.gz")
        lab = threshold_segment(v.array, v.spacing)
        shape = tuple(max(1, int(round(n * s / 8.0))) for n, s in zip(v.array.shape, v.spacing))
        img = F.interpolate(torch.from_numpy(v.array)[None, None], size=shape, mode="trilinear",
                            align_corners=False)[0, 0].numpy()
        lab = resample_labels(lab, shape)
        for z0 in range(0, shape[0] - 12 + 1, 6):
            for k, (oy, ox) in enumerate([(0, 0), (shape[1] - 32, shape[2] - 32)]):
                box = (slice(z0, z0 + 12), slice(oy, oy + 32), slice(ox, ox + 32))
                cases[f"{name}_z{z0}_{k}"] = (img[box].copy(), lab[box].copy())
    return cases
