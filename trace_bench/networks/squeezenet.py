"""torchvision's SqueezeNet 1.1 (ImageNet): the 2D network of the VLM3D text-to-CT challenge's current 2.5D FID.

The current VLM3D evaluator (forithmus/VLM3D-Dockers ``ct_challenges/ctgen_evaluation/evaluation.py``, revision
a945900) runs ``compute_fid_2-5d_ct.py --model_name squeezenet1_1``, whose model is
``torchvision.models.squeezenet1_1(pretrained=True)`` (weights ``SqueezeNet1_1_Weights.IMAGENET1K_V1``, file
``squeezenet1_1-b8a52dc0.pth``, sha256 prefix checked by torchvision) and whose feature of a slice batch is
``spatial_average(feature_network.forward(x))``: ``forward`` already ends in the classifier (dropout, 1x1 conv to 1000
channels, ReLU, global average pool, flatten), and ``spatial_average`` leaves a 2-D tensor unchanged, so the feature
is the 1000-d non-negative class-score vector, computed in chunks of 32 slices (``_chunked_forward_avg``).

The network here IS torchvision's class (``torchvision.models.squeezenet1_1(weights=None)``), the file read
tensors-only (:func:`trace_bench.weights_load.load_state_dict`) and loaded strictly; no download code of torchvision
runs. Input normalisation: that of the RadImageNet preset, unchanged in the script
(:func:`trace_bench.networks.radimagenet.radimagenet_input`: each plane's whole slice stack min-max scaled to
[0, 1], grey repeated to 3 channels, minus 0.406 / 0.456 / 0.485; no ImageNet standard deviation).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import WeightsError
from ..optional import require
from .radimagenet import radimagenet_input

WEIGHTS_NAME = "squeezenet1_1-imagenet"
FEATURE_DIM = 1000
#: the script's ``_chunked_forward_avg`` chunk size (cannot change a value beyond float32 round-off)
CHUNK = 32
EXTRACTOR_ID = "squeezenet1_1:torchvision-imagenet1k-v1:forward-scores1000"


def build_squeezenet() -> torch.nn.Module:
    """torchvision's SqueezeNet 1.1 architecture, no weights."""
    models = require("torchvision.models", "SqueezeNet 1.1 (fid_vlm3d)")
    return models.squeezenet1_1(weights=None)


def squeezenet_state_dict(path: str | Path, name: str | None = WEIGHTS_NAME) -> dict[str, torch.Tensor]:
    """The state dict (float32) of a SqueezeNet 1.1 file (torchvision's bare state dict, or ``{"state_dict": ...}``)."""
    from ..weights_load import float32_tensors, load_state_dict

    obj = load_state_dict(path, name)
    sd = obj.get("state_dict", obj) if isinstance(obj, dict) else None
    if not isinstance(sd, dict) or "features.0.weight" not in sd:
        raise WeightsError(f"weights {name!r}: {path} holds no SqueezeNet state dict (no 'features.0.weight')")
    return float32_tensors(sd)


@dataclass
class SqueezeNetExtractor:
    """A loaded network on ``device``; :meth:`plane_features` maps one plane's slices to (N, 1000)."""

    model: torch.nn.Module
    device: str
    weights_sha256: str = ""
    batch_size: int = CHUNK
    id: str = EXTRACTOR_ID
    dim: int = FEATURE_DIM
    name: str = WEIGHTS_NAME

    @torch.no_grad()
    def plane_features(self, slices: torch.Tensor) -> np.ndarray:
        """All slices (N, H, W) of one plane -> float32 (N, 1000): min-max over the whole stack,
        :func:`~trace_bench.networks.radimagenet.radimagenet_input`, ``forward``, ``batch_size`` slices at a time."""
        if slices.ndim != 3:
            raise ValueError(f"Expected slices (N, H, W), got shape {tuple(slices.shape)}")
        if len(slices) == 0:
            return np.zeros((0, FEATURE_DIM), np.float32)
        s = slices.to(self.device, torch.float32)
        lo, hi = torch.min(s), torch.max(s)
        b = max(1, int(self.batch_size))
        out = [self.model(radimagenet_input(s[i:i + b], lo, hi)).float().cpu() for i in range(0, len(s), b)]
        return torch.cat(out).numpy()


def load_squeezenet(path: str | Path, device: str = "cpu", batch_size: int = CHUNK, sha256: str = "",
                    name: str = WEIGHTS_NAME) -> SqueezeNetExtractor:
    """torchvision's SqueezeNet 1.1 with the file's weights (strict), eval mode, on ``device``."""
    from ..weights_load import load_strict

    model = load_strict(build_squeezenet(), squeezenet_state_dict(path, name), path, name,
                        "torchvision's SqueezeNet 1.1")
    model.eval().to(device)
    return SqueezeNetExtractor(model, device, sha256, int(batch_size))


def load_backbone(path: str, device: str, name: str, ctx: Any) -> SqueezeNetExtractor:
    """:class:`~trace_bench.metrics.backbone.Backbone` loader (``ctx``: the run's RunContext)."""
    from ..weights import file_sha256

    if name != WEIGHTS_NAME:
        raise WeightsError(f"weights {name!r}: not a SqueezeNet 1.1 entry (expected {WEIGHTS_NAME})")
    return load_squeezenet(path, device, batch_size=CHUNK, sha256=file_sha256(path), name=name)


__all__ = ["CHUNK", "EXTRACTOR_ID", "FEATURE_DIM", "SqueezeNetExtractor", "WEIGHTS_NAME", "build_squeezenet",
           "load_backbone", "load_squeezenet", "squeezenet_state_dict"]
