"""The utility section of a report: tables (the project's table model) and one plot, from ``utility.json``.

:func:`render_utility` is the one call a report needs: it reads ``OUT/utility/utility.json`` and returns
the tables (:class:`trace_bench.results.table_model.Table`, rendered to Markdown / LaTeX / HTML by that
module, which escapes every string) and the PNG it wrote. Tables:

* ``utility_seg``, "Dice on real test set: trained on real / on METHOD / on real+METHOD": one row per
  training arm (``real``, then per method ``METHOD`` and ``real + METHOD``), columns Dice (mean over test
  cases, labels and seeds, with its interval), the paired difference to the real arm (interval,
  sign-flip p), HD95 and its difference, the SD of the arm's Dice over seeds, the training pairs;
* ``utility_probe``: per arm the mean AUROC over labels, the mean difference to the real-trained probe
  and how many labels' difference intervals lie above / below 0.

Imports only :mod:`trace_bench.results` (the file names: :mod:`trace_bench.results.utility_layout`), the
standard library and Matplotlib (no torch, no run core): :func:`reports.render_report` adds the section when
``OUT/utility/`` exists, and ``trace-bench utility`` draws the plot through it.
"""

from __future__ import annotations

import io
import json
import math
from pathlib import Path
from typing import Any

from trace_bench.results import atomic_write_bytes
from trace_bench.results import utility_layout as layout
from trace_bench.results.escape import code, literal, plot_text
from trace_bench.results.table_model import DASH, Cell, Column, Row, Table

SEG_TITLE = "Dice on real test set: trained on real / on METHOD / on real+METHOD"
PROBE_TITLE = "AUROC on real test set: linear probe trained on real / on METHOD / on real+METHOD"


def load_utility(out: str | Path) -> dict[str, Any] | None:
    """``OUT/utility/utility.json`` as a dict, or None when the run has no utility results."""
    p = layout.utility_dir(out) / layout.SUMMARY_JSON
    if not p.is_file():
        return None
    doc = json.loads(p.read_text(encoding="utf-8"))
    return doc if isinstance(doc, dict) and doc.get("schema") == layout.SCHEMA else None


def _num(v: Any) -> float:
    return float("nan") if v is None else float(v)


def _fmt(v: Any, digits: int, scale: float = 1.0, suffix: str = "", sign: bool = False) -> str:
    x = _num(v)
    if math.isnan(x):
        return DASH
    if math.isinf(x):
        return "∞" if x > 0 else "-∞"
    txt = f"{x * scale:{'+' if sign else ''}.{digits}f}"
    if float(txt) == 0:
        txt = f"{0:.{digits}f}"
    return txt + suffix


def _ci(lo: Any, hi: Any, digits: int, scale: float = 1.0, suffix: str = "", sign: bool = False) -> str:
    if math.isnan(_num(lo)) or math.isnan(_num(hi)):
        return ""
    return f"[{_fmt(lo, digits, scale, suffix, sign)}, {_fmt(hi, digits, scale, suffix, sign)}]"


def _p(v: Any) -> str:
    x = _num(v)
    return DASH if math.isnan(x) else (f"{x:.3f}" if x >= 0.001 else "<0.001")


def seg_table(doc: dict[str, Any]) -> Table | None:
    """The seg-tstr table (module docstring), or None when seg-tstr did not run."""
    seg = doc.get("seg")
    if not seg:
        return None
    summ = {(r["arm"], r["method"], r["label"], r["metric"]): r for r in seg["summary"]}
    pair = {(r["arm"], r["method"], r["label"], r["metric"]): r for r in seg["paired"]}
    cols = [Column("dice", "Dice", "↑", unit="fraction"), Column("delta_dice", "Dice diff. vs real (pp)", "↑"),
            Column("p", "p (sign-flip)"), Column("hd95", "HD95 (mm)", "↓", unit="mm"),
            Column("delta_hd95", "HD95 diff. vs real (mm)", "↓", unit="mm"),
            Column("seed_sd", "Dice SD over seeds (pp)"),
            Column("n_train", "Training pairs")]
    rows = []
    for a in seg["arms"]:
        k = (a["arm"], a["method"] or "", "mean")
        d, h = summ.get((*k, "dice"), {}), summ.get((*k, "hd95"), {})
        pd_, ph = pair.get((*k, "dice"), {}), pair.get((*k, "hd95"), {})
        cells = {
            "dice": Cell(_fmt(d.get("mean"), 2, 100, "%"), _ci(d.get("ci_low"), d.get("ci_high"), 2, 100, "%"),
                         _num(d.get("mean"))),
            "delta_dice": Cell(_fmt(pd_.get("delta"), 2, 100, sign=True) if pd_ else DASH,
                               _ci(pd_.get("ci_low"), pd_.get("ci_high"), 2, 100, sign=True) if pd_ else "",
                               _num(pd_.get("delta"))),
            "p": Cell(_p(pd_.get("p_signflip")) if pd_ else DASH, value=_num(pd_.get("p_signflip"))),
            "hd95": Cell(_fmt(h.get("mean"), 2), _ci(h.get("ci_low"), h.get("ci_high"), 2), _num(h.get("mean"))),
            "delta_hd95": Cell(_fmt(ph.get("delta"), 2, sign=True) if ph else DASH,
                               _ci(ph.get("ci_low"), ph.get("ci_high"), 2, sign=True) if ph else "",
                               _num(ph.get("delta"))),
            "seed_sd": Cell(_fmt(d.get("seed_sd"), 2, 100), value=_num(d.get("seed_sd"))),
            "n_train": Cell(str(a["n_train"]), value=float(a["n_train"])),
        }
        rows.append(Row(a["name"], cells, rule_below=a["arm"] == "real"))
    for col, best in (("dice", max), ("hd95", min)):
        vals = [r.cells[col].value for r in rows if not math.isnan(r.cells[col].value)]
        if len(vals) > 1:
            b = best(vals)
            for r in rows:
                r.cells[col].best = r.cells[col].value == b
    conf = f"{seg['declaration']['confidence']:.0%}"
    notes = [
        f"Protocol {code(seg['protocol'])} (declaration sha256 {code(seg['sha256'][:16])}): a "
        f"{literal(seg['network'])} trained from scratch for {seg['declaration']['iterations']} steps on each arm's "
        f"(volume, label map) pairs; seeds {literal(', '.join(map(str, seg['seeds'])))}; labels "
        f"{literal(', '.join(map(str, seg['classes'])))}.",
        f"Test set: {seg['n_test']} real cases ({literal(seg['test_rule'])}), never used for training. Dice and "
        f"HD95: mean over test cases of each case's mean over labels and seeds [{conf} percentile bootstrap "
        f"interval]; diff.: paired difference to the real-trained network on the same test cases [{conf} "
        "studentised bootstrap interval]; p: sign-flip test of the mean difference (exact up to 16 cases).",
        "How to read: a generator's volumes are useful for this task when a network trained on them comes close "
        "to one trained on real volumes (a difference near 0) or when adding them to the real ones helps "
        "(real + METHOD above real). It measures usefulness for one task, not realism: a method can score well "
        "on FID and badly here, and the reverse.",
    ]
    return Table("utility_seg", SEG_TITLE, cols, rows, notes=notes, stub="Trained on")


def probe_table(doc: dict[str, Any]) -> Table | None:
    """The probe table (module docstring), or None when the probe did not run."""
    pr = doc.get("probe")
    if not pr:
        return None
    cols = [Column("auroc", "Mean AUROC", "↑"), Column("delta", "Mean AUROC diff. vs real", "↑"),
            Column("better", "Labels above real"), Column("worse", "Labels below real"),
            Column("n_train", "Training volumes")]
    rows = []
    for m in pr["macro"]:
        n = m["n_labels"]
        cells = {"auroc": Cell(_fmt(m["mean_auroc"], 3), value=_num(m["mean_auroc"])),
                 "delta": Cell(_fmt(m.get("mean_delta"), 3, sign=True) if m["arm"] != "real" else DASH,
                               value=_num(m.get("mean_delta"))),
                 "better": Cell(f"{m['n_better']} / {n}" if m["arm"] != "real" else DASH),
                 "worse": Cell(f"{m['n_worse']} / {n}" if m["arm"] != "real" else DASH),
                 "n_train": Cell(str(m["n_train"]), value=float(m["n_train"]))}
        rows.append(Row(m["name"], cells, rule_below=m["arm"] == "real"))
    decl = pr["declaration"]
    notes = [
        f"Protocol {code(pr['protocol'])} on frozen features {code(pr['features']['protocol'])} "
        f"({literal(pr['features']['space'])}); {len(pr['labels'])} labels; {pr['n_test']} real test volumes "
        f"({literal(pr['test_rule'])}).",
        f"Per label: AUROC of an L2 logistic regression whose C is chosen by {decl['folds']}-fold AUROC inside the "
        f"training arm; the mean is over the labels a probe could be fitted for. Above / below real: labels whose "
        f"{decl['confidence']:.0%} paired bootstrap interval of the AUROC difference lies above / below 0 "
        f"(per-label values and intervals: {code(layout.PROBE_AUROC)}).",
    ]
    return Table("utility_probe", PROBE_TITLE, cols, rows, notes=notes, stub="Trained on")


def utility_tables(doc: dict[str, Any]) -> list[Table]:
    return [t for t in (seg_table(doc), probe_table(doc)) if t is not None]


def utility_plot(doc: dict[str, Any], path: str | Path) -> Path | None:
    """Bars of each arm's Dice (and mean AUROC) with intervals, the real arm as a band; the PNG written."""
    from matplotlib.figure import Figure

    panels = []
    seg = doc.get("seg")
    if seg:
        summ = {(r["arm"], r["method"]): r for r in seg["summary"] if r["label"] == "mean" and r["metric"] == "dice"}
        panels.append(("Dice on the real test set (mean over labels)", summ, 100.0, "Dice (%)"))
    pr = doc.get("probe")
    if pr:
        macro = {(m["arm"], m["method"]): {"mean": m["mean_auroc"], "ci_low": None, "ci_high": None}
                 for m in pr["macro"]}
        panels.append(("Probe: mean AUROC on the real test volumes", macro, 1.0, "AUROC"))
    if not panels:
        return None
    fig = Figure(figsize=(5.5 * len(panels), 3.6))
    for i, (title, by, scale, ylabel) in enumerate(panels):
        ax = fig.add_subplot(1, len(panels), i + 1)
        methods = sorted({m for a, m in by if m})
        real = by.get(("real", ""), {})
        rv = _num(real.get("mean")) * scale
        if not math.isnan(rv):
            ax.axhline(rv, color="0.3", lw=1.2, label="trained on real")
            lo, hi = _num(real.get("ci_low")) * scale, _num(real.get("ci_high")) * scale
            if not (math.isnan(lo) or math.isnan(hi)):
                ax.axhspan(lo, hi, color="0.85", zorder=0)
        width = 0.38
        for j, (arm, colour, lab) in enumerate((("method", "#0072B2", "on METHOD"),
                                                ("real+method", "#E69F00", "on real + METHOD"))):
            xs, ys, err = [], [], [[], []]
            for k, m in enumerate(methods):
                r = by.get((arm, m))
                if r is None or math.isnan(_num(r.get("mean"))):
                    continue
                v = _num(r["mean"]) * scale
                lo, hi = _num(r.get("ci_low")) * scale, _num(r.get("ci_high")) * scale
                xs.append(k + (j - 0.5) * width)
                ys.append(v)
                err[0].append(0.0 if math.isnan(lo) else max(0.0, v - lo))
                err[1].append(0.0 if math.isnan(hi) else max(0.0, hi - v))
            if xs:
                ax.bar(xs, ys, width, color=colour, label=lab, yerr=err, capsize=3)
        ax.set_xticks(range(len(methods)), [plot_text(m) for m in methods], rotation=20, ha="right")
        ax.set_ylabel(ylabel)
        ax.set_title(title, fontsize=9)
        ax.legend(fontsize=7, loc="best", framealpha=0.9)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, metadata={"Software": None})
    return atomic_write_bytes(path, buf.getvalue())


def render_utility(out: str | Path, *, plot: bool = True) -> tuple[list[Table], list[Path]]:
    """The utility tables of a finished output folder and the plot written to ``OUT/utility/utility.png``
    (``([], [])`` when the folder has no utility results)."""
    doc = load_utility(out)
    if doc is None:
        return [], []
    pngs = []
    if plot:
        p = utility_plot(doc, layout.utility_dir(out) / layout.PLOT)
        if p is not None:
            pngs.append(p)
    return utility_tables(doc), pngs
