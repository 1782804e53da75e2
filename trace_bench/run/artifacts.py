"""The plot inputs of the chosen case (``cases/<method>/<case>/_plot.npz``): what the report needs to
draw montages, per-slice curves and overlays, and to fill the HTML slice viewer, without reading,
decoding or segmenting the inputs again.

Generic arrays come from the volume (orthogonal mid slices in HU, frame-to-frame MAE along z);
metric-specific arrays come from each metric's :meth:`~trace_bench.metrics.base.Metric.plot_arrays`
hook (e.g. the segmentation metric adds label slices and Dice per slice); the viewer's arrays (a
downsampled axial stack, its label map and Dice per slice against the reference) come from
:func:`trace_bench.report_inputs.viewer_arrays`, the function the report uses for volumes it reads
again, on the label map :func:`trace_bench.report_inputs.viewer_labels` gives (the threshold
segmenter's map comes from the shared label-map disk cache, where the segmentation metric left it).
Where two sources give the same key, the generic and metric arrays win (as when the report merged
arrays read again under the stored ones), so a report is the same whichever stage made the arrays.
"""

from __future__ import annotations

from typing import Any, Iterable

import numpy as np

from ..metrics.base import CaseData, Metric, RunContext
from ..metrics.temporal import flicker_mae
from ..report_inputs import viewer_arrays, viewer_labels
from ..results.tables import GT
from ..volume import orthogonal_slices

#: what ``_plot.npz`` holds; part of the plot entries' keys (v2: + the slice viewer's arrays)
ARTIFACT_VERSION = "plot-v2"


def _labels(vol: Any, mask: Any, ctx: RunContext) -> np.ndarray | None:
    """The viewer's label map of ``vol`` (None when there is none or it cannot be made: a picture is optional)."""
    try:
        return viewer_labels(vol, ctx.segmenter, mask=None if mask is None else np.asarray(mask.array),
                             device=str(ctx.device), cache_dir=ctx.cache_dir)
    except Exception:  # noqa: BLE001 - the overlay is optional; the metrics' values are recorded elsewhere
        return None


def viewer_part(data: CaseData, ctx: RunContext) -> dict[str, np.ndarray]:
    """The slice viewer's arrays of ``data.volume`` (:func:`~trace_bench.report_inputs.viewer_arrays`):
    label maps as the report would make them (provided maps: the reference's only)."""
    gt = data.method == GT
    labels = _labels(data.volume, data.mask if gt else None, ctx) if (gt or ctx.segmenter != "provided") else None
    ref_labels = None
    if not gt and labels is not None and data.reference is not None:
        ref_labels = _labels(data.reference, data.reference_mask, ctx)
    return viewer_arrays(data.volume.array, data.volume.spacing, labels=labels, ref_labels=ref_labels)


def plot_artifact(data: CaseData, metrics: Iterable[Metric], ctx: RunContext) -> dict[str, np.ndarray]:
    vol = data.volume
    out: dict[str, np.ndarray] = viewer_part(data, ctx)
    out["spacing"] = np.asarray(vol.spacing, dtype=np.float64)
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
