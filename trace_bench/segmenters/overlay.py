"""PNG overlay of a label map on a CT volume: axial, coronal and sagittal views side by side.

Views follow the canonical LPS grid (see :mod:`trace_bench.volume`): axial slices in radiological
view (anterior up, patient's right on the image's left), coronal and sagittal with superior up;
pixel aspect ratios come from the spacing, so anatomy is not stretched. CT is shown with a lung
window (:data:`WINDOW`), labels as translucent colours (3-class: lungs blue, other body orange).
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from ..atomic import atomic_path
from ..volume import Volume

WINDOW = (-1000.0, 400.0)  # HU shown from black to white
_COLOURS_3 = {1: (0.15, 0.55, 1.0), 2: (1.0, 0.55, 0.1)}


def _colour(label: int) -> tuple[float, float, float]:
    if label in _COLOURS_3:
        return _COLOURS_3[label]
    import matplotlib

    return tuple(matplotlib.colormaps["tab20"](label % 20)[:3])  # type: ignore[return-value]


def _default_slices(labels: np.ndarray) -> tuple[int, int, int]:
    """Axial/coronal: centre of the foreground (label 1 when present: the lungs); sagittal: the
    plane holding most of it; the volume centre when there is no foreground."""
    fg = labels == 1 if np.any(labels == 1) else labels > 0
    if not fg.any():
        return tuple(s // 2 for s in labels.shape)  # type: ignore[return-value]
    idx = np.argwhere(fg)
    z, y, _ = (int(round(v)) for v in idx.mean(axis=0))
    x = int(np.argmax(fg.sum(axis=(0, 1))))  # sagittal plane through the thickest part (a lung, not the mediastinum)
    return z, y, x


def save_overlay(volume: Volume | np.ndarray, labels: np.ndarray, path: str | Path,
                 slices: Sequence[int | None] | None = None, spacing: Sequence[float] | None = None,
                 alpha: float = 0.4, title: str | None = None, names: dict[int, str] | None = None) -> Path:
    """Write a PNG: CT (HU) with ``labels`` overlaid on an axial, a coronal and a sagittal slice.

    ``volume``: a :class:`Volume` or a (z, y, x) HU array (then ``spacing`` (z, y, x) mm, default 1);
    ``labels``: integer (z, y, x) of the same shape (a :class:`~.base.LabelMap` works too);
    ``slices``: ``(z, y, x)`` indices of the axial, coronal and sagittal planes (None entries = centre
    of the lungs / foreground). Written atomically; returns the path.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    if isinstance(volume, Volume):
        hu, sp = volume.array, volume.spacing
    else:
        hu, sp = np.asarray(volume, dtype=np.float32), tuple(spacing or (1.0, 1.0, 1.0))
    lab = np.asarray(getattr(labels, "labels", labels))
    if hu.ndim != 3 or lab.shape != hu.shape:
        raise ValueError(f"Expected a (z, y, x) volume and labels of the same shape, got {hu.shape} and {lab.shape}")
    auto = _default_slices(lab)
    given = list(slices) if slices is not None else [None, None, None]
    if len(given) != 3:
        raise ValueError(f"Expected slices as (z, y, x), got {slices!r}")
    z, y, x = (int(np.clip(g if g is not None else a, 0, n - 1)) for g, a, n in zip(given, auto, hu.shape))
    sz, sy, sx = (float(s) for s in sp)
    views = [  # (image rows x cols, aspect = row spacing / col spacing, title)
        (hu[z], lab[z], sy / sx, f"axial z={z}"),
        (hu[::-1, y, :], lab[::-1, y, :], sz / sx, f"coronal y={y}"),
        (hu[::-1, :, x], lab[::-1, :, x], sz / sy, f"sagittal x={x}"),
    ]
    present = [int(l) for l in np.unique(lab) if l != 0]
    fig, axes = plt.subplots(1, 3, figsize=(15, 5.6), facecolor="black")
    for ax, (img, lb, aspect, name) in zip(axes, views):
        ax.imshow(img, cmap="gray", vmin=WINDOW[0], vmax=WINDOW[1], aspect=aspect, interpolation="nearest")
        rgba = np.zeros(lb.shape + (4,), dtype=np.float32)
        for l in present:
            m = lb == l
            rgba[m, :3] = _colour(l)
            rgba[m, 3] = alpha
        ax.imshow(rgba, aspect=aspect, interpolation="nearest")
        ax.set_title(name, color="white", fontsize=10)
        ax.axis("off")
    if present:
        nm = names or {}
        handles = [Patch(color=_colour(l), label=nm.get(l, str(l))) for l in present[:20]]
        fig.legend(handles=handles, loc="lower center", ncol=min(len(handles), 10), frameon=False,
                   labelcolor="white", fontsize=9)
    if title:
        fig.suptitle(title, color="white", fontsize=11)
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        with atomic_path(out, ".png") as tmp:
            fig.savefig(tmp, dpi=80, facecolor="black", format="png")
    finally:
        plt.close(fig)
    return out
