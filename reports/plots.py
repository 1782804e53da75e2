"""Seaborn / matplotlib figures of a run, drawn from saved results only (no recomputation):

* ``metrics_bars.png``: one panel per metric, a bar per method with its 95% bootstrap CI;
* ``per_slice_<case>.png``: frame-to-frame mean absolute difference along z (and Dice per axial
  slice when label maps exist) for the chosen case, one line per method;
* ``montage_<case>.png``: axial / coronal / sagittal mid-planes of the reference and each method;
* ``overlay_<case>.png``: label maps (segmenter output or provided masks) over the same planes.

The per-case images come from ``cases/<method>/<case>/_plot.npz`` written by the runner.
"""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import seaborn as sns  # noqa: E402

from trace_bench.results import GT, PROFILE_METRICS, Results, base_metric, column_info, direction  # noqa: E402

from .tables import label, shown_metrics  # noqa: E402

HU_WINDOW = (-1000.0, 1000.0)


def _palette(methods: list[str]) -> dict[str, tuple]:
    cols = sns.color_palette("colorblind", max(len(methods), 3))
    return {m: cols[i % len(cols)] for i, m in enumerate(methods)}


def _save(fig, path: Path) -> Path:
    """PNG written atomically (a reader never sees half an image)."""
    import io

    from trace_bench.results import atomic_write_bytes

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight", metadata={"Software": None})
    plt.close(fig)
    return atomic_write_bytes(path, buf.getvalue())


def metric_bars(res: Results, path: Path) -> Path | None:
    """Bars per method with CI whiskers, one panel per metric (fractions shown in %)."""
    s = res.summary[~res.summary.metric.isin(list(PROFILE_METRICS))]
    metrics = [m for m in shown_metrics(res) if base_metric(m) == m and m not in PROFILE_METRICS]
    if not metrics:
        return None
    methods = [m for m in res.methods if m in set(s.method)]
    pal = _palette(methods)
    ncol = min(4, len(metrics))
    nrow = math.ceil(len(metrics) / ncol)
    sns.set_theme(style="whitegrid", context="paper")
    fig, axes = plt.subplots(nrow, ncol, figsize=(3.3 * ncol, 2.8 * nrow), squeeze=False)
    for ax, metric in zip(axes.flat, metrics):
        d = s[s.metric == metric].set_index("method").reindex([m for m in methods if m in set(s[s.metric == metric].method)])
        info = column_info(metric, res.metrics)
        scale = 100.0 if info is not None and info.unit == "fraction" else 1.0
        vals = d.value.to_numpy(dtype=float) * scale
        lo = d.ci_low.to_numpy(dtype=float) * scale
        hi = d.ci_high.to_numpy(dtype=float) * scale
        x = np.arange(len(d))
        finite = np.where(np.isfinite(vals), vals, np.nan)
        sns.barplot(x=list(d.index), y=finite, hue=list(d.index), palette=[pal[m] for m in d.index], ax=ax,
                    legend=False, errorbar=None)
        ok = np.isfinite(lo) & np.isfinite(hi) & np.isfinite(vals)
        if ok.any():
            ax.errorbar(x[ok], vals[ok], yerr=np.clip(np.vstack([vals[ok] - lo[ok], hi[ok] - vals[ok]]), 0, None), fmt="none",
                        ecolor="black", capsize=3, lw=1)
        hib = direction(metric, res.metrics)
        arrow = "" if hib is None else (" ↑" if hib else " ↓")
        ax.set_title(label(metric, res.metrics) + arrow, fontsize=9)
        ax.set_xlabel("")
        ax.set_ylabel("%" if scale == 100.0 else (info.unit if info is not None and info.unit in ("mm",) else ""))
        ax.tick_params(axis="x", labelrotation=30, labelsize=7)
        if scale == 100.0 and np.isfinite(finite).any():
            top = np.nanmax(np.where(ok, hi, vals))
            bottom = np.nanmin(np.where(ok, lo, vals))
            pad = max(0.5, 0.15 * (top - bottom))
            ax.set_ylim(max(0.0, bottom - pad), min(100.0, top + pad) if top + pad > 0 else 1.0)
    for ax in list(axes.flat)[len(metrics):]:
        ax.axis("off")
    fig.suptitle("Mean over cases with 95% bootstrap CI", fontsize=10)
    fig.tight_layout()
    return _save(fig, path)


def load_artifacts(out: Path, methods: list[str], case_id: str) -> dict[str, dict[str, np.ndarray]]:
    from trace_bench.results.layout import PLOT_ARTIFACT, case_dir

    arts: dict[str, dict[str, np.ndarray]] = {}
    for m in methods:
        p = case_dir(out, m, case_id) / f"{PLOT_ARTIFACT}.npz"
        if p.is_file():
            with np.load(p, allow_pickle=False) as z:
                arts[m] = {k: z[k] for k in z.files if k != "__key__"}
    return arts


def per_slice_curves(arts: dict[str, dict[str, np.ndarray]], case_id: str, path: Path) -> Path | None:
    """Frame-to-frame mean |f[i+1] - f[i]| (grey levels of the frame protocol) along z in mm, and
    Dice of the label maps per axial slice where both a method's and the reference's maps exist."""
    if not arts:
        return None
    has_dice = any("dice_z" in a for a in arts.values())
    sns.set_theme(style="whitegrid", context="paper")
    fig, axes = plt.subplots(1, 2 if has_dice else 1, figsize=(11 if has_dice else 6.5, 3.4), squeeze=False)
    pal = _palette(list(arts))
    ax = axes[0, 0]
    for m, a in arts.items():
        mae = a["flicker_mae"]
        if mae.size == 0:
            continue
        z = (np.arange(mae.size) + 0.5) * float(a["spacing"][0])
        ax.plot(z, mae, label=m, color=pal[m], lw=1.6 if m == GT else 1.1, ls="-" if m == GT else "--" if "interp" in m else "-")
    ax.set_xlabel("z (mm, inferior → superior), between slices i and i+1")
    ax.set_ylabel("mean |frame[i+1] − frame[i]| (0–255)")
    ax.set_title(f"Slice-to-slice change, case {case_id}")
    ax.legend(fontsize=7)
    if has_dice:
        ax2 = axes[0, 1]
        for m, a in arts.items():
            if "dice_z" in a:
                z = np.arange(a["dice_z"].size) * float(a["spacing"][0])
                ax2.plot(z, a["dice_z"], label=m, color=pal[m], lw=1.1)
        ax2.set_ylim(0, 1.02)
        ax2.set_xlabel("z (mm)")
        ax2.set_ylabel("Dice (all labels > 0) per axial slice")
        ax2.set_title("Label-map agreement with the reference per slice")
        ax2.legend(fontsize=7)
    fig.tight_layout()
    return _save(fig, path)


def _show(ax, img: np.ndarray, view: str, spacing: np.ndarray, cmap="gray", **kw) -> None:
    sz, sy, sx = (float(v) for v in spacing)
    if view == "axial":
        aspect = sy / sx
        data = img
    else:  # rows = z; flip so superior is at the top
        data = img[::-1]
        aspect = sz / (sy if view == "sagittal" else sx)
    ax.imshow(data.astype(np.float32), cmap=cmap, aspect=aspect, interpolation="nearest", **kw)
    ax.set_xticks([])
    ax.set_yticks([])


def montage(arts: dict[str, dict[str, np.ndarray]], case_id: str, path: Path) -> Path | None:
    """Rows: reference then methods; columns: axial, coronal, sagittal mid-planes (HU window [-1000, 1000])."""
    if not arts:
        return None
    views = ("axial", "coronal", "sagittal")
    fig, axes = plt.subplots(len(arts), 3, figsize=(9, 3.0 * len(arts)), squeeze=False)
    for r, (m, a) in enumerate(arts.items()):
        for c, v in enumerate(views):
            _show(axes[r, c], a[f"view_{v}"], v, a["spacing"], vmin=HU_WINDOW[0], vmax=HU_WINDOW[1])
            if r == 0:
                axes[r, c].set_title(v, fontsize=10)
        axes[r, 0].set_ylabel("Reference (GT)" if m == GT else m, fontsize=10)
    fig.suptitle(f"Case {case_id}: mid-planes, HU window [-1000, 1000], radiological view", fontsize=10)
    fig.tight_layout()
    return _save(fig, path)


def overlay(arts: dict[str, dict[str, np.ndarray]], case_id: str, path: Path) -> Path | None:
    """Label maps over the mid-planes for every volume of the case that has one."""
    with_labels = {m: a for m, a in arts.items() if "labels_axial" in a}
    if not with_labels:
        return None
    views = ("axial", "coronal", "sagittal")
    fig, axes = plt.subplots(len(with_labels), 3, figsize=(9, 3.0 * len(with_labels)), squeeze=False)
    n_labels = int(max(a[f"labels_{v}"].max() for a in with_labels.values() for v in views))
    cmap = matplotlib.colors.ListedColormap(sns.color_palette("bright", max(n_labels, 1)))
    for r, (m, a) in enumerate(with_labels.items()):
        for c, v in enumerate(views):
            _show(axes[r, c], a[f"view_{v}"], v, a["spacing"], vmin=HU_WINDOW[0], vmax=HU_WINDOW[1])
            lab = a[f"labels_{v}"].astype(np.float32)
            masked = np.ma.masked_where(lab == 0, lab)
            _show(axes[r, c], masked, v, a["spacing"], cmap=cmap, alpha=0.45, vmin=0.5, vmax=max(n_labels, 1) + 0.5)
            if r == 0:
                axes[r, c].set_title(v, fontsize=10)
        axes[r, 0].set_ylabel("Reference (GT)" if m == GT else m, fontsize=10)
    fig.suptitle(f"Case {case_id}: label maps (colour = label id) over the mid-planes", fontsize=10)
    fig.tight_layout()
    return _save(fig, path)


def make_plots(res: Results, plot_case: str | None) -> dict[str, Path]:
    """Draw every figure into ``OUT/plots``; returns {kind: path} for the figures drawn."""
    from trace_bench.results.layout import safe_name

    out = res.out / "plots"
    made: dict[str, Path] = {}
    p = metric_bars(res, out / "metrics_bars.png")
    if p:
        made["bars"] = p
    if plot_case:
        arts = load_artifacts(res.out, res.methods, plot_case)
        name = safe_name(plot_case)
        for kind, fn in (("per_slice", per_slice_curves), ("montage", montage), ("overlay", overlay)):
            p = fn(arts, plot_case, out / f"{kind}_{name}.png")
            if p:
                made[kind] = p
    return made
