"""VBench ``overall_consistency``: ViCLIP ViT-L/14 cosine between a video and its text prompt.

Follows Vchitect/VBench ``vbench/overall_consistency.py`` (PyPI vbench 0.1.5):

* 8 frames sampled with ``get_frame_indices(8, T, sample="middle")`` (``vbench/utils.py``):
  ``edges = linspace(0, T, 9).astype(int)``, frame ``(edges[k] + edges[k+1] - 1) // 2`` of each
  segment; fewer than 8 frames are padded with the last index;
* frames as uint8 (decord) -> ``clip_transform(224)``: bicubic resize of the shorter side to 224
  (``antialias=False``; on uint8 torchvision rounds and clamps back to uint8), centre crop 224,
  ``/255``, CLIP mean/std;
* ``v = ViCLIP.encode_vision(frames)``, ``t = ViCLIP.encode_text(prompt)``, both L2-normalised;
  score ``v . t`` (not scaled). Overall = mean of the video scores.

The prompt is the case's report text (``CaseData.prompt``); ViCLIP's context is 32 tokens, so a
long report is truncated to its first ~30 BPE tokens, exactly as in VBench.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ..backbone import Backbone
from ..base import COSINE, CaseData, Metric, Output, Part, RunContext, register_metric
from ._common import frames_uint8_tchw, transforms
from .consistency import VBENCH_CLIP_MEAN, VBENCH_CLIP_STD

if TYPE_CHECKING:  # torch is imported where a score is computed
    import torch


def middle_frame_indices(num_frames: int, vlen: int) -> list[int]:
    """VBench ``get_frame_indices(num_frames, vlen, sample='middle')``."""
    if vlen < 1:
        raise ValueError("Expected at least one frame")
    n = min(num_frames, vlen)
    edges = np.linspace(start=0, stop=vlen, num=n + 1).astype(int)
    idx = [int((edges[k] + edges[k + 1] - 1) // 2) for k in range(n)]
    return idx + [idx[-1]] * (num_frames - len(idx))


def viclip_preprocess(frames: np.ndarray, num_frames: int = 8, size: int = 224) -> torch.Tensor:
    """uint8 frames (T, H, W[, 3]) -> (1, num_frames, 3, size, size) CLIP-normalised float."""
    TF, InterpolationMode = transforms()
    x = frames_uint8_tchw(frames)[middle_frame_indices(num_frames, len(frames))]
    x = TF.resize(x, size, interpolation=InterpolationMode.BICUBIC, antialias=False)  # uint8 in, uint8 out
    x = TF.center_crop(x, size)
    return TF.normalize(x.float().div(255.0), VBENCH_CLIP_MEAN, VBENCH_CLIP_STD).unsqueeze(0)


def overall_consistency_from_features(video_features: torch.Tensor | np.ndarray,
                                      text_features: torch.Tensor | np.ndarray) -> float:
    """``<v/|v|, t/|t|>`` for one video feature (D,) or (1, D) and one text feature."""
    import torch
    import torch.nn.functional as F

    v = torch.as_tensor(np.asarray(video_features) if not isinstance(video_features, torch.Tensor) else video_features)
    t = torch.as_tensor(np.asarray(text_features) if not isinstance(text_features, torch.Tensor) else text_features)
    v, t = v.reshape(1, -1).double(), t.reshape(1, -1).double()
    if v.shape != t.shape:
        raise ValueError(f"Expected video and text features of the same size, got {tuple(v.shape)} and {tuple(t.shape)}")
    return float((F.normalize(v, dim=-1) * F.normalize(t, dim=-1)).sum())


def overall_consistency(frames: np.ndarray, prompt: str, model, device: str = "cpu") -> float:
    """VBench overall consistency of uint8 frames with ``prompt`` under a ViCLIP ``model``."""
    import torch

    with torch.inference_mode():
        v = model.encode_vision(viclip_preprocess(frames).to(device)).float().cpu()
        t = model.encode_text([prompt]).float().cpu()
    return overall_consistency_from_features(v, t)


@register_metric
class OverallConsistency(Metric):
    """Per case: :func:`overall_consistency`. Streaming: ``update(data)`` per video (with its prompt),
    ``compute_result()`` = mean of video scores."""

    name = "overall_consistency"
    #: a cosine of L2-normalised embeddings (not clipped at 0 as the other VBench scores are)
    outputs = {"overall_consistency": Output(True, "Overall Consistency", unit="fraction", rank=5, tolerance={"abs": 0.01},
                                             value_range=COSINE)}
    weights = ("viclip-l14",)
    needs_prompt = True
    description = "VBench overall consistency: ViCLIP ViT-L/14 video-text cosine on 8 middle-sampled frames"

    def __init__(self, options=None) -> None:
        super().__init__(options)
        self.net = Backbone("viclip")
        self._text: dict[tuple[int, str], torch.Tensor] = {}

    def setup(self, ctx: RunContext) -> None:
        transforms()
        self.net.get("viclip-l14", ctx)

    def protocol_parts(self, ctx: RunContext) -> list[Part]:
        return [(ctx.protocol.id, ctx.protocol.meaning),
                ("viclip-l14", "ViCLIP ViT-L/14 video-text network (weights viclip-l14)"),
                ("vbench-8-middle-clip224", "VBench's overall-consistency protocol: 8 frames, the middle one of each "
                                            "of 8 equal segments of the volume, in RGB, shorter side resized to 224 px "
                                            "(bicubic, no anti-aliasing), centre crop 224 x 224, CLIP mean / std; per "
                                            "volume the cosine of ViCLIP's video and prompt features")]

    def case_values(self, data: CaseData, ctx: RunContext) -> dict[str, float]:
        import torch

        if not data.prompt:
            raise ValueError(f"case {data.case_id!r} ({data.method}): overall_consistency needs the case's prompt "
                             "(report text); none was found")
        model = self.net.get("viclip-l14", ctx)
        key = (id(model), data.prompt)
        with torch.inference_mode():
            if key not in self._text:  # one text forward per distinct prompt (and model)
                self._text[key] = model.encode_text([data.prompt]).float().cpu()
            v = model.encode_vision(viclip_preprocess(data.frames).to(ctx.device)).float().cpu()
        return {"overall_consistency": overall_consistency_from_features(v, self._text[key])}
