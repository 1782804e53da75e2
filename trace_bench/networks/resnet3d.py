"""The 3-D ResNet bottleneck shared by the Astra (Merlin I3ResNet-152) and MedicalNet ResNet-50
encoders: 1x1x1 conv -> 3x3x3 conv (carries the stride and the dilation, padding = dilation) -> 1x1x1
conv, BatchNorm after each, a 1x1x1 conv + BatchNorm shortcut ("type B") where the shape changes.

Both sources define the same block with the same parameter names, so one class loads both
checkpoints: Merlin ``merlin/models/i3res.py`` ``Bottleneck3d`` (torchvision v1.5 layout inflated,
``time_stride = spatial_stride``, dilation 1) and Tencent/MedicalNet ``models/resnet.py``
``Bottleneck`` (dilation 2 / 4 in layer3 / layer4).
"""

from __future__ import annotations

import torch
from torch import nn


class Bottleneck3d(nn.Module):
    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1, dilation: int = 1) -> None:
        super().__init__()
        out = planes * self.expansion
        self.conv1 = nn.Conv3d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm3d(planes)
        self.conv2 = nn.Conv3d(planes, planes, 3, stride=stride, dilation=dilation, padding=dilation, bias=False)
        self.bn2 = nn.BatchNorm3d(planes)
        self.conv3 = nn.Conv3d(planes, out, 1, bias=False)
        self.bn3 = nn.BatchNorm3d(out)
        self.relu = nn.ReLU(inplace=True)
        self.downsample: nn.Module | None = None
        if stride != 1 or inplanes != out:
            self.downsample = nn.Sequential(nn.Conv3d(inplanes, out, 1, stride=stride, bias=False), nn.BatchNorm3d(out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        residual = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + residual)


__all__ = ["Bottleneck3d"]
