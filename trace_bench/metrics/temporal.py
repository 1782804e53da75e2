"""VBench ``temporal_flickering`` on CT slice stacks (weight-free).

VBench (Vchitect/VBench ``vbench/temporal_flickering.py``): for frames ``f_0..f_{T-1}`` read as
0..255 values, ``MAE_i = mean(|f_i - f_{i+1}|)`` over all pixels and channels (float32), the video
score is ``(255 - mean_i MAE_i) / 255``, and the overall score is the mean of the video scores.
Grey frames give the same value as their RGB replication (the three channels are equal).

Note: VBench assumes near-static videos for this dimension. A CT slice stack is not static (the
anatomy changes from slice to slice), so absolute values are lower than for videos; compare a
method with the GT row (the reference volumes scored the same way), as the paper does.
"""

from __future__ import annotations

import numpy as np

from .base import UNIT_INTERVAL, CaseData, Metric, Output, RunContext, register_metric


def _check_frames(frames: np.ndarray) -> np.ndarray:
    f = np.asarray(frames)
    if f.ndim not in (3, 4) or (f.ndim == 4 and f.shape[-1] not in (1, 3)):
        raise ValueError(f"Expected uint8 frames of shape (T, H, W) or (T, H, W, 3), got {f.shape}")
    if f.dtype != np.uint8:
        raise ValueError(f"Expected uint8 frames (0..255), got dtype {f.dtype}")
    if f.shape[0] < 2:
        raise ValueError(f"Expected at least 2 frames, got {f.shape[0]}")
    return f


def flicker_mae(frames: np.ndarray) -> np.ndarray:
    """Per-pair mean absolute difference of consecutive frames, float64 array of length T-1."""
    f = _check_frames(frames)
    out = np.empty(f.shape[0] - 1, dtype=np.float64)
    for i in range(f.shape[0] - 1):
        # VBench casts to float32 before subtracting; the uint8 difference is exact either way
        d = np.abs(f[i].astype(np.int16) - f[i + 1].astype(np.int16))
        out[i] = np.float32(d.mean(dtype=np.float64))
    return out


def temporal_flickering(frames: np.ndarray) -> float:
    """``(255 - mean_i MAE(f_i, f_{i+1})) / 255`` for uint8 frames (T, H, W) or (T, H, W, 3)."""
    return float((255.0 - flicker_mae(frames).mean()) / 255.0)


@register_metric
class TemporalFlickering(Metric):
    """Per case: :func:`temporal_flickering` of the axial frames. Streaming: ``update(data)`` per
    volume, ``compute_result()`` = mean of the video scores (VBench's overall score)."""

    name = "temporal_flickering"
    outputs = {"temporal_flickering": Output(True, "Temporal Flickering", unit="fraction", rank=2, tolerance={"abs": 0.01},
                                             closest_to_reference=True, value_range=UNIT_INTERVAL)}
    description = "VBench temporal flickering on axial frames: (255 - mean consecutive-frame MAE) / 255"

    def case_values(self, data: CaseData, ctx: RunContext) -> dict[str, float]:
        return {"temporal_flickering": temporal_flickering(data.frames)}
