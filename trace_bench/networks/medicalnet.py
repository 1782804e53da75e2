"""MedicalNet (Med3D) 3D ResNet-50 and HA-GAN's FID preprocessing: 2048-d features per CT volume.

The 3D FID of HA-GAN (Sun et al., IEEE JBHI 2022; batmanlab/HA-GAN ``evaluation/fid_score.py``) and
WDM-3D (Friedrich et al., DGM4MICCAI 2024; pfriedri/wdm-3d ``eval/fid.py``) embeds each volume with the
ResNet-50 of MedicalNet (Chen et al. 2019, "Med3D: Transfer Learning for 3D Medical Image Analysis";
Tencent/MedicalNet, MIT), keeps the trunk up to ``layer4`` and replaces the segmentation head
``conv_seg`` by ``AdaptiveAvgPool3d((1, 1, 1))`` + flatten: one 2048-d vector per volume.

Network (Tencent/MedicalNet ``models/resnet.py`` ``ResNet`` / ``Bottleneck`` / ``resnet50``, with
``shortcut_type='B'`` as the README prescribes for ResNet-50; written here from that file, not
copied; HA-GAN's ``evaluation/resnet3D.py`` and WDM-3D's ``eval/models/resnet.py`` hold the same trunk):

* stem: Conv3d 1->64, kernel 7, stride 2, padding 3, no bias; BatchNorm3d; ReLU; MaxPool3d kernel 3,
  stride 2, padding 1;
* layer1..4 = 3, 4, 6, 3 bottlenecks (1x1x1 conv, BN, ReLU, 3x3x3 conv with the layer's stride and
  dilation (padding = dilation), BN, ReLU, 1x1x1 conv to 4x channels, BN, ``relu(out + residual)``);
  widths 64, 128, 256, 512; strides 1, 2, 1, 1; dilations 1, 1, 2, 4 (MedicalNet keeps layer3 and
  layer4 at 1/8 resolution with dilated convolutions instead of striding, unlike torchvision / MONAI);
* shortcut B: ``Sequential(Conv3d 1x1x1 with the layer's stride, no bias; BatchNorm3d)`` on the first
  block of each layer (every layer changes the width), identity elsewhere;
* BatchNorm eps 1e-5, eval mode; the feature is ``adaptive_avg_pool3d(map, 1)`` flattened; for a
  256^3 input the map is (2048, 32, 32, 32).

Weights. MedicalNet's checkpoints are ``{"state_dict": {...}}`` saved from an ``nn.DataParallel``
model, so every key starts with ``module.``; the pretraining files hold the trunk only (HA-GAN loads
them strictly into a model whose ``conv_seg`` has no parameters). :func:`medicalnet_state_dict` reads
the file with :func:`trace_bench.weights_load.load_state_dict` (tensors only), strips ``module.``,
drops any ``conv_seg.*`` head keys, and requires exactly the trunk's keys (a BatchNorm
``num_batches_tracked`` counter, which checkpoints of PyTorch < 0.4.1 lack and eval mode never reads,
may be absent). The key names equal those of MONAI's ``resnet50(n_input_channels=1,
feed_forward=False, shortcut_type="B", bias_downsample=False)``, into which MONAI loads the same
Hugging Face file strictly (``monai/networks/nets/resnet.py`` ``_resnet``,
``get_pretrained_resnet_medicalnet``). Registry entries: ``medicalnet-resnet50``
(``resnet_50_23dataset.pth``, 23 datasets; WDM-3D's and MONAI's default) and
``medicalnet-resnet50-3dseg8`` (``resnet_50.pth``, the original release; HA-GAN's file).

Preprocessing (HA-GAN, mode ``hagan``; ``preprocess.py`` ``resize_img`` with its defaults, then
``volume_dataset.py`` / ``fid_score.py``), applied here to every volume, generated or reference:

1. the array in ``(z, y, x)`` order (HA-GAN: ``sitk.GetArrayFromImage``; trace-bench's canonical LPS
   array, which is what that call returns for a file stored in LPS voxel order, e.g. DICOM series);
2. NaN -> -1024; ``np.interp(img, [-1024, 600], [-1, 1])`` (clip to HU [-1024, 600], linear to [-1, 1]);
3. drop the axial slices whose mean is exactly -1 (all voxels <= -1024 HU; ``TRIM_BLANK_SLICES``);
4. ``skimage.transform.resize(img, (S, S, S), mode='constant', cval=-1)`` with scikit-image 0.19.2
   (HA-GAN's ``environment.yml``): linear (order 1), Gaussian anti-aliasing with
   ``sigma = max(0, (in / out - 1) / 2)`` per axis when any axis shrinks, ``scipy.ndimage.zoom`` with
   ``grid_mode=True`` and ``grid-constant`` padding at -1, then clipping to the input's range
   (voxels exactly at cval kept when cval lies outside it) -- :func:`resize_skimage` is a port of
   that code path;
5. float64 -> float32 (the ``.npy`` volume read back and ``.float()``), shape (1, 1, S, S, S).

S = 256 (``fid_score.py``'s ``img_size`` default, HA-GAN's 256^3 model) or 128. HA-GAN feeds its
generated volumes to the network directly (generator output in [-1, 1], never trimmed); trace-bench
scores every volume through the same path, which for a generated S^3 volume in that window is the
identity up to rounding (step 3 then drops nothing unless a whole slice is <= -1024 HU).

WDM-3D's protocol differs (its ``utils/preproc_lidc-idri.py`` and ``guided_diffusion/lidcloader.py``):
input in [0, 1] not [-1, 1] (HU clipped below at -1000 and above at the volume's 0.999 quantile, then
min-max scaled per volume), resampled to 1 mm isotropic (cubic spline, ``scipy.ndimage.zoom``) and
centre-cropped to 256^3 instead of resized, nibabel's ``(x, y, z)`` array order, 128^3 by 2x2x2
average pooling, and the 23-dataset weights. It is not implemented here; numbers from this module
are HA-GAN-protocol numbers.
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
from ..volume import Volume
from .resnet3d import Bottleneck3d

#: registry entries whose file this network reads (trace_bench.weights)
WEIGHTS_NAME = "medicalnet-resnet50"
WEIGHTS_NAMES = ("medicalnet-resnet50", "medicalnet-resnet50-3dseg8")
FEATURE_DIM = 2048
#: bottlenecks per layer of ResNet-50 (MedicalNet ``resnet50``)
LAYERS = (3, 4, 6, 3)
#: (planes, stride, dilation) of layer1..4 (MedicalNet ``ResNet.__init__``)
LAYER_SETTINGS = ((64, 1, 1), (128, 2, 1), (256, 1, 2), (512, 1, 4))
#: HA-GAN ``preprocess.py``: LOW_THRESHOLD, HIGH_THRESHOLD (HU) mapped to [-1, 1]
HAGAN_WINDOW = (-1024.0, 600.0)
SIZES = (256, 128)
EXTRACTOR_ID = "medicalnet-resnet50:shortcutB:dil1,1,2,4:gap2048"


# ============================================================================= the network
class MedicalNetResNet50(nn.Module):
    """MedicalNet's ResNet-50 (shortcut B) without ``conv_seg``; ``forward`` gives the (B, 2048, D/8,
    H/8, W/8) map, :meth:`embed` HA-GAN's feature (its global average)."""

    def __init__(self, layers: tuple[int, int, int, int] = LAYERS) -> None:
        super().__init__()
        self.conv1 = nn.Conv3d(1, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm3d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool3d(3, stride=2, padding=1)
        inplanes = 64
        for i, (n, (planes, stride, dilation)) in enumerate(zip(layers, LAYER_SETTINGS), start=1):
            blocks = [Bottleneck3d(inplanes, planes, stride, dilation)]
            inplanes = planes * Bottleneck3d.expansion
            blocks += [Bottleneck3d(inplanes, planes, 1, dilation) for _ in range(n - 1)]
            setattr(self, f"layer{i}", nn.Sequential(*blocks))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x``: (B, 1, D, H, W), HA-GAN's input in [-1, 1]."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 2048): HA-GAN's ``conv_seg = Sequential(AdaptiveAvgPool3d((1, 1, 1)), Flatten())``."""
        return F.adaptive_avg_pool3d(self.forward(x), 1).flatten(1)


# ============================================================================= the weights file
def medicalnet_state_dict(path: str | Path, name: str | None = WEIGHTS_NAME) -> dict[str, torch.Tensor]:
    """The trunk's state dict (float32) from a MedicalNet checkpoint, read tensors-only.

    Accepts ``{"state_dict": sd}`` (MedicalNet's files) or a bare ``sd``; strips a leading
    ``module.``; drops ``conv_seg.*`` (the segmentation head, not used for features); then requires
    exactly the keys of :class:`MedicalNetResNet50` (``num_batches_tracked`` may be absent and is
    then set to 0). Anything else raises :class:`WeightsError` naming the first offending keys.
    """
    from ..weights_load import load_state_dict

    obj = load_state_dict(path, name)
    sd = obj.get("state_dict", obj) if isinstance(obj, dict) else None
    if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise WeightsError(f"weights {name!r}: {path} holds no state dict of tensors (expected MedicalNet's "
                           "{'state_dict': {...}})")
    out: dict[str, torch.Tensor] = {}
    for k, v in sd.items():
        k = k.removeprefix("module.")
        if not k.startswith("conv_seg."):
            out[k] = v.float() if v.is_floating_point() else v
    with torch.device("meta"):
        want = MedicalNetResNet50().state_dict()
    missing = [k for k in want if k not in out and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in out if k not in want]
    if missing or unexpected:
        raise WeightsError(f"weights {name!r}: {path} is not a MedicalNet ResNet-50 (shortcut B) trunk: "
                           f"{len(missing)} missing key(s) {missing[:3]}, {len(unexpected)} unexpected {unexpected[:3]}")
    bad = [k for k, v in want.items() if k in out and tuple(out[k].shape) != tuple(v.shape)]
    if bad:
        raise WeightsError(f"weights {name!r}: {path}: shape mismatch for {bad[:3]} "
                           f"(e.g. {tuple(out[bad[0]].shape)} vs {tuple(want[bad[0]].shape)})")
    for k in want:
        if k.endswith("num_batches_tracked") and k not in out:
            out[k] = torch.zeros((), dtype=torch.long)
    return out


# ============================================================================= preprocessing
def resize_skimage(img: np.ndarray, shape: tuple[int, ...], cval: float = 0.0) -> np.ndarray:
    """``skimage.transform.resize(img, shape, mode='constant', cval=cval)`` of scikit-image 0.19.2 for a
    float64 array (order 1, ``anti_aliasing=None``, ``clip=True``, ``preserve_range=False``).

    Port of scikit-image v0.19.2 ``skimage/transform/_warps.py`` ``resize`` (SciPy >= 1.6 branch) and
    ``_clip_warp_output``: Gaussian pre-filter with ``sigma = max(0, (in/out - 1) / 2)`` when any axis
    shrinks (mode ``grid-constant``), ``scipy.ndimage.zoom(order=1, grid_mode=True,
    mode='grid-constant')``, clip to the input's [min, max], keeping output voxels exactly equal to
    ``cval`` when ``cval`` lies outside that range. (scikit-image >= 0.20 instead widens the range to
    ``cval``; the two agree whenever ``min <= cval <= max``, e.g. a CT with any voxel <= -1024 HU.)
    """
    from scipy import ndimage as ndi

    img = np.asarray(img, dtype=np.float64)
    if img.ndim != len(shape):
        raise ValueError(f"Expected a {len(shape)}-D array, got shape {img.shape}")
    factors = np.divide(img.shape, shape)
    lo, hi = float(img.min()), float(img.max())
    filtered = img
    if any(o < i for o, i in zip(shape, img.shape)):
        sigma = np.maximum(0, (factors - 1) / 2)
        filtered = ndi.gaussian_filter(img, sigma, cval=cval, mode="grid-constant")
    out = ndi.zoom(filtered, [1 / f for f in factors], order=1, mode="grid-constant", cval=cval, grid_mode=True)
    keep_cval = not (lo <= cval <= hi)
    mask = out == cval if keep_cval else None
    np.clip(out, lo, hi, out=out)
    if mask is not None:
        out[mask] = cval
    return out


def preprocess_hagan(volume: Volume | np.ndarray, size: int = 256) -> np.ndarray:
    """HA-GAN's network input of ``volume`` (see module doc): float32 (size, size, size) in [-1, 1].

    ``volume``: a :class:`~trace_bench.volume.Volume` (its canonical LPS ``(z, y, x)`` HU array) or
    such an array. Refused when every axial slice is <= -1024 HU (nothing left after trimming).
    """
    a = volume.array if isinstance(volume, Volume) else volume
    img = np.array(a, dtype=np.float64)
    if img.ndim != 3:
        raise ValueError(f"Expected a 3-D (z, y, x) array, got shape {img.shape}")
    lo, hi = HAGAN_WINDOW
    img[np.isnan(img)] = lo
    img = np.interp(img, [lo, hi], [-1, 1])
    img = img[np.mean(img, (1, 2)) != -1]
    if img.shape[0] == 0:
        raise ValueError(f"every axial slice is <= {lo:g} HU: nothing left after HA-GAN's blank-slice trimming")
    return resize_skimage(img, (int(size),) * 3, cval=-1.0).astype(np.float32)


def preprocess_id(size: int = 256) -> str:
    """Identifier of the preprocessing (goes into protocol ids and cache keys)."""
    if int(size) not in SIZES:
        raise ValueError(f"Expected size 256 or 128, got {size!r}")
    return f"hagan:zyx:hu-1024,600->-1,1:trim-blank-axial:skimage0.19-resize{int(size)}:linear-aa-cval-1:f32"


# ============================================================================= the extractor
@dataclass
class MedicalNetEncoder:
    """A loaded network on ``device``; :meth:`features` maps preprocessed volumes to (N, 2048)."""

    model: MedicalNetResNet50
    device: str
    weights_sha256: str = ""
    batch_size: int = 1
    id: str = EXTRACTOR_ID

    @torch.no_grad()
    def features(self, volumes: np.ndarray) -> np.ndarray:
        """``volumes``: float32 (N, S, S, S) from :func:`preprocess_hagan` -> float32 (N, 2048)."""
        v = np.asarray(volumes, np.float32)
        if v.ndim != 4:
            raise ValueError(f"Expected preprocessed volumes (N, z, y, x), got shape {v.shape}")
        out = []
        for i in range(0, len(v), max(1, int(self.batch_size))):
            x = torch.from_numpy(np.ascontiguousarray(v[i:i + self.batch_size])).to(self.device)
            out.append(self.model.embed(x[:, None]).float().cpu())
        return torch.cat(out).numpy() if out else np.zeros((0, FEATURE_DIM), np.float32)

    def volume_features(self, volumes: list[Volume], size: int = 256) -> np.ndarray:
        """Preprocess and embed a list of volumes, ``batch_size`` per forward pass: (len(volumes), 2048)."""
        return self.features(np.stack([preprocess_hagan(v, size) for v in volumes])) if volumes else \
            np.zeros((0, FEATURE_DIM), np.float32)


def load_medicalnet(path: str | Path, device: str = "cpu", batch_size: int = 1, sha256: str = "",
                    name: str = WEIGHTS_NAME) -> MedicalNetEncoder:
    """Build :class:`MedicalNetResNet50`, load the trunk strictly (float32), eval mode, on ``device``."""
    model = MedicalNetResNet50()
    model.load_state_dict(medicalnet_state_dict(path, name), strict=True)
    model.eval().to(device)
    return MedicalNetEncoder(model, device, sha256, int(batch_size))


def load_backbone(path: str, device: str, name: str, ctx: Any) -> MedicalNetEncoder:
    """:class:`~trace_bench.metrics.backbone.Backbone` loader (``ctx``: the run's RunContext)."""
    from ..weights import file_sha256

    if name not in WEIGHTS_NAMES:
        raise WeightsError(f"weights {name!r}: not a MedicalNet ResNet-50 entry (expected one of {', '.join(WEIGHTS_NAMES)})")
    return load_medicalnet(path, device, batch_size=1, sha256=file_sha256(path), name=name)


__all__ = [
    "EXTRACTOR_ID",
    "FEATURE_DIM",
    "HAGAN_WINDOW",
    "SIZES",
    "WEIGHTS_NAME",
    "WEIGHTS_NAMES",
    "Bottleneck3d",
    "MedicalNetEncoder",
    "MedicalNetResNet50",
    "load_medicalnet",
    "load_backbone",
    "medicalnet_state_dict",
    "preprocess_hagan",
    "preprocess_id",
    "resize_skimage",
]
