"""CT-Net, the backbone of the VLM3D text-to-CT challenge's ``FVD_CTNet``, and the challenge's
preprocessing: one 96-d feature vector per CT volume.

Source (read, not copied): forithmus/VLM3D-Dockers, folder ``ctgen_evaluation/``:

* ``FVD/ctnet/models/custom_models_ctnet.py`` ``CTNetModel`` (Copyright (c) 2020 Rachel Lea Ballantyne
  Draelos, MIT; Draelos et al. 2021, "Machine-learning-based multiple abnormality prediction with
  large-scale chest computed tomography volumes", Medical Image Analysis 67), with VLM3D's forward that
  returns the hidden activations instead of the 18 logits;
* ``FVD/ctnet/load_dataset/utils.py`` ``prepare_ctvol_2019_10_dataset`` (same copyright and licence);
* ``FVD/fvd_pytorch.py`` ``compute_fvd(..., model="ctnet")`` and ``evaluate_fvd.py`` (how volumes are read,
  resized, scaled and batched).

Network (:class:`CTNet`; parameter names are those of ``CTNetModel``, so the challenge checkpoint loads
strictly once its ``module.`` prefix is removed):

* ``features``: torchvision ``resnet18()`` without ``avgpool`` and ``fc`` (``children()[:-2]``, the same
  call as the source), applied to each of the 134 "RGB" images of a volume, (134, 3, 420, 420) ->
  (134, 512, 14, 14);
* ``reducingconvs``: the (512, 14, 14) maps of the 134 images are stacked as a (134, 512, 14, 14) 3D
  volume with the 134 images as channels (the 512 ResNet channels become the depth axis), then
  Conv3d(134, 64, 3, stride (3, 1, 1)), ReLU, Conv3d(64, 32, 3, stride (3, 1, 1)), ReLU,
  Conv3d(32, 16, (3, 2, 2), stride (3, 2, 2)), ReLU -> (16, 18, 5, 5);
* ``classifier``: flattened (7200) -> Linear 128, ReLU, Dropout(0.5), Linear 96, ReLU, Dropout(0.5),
  Linear 18. VLM3D's forward stops after the second Dropout: the feature is the 96-d ReLU output
  (dropout is the identity in eval mode). ``classifier.6`` (96 -> 18) is loaded, never used.

12,405,474 parameters (12,415,074 values with the BatchNorm running statistics; 132 tensors), float32.

Preprocessing (:func:`preprocess`; the exact chain of ``evaluate_fvd.py`` then ``compute_fvd``, in
float32 on the CPU as the challenge's data loader does it):

1. array: VLM3D reads ``.mha`` with ``sitk.GetArrayFromImage`` -> (z, y, x) and transposes to
   (z, x, y) (``evaluate_fvd.py`` ``_read_mha``); its files are written with SimpleITK's identity
   direction (``ctgen_example_docker/process.py`` ``save_final_mha``), for which that raw (z, y, x)
   array IS trace-bench's canonical LPS array (:mod:`trace_bench.volume`: x grows to the patient's
   left, y posteriorly, z superiorly). So the input here is ``volume.array.transpose(0, 2, 1)``.
   VLM3D ignores the direction matrix; trace-bench reorients every file to LPS first, so for a file
   stored in another orientation the two differ (trace-bench's value does not depend on the storage
   order). Voxel spacing is ignored, as in VLM3D (every volume is resized to one grid);
2. clip HU to [-1000, 1000];
3. ``F.interpolate(mode="trilinear", align_corners=False)`` to (402, 420, 420);
4. ``x / 1000``, ``(x + 1) / 2`` (VLM3D's [0, 1] volumes), then ``x * 2000``, ``x - 1000`` (back to HU
   in ``compute_fvd``; kept as separate float32 steps so the values round as the source's do);
5. ``prepare_ctvol_2019_10_dataset(v, [-1000, 200], False, 1, "single")``: padding and centre crop to
   (402, 420, 420) (no-ops at this shape), clip to [-1000, 200], ``(x + 1000) / 1200``, minus 0.449
   (the ImageNet mean, grey);
6. the network's ``view(134, 3, 420, 420)``: consecutive slice triplets become the images' channels.

:data:`PREPROCESS_ID` names this chain (versioned); :data:`EXTRACTOR_ID` the network and output.

Numerics. VLM3D runs the network on CUDA, where PyTorch enables TF32 for cuDNN convolutions by default
(``torch.backends.cudnn.allow_tf32``): its features carry TF32 round-off (10-bit mantissa; an error of
the order of 1e-3 relative is expected, not measured here), so trace-bench's float32 features (CPU, or
CUDA with TF32 as configured by the user) agree with the challenge's to that order, not bit for bit.

Weights. The challenge repository holds ``ctgen_evaluation/FVD/ctnet/trained_params/
CTNet28_ctclip_whole_data_18classes`` (a ``torch.save`` dict ``{"params": state dict with "module."
prefix, "optimizer": SGD state}``), but the committed file is truncated (see the ``vlm3d-ctnet`` registry
entry): there is no usable public copy. :func:`load_ctnet` reads a user-supplied file with
:func:`trace_bench.weights_load.load_state_dict` (``weights_only=True``; the checkpoint's pickle needs
only ``OrderedDict`` and tensor rebuilds, which that allows), takes ``"params"`` when present, strips one
leading ``module.`` per key (as ``compute_fvd`` does) and loads strictly.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import WeightsError
from ..optional import require
from ..volume import Volume

#: registry entry of the weights (trace_bench.weights)
WEIGHTS_NAME = "vlm3d-ctnet"
#: network input per volume: 134 images of 3 consecutive slices, 420 x 420
N_IMAGES = 134
SIDE = 420
SLICES = 3 * N_IMAGES  # 402
#: VLM3D's resize target (depth, height, width) = (z, x, y) of the canonical array
TARGET_DHW = (SLICES, SIDE, SIDE)
FEATURE_DIM = 96
N_OUTPUTS = 18
#: evaluate_fvd.py ``_prep_volume``: HU clip before resizing
READ_WINDOW = (-1000.0, 1000.0)
#: compute_fvd's ``pixel_bounds`` of prepare_ctvol_2019_10_dataset
PIXEL_BOUNDS = (-1000.0, 200.0)
#: utils.py ``torchify_pixelnorm_pixelcenter``: "center on the ImageNet mean"
CENTER = 0.449
#: names this preprocessing (bump the version when any step changes a number)
PREPROCESS_ID = ("vlm3d-fvd-v1:lps-zxy:clip-1000,1000:trilinear-402x420x420:01-roundtrip:"
                 "clip-1000,200:01-minus0.449:triplets134")
EXTRACTOR_ID = "vlm3d-ctnet:resnet18x134-reducingconvs:fc96-relu"


# ============================================================================= the network
class CTNet(nn.Module):
    """CT-Net (``CTNetModel`` of the source, module doc); :meth:`forward` gives the 96-d features.

    ``trunk_batch``: images per ResNet-18 pass (the 134 x B images are run in slices of this size to
    bound memory: 32 images at 420 x 420 need about 0.4 GB for the first feature map); it does not
    change the mathematics."""

    def __init__(self, n_outputs: int = N_OUTPUTS, trunk_batch: int = 32) -> None:
        super().__init__()
        models = require("torchvision.models", "CT-Net (its ResNet-18 trunk)", extra="ct3d")

        resnet = models.resnet18(weights=None)
        self.features = nn.Sequential(*list(resnet.children())[:-2])
        self.reducingconvs = nn.Sequential(
            nn.Conv3d(N_IMAGES, 64, kernel_size=(3, 3, 3), stride=(3, 1, 1), padding=0), nn.ReLU(),
            nn.Conv3d(64, 32, kernel_size=(3, 3, 3), stride=(3, 1, 1), padding=0), nn.ReLU(),
            nn.Conv3d(32, 16, kernel_size=(3, 2, 2), stride=(3, 2, 2), padding=0), nn.ReLU())
        self.classifier = nn.Sequential(
            nn.Linear(16 * 18 * 5 * 5, 128), nn.ReLU(True), nn.Dropout(0.5),
            nn.Linear(128, FEATURE_DIM), nn.ReLU(True), nn.Dropout(0.5),
            nn.Linear(FEATURE_DIM, n_outputs))
        self.trunk_batch = int(trunk_batch)

    def trunk(self, images: torch.Tensor) -> torch.Tensor:
        """(M, 3, 420, 420) -> (M, 512, 14, 14), ``trunk_batch`` images at a time."""
        b = max(1, self.trunk_batch)
        return torch.cat([self.features(images[i:i + b]) for i in range(0, images.shape[0], b)])

    def head(self, maps: torch.Tensor) -> torch.Tensor:
        """(B, 134, 512, 14, 14) trunk maps -> (B, 96): reducing convs, then the classifier up to its
        second ReLU + Dropout (VLM3D's ``forward``)."""
        x = self.reducingconvs(maps)  # (B, 16, 18, 5, 5)
        x = x.reshape(x.shape[0], 16 * 18 * 5 * 5)
        for layer in self.classifier[:6]:
            x = layer(x)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x``: (B, 134, 3, 420, 420) or (B, 402, 420, 420) preprocessed volumes -> (B, 96)."""
        if tuple(x.shape[1:]) not in ((N_IMAGES, 3, SIDE, SIDE), TARGET_DHW):
            raise ValueError(f"Expected CT-Net input (B, {N_IMAGES}, 3, {SIDE}, {SIDE}) or (B, {SLICES}, {SIDE}, "
                             f"{SIDE}), got {tuple(x.shape)}")
        n = x.shape[0]
        maps = self.trunk(x.reshape(n * N_IMAGES, 3, SIDE, SIDE))
        return self.head(maps.reshape(n, N_IMAGES, 512, 14, 14))

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 18): the classifier's output (the 18 CT-RATE abnormalities), for checks of a checkpoint."""
        return self.classifier[6](self.forward(x))


# ============================================================================= preprocessing
def vlm3d_array(volume: Volume) -> np.ndarray:
    """VLM3D's (D, H, W) array of ``volume``: the canonical LPS (z, y, x) array as (z, x, y), float32
    (``_read_mha``'s ``transpose(0, 2, 1)`` of an identity-direction file; module doc, step 1)."""
    return np.asarray(volume.array, np.float32).transpose(0, 2, 1)


@torch.no_grad()
def preprocess_array(zxy: np.ndarray) -> np.ndarray:
    """Steps 2-6 of the module doc on a float32 (z, x, y) HU array -> float32 (134, 3, 420, 420)."""
    a = np.asarray(zxy, np.float32)
    if a.ndim != 3 or min(a.shape) < 1:
        raise ValueError(f"Expected a 3-D (z, x, y) array, got shape {a.shape}")
    lo, hi = READ_WINDOW
    t = torch.from_numpy(np.clip(a, lo, hi))[None, None]
    t = F.interpolate(t, size=TARGET_DHW, mode="trilinear", align_corners=False)[0, 0]
    t = t.div_(1000.0).add_(1).div_(2)  # evaluate_fvd.py: HU -> [0, 1]
    t = t.mul_(2000).sub_(1000)  # fvd_pytorch.py compute_fvd: [0, 1] -> HU
    plo, phi = PIXEL_BOUNDS
    t = t.clamp_(plo, phi).sub_(plo).div_(phi - plo).sub_(CENTER)  # utils.py torchify_pixelnorm_pixelcenter
    return np.ascontiguousarray(t.reshape(N_IMAGES, 3, SIDE, SIDE).numpy())


def preprocess(volume: Volume) -> np.ndarray:
    """The CT-Net input of ``volume``: float32 (134, 3, 420, 420) (module doc)."""
    return preprocess_array(vlm3d_array(volume))


def protocol_warnings(volume: Volume) -> list[tuple[str, str]]:
    """``(stage, one-line warning)`` of the body-region check: CT-Net is trained on chest CTs (CT-RATE), so a
    volume without lungs is warned about (:func:`trace_bench.networks.body.chest_warnings`). No field-of-view
    check: every volume is resized whole, nothing is cut."""
    from .body import chest_warnings, summarise

    summary = summarise(volume.array, tuple(float(s) for s in volume.spacing))  # type: ignore[arg-type]
    return [("body-region", w) for w in chest_warnings(summary, "CT-Net (VLM3D) preprocessing")]


# ============================================================================= the weights file
def ctnet_state_dict(path: str | Path, name: str | None = WEIGHTS_NAME) -> dict[str, torch.Tensor]:
    """The CT-Net state dict (float32, no ``module.`` prefix) of a checkpoint ``{"params": ...}`` (the
    challenge's format) or of a bare state dict, read tensors-only by
    :func:`trace_bench.weights_load.load_state_dict` (a file needing full unpickling is refused there)."""
    from ..weights import WEIGHTS, file_sha256
    from ..weights_load import float32_tensors, load_state_dict

    cut = WEIGHTS.get(WEIGHTS_NAME).extra.get("truncated_public_copy", {})
    p = Path(path)
    if cut and p.is_file() and p.stat().st_size == cut["size"] and file_sha256(p) == cut["sha256"]:
        raise WeightsError(f"weights {name!r}: {path} is the truncated copy committed in forithmus/VLM3D-Dockers "
                           f"({cut['size']:,} bytes of about 99 MB); obtain the complete checkpoint from the VLM3D "
                           "challenge organisers")
    obj = load_state_dict(path, name)
    sd = obj.get("params", obj) if isinstance(obj, dict) else None
    if not isinstance(sd, dict):
        raise WeightsError(f"weights {name!r}: {path} holds no CT-Net state dict (expected a dict with 'params')")
    # fvd_pytorch.py compute_fvd: k.replace("module.", "", 1) if k.startswith("module.")
    sd = {(k[len("module."):] if k.startswith("module.") else k): v for k, v in sd.items()}
    if "features.0.weight" not in sd or "reducingconvs.0.weight" not in sd:
        raise WeightsError(f"weights {name!r}: {path} holds no CT-Net state dict (no 'features.0.weight' / "
                           f"'reducingconvs.0.weight'; keys start {sorted(sd)[:3]})")
    return float32_tensors(sd)


@dataclass
class CTNetExtractor:
    """A loaded CT-Net on ``device``; :meth:`features` maps preprocessed volumes to (N, 96)."""

    model: CTNet
    device: str
    weights_sha256: str = ""
    id: str = EXTRACTOR_ID
    dim: int = FEATURE_DIM

    @torch.no_grad()
    def features(self, inputs: np.ndarray) -> np.ndarray:
        """``inputs``: float32 (N, 134, 3, 420, 420) from :func:`preprocess` -> float32 (N, 96), one
        volume per forward pass."""
        x = np.asarray(inputs, np.float32)
        if x.ndim == 4:
            x = x[None]
        if x.ndim != 5:
            raise ValueError(f"Expected preprocessed volumes (N, {N_IMAGES}, 3, {SIDE}, {SIDE}), got shape {x.shape}")
        out = [self.model(torch.from_numpy(np.ascontiguousarray(x[i:i + 1])).to(self.device)).float().cpu()
               for i in range(len(x))]
        return torch.cat(out).numpy() if out else np.zeros((0, FEATURE_DIM), np.float32)

    def volume_features(self, volumes: list[Volume]) -> np.ndarray:
        """Preprocess and embed volumes one at a time: (len(volumes), 96)."""
        rows = [self.features(preprocess(v)[None]) for v in volumes]
        return np.concatenate(rows) if rows else np.zeros((0, FEATURE_DIM), np.float32)


def load_ctnet(path: str | Path, device: str = "cpu", sha256: str = "", name: str = WEIGHTS_NAME,
               trunk_batch: int = 32) -> CTNetExtractor:
    """Build :class:`CTNet`, load the checkpoint strictly (float32), eval mode, on ``device``."""
    from ..weights_load import load_strict

    model = load_strict(CTNet(trunk_batch=trunk_batch), ctnet_state_dict(path, name), path, name, "CT-Net")
    model.eval().to(device)
    return CTNetExtractor(model, device, sha256)


def load_backbone(path: str, device: str, name: str, ctx: Any) -> CTNetExtractor:
    """:class:`~trace_bench.metrics.backbone.Backbone` loader (``ctx``: the run's RunContext; its
    ``batch_size`` bounds the images per ResNet-18 pass)."""
    from ..weights import file_sha256

    if name != WEIGHTS_NAME:
        raise WeightsError(f"weights {name!r}: CT-Net reads only the {WEIGHTS_NAME} entry")
    return load_ctnet(path, device, sha256=file_sha256(path), name=name,
                      trunk_batch=min(max(int(getattr(ctx, "batch_size", 32)), 1), N_IMAGES))


__all__ = ["CTNet", "CTNetExtractor", "EXTRACTOR_ID", "FEATURE_DIM", "N_IMAGES", "PREPROCESS_ID", "SIDE", "SLICES",
           "protocol_warnings",
           "TARGET_DHW", "ctnet_state_dict", "load_ctnet", "load_backbone", "preprocess", "preprocess_array",
           "vlm3d_array"]
