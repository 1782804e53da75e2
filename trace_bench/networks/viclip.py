"""ViCLIP ViT-L/14 (InternVid, Wang et al. 2023) video and text encoders, written for trace-bench.

Architecture as in VBench's copy (Vchitect/VBench ``vbench/third_party/ViCLIP/{viclip,
viclip_vision,viclip_text}.py``): a CLIP ViT-L/14 whose patch embedding is a (1, 14, 14) Conv3d,
with a learned temporal position embedding (8 frames) added to every patch token, all T x N
patch tokens attended jointly after one CLS token; and a CLIP text transformer (12 x 768, context
32 tokens). Parameter names equal the original ones, so ``ViClip-InternVid-10M-FLT.pth``
(``{"model": state_dict}``) loads strictly (:func:`load_viclip`).

Text is tokenised with OpenAI CLIP's BPE (the copy shipped in open_clip's wheel):
``<sot> + bpe(clean(text).lower()) + <eot>``, truncated to 32 with ``<eot>`` kept last.
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path
from typing import Any, Sequence

import torch
import torch.nn as nn

from ..errors import WeightsError
from ..optional import require

#: what the tokenizer is for, in the message when open_clip is missing
TOKENIZER_PURPOSE = "ViCLIP's text tokenizer (OpenAI CLIP's BPE from open_clip; overall_consistency)"

class QuickGELU(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(1.702 * x)


class ResidualAttentionBlock(nn.Module):
    def __init__(self, width: int, heads: int, attn_mask: torch.Tensor | None = None) -> None:
        super().__init__()
        self.attn = nn.MultiheadAttention(width, heads)
        self.ln_1 = nn.LayerNorm(width)
        self.mlp = nn.Sequential(OrderedDict([("c_fc", nn.Linear(width, width * 4)), ("gelu", QuickGELU()),
                                              ("c_proj", nn.Linear(width * 4, width))]))
        self.ln_2 = nn.LayerNorm(width)
        self.attn_mask = attn_mask

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: (L, N, D)
        mask = None if self.attn_mask is None else self.attn_mask.to(dtype=x.dtype, device=x.device)
        y = self.ln_1(x)
        x = x + self.attn(y, y, y, need_weights=False, attn_mask=mask)[0]
        return x + self.mlp(self.ln_2(x))


class Transformer(nn.Module):
    def __init__(self, width: int, layers: int, heads: int, attn_mask: torch.Tensor | None = None,
                 as_list: bool = False) -> None:
        super().__init__()
        blocks = [ResidualAttentionBlock(width, heads, attn_mask) for _ in range(layers)]
        self.resblocks = nn.ModuleList(blocks) if as_list else nn.Sequential(*blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for blk in self.resblocks:
            x = blk(x)
        return x


class ViCLIPVision(nn.Module):
    """Video ViT: (B, 3, T, H, W) in CLIP normalisation -> (B, output_dim) projected CLS features."""

    def __init__(self, input_resolution: int = 224, patch_size: int = 14, width: int = 1024, layers: int = 24,
                 heads: int = 16, output_dim: int = 768, num_frames: int = 8) -> None:
        super().__init__()
        self.conv1 = nn.Conv3d(3, width, (1, patch_size, patch_size), (1, patch_size, patch_size), bias=False)
        self.class_embedding = nn.Parameter(torch.zeros(width))
        self.positional_embedding = nn.Parameter(torch.zeros((input_resolution // patch_size) ** 2 + 1, width))
        self.ln_pre = nn.LayerNorm(width)
        self.temporal_positional_embedding = nn.Parameter(torch.zeros(1, num_frames, width))
        self.transformer = Transformer(width, layers, heads, as_list=True)
        self.ln_post = nn.LayerNorm(width)
        self.proj = nn.Parameter(torch.zeros(width, output_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv1(x)
        b, c, t, h, w = x.shape
        x = x.permute(0, 2, 3, 4, 1).reshape(b * t, h * w, c)
        x = torch.cat([self.class_embedding.to(x.dtype).expand(b * t, 1, c), x], dim=1)
        x = x + self.positional_embedding.to(x.dtype)
        cls = x[:b, :1]  # CLS (+ its position) of the first b rows, as the original code does
        x = x[:, 1:].reshape(b, t, h * w, c).transpose(1, 2)  # (b, n, t, c)
        temp = self.temporal_positional_embedding
        x = x + (temp.mean(1) if t == 1 else temp).unsqueeze(0)  # broadcast (1, 1, t, c)
        x = torch.cat([cls, x.reshape(b, h * w * t, c)], dim=1)
        x = self.ln_pre(x).permute(1, 0, 2)
        x = self.ln_post(self.transformer(x))
        return x[0] @ self.proj


class ViCLIPText(nn.Module):
    """CLIP text transformer: token ids (N, L) -> (N, embed_dim) at the end token."""

    def __init__(self, embed_dim: int = 768, context_length: int = 32, vocab_size: int = 49408, width: int = 768,
                 heads: int = 12, layers: int = 12) -> None:
        super().__init__()
        self.context_length = context_length
        mask = torch.full((context_length, context_length), float("-inf")).triu_(1)
        self.transformer = Transformer(width, layers, heads, attn_mask=mask)
        self.token_embedding = nn.Embedding(vocab_size, width)
        self.positional_embedding = nn.Parameter(torch.zeros(context_length, width))
        self.ln_final = nn.LayerNorm(width)
        self.text_projection = nn.Parameter(torch.zeros(width, embed_dim))

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        x = (self.token_embedding(tokens) + self.positional_embedding).permute(1, 0, 2)
        x = self.ln_final(self.transformer(x).permute(1, 0, 2))
        return x[torch.arange(x.shape[0]), tokens.argmax(dim=-1)] @ self.text_projection


class ViCLIP(nn.Module):
    """ViCLIP with VBench's settings (ViT-L/14 vision, 8 frames, 224 px; text context 32)."""

    def __init__(self, vision: dict | None = None, text: dict | None = None) -> None:
        super().__init__()
        self.vision_encoder = ViCLIPVision(**(vision or {}))
        self.text_encoder = ViCLIPText(**(text or {}))
        self.temp = nn.Parameter(torch.ones([]) / 100.0)
        self._tokenizer = None

    @property
    def max_txt_l(self) -> int:
        return self.text_encoder.context_length

    def tokenize(self, texts: Sequence[str]) -> torch.Tensor:
        """CLIP BPE ids, ``<sot> ... <eot>``, zero-padded / truncated (eot kept) to the context length."""
        if self._tokenizer is None:
            self._tokenizer = require("open_clip.tokenizer", TOKENIZER_PURPOSE).SimpleTokenizer()
        tok, n = self._tokenizer, self.max_txt_l
        out = torch.zeros(len(texts), n, dtype=torch.long)
        for i, t in enumerate(texts):
            ids = [tok.sot_token_id] + tok.encode(t) + [tok.eot_token_id]
            if len(ids) > n:
                ids = ids[:n]
                ids[-1] = tok.eot_token_id
            out[i, :len(ids)] = torch.tensor(ids)
        return out

    def encode_vision(self, video: torch.Tensor) -> torch.Tensor:
        """(B, T, 3, H, W) CLIP-normalised frames -> (B, D) (not normalised)."""
        return self.vision_encoder(video.permute(0, 2, 1, 3, 4).contiguous())

    def encode_text(self, texts: Sequence[str]) -> torch.Tensor:
        """list of strings -> (N, D) (not normalised)."""
        if isinstance(texts, str):
            raise TypeError("Expected a list of strings, got a single str")
        return self.text_encoder(self.tokenize(texts).to(self.temp.device))


def viclip_state_dict(obj: dict) -> dict[str, torch.Tensor]:
    sd = obj.get("model", obj) if isinstance(obj, dict) else obj
    if not isinstance(sd, dict):
        raise WeightsError("ViCLIP checkpoint: expected {'model': state_dict}")
    return {k.removeprefix("module."): v for k, v in sd.items()}


def load_viclip(path: str | Path, device: str = "cpu", name: str = "viclip-l14") -> ViCLIP:
    """ViCLIP sized from the tensors of ``path`` (ViT-L/14 for the published file), strict, eval mode."""
    from ..weights_load import load_state_dict, load_strict

    sd = viclip_state_dict(load_state_dict(path, name))
    try:
        conv = sd["vision_encoder.conv1.weight"]
        v_layers = len({k.split(".")[3] for k in sd if k.startswith("vision_encoder.transformer.resblocks.")})
        t_layers = len({k.split(".")[3] for k in sd if k.startswith("text_encoder.transformer.resblocks.")})
        v_width, patch = int(conv.shape[0]), int(conv.shape[-1])
        n_pos = int(sd["vision_encoder.positional_embedding"].shape[0]) - 1
        t_width = int(sd["text_encoder.token_embedding.weight"].shape[1])
        vision = dict(input_resolution=int(round(n_pos ** 0.5)) * patch, patch_size=patch, width=v_width,
                      layers=v_layers, heads=max(1, v_width // 64),
                      output_dim=int(sd["vision_encoder.proj"].shape[1]),
                      num_frames=int(sd["vision_encoder.temporal_positional_embedding"].shape[1]))
        text = dict(embed_dim=int(sd["text_encoder.text_projection"].shape[1]),
                    context_length=int(sd["text_encoder.positional_embedding"].shape[0]),
                    vocab_size=int(sd["text_encoder.token_embedding.weight"].shape[0]), width=t_width,
                    heads=max(1, t_width // 64), layers=t_layers)
    except KeyError as exc:
        raise WeightsError(f"weights {name!r}: {path} is not a ViCLIP checkpoint (no {exc})") from None
    model = ViCLIP(vision, text)
    load_strict(model, sd, path, name, "ViCLIP")
    return model.to(device).eval()


def load_backbone(path: str, device: str, name: str, ctx: Any) -> ViCLIP:
    """:class:`~trace_bench.metrics.backbone.Backbone` loader (``viclip-l14``); the tokenizer's package is
    checked here, at the metric's setup, not at its first prompt."""
    require("open_clip.tokenizer", TOKENIZER_PURPOSE)
    return load_viclip(path, device, name)
