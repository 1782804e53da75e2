"""Anatomical and physical plausibility without a paired reference: ``anatomy_stats`` (per volume) and
``anatomy_dist`` (generated set vs reference set). The only anatomy evidence a text-to-CT run can give.

Every volume, generated or reference, is labelled on its own grid by the run's segmenter (:mod:`.anatomy_labels`:
``--segmenter`` / ``--classes``, label-map cache shared with ``segmentation``); nothing is resampled or paired.

``anatomy_stats`` (per case; the GT row scores the reference volumes the same way). Per label group ``g``
(``lungs`` / ``other`` at ``--classes 3``; MAISI's organs with VISTA3D labels, see
:func:`.anatomy_labels.label_groups`):

* ``anat_volume_ml[g]``: voxel count x voxel volume (``prod(spacing)`` mm^3) / 1000; 0 when the group is absent;
* ``anat_hu_mean[g]``, ``anat_hu_median[g]``, ``anat_hu_iqr[g]`` (75th - 25th percentile, numpy's linear
  interpolation) of the HU inside the group (absent group: no value);
* ``anat_hu_plausible[g]`` (VISTA3D / MAISI labels only): 1 when the median HU lies in MAISI's published range for
  the organ (Project-MONAI/tutorials ``generation/maisi/scripts/quality_check.py`` ``is_outlier`` with
  ``configs/image_median_statistics.json``), else 0; ``anat_hu_plausible`` = the fraction of the checked organs
  that pass (absent organs are not checked, as in MAISI);
* global HU sanity: ``anat_body_volume_ml`` (threshold segmenter's body), ``anat_air_outside_hu`` (median HU
  outside the body: about -1000 for air in a real scan, higher where a generator paints the background), and
  ``anat_hu_valid_fraction`` (fraction of voxels inside the 12-bit CT range [-1024, 3071] HU).

``anatomy_dist`` (set level). Per group, the distributions over cases of ``volume_ml`` (absent = 0 ml) and
``hu_median`` in the generated set and in the reference set are compared with the 1-D Wasserstein distance
(``scipy.stats.wasserstein_distance``, in ml / HU) and the two-sample Kolmogorov-Smirnov statistic
(``scipy.stats.ks_2samp``, in [0, 1]): ``anat_w1_volume_ml[g]``, ``anat_ks_volume_ml[g]``, ``anat_w1_hu_median[g]``,
``anat_ks_hu_median[g]``; ``anat_ks_volume_ml`` / ``anat_ks_hu_median`` = their mean over the groups. Intervals:
the run's two-sample jackknife over cases (``trace_bench.run.aggregate``), flagged below 10 cases; the GT row is the
split-half floor (one half of the reference cases against the other).

Table: ``anatomy`` (a table of its own; per-label columns are ``family[label]``). For the report's distribution plot
the per-case values are in ``per_case.csv`` (``anat_volume_ml[g]``, ``anat_hu_median[g]`` per method and GT), and
:meth:`AnatomyStats.plot_arrays` adds each group's HU histogram of the plot case (``anat_hu_hist[g]`` over
``anat_hu_bins``).

Cost (benchmarks/bench_issue31_costs.py, one core, 48 x 256 x 256 demo CT): 0.24 CPU-seconds per volume for
``anatomy_stats`` with the threshold segmentation, ~0 for ``anatomy_dist`` once the case's labels are in memory; with
``--segmenter vista3d`` the segmentation (cached on disk) dominates. Not in ``--metrics available`` until the reports
show the ``anatomy`` table.
"""

from __future__ import annotations

from typing import Any, Iterable

import numpy as np

from .anatomy_labels import (MAISI_MEDIAN_STATISTICS, LabelledMetric, LabelSource, group_mask, is_vista3d,
                             label_groups, labels_option, maisi_range, provided_labels_option)
from .base import CaseData, Output, Part, RunContext, State, register_metric

#: SynthRAD2025's dynamic range (image_metrics.py), the 12-bit CT range
HU_VALID = (-1024.0, 3071.0)
#: HU histogram of the plot case: 16 HU bins over the CT range
HIST_BINS = np.arange(-1024.0, 3072.0 + 16.0, 16.0)
DIST_STATS = ("volume_ml", "hu_median")


def _safe(name: str) -> str:
    return str(name).replace("/", "_").replace(" ", "_")


def case_stats(labels: LabelSource, data: CaseData, ctx: RunContext, mode: str) -> dict[str, Any]:
    """Per-group statistics of one volume (memoised in ``data.shared``): ``groups`` -> ``{name: {volume_ml, n,
    hu_mean, hu_median, hu_q25, hu_q75}}``, ``vista3d`` (whether MAISI's check applies)."""
    key = ("anatomy:stats", ctx.segmenter, ctx.classes, labels.provided_labels, mode)
    if key in data.shared:
        return data.shared[key]
    lm = labels.label_map(data, ctx)
    hu = data.volume.array
    voxel_ml = float(np.prod(data.volume.spacing)) / 1000.0
    groups: dict[str, dict[str, float]] = {}
    for name, ids in label_groups(lm, mode).items():
        m = group_mask(lm.labels, ids)
        n = int(np.count_nonzero(m))
        g: dict[str, float] = {"n": float(n), "volume_ml": n * voxel_ml}
        if n:
            v = hu[m].astype(np.float64)
            q25, q50, q75 = np.percentile(v, [25.0, 50.0, 75.0])
            g.update(hu_mean=float(v.mean()), hu_median=float(q50), hu_q25=float(q25), hu_q75=float(q75))
        groups[_safe(name)] = g
    out = {"groups": groups, "vista3d": is_vista3d(lm), "voxel_ml": voxel_ml}
    data.shared[key] = out
    return out


def _family(col: str, label: str, rank: float, hib: bool | None, value_range, unit: str = "", digits: int = 1,
            tol: dict[str, float] | None = None) -> Output:
    return Output(hib, label, unit=unit, digits=digits, rank=rank, tolerance=tol, value_range=value_range)


@register_metric
class AnatomyStats(LabelledMetric):
    name = "anatomy_stats"
    kind = "case"
    table = "anatomy"
    in_default_set = False
    outputs = {
        "anat_volume_ml": _family("anat_volume_ml", "volume (ml)", 1.0, None, (0.0, None),
                                  tol={"abs": 1.0, "rel": 0.02}),
        "anat_hu_mean": _family("anat_hu_mean", "HU mean", 1.1, None, (None, None), tol={"abs": 1.0}),
        "anat_hu_median": _family("anat_hu_median", "HU median", 1.2, None, (None, None), tol={"abs": 1.0}),
        "anat_hu_iqr": _family("anat_hu_iqr", "HU IQR", 1.3, None, (0.0, None), tol={"abs": 1.0}),
        "anat_hu_plausible": Output(True, "organ HU in MAISI range", unit="fraction", digits=3, rank=1.4,
                                    tolerance={"abs": 0.01}, value_range=(0.0, 1.0)),
        "anat_body_volume_ml": _family("anat_body_volume_ml", "body volume (ml)", 1.5, None, (0.0, None),
                                       tol={"abs": 1.0, "rel": 0.02}),
        "anat_air_outside_hu": _family("anat_air_outside_hu", "air outside body (HU)", 1.6, None, (None, None),
                                       tol={"abs": 1.0}),
        "anat_hu_valid_fraction": Output(True, "voxels in [-1024, 3071] HU", unit="fraction", digits=4, rank=1.7,
                                         tolerance={"abs": 0.001}, value_range=(0.0, 1.0)),
    }
    options = (labels_option(), provided_labels_option())
    description = ("Per volume, no paired reference: per label group (run's segmenter) volume in ml and HU "
                   "mean / median / IQR; MAISI's per-organ median-HU check with VISTA3D labels; body volume, median "
                   "HU of the air outside the body, fraction of voxels in [-1024, 3071] HU")

    def protocol_parts(self, ctx: RunContext) -> list[Part]:
        body = self.labels.segmenter(ctx, "threshold")
        return [("anatomy-stats-v1", "per label group: voxel count x voxel volume (ml), HU mean, median and IQR "
                                     "(numpy linear percentiles); MAISI's median-HU ranges (quality_check.py, "
                                     "image_median_statistics.json) for VISTA3D / MAISI organ labels"),
                self.labels.part(ctx, str(self.opts["labels"])),
                (f"body:{body.id}:classes=2:air-median:valid[-1024,3071]",
                 f"body = {body.id}'s 2-class body mask (weight-free, whatever --segmenter is); the median HU outside "
                 "it; the fraction of voxels in [-1024, 3071] HU")]

    def case_values(self, data: CaseData, ctx: RunContext) -> dict[str, float]:
        st = case_stats(self.labels, data, ctx, str(self.opts["labels"]))
        out: dict[str, float] = {}
        flags = []
        for name, g in st["groups"].items():
            out[f"anat_volume_ml[{name}]"] = g["volume_ml"]
            if g["n"]:
                out[f"anat_hu_mean[{name}]"] = g["hu_mean"]
                out[f"anat_hu_median[{name}]"] = g["hu_median"]
                out[f"anat_hu_iqr[{name}]"] = g["hu_q75"] - g["hu_q25"]
                if st["vista3d"] and name in MAISI_MEDIAN_STATISTICS:
                    lo, hi = maisi_range(name)
                    ok = lo <= g["hu_median"] <= hi
                    out[f"anat_hu_plausible[{name}]"] = float(ok)
                    flags.append(ok)
        if flags:
            out["anat_hu_plausible"] = float(np.mean(flags))
        hu = data.volume.array
        body = self.labels.body(data, ctx)
        out["anat_body_volume_ml"] = float(np.count_nonzero(body)) * st["voxel_ml"]
        outside = hu[~body]
        if outside.size:
            out["anat_air_outside_hu"] = float(np.median(outside))
        out["anat_hu_valid_fraction"] = float(np.count_nonzero((hu >= HU_VALID[0]) & (hu <= HU_VALID[1])) / hu.size)
        return out

    def plot_arrays(self, data: CaseData, ctx: RunContext) -> dict[str, np.ndarray]:
        """``anat_hu_bins`` (edges, 16 HU over [-1024, 3072]) and ``anat_hu_hist[g]`` (fraction of the group's
        voxels per bin) for each group present in the volume."""
        try:
            lm = self.labels.label_map(data, ctx)
        except Exception:  # noqa: BLE001 - the histogram is optional
            return {}
        out: dict[str, np.ndarray] = {"anat_hu_bins": HIST_BINS.astype(np.float32)}
        for name, ids in label_groups(lm, str(self.opts["labels"])).items():
            v = data.volume.array[group_mask(lm.labels, ids)]
            if v.size:
                h, _ = np.histogram(np.clip(v, HIST_BINS[0], HIST_BINS[-1] - 1e-3), bins=HIST_BINS)
                out[f"anat_hu_hist[{_safe(name)}]"] = (h / v.size).astype(np.float32)
        return out


@register_metric
class AnatomyDist(LabelledMetric):
    name = "anatomy_dist"
    kind = "distribution"
    table = "anatomy"
    in_default_set = False
    outputs = {
        "anat_ks_volume_ml": Output(False, "KS organ volume", digits=3, rank=2.0, tolerance={"abs": 0.05},
                                    value_range=(0.0, 1.0)),
        "anat_w1_volume_ml": Output(False, "W1 organ volume (ml)", digits=1, rank=2.1,
                                    tolerance={"abs": 1.0, "rel": 0.05}, value_range=(0.0, None)),
        "anat_ks_hu_median": Output(False, "KS organ median HU", digits=3, rank=2.2, tolerance={"abs": 0.05},
                                    value_range=(0.0, 1.0)),
        "anat_w1_hu_median": Output(False, "W1 organ median HU", digits=1, rank=2.3,
                                    tolerance={"abs": 1.0, "rel": 0.05}, value_range=(0.0, None)),
    }
    options = (labels_option(), provided_labels_option())
    description = ("Generated vs reference set, per label group (run's segmenter): 1-D Wasserstein distance and "
                   "Kolmogorov-Smirnov statistic of the organ volumes (ml) and of the organ median HU over cases "
                   "(scipy.stats); the KS columns without a label are the mean over the groups")

    def protocol_parts(self, ctx: RunContext) -> list[Part]:
        return [("anatomy-dist-v1", "per label group: organ volume (ml; absent = 0) and median HU of each volume, "
                                    "generated set vs reference set compared by scipy.stats.wasserstein_distance "
                                    "(1-D W1) and ks_2samp (two-sample KS statistic)"),
                self.labels.part(ctx, str(self.opts["labels"]))]

    def case_state(self, data: CaseData, ctx: RunContext) -> State:
        st = case_stats(self.labels, data, ctx, str(self.opts["labels"]))
        out: State = {}
        for name, g in st["groups"].items():
            out[f"volume_ml:{name}"] = np.array([g["volume_ml"]], dtype=np.float64)
            if g["n"]:
                out[f"hu_median:{name}"] = np.array([g["hu_median"]], dtype=np.float64)
        return out

    def merge(self, states: Iterable[State]) -> State:
        """Concatenation per key (a case without a group's HU adds no value to that key)."""
        parts: dict[str, list[np.ndarray]] = {}
        for s in states:
            for k, v in s.items():
                parts.setdefault(k, []).append(np.asarray(v, dtype=np.float64).ravel())
        return {k: np.concatenate(v) for k, v in parts.items()}

    def compute(self, generated: State, reference: State, ctx: RunContext) -> dict[str, float]:
        return anatomy_distances(generated, reference)

    def sample_info(self, state: State) -> dict[str, int]:
        n = [len(v) for k, v in state.items() if k.startswith("volume_ml:")]
        return {"samples": int(max(n))} if n else {}


def anatomy_distances(generated: State, reference: State) -> dict[str, float]:
    """Functional twin of ``anatomy_dist``: ``{stat}:{group}`` arrays of the two sets -> W1 / KS columns."""
    from scipy.stats import ks_2samp, wasserstein_distance

    out: dict[str, float] = {}
    ks: dict[str, list[float]] = {s: [] for s in DIST_STATS}
    for key in sorted(set(generated) & set(reference)):
        stat, _, group = key.partition(":")
        g, r = np.asarray(generated[key], float), np.asarray(reference[key], float)
        if stat not in DIST_STATS or not g.size or not r.size:
            continue
        out[f"anat_w1_{stat}[{group}]"] = float(wasserstein_distance(g, r))
        k = float(ks_2samp(g, r, method="asymp").statistic)  # the statistic only (the method sets the p-value)
        out[f"anat_ks_{stat}[{group}]"] = k
        ks[stat].append(k)
    for stat, v in ks.items():
        if v:
            out[f"anat_ks_{stat}"] = float(np.mean(v))
    if not out:
        raise ValueError("anatomy_dist: no label group has values in both sets")
    return out


__all__ = ["AnatomyDist", "AnatomyStats", "HU_VALID", "anatomy_distances", "case_stats"]
