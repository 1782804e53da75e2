"""MUSIQ: Multi-scale Image Quality Transformer (Ke et al., ICCV 2021), written for trace-bench.

Same computation and parameter names as IQA-PyTorch (pyiqa) ``pyiqa/archs/musiq_arch.py`` with
``pyiqa/data/multiscale_trans_util.py`` and ``pyiqa/matlab_utils/padding.py`` (the code VBench's
``imaging_quality`` calls: ``MUSIQ(pretrained_model_path=...)``), so IQA-PyTorch's converted
checkpoints such as ``musiq_spaq_ckpt-358bb6af.pth`` load strictly (:func:`load_musiq`).

Inference (pyiqa eval mode): input RGB in [0, 1], ``x -> 2x - 1``; patches of 32 x 32 from the
image resized (bicubic, aspect kept) so its longer side is 224 and 384, plus the original
resolution; hashed 10 x 10 spatial and scale embeddings; a ResNet stem per patch, a 14-layer
384-d transformer, a linear head. For SPAQ (one output) the score is the head output (MOS 0..100).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..errors import WeightsError


def same_pad(x: torch.Tensor, kernel: int, stride: int) -> torch.Tensor:
    """TensorFlow 'SAME' zero padding (pyiqa ``exact_padding_2d``)."""
    h, w = x.shape[-2:]
    ph = (math.ceil(h / stride) - 1) * stride + kernel - h
    pw = (math.ceil(w / stride) - 1) * stride + kernel - w
    return F.pad(x, (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2))


class StdConv(nn.Conv2d):
    """Weight-standardised convolution with 'SAME' padding."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        x = same_pad(x, self.kernel_size[0], self.stride[0])
        w = self.weight - self.weight.mean((1, 2, 3), keepdim=True)
        w = w / (w.std((1, 2, 3), keepdim=True) + 1e-5)
        return F.conv2d(x, w, self.bias, self.stride)


class Bottleneck(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int = 1) -> None:
        super().__init__()
        width = cin
        self.conv1 = StdConv(cin, width, 1, 1, bias=False)
        self.gn1 = nn.GroupNorm(32, width, eps=1e-4)
        self.conv2 = StdConv(width, width, 3, 1, bias=False)
        self.gn2 = nn.GroupNorm(32, width, eps=1e-4)
        self.conv3 = StdConv(width, cout, 1, 1, bias=False)
        self.gn3 = nn.GroupNorm(32, cout, eps=1e-4)
        self.relu = nn.ReLU(True)
        self.needs_projection = cin != cout or stride != 1
        if self.needs_projection:
            self.conv_proj = StdConv(cin, cout, 1, stride, bias=False)
            self.gn_proj = nn.GroupNorm(32, cout, eps=1e-4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = self.gn_proj(self.conv_proj(x)) if self.needs_projection else x
        x = self.relu(self.gn1(self.conv1(x)))
        x = self.relu(self.gn2(self.conv2(x)))
        return self.relu(self.gn3(self.conv3(x)) + identity)


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class MultiHeadAttention(nn.Module):
    """Attention with separate q/k/v projections; padded tokens masked with -1e3 (as pyiqa)."""

    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.scale = (dim // num_heads) ** -0.5
        self.query = nn.Linear(dim, dim, bias=True)
        self.key = nn.Linear(dim, dim, bias=True)
        self.value = nn.Linear(dim, dim, bias=True)
        self.out = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        q, k, v = (p(x).reshape(b, n, self.num_heads, c // self.num_heads).permute(0, 2, 1, 3)
                   for p in (self.query, self.key, self.value))
        attn = (q @ k.transpose(-2, -1)) * self.scale
        m2 = mask.reshape(b, 1, n, 1) * mask.reshape(b, 1, 1, n)
        attn = attn.masked_fill(m2 == 0, -1e3).softmax(dim=-1)
        return self.out((attn @ v).transpose(1, 2).reshape(b, n, c))


class TransformerBlock(nn.Module):
    def __init__(self, dim: int, mlp_dim: int, num_heads: int) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attention = MultiHeadAttention(dim, num_heads)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, mlp_dim)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x = x + self.attention(self.norm1(x), mask)
        return x + self.mlp(self.norm2(x))


class AddHashSpatialPositionEmbs(nn.Module):
    def __init__(self, grid: int, dim: int) -> None:
        super().__init__()
        self.position_emb = nn.Parameter(torch.zeros(1, grid * grid, dim))

    def forward(self, x: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        return x + self.position_emb.squeeze(0)[pos.long()]


class AddScaleEmbs(nn.Module):
    def __init__(self, num_scales: int, dim: int) -> None:
        super().__init__()
        self.scale_emb = nn.Parameter(torch.zeros(num_scales, dim))

    def forward(self, x: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
        return x + self.scale_emb[scale.long()]


class TransformerEncoder(nn.Module):
    def __init__(self, dim: int, mlp_dim: int = 1152, num_heads: int = 6, num_layers: int = 14,
                 num_scales: int = 3, grid: int = 10) -> None:
        super().__init__()
        self.posembed_input = AddHashSpatialPositionEmbs(grid, dim)
        self.scaleembed_input = AddScaleEmbs(num_scales, dim)
        self.cls = nn.Parameter(torch.zeros(1, 1, dim))
        self.encoder_norm = nn.LayerNorm(dim, eps=1e-6)
        self.transformer = nn.ModuleDict(
            {f"encoderblock_{i}": TransformerBlock(dim, mlp_dim, num_heads) for i in range(num_layers)})

    def forward(self, x, spatial, scale, mask):
        x = self.scaleembed_input(self.posembed_input(x, spatial), scale)
        x = torch.cat([self.cls.repeat(x.shape[0], 1, 1), x], dim=1)
        mask = torch.cat([torch.ones_like(mask[:, :1]), mask], dim=1)
        for blk in self.transformer.values():
            x = blk(x, mask)
        return self.encoder_norm(x)


# ----------------------------------------------------------------------------- multi-scale patches
def _hashed_positions(grid: int, count_h: int, count_w: int) -> torch.Tensor:
    """Hash a count_h x count_w patch grid onto grid x grid (nearest), row-major, shape (1, H*W)."""
    g = torch.arange(grid).float().reshape(1, 1, grid)
    pw = F.interpolate(g, count_w, mode="nearest").repeat(1, count_h, 1)
    ph = F.interpolate(g, count_h, mode="nearest").transpose(1, 2).repeat(1, 1, count_w)
    return (ph * grid + pw).reshape(1, -1)


def _patches(image: torch.Tensor, patch: int, grid: int, scale_id: int, max_len: int) -> torch.Tensor:
    """(N, C*patch*patch + 3, L): patches (zero 'SAME' padding), hashed position, scale id, mask=1;
    padded with zeros (mask 0) or cut to ``max_len`` when ``max_len >= 0``."""
    n, _, h, w = image.shape
    p = F.unfold(same_pad(image, patch, patch), patch, stride=patch)
    pos = _hashed_positions(grid, math.ceil(h / patch), math.ceil(w / patch)).unsqueeze(1).repeat(n, 1, 1).to(p)
    out = torch.cat([p, pos, torch.full_like(pos, scale_id), torch.ones_like(pos)], dim=1)
    if max_len >= 0:
        out = torch.cat([out, out.new_zeros(n, out.shape[1], max_len)], dim=-1)[:, :, :max_len]
    return out


def multiscale_patches(image: torch.Tensor, patch: int = 32, grid: int = 10,
                       longer_sides: tuple[int, ...] = (224, 384), max_len_original: int | None = -1) -> torch.Tensor:
    """(N, 3, H, W) -> (N, L, 3*patch*patch + 3) tokens of all scales (pyiqa ``get_multiscale_patches``)."""
    n, _, h, w = image.shape
    outs = []
    for sid, longer in enumerate(sorted(longer_sides)):
        r = longer / max(h, w)
        resized = F.interpolate(image, (round(h * r), round(w * r)), mode="bicubic", align_corners=False)
        outs.append(_patches(resized, patch, grid, sid, int(math.ceil(longer / patch) ** 2)))
    if max_len_original is not None:
        outs.append(_patches(image, patch, grid, len(longer_sides), max_len_original))
    return torch.cat(outs, dim=-1).transpose(1, 2)


class MUSIQ(nn.Module):
    """MUSIQ with pyiqa's defaults (patch 32, 384-d, 14 layers, 6 heads, scales 224/384 + original)."""

    def __init__(self, num_class: int = 1, hidden_size: int = 384, mlp_dim: int = 1152, num_heads: int = 6,
                 num_layers: int = 14, num_scales: int = 3, grid: int = 10, patch_size: int = 32,
                 longer_side_lengths: tuple[int, ...] = (224, 384), max_seq_len_from_original_res: int | None = -1) -> None:
        super().__init__()
        self.patch_size, self.grid = patch_size, grid
        self.longer_side_lengths, self.max_len_original = tuple(longer_side_lengths), max_seq_len_from_original_res
        token_dim = 64
        self.conv_root = StdConv(3, token_dim, 7, 2, bias=False)
        self.gn_root = nn.GroupNorm(32, token_dim, eps=1e-6)
        self.block1 = Bottleneck(token_dim, token_dim * 4)
        self.embedding = nn.Linear(token_dim * 4 * (patch_size // 4) ** 2, hidden_size)
        self.transformer_encoder = TransformerEncoder(hidden_size, mlp_dim, num_heads, num_layers, num_scales, grid)
        self.head = (nn.Sequential(nn.Linear(hidden_size, num_class), nn.Softmax(dim=-1)) if num_class > 1
                     else nn.Linear(hidden_size, num_class))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """RGB in [0, 1], (N, 3, H, W) -> quality (N,): MOS (SPAQ/KonIQ) or mean of the 10-class
        distribution (AVA)."""
        tokens = multiscale_patches((x - 0.5) * 2, self.patch_size, self.grid, self.longer_side_lengths,
                                    self.max_len_original)
        b, n, _ = tokens.shape
        spatial, scale, mask = tokens[:, :, -3], tokens[:, :, -2], tokens[:, :, -1].bool()
        p = tokens[:, :, :-3].reshape(-1, 3, self.patch_size, self.patch_size)
        p = F.relu(self.gn_root(self.conv_root(p)))
        p = F.max_pool2d(same_pad(p, 3, 2), 3, 2)
        p = self.block1(p).permute(0, 2, 3, 1).reshape(b, n, -1)  # TensorFlow channel order
        h = self.transformer_encoder(self.embedding(p), spatial, scale, mask)
        q = self.head(h[:, 0])
        return (q * torch.arange(1, q.shape[-1] + 1).to(q)).sum(-1)


def musiq_state_dict(obj: dict) -> dict[str, torch.Tensor]:
    sd = obj
    for key in ("params", "state_dict", "model"):
        if isinstance(sd, dict) and key in sd and isinstance(sd[key], dict):
            sd = sd[key]
    if not isinstance(sd, dict):
        raise WeightsError("MUSIQ checkpoint: expected a state dict")
    return {k.removeprefix("module."): v for k, v in sd.items()}


def load_musiq(path: str | Path, device: str = "cpu", name: str = "musiq-spaq") -> MUSIQ:
    """MUSIQ with the weights of ``path``, strict, eval mode. Width, depth, MLP size and number of
    outputs are read from the tensors (64-d heads: 6 for the published 384-d model)."""
    from ..weights_load import load_state_dict, load_strict

    sd = musiq_state_dict(load_state_dict(path, name))
    head = sd.get("head.weight", sd.get("head.0.weight"))
    if head is None or "embedding.weight" not in sd:
        raise WeightsError(f"weights {name!r}: {path} is not a MUSIQ state dict (no head / embedding)")
    hidden = int(sd["embedding.weight"].shape[0])
    layers = len({k.split(".")[2] for k in sd if k.startswith("transformer_encoder.transformer.")})
    mlp = sd.get("transformer_encoder.transformer.encoderblock_0.mlp.fc1.weight")
    model = MUSIQ(num_class=int(head.shape[0]), hidden_size=hidden, num_heads=max(1, hidden // 64), num_layers=layers,
                  mlp_dim=int(mlp.shape[0]) if mlp is not None else 1152)
    load_strict(model, sd, path, name, "MUSIQ")
    return model.to(device).eval()


def load_backbone(path: str, device: str, name: str, ctx: Any) -> MUSIQ:
    """:class:`~trace_bench.metrics.backbone.Backbone` loader (``musiq-spaq``)."""
    return load_musiq(path, device, name)
