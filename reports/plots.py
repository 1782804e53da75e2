"""Seaborn / matplotlib figures of a run, drawn from saved results only (no recomputation):

* ``metrics_bars.png``: one panel per metric in the order of the tables, a mark per method with its
  95% interval. Honest axes: distances and counts (FID, FVD, HD95, ...) are bars whose axis starts at
  0; scores stored as fractions (VBench dimensions, Dice, shown in %) are dots with whiskers on an
  axis zoomed to the data, labelled "axis not from 0", with GT as a dotted line (0% is no meaningful
  baseline for them, and a truncated bar would exaggerate differences);
* ``per_slice_<case>.png``: frame-to-frame mean absolute difference along z (and Dice per axial
  slice when label maps exist) for the chosen case, one line per method;
* ``montage_<case>.png``: axial / coronal / sagittal mid-planes of the reference and each method;
* ``overlay_<case>.png``: label maps (segmenter output or provided masks) over the same planes.

The per-case images come from ``cases/<method>/<case>/_plot.npz`` written by the runner for its
plot case, completed for other cases by arrays read again from the inputs
(``trace_bench.report_inputs``, passed in by the caller).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from trace_bench.results import (
    GT,
    PROFILE_METRICS,
    Results,
    base_metric,
    column_info,
)
from trace_bench.results.escape import plot_text

from .tables import TABLES, arrow, label, table_columns

HU_WINDOW = (-1000.0, 1000.0)


def _mpl() -> tuple[Any, Any, Any]:
    """``(matplotlib, pyplot, seaborn)`` on the Agg backend, imported when a figure is drawn (about 2 s
    of CPU: nothing pays it that only reads plot arrays or renders tables)."""
    import matplotlib

    matplotlib.use("Agg")  # a no-op once set
    import matplotlib.pyplot as plt
    import seaborn as sns

    return matplotlib, plt, sns


def _palette(methods: list[str]) -> dict[str, tuple]:
    cols = _mpl()[2].color_palette("colorblind", max(len(methods), 3))
    return {m: cols[i % len(cols)] for i, m in enumerate(methods)}


def _save(fig, path: Path) -> Path:
    """PNG written atomically (a reader never sees half an image)."""
    import io

    from trace_bench.results import atomic_write_bytes

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight", metadata={"Software": None})
    _mpl()[1].close(fig)
    return atomic_write_bytes(path, buf.getvalue())


def panel_metrics(res: Results) -> list[str]:
    """The metrics drawn as panels, in the order of the tables (Table 1 then Table 2, each by the
    metrics' declared ``rank``; per-class and profile columns are left out)."""
    cols = [c for key, _, _ in TABLES for c in table_columns(res, key) if key != "table1b"]
    return [c for c in cols if c not in PROFILE_METRICS and c != "vram" and base_metric(c) == c
            and c in set(res.summary.metric)]


def panel_style(metric: str, res: Results) -> str:
    """"dot" for scores shown as percentages (fractions: 0 is no meaningful reference, the axis is
    zoomed to the data and says so), "bar" for everything else (distances, mm, counts: bars from 0)."""
    info = column_info(metric, res.metrics)
    return "dot" if info is not None and info.unit == "fraction" else "bar"


def metric_figure(res: Results):
    """The summary figure: one panel per metric in table order, a mark per method with its 95%
    interval. Returns ``(fig, [(metric, style, ax), ...])`` or ``(None, [])`` when nothing is shown.

    Honest axes: a bar panel's y-axis always starts at 0 (a bar's length is its value); a dot panel
    (fractions, shown in %) zooms to the data and its y-label says "axis not from 0"."""
    s = res.summary
    metrics = panel_metrics(res)
    if not metrics:
        return None, []
    methods = [m for m in res.methods if m in set(s.method)]
    _, plt, sns = _mpl()
    pal = _palette(methods)
    ncol = min(4, len(metrics))
    nrow = math.ceil(len(metrics) / ncol)
    sns.set_theme(style="whitegrid", context="paper")
    fig, axes = plt.subplots(nrow, ncol, figsize=(3.3 * ncol, 2.9 * nrow), squeeze=False)
    panels = []
    for ax, metric in zip(axes.flat, metrics):
        d = s[s.metric == metric].set_index("method")
        d = d.reindex([m for m in methods if m in set(d.index)])
        info = column_info(metric, res.metrics)
        style = panel_style(metric, res)
        scale = 100.0 if info is not None and info.unit == "fraction" else (1 / 2**30 if info is not None and info.unit == "bytes" else 1.0)
        from .intervals import shown  # the printed value and interval (ranges, n too small): as the tables

        sh = [shown(metric, r.value, r.ci_low, r.ci_high, res.metrics, n=r.n, ci_method=r.ci_method)
              for r in d.itertuples()]
        vals = np.array([x.value for x in sh], dtype=float) * scale
        lo = np.array([x.interval[0] if x.interval else np.nan for x in sh], dtype=float) * scale
        hi = np.array([x.interval[1] if x.interval else np.nan for x in sh], dtype=float) * scale
        x = np.arange(len(d))
        finite = np.isfinite(vals)
        colours = [pal[m] for m in d.index]
        if style == "bar":
            ax.bar(x[finite], vals[finite], color=[c for c, f in zip(colours, finite) if f], width=0.7)
        else:
            ax.scatter(x[finite], vals[finite], color=[c for c, f in zip(colours, finite) if f], s=28, zorder=3)
        ok = np.isfinite(lo) & np.isfinite(hi) & finite
        if ok.any():
            ax.errorbar(x[ok], vals[ok], yerr=np.clip(np.vstack([vals[ok] - lo[ok], hi[ok] - vals[ok]]), 0, None),
                        fmt="none", ecolor="black", capsize=3, lw=1, zorder=2)
        if GT in d.index and style == "dot" and np.isfinite(vals[list(d.index).index(GT)]):
            ax.axhline(vals[list(d.index).index(GT)], color="grey", lw=0.8, ls=":", zorder=1)
        ax.set_xticks(x, [plot_text(m) for m in d.index])
        mark = arrow(metric, res)  # ↑, ↓ or ≈GT (closest to GT is best), as the tables
        ax.set_title(plot_text(label(metric, res.metrics)) + (" " + mark if mark else ""), fontsize=9)
        unit = "%" if scale == 100.0 else ("GB" if info is not None and info.unit == "bytes" else
                                           "mm" if info is not None and info.unit == "mm" else "")
        ax.set_ylabel((unit + " " if unit else "") + ("(axis not from 0)" if style == "dot" else ""), fontsize=8)
        ax.tick_params(axis="x", labelrotation=30, labelsize=7)
        if style == "bar":
            top = np.nanmax(np.where(ok, hi, vals)) if finite.any() else 1.0
            bottom = np.nanmin(np.where(ok, lo, vals)) if finite.any() else 0.0
            ax.set_ylim(min(0.0, bottom * 1.08), max(0.0, top * 1.08) or 1.0)
        elif finite.any():
            top = np.nanmax(np.where(ok, hi, vals))
            bottom = np.nanmin(np.where(ok, lo, vals))
            pad = max(0.05 * (top - bottom), 0.1)
            ax.set_ylim(bottom - pad, top + pad)
        panels.append((metric, style, ax))
    for ax in list(axes.flat)[len(metrics):]:
        ax.axis("off")
    fig.suptitle("Per method: value with its 95% interval (bars from 0; dots: % scores, axis zoomed, dotted = GT)",
                 fontsize=10)
    fig.tight_layout()
    return fig, panels


def metric_bars(res: Results, path: Path) -> Path | None:
    """``metrics_bars.png``: :func:`metric_figure` saved."""
    fig, _ = metric_figure(res)
    return None if fig is None else _save(fig, path)


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
    """Frame-to-frame mean ``|f[i+1] - f[i]|`` (grey levels of the frame protocol) along z in mm, and
    Dice of the label maps per axial slice where both a method's and the reference's maps exist."""
    if not arts:
        return None
    has_dice = any("dice_z" in a for a in arts.values())
    _, plt, sns = _mpl()
    sns.set_theme(style="whitegrid", context="paper")
    fig, axes = plt.subplots(1, 2 if has_dice else 1, figsize=(11 if has_dice else 6.5, 3.4), squeeze=False)
    pal = _palette(list(arts))
    ax = axes[0, 0]
    for m, a in arts.items():
        mae = a["flicker_mae"]
        if mae.size == 0:
            continue
        z = (np.arange(mae.size) + 0.5) * float(a["spacing"][0])
        ax.plot(z, mae, label=plot_text(m), color=pal[m], lw=1.6 if m == GT else 1.1, ls="-" if m == GT else "--" if "interp" in m else "-")
    ax.set_xlabel("z (mm, inferior → superior), between slices i and i+1")
    ax.set_ylabel("mean |frame[i+1] − frame[i]| (0–255)")
    ax.set_title(f"Slice-to-slice change, case {plot_text(case_id)}")
    ax.legend(fontsize=7)
    if has_dice:
        ax2 = axes[0, 1]
        lows = []
        for m, a in arts.items():
            if "dice_z" in a and m != GT and np.isfinite(a["dice_z"]).any():
                z = np.arange(a["dice_z"].size) * float(a["spacing"][0])
                ax2.plot(z, a["dice_z"], label=plot_text(m), color=pal[m], lw=1.1, marker=".", ms=3)
                lows.append(float(np.nanmin(a["dice_z"])))
        low = min(lows) if lows else 0.0
        ax2.set_ylim(max(0.0, low - 0.05 * (1.02 - low) - 0.01), 1.01)
        ax2.set_xlabel("z (mm, inferior → superior)")
        ax2.set_ylabel("Dice per axial slice (labels > 0)" + (" — axis zoomed" if low > 0.05 else ""))
        ax2.set_title("Label-map agreement with the reference, per slice\n(gaps: no foreground in either map)",
                      fontsize=9)
        if lows:
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
    plt = _mpl()[1]
    fig, axes = plt.subplots(len(arts), 3, figsize=(9, 3.0 * len(arts)), squeeze=False)
    for r, (m, a) in enumerate(arts.items()):
        for c, v in enumerate(views):
            _show(axes[r, c], a[f"view_{v}"], v, a["spacing"], vmin=HU_WINDOW[0], vmax=HU_WINDOW[1])
            if r == 0:
                axes[r, c].set_title(v, fontsize=10)
        axes[r, 0].set_ylabel("Reference (GT)" if m == GT else plot_text(m), fontsize=10)
    fig.suptitle(f"Case {plot_text(case_id)}: mid-planes, HU window [-1000, 1000], radiological view", fontsize=10)
    fig.tight_layout()
    return _save(fig, path)


def overlay(arts: dict[str, dict[str, np.ndarray]], case_id: str, path: Path) -> Path | None:
    """Label maps over the mid-planes for every volume of the case that has one."""
    with_labels = {m: a for m, a in arts.items() if "labels_axial" in a}
    if not with_labels:
        return None
    views = ("axial", "coronal", "sagittal")
    matplotlib, plt, sns = _mpl()
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
        axes[r, 0].set_ylabel("Reference (GT)" if m == GT else plot_text(m), fontsize=10)
    fig.suptitle(f"Case {plot_text(case_id)}: label maps (colour = label id) over the mid-planes", fontsize=10)
    fig.tight_layout()
    return _save(fig, path)


def case_figures(arts: dict[str, dict[str, np.ndarray]], case_id: str, folder: Path) -> dict[str, Path]:
    """Per-slice curves, montage and overlay of one case into ``folder``; returns {kind: path}."""
    from trace_bench.results.layout import safe_name

    made: dict[str, Path] = {}
    name = safe_name(case_id)
    for kind, fn in (("per_slice", per_slice_curves), ("montage", montage), ("overlay", overlay)):
        p = fn(arts, case_id, folder / f"{kind}_{name}.png")
        if p:
            made[f"{kind}:{case_id}"] = p
    return made


def case_arts(res: Results, case_id: str, extra: dict[str, dict[str, np.ndarray]] | None = None
              ) -> dict[str, dict[str, np.ndarray]]:
    """The plot arrays of a case: the run's ``_plot.npz`` where it exists, completed (and extended
    with the viewer's ``stack`` arrays) by ``extra`` (read again from the inputs), in method order."""
    arts = load_artifacts(res.out, res.methods, case_id)
    for m, a in (extra or {}).items():
        arts[m] = {**a, **arts[m]} if m in arts else dict(a)
    order = {m: i for i, m in enumerate(res.methods)}
    return dict(sorted(arts.items(), key=lambda kv: order.get(kv[0], len(order))))


def make_plots(res: Results, plot_cases: list[str] | str | None,
               extra: dict[str, dict[str, dict[str, np.ndarray]]] | None = None) -> dict[str, Path]:
    """Draw every figure into ``OUT/plots``: the summary panels and, per plot case, per-slice curves,
    montage and overlay. Returns {kind: path} ("bars", "montage:<case>", ...)."""
    if isinstance(plot_cases, str):
        plot_cases = [plot_cases]
    out = res.out / "plots"
    made: dict[str, Path] = {}
    p = metric_bars(res, out / "metrics_bars.png")
    if p:
        made["bars"] = p
    for case in plot_cases or []:
        made.update(case_figures(case_arts(res, case, (extra or {}).get(case)), case, out))
    return made
