"""VBench ``imaging_quality``: MUSIQ (SPAQ checkpoint) per frame, mean over frames, /100.

Follows Vchitect/VBench ``vbench/imaging_quality.py`` (PyPI vbench 0.1.5), default
``imaging_quality_preprocessing_mode='longer'``: frames are float 0..255 (``load_video``); a frame
whose longer side exceeds 512 is resized (bilinear, ``antialias=False``) to
``(int(s*h), int(s*w))`` with ``s = 512 / max(h, w)``; ``/255``; MUSIQ (pyiqa's architecture,
:mod:`trace_bench.networks.musiq`) scores each frame (MOS 0..100). Video score = mean over frames;
VBench's overall = mean of video scores / 100. The per-case value written here is the video
score / 100, so the mean over cases equals VBench's overall number.

MUSIQ is our own port of pyiqa's network (pyiqa itself pulls transformers>=5, accelerate,
bitsandbytes, datasets, tensorboard, ... into the environment); it loads the same checkpoint.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ..backbone import Backbone
from ..base import ANY_REAL, UNIT_INTERVAL, CaseData, Metric, Output, Part, RunContext, register_metric
from ._common import frames_uint8_tchw, run_batched, transforms

if TYPE_CHECKING:  # torch is imported where a score is computed
    import torch


def musiq_preprocess(frames: np.ndarray, longer: int = 512) -> torch.Tensor:
    """VBench's 'longer' rule on uint8 frames -> float (T, 3, h, w) in [0, 1]."""
    TF, _ = transforms()
    x = frames_uint8_tchw(frames).float()
    h, w = x.shape[-2:]
    if max(h, w) > longer:
        s = longer / max(h, w)
        x = TF.resize(x, [int(s * h), int(s * w)], antialias=False)
    return x / 255.0


def imaging_quality_from_scores(frame_scores: np.ndarray | torch.Tensor) -> float:
    """Per-case value: ``mean(frame MOS) / 100``."""
    s = np.asarray(frame_scores, dtype=np.float64)
    if s.ndim != 1 or s.size == 0:
        raise ValueError(f"Expected a non-empty 1-D array of frame scores, got shape {s.shape}")
    return float(s.mean() / 100.0)


def imaging_quality(frames: np.ndarray, model: torch.nn.Module, batch_size: int = 8, device: str = "cpu") -> float:
    """VBench imaging quality of uint8 frames (T, H, W[, 3]) with a MUSIQ model: ``mean_t MUSIQ(f_t) / 100``."""
    x = musiq_preprocess(frames)
    scores = run_batched(lambda b: model(b.to(device)).reshape(-1).float().cpu(), x, batch_size)
    return imaging_quality_from_scores(scores.numpy())


@register_metric
class ImagingQuality(Metric):
    """Per case: :func:`imaging_quality`. Streaming: ``update(data)`` per video, ``compute_result()``
    = mean of video scores (VBench /100)."""

    name = "imaging_quality"
    #: the MOS scale 0..100 / 100; MUSIQ's regression head is linear, so a frame's prediction is not bounded
    outputs = {"imaging_quality": Output(True, "Imaging Quality", unit="fraction", rank=4, tolerance={"abs": 0.01},
                                         value_range=UNIT_INTERVAL, estimate_range=ANY_REAL)}
    weights = ("musiq-spaq",)
    description = "VBench imaging quality: MUSIQ (SPAQ) per frame, mean / 100"

    def __init__(self, options=None) -> None:
        super().__init__(options)
        self.net = Backbone("musiq")

    def setup(self, ctx: RunContext) -> None:
        transforms()
        self.net.get("musiq-spaq", ctx)

    def protocol_parts(self, ctx: RunContext) -> list[Part]:
        return [(ctx.protocol.id, ctx.protocol.meaning),
                ("musiq-spaq", "MUSIQ image-quality transformer trained on SPAQ (weights musiq-spaq): a mean opinion "
                               "score 0-100 per frame"),
                ("vbench-longer512", "VBench's imaging-quality protocol: frames in RGB, resized (bilinear, no "
                                     "anti-aliasing) so that the longer side is 512 px when it is longer, scaled to "
                                     "[0, 1]; per volume the mean score / 100")]

    def case_values(self, data: CaseData, ctx: RunContext) -> dict[str, float]:
        model = self.net.get("musiq-spaq", ctx)
        return {"imaging_quality": imaging_quality(data.frames, model, ctx.batch_size, ctx.device)}
