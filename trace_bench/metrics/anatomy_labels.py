"""The run's label map of ONE volume (no reference needed), the label groups the anatomy metrics report, and
MAISI's per-organ HU ranges.

Used by ``anatomy_stats`` / ``anatomy_dist`` (:mod:`.anatomy`) and ``frd_labels`` (:mod:`.frd`): each volume, generated
or reference, is segmented on its own grid by ``ctx.segmenter`` at ``ctx.classes`` (``provided``: the volume's own
paired label map, ``CaseData.mask``) through the on-disk label-map cache (:class:`~trace_bench.cache.LabelMapCache`,
the same entries ``segmentation`` writes), and memoised per case in ``CaseData.shared``. The body mask of the HU
sanity checks is always the weight-free ``threshold`` segmenter's body (2-class map), cached the same way.

Label groups (:func:`label_groups`, option ``labels``):

* ``--classes 3`` / ``2``: the collapsed classes (``lungs``, ``other`` / ``body``);
* ``--classes full`` with VISTA3D / MAISI label ids (segmenter ``vista3d``, or ``provided`` masks read as VISTA3D):
  ``auto`` = MAISI's quality-check organ groups (:data:`MAISI_GROUPS`), ``all`` = every label id present, by name;
* ``--classes full`` with foreign ids (``provided`` masks read as ``full``): every label id present.

MAISI's check (Project-MONAI/tutorials ``generation/maisi/scripts/quality_check.py`` ``is_outlier``, with
``generation/maisi/configs/image_median_statistics.json``, last changed in commit 9f6d19fd, and the label groups of
``generation/maisi/scripts/sample.py`` ``label_int_dict``): an organ passes when the median HU inside it lies in
``[min(sigma_6_low, percentile_0_5), max(sigma_6_high, percentile_99_5)]`` of the training set's per-organ medians
(bone: upper bound 1000 HU); an organ absent from the label map is not checked. One deviation, named: MAISI's lung
group lists label 31 twice and omits 32 (right lung lower lobe); here the lung group is 28-32.
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np

from ..errors import ConfigError
from .base import CaseData, Metric, Option, Part, RunContext

#: sample.py ``label_int_dict`` groups that image_median_statistics.json has statistics for (VISTA3D / MAISI ids)
MAISI_GROUPS: dict[str, tuple[int, ...]] = {
    "liver": (1,), "spleen": (3,), "pancreas": (4,), "kidney": (5, 14), "lung": (28, 29, 30, 31, 32), "brain": (22,),
    "bone": tuple(range(33, 57)) + tuple(range(63, 98)) + (120, 122, 127),
}
#: image_median_statistics.json: (sigma_6_low, percentile_0_5, sigma_6_high, percentile_99_5) of each organ's
#: training-set median HU
MAISI_MEDIAN_STATISTICS: dict[str, tuple[float, float, float, float]] = {
    "liver": (-21.596463547885904, 9.530000000000001, 156.27881534763367, 162.0),
    "spleen": (-43.133891656525165, 16.925000000000004, 177.40494997185993, 184.07500000000073),
    "pancreas": (-56.59382515620725, -29.0, 149.50627399318438, 145.92000000000007),
    "kidney": (-130.56375604853028, -40.0, 267.28163511081016, 254.61999999999898),
    "lung": (-1088.5583843889117, -937.0, -551.8503346949108, -366.9500000000007),
    "bone": (71.39901958080469, 136.45499999999998, 471.9957615639765, 551.6350000000002),
    "brain": (-304.8208236135867, -951.0, 369.5118535139189, 126.25),
}
#: quality_check.py: ``if label_name == "bone": high_thresh = 1000.0``
MAISI_BONE_HIGH = 1000.0
LABEL_MODES = ("auto", "all")


def maisi_range(organ: str) -> tuple[float, float]:
    """MAISI's accepted median-HU range of ``organ`` (quality_check.py ``is_outlier`` thresholds)."""
    s6_lo, p0_5, s6_hi, p99_5 = MAISI_MEDIAN_STATISTICS[organ]
    hi = MAISI_BONE_HIGH if organ == "bone" else max(s6_hi, p99_5)
    return min(s6_lo, p0_5), hi


def is_vista3d(lm: Any) -> bool:
    """Whether a label map holds VISTA3D / MAISI label ids (``full`` classes of the vista3d segmenter or of
    provided masks read as VISTA3D)."""
    from ..segmenters.labels import VISTA3D_LABELS

    if lm.classes != "full":
        return False
    seg = str(lm.segmenter)
    if seg.startswith(("vista3d", "provided-vista3d")):
        return True
    return bool(lm.names) and all(VISTA3D_LABELS.get(int(k)) == v for k, v in lm.names.items())


def label_groups(lm: Any, mode: str = "auto") -> dict[str, tuple[int, ...]]:
    """Column name -> label ids of the groups reported for label map ``lm`` (see the module doc)."""
    from ..segmenters.labels import CLASS_NAMES, class_name

    if lm.classes in CLASS_NAMES:
        return {name: (lab,) for lab, name in sorted(CLASS_NAMES[lm.classes].items())}
    if is_vista3d(lm) and mode == "auto":
        return dict(MAISI_GROUPS)
    present = [int(v) for v in np.unique(lm.labels) if v != 0]
    return {class_name(v, "full", lm.names): (v,) for v in present}


def group_mask(labels: np.ndarray, ids: tuple[int, ...]) -> np.ndarray:
    """Boolean mask of the voxels whose label is one of ``ids``."""
    return np.isin(labels, ids) if len(ids) > 1 else np.asarray(labels) == ids[0]


def labels_option() -> Option:
    return Option("labels", "auto", "label groups reported with --classes full: 'auto' (VISTA3D / MAISI ids: MAISI's "
                  "quality-check organs liver, spleen, pancreas, kidney, lung, brain, bone; other ids: each label) "
                  "or 'all' (every label id present)", choices=LABEL_MODES)


def parse_provided_labels(value: Any) -> str:
    """Option parser: a provided-mask label convention (``3`` from a command line or TOML as a number is ``"3"``)."""
    from ..segmenters.provided import LABEL_CONVENTIONS

    v = str(value).strip().lower() if isinstance(value, (str, int)) and not isinstance(value, bool) else None
    if v not in LABEL_CONVENTIONS:
        raise ConfigError(f"expected one of {', '.join(LABEL_CONVENTIONS)}, got {value!r}")
    return v


def provided_labels_option() -> Option:
    return Option("provided_labels", "auto", "with --segmenter provided: how mask values map to classes: auto, "
                  "vista3d, 3 (0 / 1 lungs / 2 other), 2 (structure vs background) or full (ids as they are)",
                  parser=parse_provided_labels)


class LabelSource:
    """Label maps of single volumes for one metric instance: the run's segmenter (one instance per settings) and
    the on-disk label-map cache. Thread-safe; pickles as nothing (rebuilt lazily in a worker)."""

    def __init__(self, provided_labels: str = "auto") -> None:
        self.provided_labels = provided_labels
        self._segmenters: dict[tuple, Any] = {}
        self._cache: Any = None
        self._lock = threading.Lock()

    def segmenter(self, ctx: RunContext, name: str | None = None) -> Any:
        from ..segmenters import get_segmenter

        name = name or ctx.segmenter
        key = (name, ctx.device, tuple(sorted(ctx.weights.items())), self.provided_labels)
        with self._lock:
            seg = self._segmenters.get(key)
            if seg is None:
                kw: dict[str, Any] = {"labels": self.provided_labels} if name == "provided" else {}
                seg = self._segmenters[key] = get_segmenter(name, device=ctx.device, weights=ctx.weights, **kw)
        return seg

    def cache(self, ctx: RunContext) -> Any:
        from ..cache import LabelMapCache, label_cache_enabled, label_cache_root

        root, on = label_cache_root(ctx.cache_dir), label_cache_enabled()
        with self._lock:
            if self._cache is None or self._cache.root != root or self._cache.enabled != on:
                self._cache = LabelMapCache(root, enabled=on)
            return self._cache

    def required_weights(self, ctx: RunContext | None) -> tuple[str, ...]:
        from ..segmenters import SEGMENTERS

        return SEGMENTERS.get(ctx.segmenter if ctx is not None else "threshold").weights

    def setup(self, ctx: RunContext) -> None:
        from ..segmenters.labels import check_classes

        check_classes(ctx.classes)
        seg = self.segmenter(ctx)
        if hasattr(seg, "load"):
            seg.load()  # refuses now (WeightsError) when the bundle is missing

    def part(self, ctx: RunContext, mode: str | None = None) -> Part:
        seg = self.segmenter(ctx)
        groups = "" if mode is None else f":groups={mode}"
        what = ("" if mode is None else f"; label groups '{mode}' (MAISI's organ groups for VISTA3D ids when 'auto', "
                "else every label)")
        return (f"labels-v1:{seg.id}:classes={ctx.classes}{groups}",
                f"each volume (generated or reference) labelled on its own grid by segmenter {seg.id} "
                f"({seg.description}) at --classes {ctx.classes}{what}")

    def label_map(self, data: CaseData, ctx: RunContext) -> Any:
        """The :class:`~trace_bench.segmenters.base.LabelMap` of ``data.volume`` (memoised in ``data.shared``)."""
        key = ("anatomy:labels", ctx.segmenter, ctx.classes, self.provided_labels)
        if key not in data.shared:
            seg = self.segmenter(ctx)
            if ctx.segmenter == "provided":
                lm = seg.from_mask(data.mask, ctx.classes, what=f"volume of {data.method} / case {data.case_id!r}")
                if lm.shape != data.volume.shape:
                    raise ConfigError(f"{lm.meta.get('source')}: label map of shape {lm.shape} is not on the grid of "
                                      f"its volume {data.volume.shape} (case {data.case_id!r})")
            else:
                lm = seg.segment_cached(data.volume, ctx.classes, self.cache(ctx))
            data.shared[key] = lm
        return data.shared[key]

    def body(self, data: CaseData, ctx: RunContext) -> np.ndarray:
        """Boolean body mask of ``data.volume``: the threshold segmenter's 2-class map (weight-free), cached."""
        from ..cache import volume_hash

        key = ("anatomy:body", "threshold", volume_hash(data.volume))
        if key not in data.shared:
            seg = self.segmenter(ctx, "threshold")
            data.shared[key] = seg.segment_cached(data.volume, "2", self.cache(ctx)).labels > 0
        return data.shared[key]

    def __getstate__(self) -> dict[str, Any]:
        return {"provided_labels": self.provided_labels}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["provided_labels"])


class LabelledMetric(Metric):
    """Base of the metrics that read label maps of single volumes from the run's segmenter (declare the
    option ``provided_labels``): ``self.labels`` is their :class:`LabelSource`, whose weights they need and
    which is checked at setup."""

    def __init__(self, options: dict[str, Any] | None = None) -> None:
        super().__init__(options)
        self.labels = LabelSource(str(self.opts["provided_labels"]))

    def required_weights(self, ctx: RunContext | None = None) -> tuple[str, ...]:
        return self.labels.required_weights(ctx)

    def setup(self, ctx: RunContext) -> None:
        self.labels.setup(ctx)


__all__ = ["LABEL_MODES", "LabelSource", "LabelledMetric", "MAISI_BONE_HIGH", "MAISI_GROUPS", "MAISI_MEDIAN_STATISTICS",
           "group_mask", "is_vista3d", "label_groups", "labels_option", "maisi_range", "parse_provided_labels",
           "provided_labels_option"]
