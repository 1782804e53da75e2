"""What the MAISI / VLM3D 2.5D FID script's loader yields (Project-MONAI/tutorials generation/maisi/scripts/
compute_fid_2-5d_ct.py lines 566-588, with MONAI's own dictionary transforms) and the presets at a small geometry.
Used by tests/metrics/test_fid_presets.py and test_fid_vlm3d_squeezenet.py (no tests here).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from torch import Tensor


def script_transforms(spacing, target_shape, pad: bool = True, crop: bool = True):
    """compute_fid_2-5d_ct.py lines 566-588, with MONAI's own dictionary transforms."""
    import monai

    transform_list = [
        monai.transforms.LoadImaged(keys=["image"]),
        monai.transforms.EnsureChannelFirstd(keys=["image"]),
        monai.transforms.Orientationd(keys=["image"], axcodes="RAS"),
    ]
    if spacing is not None:
        transform_list.append(monai.transforms.Spacingd(keys=["image"], pixdim=spacing, mode=["bilinear"]))
    if pad:
        transform_list.append(
            monai.transforms.SpatialPadd(keys=["image"], spatial_size=target_shape, mode="constant", value=-1000))
    if crop:
        transform_list.append(monai.transforms.CenterSpatialCropd(keys=["image"], roi_size=target_shape))
    transform_list.append(monai.transforms.ScaleIntensityRanged(
        keys=["image"], a_min=-1000, a_max=1000, b_min=-1000, b_max=1000, clip=True))
    return monai.transforms.Compose(transform_list)


def script_image(path: Path, preset) -> Tensor:
    """What the script's loader yields for one file: (1, 1, x, y, z) float32 (batch_size=1)."""
    d = script_transforms(preset.spacing, preset.target_shape, preset.pad, preset.crop)({"image": str(path)})
    return d["image"].as_tensor()[None]


def small(preset):
    """The preset at 6 mm and 40 x 36 x 32: the same code path, small enough for a CPU ResNet-50."""
    return dataclasses.replace(preset, spacing=(6.0, 6.0, 6.0), target_shape=(40, 36, 32))
