"""VBench ``subject_consistency`` (DINO ViT-B/16) and ``background_consistency`` (CLIP ViT-B/32).

Both follow Vchitect/VBench ``vbench/subject_consistency.py`` / ``vbench/background_consistency.py``
(same code in PyPI vbench 0.1.5). With L2-normalised per-frame features ``f_0..f_{T-1}``::

    s_i = (max(0, cos(f_{i-1}, f_i)) + max(0, cos(f_0, f_i))) / 2,   i = 1..T-1
    video score   = sum_i s_i / (T - 1)
    overall score = sum over all videos of sum_i s_i / number of pairs      (VBench's "sim / cnt")

Preprocessing (``vbench/utils.py``, the video path ``read_frame=False``), on uint8 RGB frames:

``load_video`` returns ``torch.Tensor(frames)``, i.e. float32 values 0..255 (not uint8), so the
resize below interpolates floats and nothing is rounded back to integers.

* DINO: ``Resize(224, antialias=False)`` of the shorter side (bilinear), no crop, ``/255``,
  ImageNet mean/std (``dino_transform``);
  the DINO network interpolates its position embedding for non-square inputs as DINO does.
* CLIP: ``Resize(224, bicubic, antialias=False)``, ``CenterCrop(224)``, ``/255``, CLIP mean/std
  (``clip_transform``). VBench loads CLIP with ``clip.load``, which is fp16 on CUDA and fp32 on
  CPU; trace-bench runs fp32 everywhere (differences of order 1e-3 against VBench's fp16 GPU runs).

The per-case value written by the runner is the video score; the streaming form of the metric
classes (``update`` / ``compute_result``) also gives VBench's pair-weighted overall score.
"""

from __future__ import annotations

import math
from functools import partial
from typing import ClassVar

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ...errors import WeightsError
from ..backbone import Backbone
from ..base import CaseData, Metric, Output, RunContext, register_metric
from ._common import frames_uint8_tchw, load_checkpoint, run_batched, strict_load

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
VBENCH_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)  # vbench/utils.py clip_transform
VBENCH_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


# ----------------------------------------------------------------------------- functional twin
def _as_features(features: np.ndarray | torch.Tensor) -> np.ndarray:
    if isinstance(features, torch.Tensor):
        features = features.detach().to("cpu", torch.float64).numpy()
    f = np.asarray(features, dtype=np.float64)
    if f.ndim != 2:
        raise ValueError(f"Expected features of shape (T, D), got {tuple(f.shape)}")
    if f.shape[0] < 2:
        raise ValueError(f"Expected at least 2 frames of features, got {f.shape[0]}")
    if not np.isfinite(f).all():
        raise ValueError("Expected finite features, got NaN or inf")
    return f


def consistency_pairs(features: np.ndarray | torch.Tensor) -> np.ndarray:
    """Per-pair scores ``s_i`` (length T-1) of VBench's first/previous-frame formula (float64;
    L2 normalisation with torch's ``F.normalize`` epsilon 1e-12, so an all-zero feature gives 0)."""
    f = _as_features(features)
    f = f / np.maximum(np.linalg.norm(f, axis=1, keepdims=True), 1e-12)
    sim_prev = np.maximum(np.einsum("ij,ij->i", f[:-1], f[1:]), 0.0)
    sim_first = np.maximum(f[1:] @ f[0], 0.0)
    return (sim_prev + sim_first) / 2


def subject_consistency(features: np.ndarray | torch.Tensor) -> float:
    """VBench video score on per-frame features (T, D): ``mean_i (max(0, cos(f_{i-1}, f_i)) +
    max(0, cos(f_0, f_i))) / 2``. Shared by subject (DINO) and background (CLIP) consistency."""
    return float(consistency_pairs(features).mean())


background_consistency = subject_consistency


# ----------------------------------------------------------------------------- preprocessing
def dino_preprocess(frames: np.ndarray, size: int = 224) -> torch.Tensor:
    """VBench ``dino_transform(224)`` on uint8 frames -> float (T, 3, h, w)."""
    # torchvision is imported here, not at module level: it costs ~1 s at start-up
    import torchvision.transforms.functional as TF
    from torchvision.transforms import InterpolationMode  # noqa: F401
    x = TF.resize(frames_uint8_tchw(frames).float(), size, antialias=False)
    return TF.normalize(x.float().div(255.0), IMAGENET_MEAN, IMAGENET_STD)


def clip_preprocess(frames: np.ndarray, size: int = 224) -> torch.Tensor:
    """VBench ``clip_transform(224)`` on uint8 frames -> float (T, 3, 224, 224)."""
    # torchvision is imported here, not at module level: it costs ~1 s at start-up
    import torchvision.transforms.functional as TF
    from torchvision.transforms import InterpolationMode  # noqa: F401
    x = TF.resize(frames_uint8_tchw(frames).float(), size, interpolation=InterpolationMode.BICUBIC, antialias=False)
    x = TF.center_crop(x, size)
    return TF.normalize(x.float().div(255.0), VBENCH_CLIP_MEAN, VBENCH_CLIP_STD)


# ----------------------------------------------------------------------------- DINO ViT
def _vit_class() -> type:
    from timm.models.vision_transformer import VisionTransformer

    class DinoViT(VisionTransformer):
        """DINO ViT (facebookresearch/dino ``vision_transformer.py``) built from timm blocks.

        Parameter names equal DINO's (``cls_token``, ``pos_embed``, ``patch_embed.proj``,
        ``blocks.N.{norm1,attn.qkv,attn.proj,norm2,mlp.fc1,mlp.fc2}``, ``norm``), so the published
        ``dino_vitbase16_pretrain.pth`` loads strictly. ``forward`` returns the CLS token after the
        final LayerNorm, with DINO's bicubic position-embedding interpolation for other sizes.
        """

        def dino_pos_embed(self, npatch: int, h: int, w: int) -> torch.Tensor:
            # DINO VisionTransformer.interpolate_pos_encoding (its "w" is the height axis)
            n = self.pos_embed.shape[1] - 1
            if npatch == n and h == w:
                return self.pos_embed
            p = self.patch_embed.proj.kernel_size[0]
            dim = self.pos_embed.shape[-1]
            h0, w0 = h // p + 0.1, w // p + 0.1
            g = int(math.sqrt(n))
            pe = F.interpolate(self.pos_embed[:, 1:].reshape(1, g, g, dim).permute(0, 3, 1, 2),
                               scale_factor=(h0 / math.sqrt(n), w0 / math.sqrt(n)), mode="bicubic")
            pe = pe.permute(0, 2, 3, 1).reshape(1, -1, dim)
            return torch.cat([self.pos_embed[:, :1], pe], dim=1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
            b, _, h, w = x.shape
            t = self.patch_embed.proj(x).flatten(2).transpose(1, 2)
            t = torch.cat([self.cls_token.expand(b, -1, -1), t], dim=1)
            t = t + self.dino_pos_embed(t.shape[1] - 1, h, w)
            t = self.norm(self.blocks(t))
            return t[:, 0]

    return DinoViT


def build_dino_vit(embed_dim: int = 768, depth: int = 12, num_heads: int = 12, patch_size: int = 16,
                   img_size: int = 224) -> nn.Module:
    """DINO ViT; defaults are ViT-B/16 (``dino_vitb16``). Smaller settings serve tests only."""
    return _vit_class()(img_size=img_size, patch_size=patch_size, embed_dim=embed_dim, depth=depth,
                        num_heads=num_heads, mlp_ratio=4.0, qkv_bias=True, num_classes=0, global_pool="token",
                        class_token=True, norm_layer=partial(nn.LayerNorm, eps=1e-6))


def dino_state_dict(obj: dict) -> dict[str, torch.Tensor]:
    """Backbone weights from a DINO file: the released ``*_pretrain.pth`` (plain state dict) or a full
    training checkpoint (``teacher``/``student`` with ``module.`` / ``backbone.`` prefixes; heads dropped)."""
    if "teacher" in obj:
        obj = obj["teacher"]
    elif "student" in obj:
        obj = obj["student"]
    elif "state_dict" in obj:
        obj = obj["state_dict"]
    out = {}
    for k, v in obj.items():
        k = k.removeprefix("module.").removeprefix("backbone.")
        if k.startswith("head."):
            continue
        out[k] = v
    return out


def load_dino_vit(path: str, device: str = "cpu", name: str = "dino-vitb16") -> nn.Module:
    """Build the DINO ViT matching the file (width/depth read from the tensors; 64-d heads) and load it strictly."""
    sd = dino_state_dict(load_checkpoint(path, name))
    if "pos_embed" not in sd or "patch_embed.proj.weight" not in sd:
        raise WeightsError(f"weights {name!r}: {path} is not a DINO ViT state dict (no pos_embed / patch_embed)")
    dim = sd["pos_embed"].shape[-1]
    patch = sd["patch_embed.proj.weight"].shape[-1]
    grid = int(round(math.sqrt(sd["pos_embed"].shape[1] - 1)))
    depth = len({k.split(".")[1] for k in sd if k.startswith("blocks.")})
    model = build_dino_vit(embed_dim=dim, depth=depth, num_heads=max(1, dim // 64), patch_size=patch,
                           img_size=grid * patch)
    strict_load(model, sd, name, path)
    return model.to(device).eval()


# ----------------------------------------------------------------------------- plug-ins
def _load_dino_backbone(path: str, device: str, name: str, ctx: RunContext) -> nn.Module:
    return load_dino_vit(path, device, name)


def _load_clip_backbone(path: str, device: str, name: str, ctx: RunContext):
    from ...extractors.clip import load_clip_model  # the shared CLIP image backbone

    return load_clip_model(name=name, path=path, device=device)


class _Consistency(Metric):
    """Per case: the video score (mean cosine of each frame with the first and the previous one).
    Streaming: ``update(data)`` (or ``update_features(features)``) per video; ``compute_result()`` =
    VBench's overall score (sum of pair scores over all videos / number of pairs, not the mean of
    video scores); ``video_scores`` keeps the per-video values."""

    weight_name: ClassVar[str]
    preprocess_id: ClassVar[str]
    loader: ClassVar = staticmethod(_load_dino_backbone)

    def __init__(self, options=None) -> None:
        super().__init__(options)
        self.net = Backbone(type(self).loader)

    def setup(self, ctx: RunContext) -> None:
        self.net.get(self.weight_name, ctx)

    def base_protocol_id(self, ctx: RunContext) -> str:
        return f"{ctx.protocol.id}|{self.weight_name}|{self.preprocess_id}"

    def features(self, frames: np.ndarray, ctx: RunContext) -> torch.Tensor:
        model = self.net.get(self.weight_name, ctx)
        x = self.preprocess(frames)
        return run_batched(lambda b: self.encode(model, b.to(ctx.device)).float().cpu(), x, ctx.batch_size)

    def case_values(self, data: CaseData, ctx: RunContext) -> dict[str, float]:
        return {self.name: subject_consistency(self.features(data.frames, ctx))}

    def preprocess(self, frames: np.ndarray) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def encode(self, model, x: torch.Tensor) -> torch.Tensor:
        return model(x)

    # streaming form with VBench's pair-weighted overall score
    def reset(self) -> None:
        super().reset()
        self.sim_sum, self.pair_count = 0.0, 0

    @property
    def video_scores(self) -> list[float]:
        return [v[self.name] for v in self._values]

    def update_features(self, features: np.ndarray | torch.Tensor) -> dict[str, float]:
        s = consistency_pairs(features)
        self.sim_sum += float(s.sum())
        self.pair_count += int(s.size)
        v = {self.name: float(s.mean())}
        self._values.append(v)
        return v

    def update(self, data: CaseData, ctx: RunContext | None = None) -> dict[str, float]:
        return self.update_features(self.features(data.frames, ctx or RunContext()))

    def merge_state(self, other: "Metric") -> "Metric":
        super().merge_state(other)
        self.sim_sum += other.sim_sum  # type: ignore[attr-defined]
        self.pair_count += other.pair_count  # type: ignore[attr-defined]
        return self

    def compute_result(self, ctx: RunContext | None = None, reference=None) -> dict[str, float]:
        if self.pair_count == 0:
            raise ValueError(f"{type(self).__name__}.compute_result() called before any update()")
        return {self.name: self.sim_sum / self.pair_count}


@register_metric
class SubjectConsistency(_Consistency):
    name = "subject_consistency"
    outputs = {"subject_consistency": Output(True, "Subject Consistency", unit="fraction", rank=0, tolerance={"abs": 0.01}, closest_to_reference=True)}
    weights = ("dino-vitb16",)
    weight_name = "dino-vitb16"
    preprocess_id = "vbench-dino-resize224-bilinear-noaa"
    loader = staticmethod(_load_dino_backbone)
    description = "VBench subject consistency: DINO ViT-B/16 CLS features, first/previous-frame cosine"

    def preprocess(self, frames: np.ndarray) -> torch.Tensor:
        return dino_preprocess(frames)


@register_metric
class BackgroundConsistency(_Consistency):
    name = "background_consistency"
    outputs = {"background_consistency": Output(True, "Background Consistency", unit="fraction", rank=1, tolerance={"abs": 0.01}, closest_to_reference=True)}
    weights = ("clip-vit-b32",)
    weight_name = "clip-vit-b32"
    preprocess_id = "vbench-clip-resize224-bicubic-noaa-crop224"
    loader = staticmethod(_load_clip_backbone)
    description = "VBench background consistency: CLIP ViT-B/32 image features, first/previous-frame cosine"

    def preprocess(self, frames: np.ndarray) -> torch.Tensor:
        return clip_preprocess(frames)

    def encode(self, model, x: torch.Tensor) -> torch.Tensor:
        return model.encode_image(x)
