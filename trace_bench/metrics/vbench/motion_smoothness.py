"""VBench ``motion_smoothness`` with AMT-S frame interpolation (:mod:`trace_bench.networks.amt`).

Follows Vchitect/VBench ``vbench/motion_smoothness.py`` (``MotionSmoothness.motion_score``), same
code in PyPI vbench 0.1.5, on RGB uint8 frames ``f_0..f_{T-1}`` (grey replicated):

1. keep the even frames ``f_0, f_2, ...`` as float ``/255`` and pad them (replicate) to a multiple
   of ``16 / scale`` (VBench's ``InputPadder``);
2. AMT-S interpolates the midpoint (``embt = 0.5``) of each consecutive kept pair;
3. unpad; to uint8 as ``(x * 255).clip(0, 255)`` truncated (VBench's ``tensor2img``);
4. ``d_k = mean |f_{2k+1} - pred_k|`` over pixels and channels; score ``(255 - mean_k d_k) / 255``.

``scale`` is VBench's VRAM rule (1 on CPU; on CUDA it drops below 1 only for frames far larger than
the protocol's 256 x 256). Pairs are interpolated in batches; AMT-S is per-sample (instance norm,
per-pair mean), so batching changes results only by float rounding (about 1e-6 on a prediction,
which can move a truncated uint8 value by one).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Callable

import numpy as np

from ...protocol import to_rgb
from ..backbone import Backbone
from ..base import UNIT_INTERVAL, CaseData, Metric, Output, Part, RunContext, register_metric
from ._common import batches

if TYPE_CHECKING:  # torch is imported where frames are interpolated
    import torch

Interpolator = Callable[["torch.Tensor", "torch.Tensor", "torch.Tensor"], "torch.Tensor"]


def vbench_scale(h: int, w: int, vram_bytes: int | None = None) -> float:
    """VBench's interpolation scale: 1 on CPU (``vram_bytes=None``); on CUDA
    ``s = min(1, 1024*512/(h*w) * sqrt((vram - 2500 MiB) / 1500 MiB))``, then ``16 / floor(16 / sqrt(s))``."""
    if vram_bytes is None:
        s = 1.0
    else:
        s = (1024 * 512) / (h * w) * math.sqrt(max(vram_bytes - 2500 * 1024 ** 2, 0) / (1500 * 1024 ** 2))
        s = min(1.0, s)
        if s <= 0:
            raise ValueError("not enough GPU memory for AMT interpolation")
    return 1 / math.floor(1 / math.sqrt(s) * 16) * 16


def _pad_amounts(h: int, w: int, divisor: int) -> list[int]:
    # VBench third_party/amt/utils/utils.py InputPadder: [left, right, top, bottom]
    ph = (((h // divisor) + 1) * divisor - h) % divisor
    pw = (((w // divisor) + 1) * divisor - w) % divisor
    return [pw // 2, pw - pw // 2, ph // 2, ph - ph // 2]


def interpolate_midpoints(frames: np.ndarray, interp: Interpolator, batch_size: int = 8, device: str = "cpu",
                          scale: float = 1.0) -> np.ndarray:
    """AMT midpoints of consecutive even frames as uint8 (K, H, W, 3), K = ceil(T/2) - 1."""
    import torch
    import torch.nn.functional as F

    f = to_rgb(_check(frames))
    kept = torch.from_numpy(np.ascontiguousarray(f[0::2])).permute(0, 3, 1, 2) / 255.0
    h, w = kept.shape[-2:]
    pad = _pad_amounts(h, w, int(16 / scale))
    kept = F.pad(kept, pad, mode="replicate")
    out = []
    with torch.inference_mode():
        for s in batches(kept.shape[0] - 1, batch_size):
            a = kept[s.start:s.stop].to(device)
            b = kept[s.start + 1:s.stop + 1].to(device)
            embt = torch.full((a.shape[0], 1, 1, 1), 0.5, device=device)
            pred = interp(a, b, embt) if scale == 1.0 else interp(a, b, embt, scale_factor=scale)
            pred = pred[..., pad[2]:pred.shape[-2] - pad[3], pad[0]:pred.shape[-1] - pad[1]]
            out.append((pred.float() * 255.0).clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).cpu())
    return torch.cat(out).numpy()


def _check(frames: np.ndarray) -> np.ndarray:
    f = np.asarray(frames)
    if f.dtype != np.uint8 or f.ndim not in (3, 4) or (f.ndim == 4 and f.shape[-1] != 3):
        raise ValueError(f"Expected uint8 frames of shape (T, H, W) or (T, H, W, 3), got {f.dtype} {f.shape}")
    if f.shape[0] < 3:
        raise ValueError(f"Expected at least 3 frames (two kept even frames), got {f.shape[0]}")
    if min(f.shape[1:3]) < 128:
        raise ValueError(f"Expected frames of at least 128 x 128 (AMT's 4-level correlation pyramid at 1/8), "
                         f"got {f.shape[1]} x {f.shape[2]}")
    return f


def motion_smoothness_from_predictions(frames: np.ndarray, predictions: np.ndarray) -> float:
    """``(255 - mean_k mean|f_{2k+1} - pred_k|) / 255`` with uint8 predictions (K, H, W, 3)."""
    p = np.asarray(predictions)
    odd = np.asarray(frames)[1::2][: len(p)]
    if odd.ndim == 3:
        odd = odd[..., None]  # grey: broadcast over the 3 channels (same values as the RGB replication)
    if len(p) == 0 or odd.shape[0] != p.shape[0] or odd.shape[1:3] != p.shape[1:3]:
        raise ValueError(f"Expected predictions (K, H, W, 3) for the odd frames, got {p.shape} for frames {np.shape(frames)}")
    d = np.abs(odd.astype(np.int16) - p.astype(np.int16)).reshape(len(p), -1).mean(axis=1)
    return float((255.0 - d.mean()) / 255.0)


def motion_smoothness(frames: np.ndarray, interp: Interpolator, batch_size: int = 8, device: str = "cpu",
                      scale: float = 1.0) -> float:
    """VBench motion smoothness of uint8 frames (T, H, W[, 3]) with an interpolator such as AMT-S."""
    return motion_smoothness_from_predictions(frames, interpolate_midpoints(frames, interp, batch_size, device, scale))


@register_metric
class MotionSmoothness(Metric):
    """Per case: :func:`motion_smoothness`. Streaming: ``update(data)`` per video, ``compute_result()``
    = mean of video scores (VBench)."""

    name = "motion_smoothness"
    #: ``(255 - mean |difference|)`` of uint8 frames / 255: in [0, 1]
    outputs = {"motion_smoothness": Output(True, "Motion Smoothness", unit="fraction", rank=3, tolerance={"abs": 0.01},
                                           closest_to_reference=True, value_range=UNIT_INTERVAL)}
    weights = ("amt-s",)
    description = "VBench motion smoothness: AMT-S midpoints of even frames vs the odd frames"

    def __init__(self, options=None) -> None:
        super().__init__(options)
        self.net = Backbone("amt")

    def setup(self, ctx: RunContext) -> None:
        self.net.get("amt-s", ctx)

    def protocol_parts(self, ctx: RunContext) -> list[Part]:
        return [(ctx.protocol.id, ctx.protocol.meaning),
                ("amt-s", "AMT-S frame-interpolation network (weights amt-s)"),
                ("vbench-vfi-even-odd", "VBench's motion-smoothness protocol: each odd frame predicted by AMT-S from "
                                        "its even neighbours; per volume (255 - mean absolute difference of predicted "
                                        "and real odd frames) / 255")]

    def case_values(self, data: CaseData, ctx: RunContext) -> dict[str, float]:
        import torch

        model = self.net.get("amt-s", ctx)
        f = data.frames
        vram = None
        if str(ctx.device).startswith("cuda"):
            vram = torch.cuda.get_device_properties(torch.device(ctx.device)).total_memory
        scale = vbench_scale(f.shape[1], f.shape[2], vram)
        return {"motion_smoothness": motion_smoothness(f, model, ctx.batch_size, ctx.device, scale)}
