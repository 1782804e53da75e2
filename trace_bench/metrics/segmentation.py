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

Grid rule (:data:`RESAMPLE_RULES`, option ``segmentation.resample``):

* ``extent`` (default): both grids are canonical LPS, so axes correspond; the generated label map
  is stretched so its field of view meets the reference's, voxel centre to voxel centre, nearest
  neighbour: target index ``i`` on an axis of ``n_ref`` voxels reads source index
  ``floor((i + 0.5) * n_gen / n_ref)``. Origins and spacings of the generated file are ignored,
  which is what generators that write identity affines need (GenerateCT's 201 slices onto a
  425-slice reference; the paper aligns generated volumes using the ground truth's DICOM geometry).
* ``world``: nearest neighbour in patient coordinates through both affines (for generators that
  write real geometry, e.g. MAISI); voxels outside the generated volume are background.

Each volume is segmented on its own grid, then the label map is resampled. Label maps go through
the on-disk cache (:class:`~trace_bench.cache.LabelMapCache`: volume content, segmenter id,
classes), so each volume is segmented once per machine, whichever process, method, run or report
asks; the reference label map is also kept in memory per (reference file, mtime, segmenter,
classes) for every method of the run.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections import OrderedDict
from typing import Any

import numpy as np

from ..errors import ConfigError
from ..volume import orthogonal_slices
from .base import NONNEGATIVE, UNIT_INTERVAL, CaseData, Metric, Option, Output, RunContext, register_metric
from .hausdorff import EMPTY_POLICY, hd95
from .overlap import dice, jaccard, overlap_scores  # noqa: F401  (dice, jaccard: re-exported)

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


def segmentation_scores(pred: np.ndarray, ref: np.ndarray, spacing, labels=None,
                        device: str | None = None) -> dict[str, dict[int, float]]:
    """``{"dice": {label: v}, "jaccard": {...}, "hd95": {...}}`` for two label maps on one grid (Dice and
    Jaccard from one counting pass, :func:`.overlap.overlap_scores`);
    ``device``: where HD95 runs (None = the CPU path; a CUDA device = its torch path, same values)."""
    return {**overlap_scores(pred, ref, labels), "hd95": hd95(pred, ref, spacing, labels, device=device)}


def _family(metric: str, label: str, unit: str, rank: float, hib: bool) -> dict[str, Output]:
    """One family's columns (mean and per class): Dice / Jaccard in [0, 1], HD95 in mm >= 0."""
    tol = {"abs": 1.0, "rel": 0.05} if unit == "mm" else {"abs": 0.01}
    vr = NONNEGATIVE if unit == "mm" else UNIT_INTERVAL
    out = {metric: Output(hib, label, unit=unit, digits=2 if unit == "mm" else 3, rank=rank, tolerance=tol,
                          value_range=vr)}
    for i, cls in enumerate(("lungs", "other", "body")):
        out[f"{metric}[{cls}]"] = Output(hib, f"{label.replace(' (mm)', '')}[{cls}]", unit=unit,
                                         digits=2 if unit == "mm" else 3, rank=rank + 0.1 * (i + 1), tolerance=tol,
                                         value_range=vr)
    return out


@register_metric
class Segmentation(Metric):
    name = "segmentation"
    kind = "case"
    table = "table1"
    needs_reference = True
    outputs = {**_family("jaccard", "JI", "fraction", 6, True), **_family("dice", "DC", "fraction", 7, True),
               **_family("hd95", "95HD (mm)", "mm", 8, False),
               "seg_n_classes": Output(None, "classes scored", digits=0, rank=9, hidden=True, value_range=NONNEGATIVE)}
    options = (
        Option("resample", "extent", "how the generated label map is put on the reference grid: 'extent' "
               "(stretch field of view onto field of view, for generators without real geometry) or 'world' "
               "(patient coordinates through both affines)", choices=RESAMPLE_RULES, in_protocol_id=False),
        Option("provided_labels", "auto", "with --segmenter provided: how mask values map to classes "
               "('auto' or a segmenter label table name)", in_protocol_id=True),
    )
    description = ("Anatomical fidelity: segment generated and reference volumes (ctx.segmenter, ctx.classes), "
                   "map the generated labels onto the reference grid, Dice / Jaccard / HD95 (mm) per class and mean. "
                   f"Empty structures: {EMPTY_POLICY}.")
    cache_size = 4  # reference maps kept in memory (the cases in flight); the rest come from the disk cache

    def __init__(self, options=None) -> None:
        super().__init__(options)
        self._segmenters: dict[tuple, Any] = {}
        self._ref_cache: OrderedDict[tuple, Any] = OrderedDict()
        self._lock = threading.Lock()
        self._label_cache = None
        #: reference label maps not found in this process's memory (computed, or read from the disk cache)
        self.reference_segmentations = 0

    # -------------------------------------------------------------- plumbing
    def output_columns(self, ctx: RunContext) -> dict[str, Output]:
        """The mean columns plus the per-class columns of ``ctx.classes`` (``full``: per-class
        columns are named after the labels found, and inherit their family's display)."""
        from ..segmenters.labels import CLASS_NAMES, check_classes

        names = set(CLASS_NAMES.get(check_classes(ctx.classes), {}).values())
        return {c: o for c, o in self.outputs.items() if "[" not in c or c.split("[", 1)[1].rstrip("]") in names}

    def required_weights(self, ctx: RunContext | None = None) -> tuple[str, ...]:
        from ..segmenters import SEGMENTERS

        name = ctx.segmenter if ctx is not None else "threshold"
        return SEGMENTERS.get(name).weights

    def segmenter(self, ctx: RunContext):
        from ..segmenters import get_segmenter

        key = (ctx.segmenter, ctx.device, tuple(sorted(ctx.weights.items())), str(self.opts["provided_labels"]))
        with self._lock:
            seg = self._segmenters.get(key)
            if seg is None:
                kw: dict[str, Any] = {}
                if ctx.segmenter == "provided":
                    kw["labels"] = str(self.opts["provided_labels"])
                seg = get_segmenter(ctx.segmenter, device=ctx.device, weights=ctx.weights, **kw)
                self._segmenters[key] = seg
        return seg

    def setup(self, ctx: RunContext) -> None:
        from ..segmenters.labels import check_classes

        check_classes(ctx.classes)
        seg = self.segmenter(ctx)
        if hasattr(seg, "load"):
            seg.load()  # refuses now (WeightsError) when the bundle is missing

    def protocol_parts(self, ctx: RunContext) -> list[tuple[str, str]]:
        seg, rule = self.segmenter(ctx), self.opts["resample"]
        grid = ("stretched field of view onto field of view" if rule == "extent"
                else "resampled through patient coordinates (both affines)")
        return [(f"seg-v1:{seg.id}:classes={ctx.classes}:grid={rule}",
                 f"segmentation protocol v1: segmenter {seg.id} ({seg.description}); label classes {ctx.classes} "
                 f"(--classes); the generated label map put on the reference grid {grid}")]

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
        return seg.segment_cached(vol, ctx.classes, self.label_cache(ctx))

    def label_cache(self, ctx: RunContext):
        """The on-disk label-map cache (:class:`~trace_bench.cache.LabelMapCache`) for ``ctx``: under
        ``ctx.cache_dir/labels`` or ``$TRACE_BENCH_CACHE/labels``; off with ``TRACE_BENCH_LABEL_CACHE=0``."""
        from ..cache import LabelMapCache, label_cache_enabled, label_cache_root

        root, on = label_cache_root(ctx.cache_dir), label_cache_enabled()
        with self._lock:
            c = self._label_cache
            if c is None or c.root != root or c.enabled != on:
                c = self._label_cache = LabelMapCache(root, enabled=on)
        return c

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
        rule = self.opts["resample"]
        ref = self.reference_labels(data, ctx)
        gen = self._label_map(data, ctx, "generated")
        pred = resample_labels(gen.labels, ref.shape, rule, gen.affine, ref.affine)
        labels = _FIXED_LABELS.get(classes)
        hd_device = ctx.device if str(ctx.device).startswith("cuda") else None
        scores = segmentation_scores(pred, ref.labels, ref.spacing, labels, device=hd_device)
        means, n = summarize(scores)
        out: dict[str, float] = {**means, "seg_n_classes": float(n)}
        names = {**ref.names, **gen.names}
        for metric, vals in scores.items():
            for l, v in vals.items():
                out[f"{metric}[{class_name(l, classes, names)}]"] = v
        data.shared["segmentation"] = {"generated": gen, "generated_on_reference": pred, "reference": ref,
                                       "segmenter": gen.segmenter, "classes": classes, "grid_rule": rule}
        return out

    # ------------------------------------------------------------- report hook
    def plot_arrays(self, data: CaseData, ctx: RunContext) -> dict[str, np.ndarray]:
        """Label slices of the volume (orthogonal mid planes) and Dice per axial slice against the
        reference labels, from what :meth:`case_values` left in ``data.shared`` (for the GT volume:
        its cached reference label map)."""
        seg = data.shared.get("segmentation")
        on_ref = ref_labels = None
        if isinstance(seg, dict):
            labels = seg["generated"].labels
            on_ref, ref_labels = seg["generated_on_reference"], seg["reference"].labels
        elif data.reference is None or data.reference is data.volume:
            src = CaseData(method=data.method, case_id=data.case_id, volume=data.volume, reference=data.volume,
                           protocol=data.protocol, mask=data.mask, reference_mask=data.mask, device=data.device)
            try:
                labels = self.reference_labels(src, ctx).labels
            except Exception:  # noqa: BLE001 - the overlay is optional
                return {}
        else:
            return {}
        return label_plot_arrays(labels, data.volume.shape, on_ref, ref_labels)


def label_plot_arrays(labels: np.ndarray | None, shape: tuple[int, ...], on_ref: np.ndarray | None = None,
                      ref_labels: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """``labels_{axial,coronal,sagittal}`` (int16 mid planes, when ``labels`` has the volume's shape)
    and ``dice_z`` (foreground Dice per axial slice of ``on_ref`` against ``ref_labels``)."""
    out: dict[str, np.ndarray] = {}
    if labels is not None and np.asarray(labels).ndim == 3 and tuple(np.shape(labels)) == tuple(shape):
        for k, v in orthogonal_slices(np.asarray(labels, dtype=np.int32)).items():
            out[f"labels_{k}"] = v.astype(np.int16)
    if on_ref is not None and ref_labels is not None and np.shape(on_ref) == np.shape(ref_labels):
        a, b = np.asarray(on_ref) > 0, np.asarray(ref_labels) > 0
        inter = (a & b).sum(axis=(1, 2)).astype(np.float64)
        tot = (a.sum(axis=(1, 2)) + b.sum(axis=(1, 2))).astype(np.float64)
        with np.errstate(invalid="ignore", divide="ignore"):
            out["dice_z"] = np.where(tot > 0, 2 * inter / np.where(tot > 0, tot, 1), np.nan)
    return out
