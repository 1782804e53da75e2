"""The plot inputs of the chosen case (``cases/<method>/<case>/_plot.npz``): what the report needs to
draw montages, per-slice curves and overlays without reading the inputs again.

Generic arrays come from the volume (orthogonal mid slices in HU, frame-to-frame MAE along z);
metric-specific arrays come from each metric's :meth:`~trace_bench.metrics.base.Metric.plot_arrays`
hook (e.g. the segmentation metric adds label slices and Dice per slice).
"""

from __future__ import annotations

from typing import Iterable

import numpy as np

from ..metrics.base import CaseData, Metric, RunContext
from ..metrics.temporal import flicker_mae
from ..volume import orthogonal_slices


def plot_artifact(data: CaseData, metrics: Iterable[Metric], ctx: RunContext) -> dict[str, np.ndarray]:
    vol = data.volume
    out: dict[str, np.ndarray] = {"spacing": np.asarray(vol.spacing, dtype=np.float64)}
    for k, v in orthogonal_slices(vol.array).items():
        out[f"view_{k}"] = v.astype(np.float16)
    frames = data.frames
    out["flicker_mae"] = flicker_mae(frames) if frames.shape[0] >= 2 else np.zeros(0)
    for m in metrics:
        try:
            out.update(m.plot_arrays(data, ctx))
        except Exception:  # noqa: BLE001 - a plot is optional; the metric's values are recorded elsewhere
            continue
    return out
