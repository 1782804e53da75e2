"""CLIP score of a generated volume against its report prompt (Table 2, higher is better).

Definition (torchmetrics ``CLIPScore`` / ``functional.multimodal.clip_score``):
``score_i = 100 * cos(E_img(slice_i), E_txt(prompt))`` per image-text pair, reported as
``max(mean_i score_i, 0)``. Here the pairs of one case are its sampled slices with the case's
prompt, so the per-case value is ``max(mean over slices, 0)``; the summary mean over cases equals
torchmetrics' value over all pairs whenever per-case means are positive and cases have equal slice
counts.

Slices: ``clip_slices`` (default 8) evenly spaced axial slices of ``ctx.protocol`` frames
(``numpy.linspace(0, T - 1, k)`` rounded), replicated to RGB, OpenAI preprocessing (bicubic resize of
the shorter side to 224 with antialias in torch rather than PIL, centre crop, CLIP mean/std).
Model: registry ``clip-vit-b32`` (:func:`trace_bench.extractors.clip.load_clip_model`). Text longer
than 77 tokens is truncated (the end token kept).
"""

from __future__ import annotations

import numpy as np
import torch

from ..errors import ConfigError
from .base import CaseData, MetricSpec, RunContext, register_metric
from .fid import select_slices


def clip_score_from_features(image_features: torch.Tensor, text_features: torch.Tensor) -> tuple[float, torch.Tensor]:
    """Functional twin: (max(mean(100 cos), 0), per-pair scores) for paired rows of the two matrices."""
    img = image_features / image_features.norm(p=2, dim=-1, keepdim=True)
    txt = text_features / text_features.norm(p=2, dim=-1, keepdim=True)
    per = 100.0 * (img * txt).sum(dim=-1)
    return max(float(per.mean()), 0.0), per


@register_metric
class ClipScoreSpec(MetricSpec):
    name = "clip_score"
    kind = "case"
    columns = {"clip_score": True}
    table = "table2"
    needs_prompt = True
    weights = ("clip-vit-b32",)
    description = "CLIP score (torchmetrics definition) of sampled axial slices against the case's report prompt"

    def __init__(self) -> None:
        self._model = None
        self._key = None

    def _k(self, ctx: RunContext) -> int:
        return int(ctx.options.get("clip_slices", 8))

    def protocol_id(self, ctx: RunContext) -> str:
        return f"{ctx.protocol.id}|clip-vit-b32:openai-preprocess-224|slices={self._k(ctx)}:linspace"

    def setup(self, ctx: RunContext) -> None:
        from ..extractors.clip import load_clip_model

        key = (ctx.weights.get("clip-vit-b32"), ctx.device)
        if self._key != key:
            self._model = load_clip_model("clip-vit-b32", path=ctx.weights.get("clip-vit-b32"), device=ctx.device)
            self._key = key

    def case_values(self, data: CaseData, ctx: RunContext) -> dict[str, float]:
        if not data.prompt:
            raise ConfigError(f"case {data.case_id!r}: clip_score needs a report prompt, none was given")
        if self._model is None:
            self.setup(ctx)
        frames = data.frames
        idx = select_slices(len(frames), self._k(ctx))
        x = self._model.preprocess_frames(frames[idx])
        img = self._model.encode_image(x)
        txt = self._model.encode_text([data.prompt]).expand(len(idx), -1)
        score, _ = clip_score_from_features(img, txt)
        return {"clip_score": score}
