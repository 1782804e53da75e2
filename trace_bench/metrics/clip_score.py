"""CLIP score of a generated volume against its report prompt (Table 2, higher is better).

Definition (torchmetrics ``CLIPScore`` / ``functional.multimodal.clip_score``):
``score_i = 100 * cos(E_img(slice_i), E_txt(prompt))`` per image-text pair, reported as
``max(mean_i score_i, 0)``. Here the pairs of one case are its sampled slices with the case's
prompt, so the per-case value is ``max(mean over slices, 0)``; the summary mean over cases equals
torchmetrics' value over all pairs whenever per-case means are positive and cases have equal slice
counts.

Slices: option ``clip_score.slices`` (default 8) evenly spaced axial slices of ``ctx.protocol`` frames
(``numpy.linspace(0, T - 1, k)`` rounded), replicated to RGB, OpenAI preprocessing (bicubic resize of
the shorter side to 224 with antialias in torch rather than PIL, centre crop, CLIP mean/std).
Model: registry ``clip-vit-b32`` (:func:`trace_bench.networks.clip.load_clip_model`, the network of the
CLIP feature space :data:`~.spaces.CLIP_SLICES`). Text longer
than 77 tokens is truncated (the end token kept).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..errors import ConfigError
from .backbone import Backbone
from .base import CaseData, Metric, Option, Output, Part, RunContext, register_metric
from .spaces import CLIP_SLICES, frame_part, select_slices

if TYPE_CHECKING:  # torch is imported where a score is computed
    import torch


def clip_score_from_features(image_features: torch.Tensor, text_features: torch.Tensor) -> tuple[float, torch.Tensor]:
    """Functional twin: (max(mean(100 cos), 0), per-pair scores) for paired rows of the two matrices."""
    img = image_features / image_features.norm(p=2, dim=-1, keepdim=True)
    txt = text_features / text_features.norm(p=2, dim=-1, keepdim=True)
    per = 100.0 * (img * txt).sum(dim=-1)
    return max(float(per.mean()), 0.0), per


@register_metric
class ClipScore(Metric):
    name = "clip_score"
    kind = "case"
    #: max(mean 100 cos, 0): in [0, 100]
    outputs = {"clip_score": Output(True, "CLIP", digits=2, rank=3, tolerance={"abs": 0.5}, value_range=(0.0, 100.0))}
    table = "table2"
    needs_prompt = True
    weights = ("clip-vit-b32",)
    options = (Option("slices", 8, "evenly spaced axial slices scored per volume", type=int, minimum=1,
                      maximum=4096, in_protocol_id=False),)
    description = "CLIP score (torchmetrics definition) of sampled axial slices against the case's report prompt"

    def __init__(self, options=None) -> None:
        super().__init__(options)
        self.net = Backbone(CLIP_SLICES.network)

    def protocol_parts(self, ctx: RunContext) -> list[Part]:
        k = int(self.opts["slices"])
        return [frame_part(ctx),
                ("clip-vit-b32:openai-preprocess-224",
                 "CLIP ViT-B/32 (OpenAI weights clip-vit-b32): image features of each slice (grey replicated to RGB, "
                 "bicubic resize of the shorter side to 224 px, centre crop, CLIP mean / std) and text features of the "
                 "case's prompt (truncated to 77 tokens); per case max(mean over slices of 100 cos, 0)"),
                (f"slices={k}:linspace", f"{k} evenly spaced axial slices (indices round(linspace(0, n - 1, {k})))")]

    def setup(self, ctx: RunContext) -> None:
        self.net.get("clip-vit-b32", ctx)

    def case_values(self, data: CaseData, ctx: RunContext) -> dict[str, float]:
        if not data.prompt:
            raise ConfigError(f"case {data.case_id!r}: clip_score needs a report prompt, none was given")
        model = self.net.get("clip-vit-b32", ctx)
        frames = data.frames
        idx = select_slices(len(frames), int(self.opts["slices"]))
        x = model.preprocess_frames(frames[idx])
        img = model.encode_image(x)
        txt = model.encode_text([data.prompt]).expand(len(idx), -1)
        score, _ = clip_score_from_features(img, txt)
        return {"clip_score": score}
