"""``i3d-400``: I3D (Kinetics-400) 400-d clip features for FVD.

Two weight sources, one feature definition (pre-softmax logits averaged over time):

* ``i3d-torchscript`` (default): StyleGAN-V's TorchScript (universome/stylegan-v
  ``src/metrics/frechet_video_distance.py``), called on uint8 clips (N, 3, T, H, W) with
  ``rescale=True, resize=True, return_features=True``: the network scales [0, 255] to [-1, 1] and
  resizes to 224 itself.
* ``i3d-tats``: the ``i3d_pretrained_400.pt`` state dict of VideoGPT / TATS / cd-fvd, loaded into
  :class:`InceptionI3d` below (written here from the I3D paper, Carreira & Zisserman 2017, with the
  parameter names of piergiaj/pytorch-i3d as used by wilson1yan/VideoGPT ``videogpt/fvd/pytorch_i3d.py``
  so the published state dict loads). Preprocessing as TATS ``tats/fvd/fvd.py: preprocess``: frames
  bilinear to 224 x 224 (``align_corners=False``), ``2 v / 255 - 1``.

Grey CT frames are replicated to 3 channels (as StyleGAN-V does for 1-channel videos).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ..errors import WeightsError
from ..weights import WEIGHTS, resolve_weights
from ..weights_load import load_state_dict, load_torchscript


def _same_pad(x: torch.Tensor, kernel: tuple[int, int, int], stride: tuple[int, int, int]) -> torch.Tensor:
    """TensorFlow 'SAME' padding for 3-D conv / pool (extra pixel at the end)."""
    pads = []
    for size, k, s in zip(reversed(x.shape[2:]), reversed(kernel), reversed(stride)):
        total = max(k - s, 0) if size % s == 0 else max(k - size % s, 0)
        pads += [total // 2, total - total // 2]
    return F.pad(x, pads)


class Unit3D(nn.Module):
    """Conv3d (no bias unless logits) + BatchNorm3d (eps 1e-5) + ReLU, with SAME padding."""

    def __init__(self, cin: int, cout: int, kernel=(1, 1, 1), stride=(1, 1, 1), bn: bool = True,
                 relu: bool = True, bias: bool = False) -> None:
        super().__init__()
        self.kernel, self.stride, self.relu = tuple(kernel), tuple(stride), relu
        self.conv3d = nn.Conv3d(cin, cout, self.kernel, self.stride, padding=0, bias=bias)
        self.bn = nn.BatchNorm3d(cout, eps=1e-5, momentum=0.001) if bn else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv3d(_same_pad(x, self.kernel, self.stride))
        if self.bn is not None:
            x = self.bn(x)
        return F.relu(x) if self.relu else x


class MaxPoolSame(nn.Module):
    def __init__(self, kernel, stride) -> None:
        super().__init__()
        self.kernel, self.stride = tuple(kernel), tuple(stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.max_pool3d(_same_pad(x, self.kernel, self.stride), self.kernel, self.stride)


class Mixed(nn.Module):
    """Inception block: 1x1 | 1x1->3x3 | 1x1->3x3 | maxpool->1x1, concatenated on channels."""

    def __init__(self, cin: int, c: tuple[int, int, int, int, int, int]) -> None:
        super().__init__()
        self.b0 = Unit3D(cin, c[0])
        self.b1a, self.b1b = Unit3D(cin, c[1]), Unit3D(c[1], c[2], (3, 3, 3))
        self.b2a, self.b2b = Unit3D(cin, c[3]), Unit3D(c[3], c[4], (3, 3, 3))
        self.b3a, self.b3b = MaxPoolSame((3, 3, 3), (1, 1, 1)), Unit3D(cin, c[5])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.b0(x), self.b1b(self.b1a(x)), self.b2b(self.b2a(x)), self.b3b(self.b3a(x))], 1)


# (name, in channels, branch widths) of the Inception-v1 blocks of I3D
_MIXED = {
    "Mixed_3b": (192, (64, 96, 128, 16, 32, 32)), "Mixed_3c": (256, (128, 128, 192, 32, 96, 64)),
    "Mixed_4b": (480, (192, 96, 208, 16, 48, 64)), "Mixed_4c": (512, (160, 112, 224, 24, 64, 64)),
    "Mixed_4d": (512, (128, 128, 256, 24, 64, 64)), "Mixed_4e": (512, (112, 144, 288, 32, 64, 64)),
    "Mixed_4f": (528, (256, 160, 320, 32, 128, 128)), "Mixed_5b": (832, (256, 160, 320, 32, 128, 128)),
    "Mixed_5c": (832, (384, 192, 384, 48, 128, 128)),
}


class InceptionI3d(nn.Module):
    """I3D RGB network; ``forward(x)`` with x (N, 3, T, 224, 224) in [-1, 1] -> (N, classes) logits.

    ``width`` divides every channel count (1 = the published network; tests use small widths with
    random weights to exercise the plumbing).
    """

    def __init__(self, num_classes: int = 400, in_channels: int = 3, width: int = 1) -> None:
        super().__init__()
        w = lambda c: max(1, c // width)  # noqa: E731
        self.Conv3d_1a_7x7 = Unit3D(in_channels, w(64), (7, 7, 7), (2, 2, 2))
        self.MaxPool3d_2a_3x3 = MaxPoolSame((1, 3, 3), (1, 2, 2))
        self.Conv3d_2b_1x1 = Unit3D(w(64), w(64))
        self.Conv3d_2c_3x3 = Unit3D(w(64), w(192), (3, 3, 3))
        self.MaxPool3d_3a_3x3 = MaxPoolSame((1, 3, 3), (1, 2, 2))
        cin = w(192)
        for name, (_, c) in _MIXED.items():
            cs = tuple(w(v) for v in c)
            setattr(self, name, Mixed(cin, cs))
            cin = cs[0] + cs[2] + cs[4] + cs[5]
            if name == "Mixed_3c":
                self.MaxPool3d_4a_3x3 = MaxPoolSame((3, 3, 3), (2, 2, 2))
            if name == "Mixed_4f":
                self.MaxPool3d_5a_2x2 = MaxPoolSame((2, 2, 2), (2, 2, 2))
        self.logits = Unit3D(cin, num_classes, bn=False, relu=False, bias=True)
        self._order = ["Conv3d_1a_7x7", "MaxPool3d_2a_3x3", "Conv3d_2b_1x1", "Conv3d_2c_3x3", "MaxPool3d_3a_3x3",
                       "Mixed_3b", "Mixed_3c", "MaxPool3d_4a_3x3", "Mixed_4b", "Mixed_4c", "Mixed_4d", "Mixed_4e",
                       "Mixed_4f", "MaxPool3d_5a_2x2", "Mixed_5b", "Mixed_5c"]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for name in self._order:
            x = getattr(self, name)(x)
        x = F.avg_pool3d(x, kernel_size=(2, 7, 7), stride=1)  # 16 frames at 224 px -> (1, 1, 1)... per time
        x = self.logits(x)  # dropout is the identity at inference
        return x.squeeze(4).squeeze(3).mean(dim=2)


def tats_preprocess(clips: torch.Tensor, size: int = 224) -> torch.Tensor:
    """uint8/float (N, T, H, W) grey or (N, T, H, W, 3) -> (N, 3, T, size, size) in [-1, 1] (TATS)."""
    x = clips.float()
    if x.ndim == 4:
        x = x[..., None].expand(*x.shape, 3)
    n, t, h, w, c = x.shape
    x = x.reshape(n * t, h, w, c).permute(0, 3, 1, 2)
    x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    x = x.reshape(n, t, c, size, size).transpose(1, 2)
    return 2.0 * x / 255.0 - 1.0


class I3DFeatures(nn.Module):
    """``features(clips)``: uint8 clips (N, T, H, W) -> float32 (N, 400) numpy."""

    name = "i3d-400"
    dim = 400

    def __init__(self, net: nn.Module, weights_name: str, sha256: str, path: Path, device: str = "cpu",
                 batch_size: int = 4) -> None:
        super().__init__()
        self.net = net.eval().to(device)
        self.weights_name, self.weights_sha256, self.path = weights_name, sha256, Path(path)
        self.device = torch.device(device)
        self.batch_size = int(batch_size)
        self.torchscript = weights_name == "i3d-torchscript"

    @property
    def id(self) -> str:
        pre = "styleganv-rescale-resize" if self.torchscript else "tats-bilinear224-pm1"
        return f"{self.name}:{self.weights_name}@{self.weights_sha256[:16]}:{pre}"

    @torch.no_grad()
    def forward(self, clips: torch.Tensor) -> torch.Tensor:
        if self.torchscript:
            x = clips.to(self.device)
            if x.ndim == 4:
                x = x[:, None].expand(-1, 3, -1, -1, -1)  # (N, 3, T, H, W)
            else:
                x = x.permute(0, 4, 1, 2, 3)
            out = self.net(x.contiguous(), rescale=True, resize=True, return_features=True)
        else:
            out = self.net(tats_preprocess(clips.to(self.device)))
        return out.float()

    @torch.no_grad()
    def features(self, clips: np.ndarray) -> np.ndarray:
        clips = np.asarray(clips)
        if clips.ndim not in (4, 5):
            raise ValueError(f"Expected clips (N, T, H, W) uint8, got {clips.shape}")
        out = [self.forward(torch.from_numpy(np.ascontiguousarray(clips[i:i + self.batch_size]))).cpu()
               for i in range(0, len(clips), self.batch_size)]
        return torch.cat(out).numpy() if out else np.zeros((0, self.dim), np.float32)


def load_i3d(path: str | Path | None = None, device: str = "cpu", *, weights: str = "i3d-torchscript",
             batch_size: int = 4) -> I3DFeatures:
    """Load I3D from registry entry ``weights`` (``i3d-torchscript`` or ``i3d-tats``)."""
    if weights not in ("i3d-torchscript", "i3d-tats"):
        raise WeightsError(f"I3D weights must be 'i3d-torchscript' or 'i3d-tats', got {weights!r}")
    r = resolve_weights(weights, path)
    spec = WEIGHTS.get(weights)
    fix = f"the published file is {spec.url}; fix: `trace-bench weights fetch {weights}` or " \
          f"`trace-bench weights import {weights} /path/to/{spec.filename}`"
    if weights == "i3d-torchscript":
        net = load_torchscript(r.path, weights, instead="use the VideoGPT/TATS state dict, read tensors-only: "
                               "--option fvd.weights=i3d-tats (kid_i3d.weights, prdc_i3d.weights alike)")
    else:
        sd = load_state_dict(r.path, weights)
        if isinstance(sd, dict) and "state_dict" in sd:
            sd = sd["state_dict"]
        try:
            width = 64 // sd["Conv3d_1a_7x7.conv3d.weight"].shape[0]
            net = InceptionI3d(sd["logits.conv3d.weight"].shape[0], width=max(1, width))
            net.load_state_dict(sd)  # strict: every tensor present with its shape
        except (KeyError, RuntimeError, TypeError, ZeroDivisionError) as e:
            raise WeightsError(f"{r.path}: not an I3D state dict in the VideoGPT/TATS layout ({str(e)[:200]}); "
                               f"{fix}") from None
    return I3DFeatures(net, weights, r.sha256, r.path, device=device, batch_size=batch_size)


def load_backbone(path: str, device: str, name: str, ctx: Any) -> I3DFeatures:
    """:class:`~trace_bench.metrics.backbone.Backbone` loader (``i3d-torchscript`` / ``i3d-tats``)."""
    return load_i3d(path, device, weights=name)
