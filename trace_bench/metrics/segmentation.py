"""Anatomical fidelity (TRACE paper, Table 1: DC, JI, 95HD): segment, align, compare.

For one case: the generated volume and its reference are segmented by ``ctx.segmenter``
(default ``threshold``; ``provided`` uses ``CaseData.mask`` / ``CaseData.reference_mask``) at
granularity ``ctx.classes`` (default ``"3"``: lungs, other body; background not scored). The
generated label map is mapped onto the reference grid (:func:`resample_labels`), then per class
Dice, Jaccard (:mod:`.overlap`) and HD95 in mm on the reference spacing (:mod:`.hausdorff`).

Columns: ``dice``, ``jaccard``, ``hd95`` = mean over the classes counted; ``seg_n_classes`` = that
count; per class ``dice[lungs]``, ``jaccard[lungs]``, ``hd95[lungs]``, ... Empty structures:
:data:`~.hausdorff.EMPTY_POLICY` (a class missing from one map is a miss and counts: Dice 0,
Jaccard 0, HD95 = image diagonal; a class missing from both is not counted). At ``--classes 3``
and ``2`` the scored classes are fixed (1, 2 / 1); at ``full`` they are the labels present in
either map.

Grid rule (:data:`RESAMPLE_RULES`, ``ctx.options["seg_resample"]``):

* ``extent`` (default): both grids are canonical LPS, so axes correspond; the generated label map
  is stretched so its field of view meets the reference's, voxel centre to voxel centre, nearest
  neighbour: target index ``i`` on an axis of ``n_ref`` voxels reads source index
  ``floor((i + 0.5) * n_gen / n_ref)``. Origins and spacings of the generated file are ignored,
  which is what generators that write identity affines need (GenerateCT's 201 slices onto a
  425-slice reference; the paper aligns generated volumes using the ground truth's DICOM geometry).
* ``world``: nearest neighbour in patient coordinates through both affines (for generators that
  write real geometry, e.g. MAISI); voxels outside the generated volume are background.

Each volume is segmented on its own grid, then the label map is resampled. The reference label
map is computed once per (reference file, mtime, segmenter, classes) and reused for every method.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections import OrderedDict
from typing import Any

import numpy as np

from ..errors import ConfigError
from .base import CaseData, MetricSpec, RunContext, StreamingMetric, register_metric
from .hausdorff import EMPTY_POLICY, hd95
from .overlap import dice, jaccard

RESAMPLE_RULES = ("extent", "world")
_FIXED_LABELS = {"3": (1, 2), "2": (1,)}


def resample_labels(labels: np.ndarray, target_shape: tuple[int, int, int], rule: str = "extent",
                    source_affine: np.ndarray | None = None, target_affine: np.ndarray | None = None) -> np.ndarray:
    """Nearest-neighbour map of a (z, y, x) label array onto a target grid (see module docstring)."""
    a = np.asarray(labels)
    if rule not in RESAMPLE_RULES:
        raise ConfigError(f"unknown resampling rule {rule!r}. Expected one of: {', '.join(RESAMPLE_RULES)}")
    if rule == "extent":
        if a.shape == tuple(target_shape):
            return a
        out = a
        for ax, (ns, nt) in enumerate(zip(a.shape, target_shape)):
            if ns != nt:
                idx = np.minimum(((np.arange(nt) + 0.5) * ns / nt).astype(np.int64), ns - 1)
                out = np.take(out, idx, axis=ax)
        return np.ascontiguousarray(out)
    from scipy import ndimage as ndi

    if source_affine is None or target_affine is None:
        raise ConfigError("resampling rule 'world' needs both affines")
    m_xyz = np.linalg.inv(np.asarray(source_affine, float)) @ np.asarray(target_affine, float)
    perm = np.zeros((4, 4))
    perm[0, 2] = perm[1, 1] = perm[2, 0] = perm[3, 3] = 1.0  # (z, y, x) <-> (x, y, z)
    m = perm @ m_xyz @ perm
    if np.allclose(m, np.eye(4)) and a.shape == tuple(target_shape):
        return a
    return ndi.affine_transform(a, m[:3, :3], offset=m[:3, 3], output_shape=tuple(target_shape), order=0,
                                mode="grid-constant", cval=0, prefilter=False)  # a voxel covers +-0.5 index


def summarize(per_class: dict[str, dict[int, float]]) -> tuple[dict[str, float], int]:
    """Mean over counted (non-NaN) classes of each metric, and the number of classes counted."""
    out: dict[str, float] = {}
    n = 0
    for metric, vals in per_class.items():
        v = np.array([x for x in vals.values() if np.isfinite(x)], dtype=np.float64)
        out[metric] = float(v.mean()) if v.size else float("nan")
        n = max(n, int(v.size))
    return out, n


def segmentation_scores(pred: np.ndarray, ref: np.ndarray, spacing, labels=None) -> dict[str, dict[int, float]]:
    """``{"dice": {label: v}, "jaccard": {...}, "hd95": {...}}`` for two label maps on one grid."""
    return {"dice": dice(pred, ref, labels), "jaccard": jaccard(pred, ref, labels),
            "hd95": hd95(pred, ref, spacing, labels)}


class SegmentationOverlap(StreamingMetric):
    """Streaming form: ``update(pred, ref, spacing)`` per case; ``compute()`` = per-class means over cases
    (a class counts in a case unless absent from both maps) and the mean over classes."""

    def __init__(self, labels=None) -> None:
        super().__init__()
        self.labels = labels
        self.add_state("cases", [], reduce="cat")

    def update(self, pred: np.ndarray, ref: np.ndarray, spacing) -> dict[str, dict[int, float]]:
        s = segmentation_scores(pred, ref, spacing, self.labels)
        self.cases.append(s)
        return s

    def compute(self) -> dict[str, Any]:
        if not self.cases:
            raise ValueError("SegmentationOverlap.compute() called before any update()")
        out: dict[str, Any] = {}
        for metric in ("dice", "jaccard", "hd95"):
            per: dict[int, list[float]] = {}
            for c in self.cases:
                for l, v in c[metric].items():
                    if np.isfinite(v):
                        per.setdefault(l, []).append(v)
            means = {l: float(np.mean(v)) for l, v in sorted(per.items())}
            out[metric] = float(np.mean(list(means.values()))) if means else float("nan")
            out[f"{metric}_per_class"] = means
        out["n_cases"] = len(self.cases)
        return out


@register_metric
class SegmentationSpec(MetricSpec):
    name = "segmentation"
    kind = "case"
    table = "table1"
    needs_reference = True
    columns = {
        "dice": True, "jaccard": True, "hd95": False, "seg_n_classes": True,
        "dice[lungs]": True, "jaccard[lungs]": True, "hd95[lungs]": False,
        "dice[other]": True, "jaccard[other]": True, "hd95[other]": False,
        "dice[body]": True, "jaccard[body]": True, "hd95[body]": False,
    }
    description = ("Anatomical fidelity: segment generated and reference volumes (ctx.segmenter, ctx.classes), "
                   "map the generated labels onto the reference grid, Dice / Jaccard / HD95 (mm) per class and mean. "
                   f"Empty structures: {EMPTY_POLICY}.")
    cache_size = 64

    def __init__(self) -> None:
        self._segmenters: dict[tuple, Any] = {}
        self._ref_cache: OrderedDict[tuple, Any] = OrderedDict()
        self._lock = threading.Lock()
        self.reference_segmentations = 0  # how many reference label maps were computed (not cached)

    # -------------------------------------------------------------- plumbing
    def columns_for(self, classes: str) -> dict[str, bool]:
        from ..segmenters.labels import CLASS_NAMES, check_classes

        c = check_classes(classes)
        cols = {"dice": True, "jaccard": True, "hd95": False, "seg_n_classes": True}
        for name in CLASS_NAMES.get(c, {}).values():
            cols.update({f"dice[{name}]": True, f"jaccard[{name}]": True, f"hd95[{name}]": False})
        return cols

    def required_weights(self, ctx: RunContext | None = None) -> tuple[str, ...]:
        from ..segmenters import SEGMENTERS

        name = ctx.segmenter if ctx is not None else "threshold"
        return SEGMENTERS.get(name).weights

    def segmenter(self, ctx: RunContext):
        from ..segmenters import get_segmenter

        key = (ctx.segmenter, ctx.device, tuple(sorted(ctx.weights.items())), str(ctx.options.get("provided_labels", "auto")))
        with self._lock:
            seg = self._segmenters.get(key)
            if seg is None:
                kw: dict[str, Any] = {}
                if ctx.segmenter == "provided":
                    kw["labels"] = str(ctx.options.get("provided_labels", "auto"))
                seg = get_segmenter(ctx.segmenter, device=ctx.device, weights=ctx.weights, **kw)
                self._segmenters[key] = seg
        return seg

    def setup(self, ctx: RunContext) -> None:
        from ..segmenters.labels import check_classes

        check_classes(ctx.classes)
        rule = ctx.options.get("seg_resample", "extent")
        if rule not in RESAMPLE_RULES:
            raise ConfigError(f"unknown seg_resample {rule!r}. Expected one of: {', '.join(RESAMPLE_RULES)}")
        seg = self.segmenter(ctx)
        if hasattr(seg, "load"):
            seg.load()  # refuses now (WeightsError) when the bundle is missing

    def protocol_id(self, ctx: RunContext) -> str:
        rule = ctx.options.get("seg_resample", "extent")
        return f"seg-v1:{self.segmenter(ctx).id}:classes={ctx.classes}:grid={rule}"

    @staticmethod
    def _volume_key(vol) -> tuple:
        path = vol.meta.get("path")
        if path and os.path.exists(path):
            st = os.stat(path)
            return ("file", os.path.realpath(path), st.st_mtime_ns, st.st_size)
        h = hashlib.sha1(np.ascontiguousarray(vol.array).view(np.uint8)).hexdigest()
        return ("content", h, tuple(vol.spacing))

    def _label_map(self, data: CaseData, ctx: RunContext, which: str):
        seg = self.segmenter(ctx)
        if ctx.segmenter == "provided":
            mask = data.mask if which == "generated" else data.reference_mask
            return seg.from_mask(mask, ctx.classes, what=f"{which} volume of case {data.case_id!r}")
        vol = data.volume if which == "generated" else data.reference
        return seg.segment(vol, ctx.classes)

    def reference_labels(self, data: CaseData, ctx: RunContext):
        """The reference label map, computed once per reference file + segmenter + classes."""
        src = data.reference_mask if ctx.segmenter == "provided" else data.reference
        if src is None:
            what = "reference label map (reference_mask)" if ctx.segmenter == "provided" else "reference volume"
            raise ConfigError(f"segmentation: case {data.case_id!r} has no {what}")
        key = (self._volume_key(src), self.segmenter(ctx).id, ctx.classes)
        with self._lock:
            hit = self._ref_cache.get(key)
            if hit is not None:
                self._ref_cache.move_to_end(key)
                return hit
        lm = self._label_map(data, ctx, "reference")
        with self._lock:
            self._ref_cache[key] = lm
            self.reference_segmentations += 1
            while len(self._ref_cache) > self.cache_size:
                self._ref_cache.popitem(last=False)
        return lm

    # ------------------------------------------------------------- per case
    def case_values(self, data: CaseData, ctx: RunContext) -> dict[str, float]:
        from ..segmenters.labels import check_classes, class_name

        classes = check_classes(ctx.classes)
        rule = ctx.options.get("seg_resample", "extent")
        ref = self.reference_labels(data, ctx)
        gen = self._label_map(data, ctx, "generated")
        pred = resample_labels(gen.labels, ref.shape, rule, gen.affine, ref.affine)
        labels = _FIXED_LABELS.get(classes)
        scores = segmentation_scores(pred, ref.labels, ref.spacing, labels)
        means, n = summarize(scores)
        out: dict[str, float] = {**means, "seg_n_classes": float(n)}
        names = {**ref.names, **gen.names}
        for metric, vals in scores.items():
            for l, v in vals.items():
                out[f"{metric}[{class_name(l, classes, names)}]"] = v
        data.shared["segmentation"] = {"generated": gen, "generated_on_reference": pred, "reference": ref,
                                       "segmenter": gen.segmenter, "classes": classes, "grid_rule": rule}
        return out
