"""DINO ViT (Caron et al. 2021, facebookresearch/dino ``vision_transformer.py``): the CLS token after the
final LayerNorm, the network of VBench ``subject_consistency`` (weights entry ``dino-vitb16``).

Built from timm's ``VisionTransformer`` blocks with DINO's parameter names, so the published
``dino_vitbase16_pretrain.pth`` loads strictly (:func:`load_dino_vit`, tensors only through
:func:`trace_bench.weights_load.load_state_dict`). VBench's frame preprocessing for it lives with the
metric (:func:`trace_bench.metrics.vbench.consistency.dino_preprocess`).
"""

from __future__ import annotations

import math
from functools import partial
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..errors import WeightsError
from ..optional import require
from ..weights_load import load_state_dict, load_strict


def _vit_class() -> type:
    vit = require("timm.models.vision_transformer", "the DINO ViT (subject_consistency)")
    VisionTransformer = vit.VisionTransformer  # noqa: N806 - timm's class

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


def load_dino_vit(path: str | Path, device: str = "cpu", name: str = "dino-vitb16") -> nn.Module:
    """Build the DINO ViT matching the file (width/depth read from the tensors; 64-d heads) and load it strictly."""
    sd = dino_state_dict(load_state_dict(path, name))
    if "pos_embed" not in sd or "patch_embed.proj.weight" not in sd:
        raise WeightsError(f"weights {name!r}: {path} is not a DINO ViT state dict (no pos_embed / patch_embed)")
    dim = sd["pos_embed"].shape[-1]
    patch = sd["patch_embed.proj.weight"].shape[-1]
    grid = int(round(math.sqrt(sd["pos_embed"].shape[1] - 1)))
    depth = len({k.split(".")[1] for k in sd if k.startswith("blocks.")})
    model = build_dino_vit(embed_dim=dim, depth=depth, num_heads=max(1, dim // 64), patch_size=patch,
                           img_size=grid * patch)
    load_strict(model, sd, path, name, "DINO ViT")
    return model.to(device).eval()


def load_backbone(path: str, device: str, name: str, ctx: Any) -> nn.Module:
    """:class:`~trace_bench.metrics.backbone.Backbone` loader of the DINO ViT."""
    return load_dino_vit(path, device, name)
