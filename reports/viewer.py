"""The HTML slice viewer's data: sprite sheets (PNG data URIs) of a case's slices, one per volume.

From ``stack`` arrays (``trace_bench.report_inputs``: up to 64 axial slices at up to 128 px) the
viewer scrolls through z; from a run's ``_plot.npz`` alone (mid-planes only) it steps through the
axial, coronal and sagittal mid-planes. Label maps become a second, transparent sprite drawn on top
when the overlay box is ticked.
"""

from __future__ import annotations

import base64
import io
import math
from typing import Any

import numpy as np

from trace_bench.results import GT

HU_WINDOW = (-1000.0, 1000.0)
#: label colours (RGB) of ids 1, 2, ... (colour-blind friendly, as seaborn's "bright")
LABEL_COLOURS = [(2, 62, 255), (255, 124, 0), (26, 201, 56), (232, 0, 11), (139, 43, 226), (159, 72, 0),
                 (241, 76, 193), (163, 163, 163), (255, 196, 0), (0, 215, 255)]


def _png(arr: np.ndarray) -> str:
    """RGBA label sprites: lossless PNG data URI."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _jpeg(arr: np.ndarray) -> str:
    """Grey sprites: JPEG (quality 90) data URI, a third of the PNG's size for CT slices; tiles are
    multiples of 8 px wide where possible so blocks do not straddle two slices."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="JPEG", quality=90)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def to_grey(hu: np.ndarray, window: tuple[float, float] = HU_WINDOW) -> np.ndarray:
    lo, hi = window
    v = (np.clip(np.asarray(hu, dtype=np.float32), lo, hi) - lo) * (255.0 / (hi - lo))
    return np.floor(np.nan_to_num(v) + 0.5).astype(np.uint8)


def _resize_nearest(img: np.ndarray, h: int, w: int) -> np.ndarray:
    yi = np.minimum((np.arange(h) + 0.5) * img.shape[0] / h, img.shape[0] - 1).astype(int)
    xi = np.minimum((np.arange(w) + 0.5) * img.shape[1] / w, img.shape[1] - 1).astype(int)
    return img[yi][:, xi]


def _sprite(tiles: list[np.ndarray], th: int, tw: int, cols: int, rgba: bool = False) -> np.ndarray:
    rows = math.ceil(len(tiles) / cols)
    shape = (rows * th, cols * tw, 4) if rgba else (rows * th, cols * tw)
    sheet = np.zeros(shape, dtype=np.uint8)
    for i, t in enumerate(tiles):
        r, c = divmod(i, cols)
        sheet[r * th: r * th + t.shape[0], c * tw: c * tw + t.shape[1]] = t
    return sheet


def _colour_labels(lab: np.ndarray) -> np.ndarray:
    lab = np.asarray(lab).astype(np.int64)
    out = np.zeros(lab.shape + (4,), dtype=np.uint8)
    for i in np.unique(lab):
        if i <= 0:
            continue
        out[lab == i] = (*LABEL_COLOURS[(int(i) - 1) % len(LABEL_COLOURS)], 255)
    return out


def _plane_tiles(a: dict[str, np.ndarray], key: str, size: int) -> list[np.ndarray]:
    """Mid-planes resized to their physical aspect inside a size x size tile (superior up)."""
    sz, sy, sx = (float(v) for v in a["spacing"])
    tiles = []
    for view in ("axial", "coronal", "sagittal"):
        img = np.asarray(a[f"{key}_{view}"])
        if view == "axial":
            ph, pw = img.shape[0] * sy, img.shape[1] * sx
        else:
            img = img[::-1]
            ph, pw = img.shape[0] * sz, img.shape[1] * (sy if view == "sagittal" else sx)
        s = size / max(ph, pw)
        tiles.append(_resize_nearest(img, max(1, round(ph * s)), max(1, round(pw * s))))
    return tiles


def case_viewer(case_id: str, arts: dict[str, dict[str, np.ndarray]], *, size: int = 128) -> dict[str, Any] | None:
    """The viewer's JSON for one case: ``mode`` "stack" (scroll z) or "planes" (mid-planes only)."""
    arts = {m: a for m, a in arts.items() if "view_axial" in a or "stack" in a}
    if not arts:
        return None
    stack_mode = all("stack" in a for a in arts.values())
    vols = []
    if stack_mode:
        n = max(int(a["stack"].shape[0]) for a in arts.values())
        th = -(-max(int(a["stack"].shape[1]) for a in arts.values()) // 8) * 8
        tw = -(-max(int(a["stack"].shape[2]) for a in arts.values()) // 8) * 8
        cols = max(1, min(n, 2048 // max(tw, 1)))
        for m, a in arts.items():
            st = a["stack"]
            sy, sx = float(a["spacing"][1]), float(a["spacing"][2])
            tiles = [to_grey(st[i]) for i in range(st.shape[0])]
            v: dict[str, Any] = {"name": "Reference (GT)" if m == GT else m, "n": len(tiles),
                                 "img": _jpeg(_sprite(tiles, th, tw, cols)),
                                 "aspect": (st.shape[1] * sy) / max(st.shape[2] * sx, 1e-9),
                                 "tile": [int(st.shape[1]), int(st.shape[2])],
                                 "z": [round(float(z), 2) for z in a.get("stack_z", np.arange(len(tiles)))]}
            if "stack_labels" in a:
                v["lab"] = _png(_sprite([_colour_labels(x) for x in a["stack_labels"]], th, tw, cols, rgba=True))
            if "dice_z" in a and "stack_z" in a and a["dice_z"].size:
                sz = float(a["spacing"][0])
                idx = np.clip(np.round(np.asarray(a["stack_z"]) / sz).astype(int), 0, a["dice_z"].size - 1)
                v["dice"] = [None if not np.isfinite(d) else round(float(d), 3) for d in a["dice_z"][idx]]
            vols.append(v)
        return {"case": case_id, "mode": "stack", "th": th, "tw": tw, "cols": cols, "volumes": vols}
    for m, a in arts.items():
        tiles = [to_grey(t) for t in _plane_tiles(a, "view", size)]
        v = {"name": "Reference (GT)" if m == GT else m, "n": 3, "img": _jpeg(_sprite(tiles, size, size, 3)),
             "aspect": 1.0, "tile": [size, size], "z": ["axial", "coronal", "sagittal"]}
        if "labels_axial" in a:
            v["lab"] = _png(_sprite([_colour_labels(t) for t in _plane_tiles(a, "labels", size)], size, size, 3,
                                    rgba=True))
        vols.append(v)
    return {"case": case_id, "mode": "planes", "th": size, "tw": size, "cols": 3, "volumes": vols}
