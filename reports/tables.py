"""Table 1 / Table 2 of the TRACE paper from a run's ``summary.csv``, as
:class:`~trace_bench.results.table_model.Table` (rendered by :mod:`trace_bench.results.table_model`:
Markdown, LaTeX booktabs, HTML) and as wide CSV in stored units.

Layout follows the paper: Table 1 = six VBench dimensions, JI / DC / 95HD, FPS, Train/Infer VRAM;
Table 2 = FID, FVD (I3D), CLIP score. Rows are methods (``GT`` first, pinned as the reference row),
cells the mean over cases with the value and interval :mod:`reports.intervals` allows (footnote marks for
clipped, heavy-tailed or out-of-range numbers, a dash where n is too small); marks follow each
column's declared rule (↑, ↓, ``≈GT`` = closest to GT is best); the best non-GT value of a column is
bold (FPS / memory only among GPU measurements). Fractions are stored as fractions and shown as
percentages. A distribution metric's ``<column>_half`` column (half vs half, with the GT/GT floor) stands
beside its full-sample column, labelled, ranked and directed as it. The metrics that declare
``table = "anatomy"`` get tables of their own (:data:`ANATOMY_TABLES`): whole-volume columns with methods as
rows, and per label the organ statistics and the generated-vs-reference distances, grouped by label. The
paper's own numbers (``reports/published``) are rendered as separate tables labelled "as published".
"""

from __future__ import annotations

import csv
import io
import math
import re
from dataclasses import replace
from importlib import resources
from typing import Any

from trace_bench.results import (
    GT,
    HALF_SUFFIX,
    PROFILE_CASE,
    MetricInfo,
    Results,
    base_metric,
    column_info,
    half_base,
)
from trace_bench.results.escape import literal
from trace_bench.results.files import csv_text
from trace_bench.results.table_model import (
    DASH,
    Cell,
    Column,
    Row,
    Table,
    to_latex,
    to_markdown,
)

from .intervals import MARK_NOTES, MIN_INTERVAL_N, N_TOO_SMALL, shown

__all__ = [
    "ANATOMY_TABLES",
    "CLOSEST_ARROW",
    "PER_LABEL_TABLES",
    "PUBLISHED_LABELS",
    "TABLES",
    "Table",
    "arrow",
    "build_table",
    "build_tables",
    "fmt_value",
    "label",
    "notes_once",
    "profile_devices",
    "published_tables",
    "table_columns",
    "table_of",
    "to_csv",
    "to_latex",
    "to_markdown",
]

#: headers of the paper's own columns, for the "as published" tables (our columns carry their own
#: labels in metrics.json, declared by each metric)
PUBLISHED_LABELS = {
    "subject_consistency": "Subject Consistency", "background_consistency": "Background Consistency",
    "temporal_flickering": "Temporal Flickering", "motion_smoothness": "Motion Smoothness",
    "imaging_quality": "Imaging Quality", "overall_consistency": "Overall Consistency",
    "jaccard": "JI", "dice": "DC", "hd95": "95HD (mm)", "fps": "FPS", "vram": "Train/Infer VRAM",
    "fid": "FID", "fvd": "FVD (I3D)", "clip_score": "CLIP", "out": "Out",
}


def info_of(metric: str, infos: dict[str, MetricInfo] | None = None) -> MetricInfo | None:
    """A column's info: its own (``metrics.json``), its family's (``dice[lungs]``), and for a half-vs-half
    column (``fid_half``) its full-sample column's."""
    info = column_info(metric, infos or {})
    hb = half_base(metric)
    if info is None and hb is not None:
        info = column_info(hb, infos or {})
    return info


def label(metric: str, infos: dict[str, MetricInfo] | None = None) -> str:
    """Column header: the label its metric declared (per-class columns: family label + ``[class]``;
    half-vs-half columns: their full-sample column's label + " (half vs half)")."""
    hb = half_base(metric)
    if hb is not None:
        return f"{label(hb, infos)} (half vs half)"
    info = column_info(metric, infos or {})
    if info is not None and info.label:
        b = base_metric(metric)
        if b != metric and (infos or {}).get(metric) is None:
            return f"{info.label.replace(' (mm)', '')}{metric[len(b):]}"
        return info.label
    return PUBLISHED_LABELS.get(metric, metric)


def fmt_value(metric: str, v: float | None, infos: dict[str, MetricInfo] | None = None) -> str:
    """Display text of a value in its table unit (percent for fractions, GB for bytes)."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return DASH
    if isinstance(v, float) and math.isinf(v):
        return "∞" if v > 0 else "-∞"
    info = info_of(metric, infos)
    unit, digits = (info.unit, info.digits) if info is not None else ("", 3)
    if unit == "fraction":
        return f"{100 * v:.2f}%"
    if unit == "bytes":
        return f"{v / 2**30:.1f} GB"
    txt = f"{v:.{digits}f}"
    return txt.lstrip("-") if float(txt) == 0 else txt


def shown_metrics(res: Results) -> list[str]:
    """Columns of the summary that the tables show (bookkeeping columns are CSV-only)."""
    out = []
    for m in dict.fromkeys(res.summary.metric.tolist()):
        info = info_of(m, res.metrics)
        if info is None or not info.hidden:
            out.append(m)
    return out


def _rank(c: str, res: Results) -> tuple[float, str]:
    """Sort key of a column: its declared rank (a half-vs-half column right after its full-sample column)."""
    hb = half_base(c)
    if hb is not None:
        return (_rank(hb, res)[0] + 0.5, c)
    info = column_info(c, res.metrics)
    return (info.rank if info is not None else 100.0, c)


#: the paper's tables of a run, in order: key, title (Markdown / HTML), caption (LaTeX, numbered by LaTeX)
TABLES = (("table1", "Table 1: VBench dimensions, anatomical fidelity, efficiency",
           "VBench dimensions, anatomical fidelity and efficiency"),
          ("table1b", "Table 1 (per class): anatomical fidelity per structure", "Anatomical fidelity per structure"),
          ("table2", "Table 2: distribution metrics (GenerateCT framework)",
           "Distribution metrics (GenerateCT framework)"))
#: the tables of the metrics that declare ``table = "anatomy"`` (trace_bench.metrics.anatomy): whole-volume
#: columns (methods as rows), then per label (rows grouped by label) the per-case organ statistics and the
#: generated-vs-reference distances
ANATOMY_TABLES = (("anatomy", "Anatomy: whole-volume plausibility (no paired reference)",
                   "Anatomical and physical plausibility, whole volume"),
                  ("anatomy_labels", "Anatomy per label: organ volume and HU of each volume (mean over cases)",
                   "Organ volume and HU per label (mean over cases)"),
                  ("anatomy_dist", "Anatomy per label: generated vs reference distributions over cases",
                   "Organ volume and median-HU distributions, generated vs reference"))
#: tables with a row per (label, method): the console points to the report for them
PER_LABEL_TABLES = ("table1b", "anatomy_labels", "anatomy_dist")


def table_of(c: str, res: Results) -> str:
    """The table a summary column belongs to: its metric's declared table; a per-class column of a Table 1
    metric (``dice[lungs]``) goes to ``table1b``; per-label anatomy columns stay with ``anatomy``."""
    info = info_of(c, res.metrics)
    t = info.table if info is not None else "table1"
    return "table1b" if t == "table1" and base_metric(c) != c else t


def label_family(c: str) -> tuple[str, str] | None:
    """``(family, label)`` of a per-label column: ``anat_volume_ml[lungs]`` -> ``("anat_volume_ml", "lungs")``,
    ``anat_ks_volume_ml[lungs]_half`` -> ``("anat_ks_volume_ml_half", "lungs")``; None for other columns."""
    hb = half_base(c)
    core = hb if hb is not None else c
    b = base_metric(core)
    if b == core or not core.endswith("]"):
        return None
    return b + (HALF_SUFFIX if hb is not None else ""), core[len(b) + 1:-1]


def table_columns(res: Results, table: str) -> list[str]:
    """A table's columns in the order their metrics declared (``rank``); ``table1b`` holds the
    per-class columns of Table 1 metrics (``dice[lungs]``), grouped by family. ``vram`` stands for train /
    infer memory. The per-label anatomy tables list their families (``anat_volume_ml``, ``anat_ks_volume_ml_half``)."""
    present = shown_metrics(res)
    if table == "table1b":
        per_class = [c for c in present if table_of(c, res) == "table1b"]
        return sorted(per_class, key=lambda c: (_rank(base_metric(c), res), c))
    if table in ("anatomy_labels", "anatomy_dist"):
        kind = "case" if table == "anatomy_labels" else "distribution"
        fams = {lf[0] for c in present if table_of(c, res) == "anatomy" for lf in [label_family(c)]
                if lf is not None and _info(c, res).kind == kind}
        return sorted(fams, key=lambda c: _rank(c, res))
    cols = []
    for c in present:
        if label_family(c) is not None or base_metric(c) != c or table_of(c, res) != table:
            continue
        cols.append("vram" if c == "vram_train" else c)
    return sorted(dict.fromkeys(cols), key=lambda c: _rank(c, res))


def _info(c: str, res: Results) -> MetricInfo:
    return info_of(c, res.metrics) or MetricInfo(None)


#: the arrow of a column whose best value is the one closest to the GT row's
CLOSEST_ARROW = "≈GT"


def arrow(c: str, res: Results) -> str:
    """The direction mark of a column, as its metric declared the rule: "↑" / "↓", :data:`CLOSEST_ARROW`
    for columns ranked by closeness to GT (a higher value is not better there), "" without a direction."""
    hib = _info(c, res).higher_is_better if c != "vram" else False
    if hib is None:
        return ""
    return CLOSEST_ARROW if _info(c, res).closest_to_reference else ("↑" if hib else "↓")


# ----------------------------------------------------------------------------- profile columns (FPS, memory)
def profile_devices(res: Results) -> dict[str, str]:
    """The device each method's profile (FPS, memory) was measured on, from ``per_case.csv``
    (``protocol`` = "profile: <device>")."""
    pc = res.per_case
    if pc.empty or "protocol" not in pc:
        return {}
    rows = pc[pc.case_id == PROFILE_CASE]
    return {str(m): str(p).partition("profile: ")[2] or str(p) for m, p in zip(rows.method, rows.protocol)}


def on_cpu(device: str | None) -> bool:
    """A profile measured on the CPU: its FPS is a CPU speed and its "VRAM" the process's peak RSS."""
    return str(device or "").strip().lower().startswith("cpu")


def _on_gpu(device: str | None) -> bool:
    d = str(device or "").strip().lower()
    return bool(d) and not on_cpu(d) and not d.startswith("unknown")


def _profile_label(c: str, res: Results, devices: dict[str, str]) -> str:
    """FPS / memory headers say when every number was measured on a CPU (memory is then peak RSS)."""
    base = label(c, res.metrics)
    measured = [devices[m] for m in res.methods if m in devices] or list(devices.values())
    if measured and all(on_cpu(d) for d in measured):
        return "FPS (CPU)" if c == "fps" else "Train/Infer RSS (CPU)" if c == "vram" else f"{base} (CPU)"
    return base


def _vram_cell(res: Results, by: dict, m: str) -> Cell:
    """Train / infer memory of one method in one cell (``vram`` stands for both columns)."""
    tr, inf = by.get((m, "vram_train")), by.get((m, "vram"))
    if tr is None and inf is None:
        return Cell()
    t_txt = fmt_value("vram", tr.value, res.metrics) if tr is not None else DASH
    i_txt = fmt_value("vram", inf.value, res.metrics) if inf is not None else DASH
    return Cell(f"{t_txt} / {i_txt}", value=float(inf.value) if inf is not None else float("nan"))


def shown_row(c: str, r: Any, res: Results):
    """:func:`reports.intervals.shown` of a ``summary.csv`` row in column ``c``."""
    return shown(c, r.value, r.ci_low, r.ci_high, res.metrics, n=getattr(r, "n", None),
                 ci_method=getattr(r, "ci_method", None), ci_flag=getattr(r, "ci_flag", None))


def value_cell(res: Results, by: dict, m: str, c: str, *, ci: bool = True, key: str | None = None) -> Cell:
    """The cell of method ``m`` in column ``c`` (``key``: the summary column, when the table's column is a
    family): value in its table unit, and the interval :func:`~reports.intervals.shown` allows (with its
    distances from the value for ± layouts), a dash for "n too small", footnote marks."""
    if c == "vram":
        return _vram_cell(res, by, m)
    c = key or c
    r = by.get((m, c))
    if r is None:
        return Cell()
    s = shown_row(c, r, res)
    v = s.value
    if not ci or s.interval is None:
        small = ci and s.too_small
        return Cell(fmt_value(c, v, res.metrics), DASH if small else "", v, mark=s.marks if ci else s.value_mark,
                    hover=N_TOO_SMALL if small else "")
    lo, hi = s.interval
    return Cell(fmt_value(c, v, res.metrics), f"[{fmt_value(c, lo, res.metrics)}, {fmt_value(c, hi, res.metrics)}]",
                v, plus=fmt_value(c, max(hi - v, 0.0), res.metrics), minus=fmt_value(c, max(v - lo, 0.0), res.metrics),
                mark=s.marks)


def mark_best(rows: list[Row], cols: list[str], res: Results, devices: dict[str, str] | None = None) -> list[str]:
    """Set ``best`` on the best non-GT value of every column with a direction (at least two values);
    the columns whose metric ranks by closeness to the GT row (``|method - GT|``) are returned. Profile
    columns (FPS, memory) compare only numbers measured on a GPU: a CPU measurement is never best."""
    closest: list[str] = []
    devices = devices or {}
    gt_row = next((r for r in rows if r.key == GT), None)
    for c in cols:
        cand = [(r.cell(c).value, r) for r in rows if r.key != GT and not math.isnan(r.cell(c).value)]
        if c in ("fps", "vram") or _info(c, res).kind == "profile":
            cand = [(v, r) for v, r in cand if _on_gpu(devices.get(r.key))]
        hib = _info(c, res).higher_is_better if c != "vram" else False
        if hib is None or len(cand) < 2:
            continue
        gt = gt_row.cell(c).value if gt_row is not None else float("nan")
        if _info(c, res).closest_to_reference:
            if math.isnan(gt):
                continue
            closest.append(c)
            cand = [(abs(v - gt), r) for v, r in cand]
            best = min(v for v, _ in cand)
        else:
            best = max(v for v, _ in cand) if hib else min(v for v, _ in cand)
        for v, r in cand:
            if v == best:
                r.cells[c].best = True
    return closest


def case_note(confidence: float) -> str:
    """What a per-case metric's value and interval are."""
    return (f"Per-case metrics: mean over cases; in brackets its {100 * confidence:g} % percentile bootstrap interval "
            "of the mean per-case value over cases (seeded, cases resampled).")


def dist_note(confidence: float) -> str:
    """What a distribution metric's value and interval are (no bootstrap: a duplicated case would inflate a
    Fréchet distance)."""
    return (f"Distribution metrics: the value on all cases with its {100 * confidence:g} % two-sample jackknife "
            "interval, an interval of the estimator's expected value at this sample size (not of the distance "
            "itself).")


#: the half-vs-half columns and their GT/GT floor (run/aggregate.py writes them)
HALF_NOTE = ("'(half vs half)' columns: each method's cases of one half of the case ids against the reference's "
             "other half, both ways averaged; their GT/GT row is the floor (the reference's halves against each "
             "other) at exactly those sample sizes, so a perfect generator's expected value equals it. "
             "Full-sample columns have no GT row.")
#: the GT row of per-case columns (Table 1, the anatomy statistics)
GT_NOTE = "GT (per-case columns) = the reference set scored as a method."


def _confidence(res: Results) -> float:
    try:
        return float((res.provenance.get("config") or {}).get("confidence") or 0.95)
    except (TypeError, ValueError):
        return 0.95


def reading_note(res: Results, cols: list[str], closest: list[str]) -> str:
    """How to read the marks of a table: the arrows it uses and what bold means."""
    marks = {arrow(c, res) for c in cols}
    parts = [x for x, on in (("↑ higher is better", "↑" in marks), ("↓ lower is better", "↓" in marks),
                             (f"{CLOSEST_ARROW} closest to GT is best (|method - GT|)", CLOSEST_ARROW in marks)) if on]
    text = ", ".join(parts) + ("; " if parts else "") + "best non-GT value in bold."
    if closest or CLOSEST_ARROW in marks:
        names = ", ".join(literal(label(c, res.metrics)) for c in cols if arrow(c, res) == CLOSEST_ARROW)
        text += (f" For {names} a higher score is not better: a smoothed or interpolated volume can score above "
                 "real data.")
    return text[0].upper() + text[1:]


def column_note(note: str) -> str:
    """A summary row's note as the report shows it (the run writes each note on the columns it concerns,
    counting cases: :func:`trace_bench.run.aggregate.sample_note`); empty parts dropped."""
    return "; ".join(p for p in (x.strip() for x in str(note or "").split(";")) if p and p != "nan")


#: row notes a table says otherwise: heavy-tailed (the † mark), small n (the dash, or the interval itself), what
#: the half-vs-half values and the GT/GT floor are (:data:`HALF_NOTE`)
_SAID_NOTES = re.compile(r"^(heavy-tailed leave-out estimates|n = \d+: no interval possible|"
                         r"GT/GT floor: the reference cases split|compare with the methods' _half values|"
                         r"half vs half: generated cases)")
_FEW_CASES = re.compile(r"^only (\d+) cases: treat the interval")


def said_elsewhere(note: str) -> bool:
    """A row note the table says otherwise (:data:`_SAID_NOTES`; "only n cases" when n is below the printed
    intervals' minimum, where the table prints a dash)."""
    few = _FEW_CASES.match(note)
    return bool(_SAID_NOTES.match(note)) or (few is not None and int(few.group(1)) < MIN_INTERVAL_N)


def care_note(res: Results, by: dict, cols: list[str], methods: list[str]) -> str | None:
    """"Read with care": every summary note of the table's values, with the methods and columns it
    concerns ("(every value)" when it concerns all of them)."""
    by_note: dict[str, list[tuple[str, str]]] = {}
    for (m, c), r in by.items():
        if c not in cols:
            continue
        for n in column_note(getattr(r, "note", "")).split("; "):
            if n and n != "measured once" and not said_elsewhere(n):
                by_note.setdefault(n, []).append((m, c))
    filled = {(m, c) for (m, c), r in by.items() if c in cols and not math.isnan(float(r.value))}
    warn = []
    for n, where in sorted(by_note.items()):
        if filled <= set(where):
            warn.append(f"{n} (every value)")
            continue
        per_m: dict[str, list[str]] = {}
        order = sorted(where, key=lambda mc: (methods.index(mc[0]) if mc[0] in methods else 99, cols.index(mc[1])))
        for m, c in order:
            per_m.setdefault(m, []).append(literal(label(c, res.metrics)))
        for m in per_m:  # a note on every value of a method: said once
            mine = {mc for mc in filled if mc[0] == m}
            if mine and mine <= set(where):
                per_m[m] = ["every value"]
        warn.append(f"{n} ({'; '.join(f'{literal(m)}: ' + ', '.join(ls) for m, ls in per_m.items())})")
    return ("Read with care: " + "; ".join(warn) + ".") if warn else None


def protocol_note(res: Results, cols: list[str]) -> str | None:
    """The protocol ids behind a table's (non-profile) columns."""
    used = sorted({info.protocol for c in cols for info in [res.metrics.get(c) or res.metrics.get(base_metric(c))]
                   if info is not None and info.protocol and info.kind != "profile"})
    return ("Protocol: " + "; ".join(literal(u) for u in used) + ".") if used else None


def profile_note(res: Results, cols: list[str], devices: dict[str, str]) -> str | None:
    """Where FPS and memory come from, and the devices they were measured on."""
    if not any(c in ("fps", "vram") for c in cols):
        return None
    shown = {m: d for m, d in devices.items() if m in res.methods} or devices
    note = "FPS and memory from `trace-bench profile` JSON files (--profile NAME=FILE)"
    if shown:
        note += "; measured on " + "; ".join(f"{literal(m)}: {literal(d)}" for m, d in shown.items())
    if any(on_cpu(d) for d in shown.values()):
        note += (". On a CPU, FPS is a CPU speed and memory is the process's peak RSS, not GPU memory: these numbers "
                 "are not comparable with GPU measurements and are never marked best")
    return note + "."


def setup_notes(res: Results, key: str, cols: list[str], devices: dict[str, str]) -> list[str]:
    """Where a table's numbers come from: the segmenter, the profiler (the metrics not computed are
    listed once, in the report's problems section, not under every table)."""
    notes = []
    cfg = res.provenance.get("config") or {}
    if key.startswith("table1") and any(_info(c, res).spec == "segmentation" for c in cols):
        notes.append(f"Segmenter: {literal(cfg.get('segmenter') or '?')} ({literal(cfg.get('classes') or '?')} "
                     "classes); JI / DC / 95HD compare each method's label map with the reference's.")
    if key == "table1":
        notes += [n for n in (profile_note(res, cols, devices),) if n]
    return notes


def mark_notes(rows: list[Row]) -> list[str]:
    """What the footnote marks and dashes of a table's cells mean (only those it prints)."""
    cells = [c for r in rows for c in r.cells.values()]
    marks = {m for c in cells for m in c.mark}
    notes = [text for m, text in MARK_NOTES.items() if m in marks]
    if any(c.ci == DASH for c in cells):
        notes.append(f"– in place of an interval: {N_TOO_SMALL} (fewer than {MIN_INTERVAL_N} cases behind it; for "
                     "two-sample intervals, in either set).")
    return notes


def table_notes(res: Results, key: str, cols: list[str], by: dict, methods: list[str], closest: list[str],
                devices: dict[str, str] | None = None, rows: list[Row] | None = None,
                summary_cols: list[str] | None = None) -> list[str]:
    """The notes under one table: what the values and their intervals are, how to read them, what the marks
    mean, what needs care, the protocols behind them and where the numbers come from. ``summary_cols``: the
    summary columns behind ``cols`` (per-label tables: every ``family[label]``)."""
    scols = summary_cols or cols
    kinds = {_info(c, res).kind for c in cols}
    conf = _confidence(res)
    notes = ([case_note(conf)] if "case" in kinds else []) + ([dist_note(conf)] if "distribution" in kinds else [])
    if any(c.endswith("_std") for c in cols):
        notes.append("Standard-deviation columns (std) have no interval.")
    notes.append(reading_note(res, cols, closest))
    notes += mark_notes(rows or [])
    has_gt = {c for (m, c) in by if m == GT}
    if any(half_base(c) is not None for c in cols) or any(c in has_gt and half_base(c) for c in scols):
        notes.append(HALF_NOTE)
    if GT in methods and any(c in has_gt and _info(c, res).kind == "case" for c in scols):
        notes.append(GT_NOTE)
    notes += [n for n in (care_note(res, by, scols, methods), protocol_note(res, scols)) if n]
    return notes + setup_notes(res, key, cols, devices or {})


def build_table(res: Results, key: str, title: str, caption: str, *, ci: bool = True) -> Table | None:
    """One of our tables (``None`` when it has no column): columns, one row per method (GT first and
    pinned as the reference row, a rule under it), best values marked, notes."""
    cols = table_columns(res, key)
    if not cols:
        return None
    by = {(r.method, r.metric): r for r in res.summary.itertuples(index=False)}
    methods = [m for m in res.methods if any(k[0] == m for k in by)]
    kinds = {_info(c, res).kind for c in cols}
    devices = profile_devices(res)
    columns = [Column(c, _profile_label(c, res, devices) if c in ("fps", "vram") else label(c, res.metrics),
                      arrow(c, res), unit=_info(c, res).unit) for c in cols]
    rows = [Row(m, {c: value_cell(res, by, m, c, ci=ci) for c in cols},
                label="GT/GT" if m == GT and kinds == {"distribution"} else None, rule_below=(m == GT and i == 0),
                pinned=(m == GT))
            for i, m in enumerate(methods)]
    rows = [r for r in rows if any(x.text != DASH or x.interval for x in r.cells.values())]  # no empty rows
    for i, r in enumerate(rows):
        r.rule_below = r.key == GT and i == 0
    closest = mark_best(rows, cols, res, devices)
    return Table(key, title, columns, rows, table_notes(res, key, cols, by, methods, closest, devices, rows),
                 caption=caption)


def build_label_table(res: Results, key: str, title: str, caption: str, *, ci: bool = True) -> Table | None:
    """A per-label table (``anatomy_labels``, ``anatomy_dist``): one column per family (``anat_volume_ml``,
    ``anat_ks_volume_ml_half``), a heading row per label, under it a row per method (GT first, pinned);
    the best value is marked within each label. ``None`` when the run has no such column."""
    fams = table_columns(res, key)
    if not fams:
        return None
    by = {(r.method, r.metric): r for r in res.summary.itertuples(index=False)}
    present = shown_metrics(res)
    labels: dict[str, dict[str, str]] = {}
    for c in present:
        lf = label_family(c)
        if lf is not None and lf[0] in fams and table_of(c, res) == "anatomy":
            labels.setdefault(lf[1], {})[lf[0]] = c
    methods = [m for m in res.methods if any(k[0] == m for k in by)]
    columns = [Column(f, label(f, res.metrics), arrow(f, res), unit=_info(f, res).unit) for f in fams]
    rows: list[Row] = []
    closest: list[str] = []
    for lab in sorted(labels):
        group = []
        for m in methods:
            cells = {f: value_cell(res, by, m, f, ci=ci, key=labels[lab][f]) for f in fams if f in labels[lab]}
            if not any(not math.isnan(x.value) for x in cells.values()):
                continue
            group.append(Row(m, cells, label="GT/GT" if m == GT and all(_info(f, res).kind == "distribution"
                                                                         for f in fams) else None, pinned=(m == GT)))
        if group:
            rows.append(Row(f"[{lab}]", label=lab, heading=True))
            rows += group
            closest += [c for c in mark_best(group, fams, res) if c not in closest]
    if not rows:
        return None
    scols = [c for fam in labels.values() for c in fam.values()]
    return Table(key, title, columns, rows, table_notes(res, key, fams, by, methods, closest, None,
                                                        [r for r in rows if not r.heading], scols),
                 caption=caption, stub="Label / method")


def notes_once(tables: list[Table]) -> list[Table]:
    """The tables with every note already shown under an earlier table left out (Markdown and HTML show
    each message once; LaTeX floats keep their own notes, as a paper uses them one by one)."""
    seen: set[str] = set()
    out = []
    for t in tables:
        notes = [n for n in t.notes if n not in seen]
        seen.update(t.notes)
        out.append(replace(t, notes=notes))
    return out


def build_tables(res: Results, *, ci: bool = True) -> list[Table]:
    """Our Table 1, Table 1 per class, Table 2 and the anatomy tables (only the tables that have at least one
    column)."""
    tables = [build_table(res, key, title, caption, ci=ci) for key, title, caption in TABLES]
    for key, title, caption in ANATOMY_TABLES:
        build = build_table if key == "anatomy" else build_label_table
        tables.append(build(res, key, title, caption, ci=ci))
    return [t for t in tables if t is not None]


# ----------------------------------------------------------------------------- published rows
def published_tables() -> list[Table]:
    """The paper's Table 1 and Table 2 from ``reports/published/trace_paper_tables.csv``."""
    text = resources.files("reports").joinpath("published/trace_paper_tables.csv").read_text(encoding="utf-8")
    rows = list(csv.DictReader(io.StringIO(text)))
    out = []
    for key, title in (("table1", "Table 1 as published in the TRACE paper (not computed here)"),
                       ("table2", "Table 2 as published in the TRACE paper (not computed here)")):
        rs = [r for r in rows if r["table"] == key]
        cols = list(dict.fromkeys(r["metric"] for r in rs))
        columns = [Column(c, PUBLISHED_LABELS.get(c, c), "" if c in ("out", "vram") else
                          "↓" if c in ("hd95", "fid", "fvd") else "↑") for c in cols]
        table_rows = []
        for i in sorted({int(r["row"]) for r in rs}):
            cells = {r["metric"]: Cell(r["printed"] if r["printed"] != "-" else DASH) for r in rs if int(r["row"]) == i}
            table_rows.append(Row(next(r["method"] for r in rs if int(r["row"]) == i), cells))
        out.append(Table(key, title, columns, table_rows,
                         [f"As published: {rs[0]['source']}, transcribed from the paper's text (reports/published/). "
                          "Other data, protocol and hardware than this run; shown for orientation only."],
                         published=True))
    return out


# ----------------------------------------------------------------------------- CSV
def to_csv(t: Table, res: Results) -> str:
    """Wide CSV of a table in stored units (fractions, mm, bytes): method + value/ci_low/ci_high per
    column (per-label tables: label + method + value/ci_low/ci_high per family); every cell through
    :func:`~trace_bench.results.escape.csv_cell` (formula-safe). Raw numbers, as the run computed them."""
    s = res.summary
    by = {(r.method, r.metric): r for r in s.itertuples(index=False)}
    cols = [c for c in t.keys if c != "vram"] + (["vram_train", "vram"] if "vram" in t.keys else [])
    grouped = any(r.heading for r in t.rows)
    header = (["label"] if grouped else []) + ["method"] + [f"{c}{suf}" for c in cols
                                                            for suf in ("", "_ci_low", "_ci_high")]
    rows = []
    group = ""
    for r in t.rows:
        if r.heading:
            group = r.shown
            continue
        row: list[Any] = ([group] if grouped else []) + [r.key]
        for c in cols:
            col = c
            if grouped:
                hb = half_base(c)
                col = f"{hb}[{group}]{HALF_SUFFIX}" if hb is not None else f"{c}[{group}]"
            x = by.get((r.key, col))
            row += [float(x.value), float(x.ci_low), float(x.ci_high)] if x is not None else ["", "", ""]
        rows.append(row)
    return csv_text(header, rows)
