"""RadImageNet ResNet-50: the 2D network of MAISI's and VLM3D's 2.5D FID, and its input normalisation.

Network. The ResNet-50 of RadImageNet (Mei et al. 2022, "RadImageNet: An Open Radiologic Deep Learning
Research Dataset for Effective Transfer Learning", Radiology: AI, doi:10.1148/ryai.210315; trained in
Keras on 1.35 M CT / MRI / ultrasound images, BMEII-AI/RadImageNet), as ported to PyTorch by
Warvito/radimagenet-models (Apache-2.0, ``radimagenet_models/models/resnet.py`` ``ResNet50`` /
``Bottleneck`` / ``conv1x1``, weights converted from ``RadImageNet-ResNet50_notop.h5`` by
``scripts/resnet_keras_to_pytorch.py``). That is what
``torch.hub.load("Warvito/radimagenet-models", model="radimagenet_resnet50")`` returns to
Project-MONAI/tutorials ``generation/maisi/scripts/compute_fid_2-5d_ct.py`` and to
forithmus/VLM3D-Dockers ``ctgen_evaluation/compute_fid_2-5d_ct.py``. Written here from that source:

* Keras ResNet50 layout (``keras/applications/resnet.py``), which differs from torchvision's:
  every convolution has a bias; in a bottleneck the stride sits on the first 1x1 convolution, not on
  the 3x3 one; BatchNorm eps 1.001e-5 (Keras' value); momentum does not matter in eval mode and is
  left at torch's default (Warvito sets 0.99 / 0.01; it is not stored in the state dict);
* stem: conv 7x7 / 2, 3->64, padding 3; BN; ReLU; max-pool 3x3 / 2, padding 1;
* layer1..4 = 3, 4, 6, 3 bottlenecks of width 64, 128, 256, 512 (x4 out), strides 1, 2, 2, 2; the
  first block of every layer (layer1 too: 64 != 256 channels) has a 1x1 conv + BN shortcut;
* ``forward`` returns the layer4 map (B, 2048, H/32, W/32) (the "notop" model: no pooling, no head).

Features (both scripts' ``spatial_average(feature_network.forward(x), keepdim=False)``): the map's
mean over (H, W), 2048-d per slice.

Parameter names equal Warvito's module names (``conv1``, ``bn1``, ``layer1.0.conv1``, ...,
``layer1.0.downsample.0`` / ``.1``), so its published state dict (``torch.save(model.state_dict())``,
BatchNorm ``num_batches_tracked`` included: 371 entries) loads with ``strict=True``. The file is read
tensors-only by :func:`trace_bench.weights_load.load_state_dict`; nothing of the hub package (which
downloads with ``gdown`` and unpickles with a bare ``torch.load``) is used.

Input normalisation (both scripts' ``get_features_2p5d``, identical in the two files): the
single-channel image is repeated to 3 channels and reordered RGB -> BGR (a no-op on grey values);
all slices of one plane are stacked and min-max scaled with the minimum and maximum of the WHOLE
stack (``radimagenet_intensity_normalisation`` with its default ``norm2d=False``:
``(x - min) / (max - min + 1e-10)``), then ``subtract_mean`` subtracts 0.406, 0.456, 0.485 from
channels 0, 1, 2. No division by a standard deviation. :func:`radimagenet_input` does exactly these
float32 operations, batch by batch, with the stack's minimum and maximum passed in.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..errors import WeightsError

#: registry entry of the weights (trace_bench.weights)
WEIGHTS_NAME = "radimagenet-resnet50"
FEATURE_DIM = 2048
#: bottlenecks per layer (He et al. 2016, Table 1, 50-layer column; Warvito ``ResNet50._make_layer`` calls)
LAYERS = (3, 4, 6, 3)
#: Keras' BatchNormalization epsilon, as Warvito's port sets it on every BatchNorm2d
BN_EPS = 1.001e-5
#: subtracted from channels 0, 1, 2 after the BGR reordering (compute_fid_2-5d_ct.py ``subtract_mean``)
CHANNEL_MEANS = (0.406, 0.456, 0.485)
#: added to the min-max denominator (compute_fid_2-5d_ct.py ``radimagenet_intensity_normalisation``)
MINMAX_EPS = 1e-10
#: how the network and its features are defined (cache keys, protocol ids)
EXTRACTOR_ID = "radimagenet-resnet50:warvito-keras-port:layer4-spatial-mean2048"


# ============================================================================= the network
class KerasBottleneck(nn.Module):
    """Keras ResNet50 bottleneck (Warvito ``Bottleneck``): 1x1 conv (carries the stride), 3x3 conv,
    1x1 conv (x4 channels), each with a bias and BN; ``relu(main + shortcut)``."""

    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1, shortcut: bool = False) -> None:
        super().__init__()
        out = planes * self.expansion
        self.conv1 = nn.Conv2d(inplanes, planes, 1, stride=stride, bias=True)
        self.bn1 = nn.BatchNorm2d(planes, eps=BN_EPS)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=True)
        self.bn2 = nn.BatchNorm2d(planes, eps=BN_EPS)
        self.conv3 = nn.Conv2d(planes, out, 1, bias=True)
        self.bn3 = nn.BatchNorm2d(out, eps=BN_EPS)
        self.relu = nn.ReLU(inplace=True)
        self.downsample: nn.Module | None = None
        if shortcut:
            self.downsample = nn.Sequential(nn.Conv2d(inplanes, out, 1, stride=stride, bias=True),
                                            nn.BatchNorm2d(out, eps=BN_EPS))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


class RadImageNetResNet50(nn.Module):
    """RadImageNet ResNet-50 without top; ``forward`` gives the (B, 2048, h, w) layer4 map,
    :meth:`embed` its spatial mean (the 2048-d slice feature of the 2.5D FID scripts)."""

    def __init__(self, layers: tuple[int, int, int, int] = LAYERS) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=True)
        self.bn1 = nn.BatchNorm2d(64, eps=BN_EPS)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        inplanes = 64
        for i, (planes, n, stride) in enumerate(zip((64, 128, 256, 512), layers, (1, 2, 2, 2)), start=1):
            out = planes * KerasBottleneck.expansion
            blocks = [KerasBottleneck(inplanes, planes, stride, shortcut=stride != 1 or inplanes != out)]
            blocks += [KerasBottleneck(out, planes) for _ in range(n - 1)]
            inplanes = out
            setattr(self, f"layer{i}", nn.Sequential(*blocks))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 2048): the layer4 map averaged over (H, W) (the scripts' ``spatial_average``)."""
        return self.forward(x).mean([2, 3])


# ============================================================================= input normalisation
def radimagenet_input(slices: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor) -> torch.Tensor:
    """Network input of grey slices, as the 2.5D FID scripts make it (see module doc).

    ``slices``: float32 (N, H, W); ``lo`` / ``hi``: float32 scalars, the minimum and maximum of ALL the
    slices of the plane (the scripts normalise the whole stack at once; passing them in lets the stack
    go through the network in batches with bit-identical inputs). Returns float32 (N, 3, H, W):
    ``(x - lo) / (hi - lo + 1e-10) - CHANNEL_MEANS[c]`` in channel c.
    """
    if slices.ndim != 3:
        raise ValueError(f"Expected slices (N, H, W), got shape {tuple(slices.shape)}")
    x = slices.float()
    x = (x - lo) / (hi - lo + MINMAX_EPS)
    return torch.stack([x - m for m in CHANNEL_MEANS], dim=1)


# ============================================================================= the weights file
def radimagenet_state_dict(path: str | Path, name: str | None = WEIGHTS_NAME) -> dict[str, torch.Tensor]:
    """The state dict (float32) of a RadImageNet ResNet-50 file (a bare state dict, as Warvito's
    ``RadImageNet-ResNet50_notop.pth``, or ``{"state_dict": ...}``), read tensors-only."""
    from ..weights_load import float32_tensors, load_state_dict

    obj = load_state_dict(path, name)
    sd = obj.get("state_dict", obj) if isinstance(obj, dict) else None
    if not isinstance(sd, dict) or "conv1.weight" not in sd:
        raise WeightsError(f"weights {name!r}: {path} holds no RadImageNet ResNet-50 state dict (no 'conv1.weight')")
    return float32_tensors(sd)


# ============================================================================= the extractor
@dataclass
class RadImageNetExtractor:
    """A loaded network on ``device``; :meth:`plane_features` maps one plane's slices to (N, 2048)."""

    model: RadImageNetResNet50
    device: str
    weights_sha256: str = ""
    batch_size: int = 32
    id: str = EXTRACTOR_ID
    dim: int = FEATURE_DIM
    name: str = WEIGHTS_NAME

    @torch.no_grad()
    def features(self, x: torch.Tensor) -> np.ndarray:
        """Prepared inputs (N, 3, H, W) (:func:`radimagenet_input`) -> float32 (N, 2048), ``batch_size`` at a time."""
        out = [self.model.embed(x[i:i + self.batch_size].to(self.device)).float().cpu()
               for i in range(0, len(x), max(1, int(self.batch_size)))]
        return torch.cat(out).numpy() if out else np.zeros((0, FEATURE_DIM), np.float32)

    @torch.no_grad()
    def plane_features(self, slices: torch.Tensor) -> np.ndarray:
        """All slices (N, H, W) of one plane, float32 -> float32 (N, 2048): min-max over the whole
        stack, then :func:`radimagenet_input` and the network, ``batch_size`` slices at a time."""
        if slices.ndim != 3:
            raise ValueError(f"Expected slices (N, H, W), got shape {tuple(slices.shape)}")
        if len(slices) == 0:
            return np.zeros((0, FEATURE_DIM), np.float32)
        s = slices.to(self.device, torch.float32)
        lo, hi = torch.min(s), torch.max(s)
        b = max(1, int(self.batch_size))
        out = [self.model.embed(radimagenet_input(s[i:i + b], lo, hi)).float().cpu() for i in range(0, len(s), b)]
        return torch.cat(out).numpy()


def load_radimagenet(path: str | Path, device: str = "cpu", batch_size: int = 32, sha256: str = "",
                     name: str = WEIGHTS_NAME) -> RadImageNetExtractor:
    """Build :class:`RadImageNetResNet50`, load the state dict strictly (float32), eval mode, on ``device``."""
    from ..weights_load import load_strict

    model = load_strict(RadImageNetResNet50(), radimagenet_state_dict(path, name), path, name,
                        "the RadImageNet ResNet-50")
    model.eval().to(device)
    return RadImageNetExtractor(model, device, sha256, int(batch_size))


def load_backbone(path: str, device: str, name: str, ctx: Any) -> RadImageNetExtractor:
    """:class:`~trace_bench.metrics.backbone.Backbone` loader (``ctx``: the run's RunContext)."""
    from ..weights import file_sha256

    if name != WEIGHTS_NAME:
        raise WeightsError(f"weights {name!r}: not a RadImageNet ResNet-50 entry (expected {WEIGHTS_NAME})")
    return load_radimagenet(path, device, batch_size=int(getattr(ctx, "batch_size", 32)), sha256=file_sha256(path),
                            name=name)


__all__ = ["BN_EPS", "CHANNEL_MEANS", "EXTRACTOR_ID", "FEATURE_DIM", "KerasBottleneck", "LAYERS", "MINMAX_EPS",
           "RadImageNetExtractor", "RadImageNetResNet50", "WEIGHTS_NAME", "load_radimagenet",
           "load_backbone", "radimagenet_input", "radimagenet_state_dict"]
