"""Table 1 / Table 2 of the TRACE paper from a run's ``summary.csv``, as
:class:`~trace_bench.results.table_model.Table` (rendered by :mod:`trace_bench.results.table_model`:
Markdown, LaTeX booktabs, HTML) and as wide CSV in stored units.

Layout follows the paper: Table 1 = six VBench dimensions, JI / DC / 95HD, FPS, Train/Infer VRAM;
Table 2 = FID, FVD (I3D), CLIP score. Rows are methods (``GT`` first, pinned as the reference row),
cells the mean over cases with the interval :mod:`reports.intervals` allows; marks follow each
column's declared rule (↑, ↓, ``≈GT`` = closest to GT is best); the best non-GT value of a column is
bold (FPS / memory only among GPU measurements). Fractions are stored as fractions and shown as
percentages. The paper's own numbers
(``reports/published``) are rendered as separate tables labelled "as published".
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
    PROFILE_CASE,
    MetricInfo,
    Results,
    base_metric,
    column_info,
    direction,
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

from .intervals import shown_interval

__all__ = [
    "CLOSEST_ARROW",
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


def label(metric: str, infos: dict[str, MetricInfo] | None = None) -> str:
    """Column header: the label its metric declared (per-class columns: family label + ``[class]``)."""
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
    info = column_info(metric, infos or {})
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
        info = column_info(m, res.metrics)
        if info is None or not info.hidden:
            out.append(m)
    return out


def _rank(c: str, res: Results) -> tuple[float, str]:
    info = column_info(c, res.metrics)
    return (info.rank if info is not None else 100.0, c)


#: the tables of a run, in order: key, title (Markdown / HTML), caption (LaTeX, numbered by LaTeX)
TABLES = (("table1", "Table 1: VBench dimensions, anatomical fidelity, efficiency",
           "VBench dimensions, anatomical fidelity and efficiency"),
          ("table1b", "Table 1 (per class): anatomical fidelity per structure", "Anatomical fidelity per structure"),
          ("table2", "Table 2: distribution metrics (GenerateCT framework)",
           "Distribution metrics (GenerateCT framework)"))


def table_columns(res: Results, table: str) -> list[str]:
    """A table's columns in the order their metrics declared (``rank``); ``table1b`` holds the
    per-class columns (``dice[lungs]``), grouped by family. ``vram`` stands for train / infer memory."""
    present = shown_metrics(res)
    if table == "table1b":
        per_class = [c for c in present if base_metric(c) != c]
        return sorted(per_class, key=lambda c: (_rank(base_metric(c), res), c))
    cols = []
    for c in present:
        if base_metric(c) != c:
            continue
        info = column_info(c, res.metrics)
        if (info.table if info is not None else "table1") != table:
            continue
        cols.append("vram" if c == "vram_train" else c)
    return sorted(dict.fromkeys(cols), key=lambda c: _rank(c, res))


def _info(c: str, res: Results) -> MetricInfo:
    return column_info(c, res.metrics) or MetricInfo(None)


#: the arrow of a column whose best value is the one closest to the GT row's
CLOSEST_ARROW = "≈GT"


def arrow(c: str, res: Results) -> str:
    """The direction mark of a column, as its metric declared the rule: "↑" / "↓", :data:`CLOSEST_ARROW`
    for columns ranked by closeness to GT (a higher value is not better there), "" without a direction."""
    hib = direction(c, res.metrics) if c != "vram" else False
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


def value_cell(res: Results, by: dict, m: str, c: str, *, ci: bool = True) -> Cell:
    """The cell of method ``m`` in column ``c``: value in its table unit, and the interval
    :func:`~reports.intervals.shown_interval` allows (with its distances from the value for ± layouts)."""
    if c == "vram":
        return _vram_cell(res, by, m)
    r = by.get((m, c))
    if r is None:
        return Cell()
    iv = shown_interval(c, r.value, r.ci_low, r.ci_high, res.metrics) if ci else None
    if iv is None:
        return Cell(fmt_value(c, r.value, res.metrics), "", float(r.value))
    lo, hi = iv
    v = float(r.value)
    return Cell(fmt_value(c, v, res.metrics), f"[{fmt_value(c, lo, res.metrics)}, {fmt_value(c, hi, res.metrics)}]",
                v, plus=fmt_value(c, max(hi - v, 0.0), res.metrics), minus=fmt_value(c, max(v - lo, 0.0), res.metrics))


def mark_best(rows: list[Row], cols: list[str], res: Results, devices: dict[str, str] | None = None) -> list[str]:
    """Set ``best`` on the best non-GT value of every column with a direction (at least two values);
    the columns whose metric ranks by closeness to the GT row (|method - GT|) are returned. Profile
    columns (FPS, memory) compare only numbers measured on a GPU: a CPU measurement is never best."""
    closest: list[str] = []
    devices = devices or {}
    gt_row = next((r for r in rows if r.key == GT), None)
    for c in cols:
        cand = [(r.cell(c).value, r) for r in rows if r.key != GT and not math.isnan(r.cell(c).value)]
        if c in ("fps", "vram") or _info(c, res).kind == "profile":
            cand = [(v, r) for v, r in cand if _on_gpu(devices.get(r.key))]
        hib = direction(c, res.metrics) if c != "vram" else False
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


_CASE_NOTE = ("Per-case metrics: mean over cases; in brackets its 95% percentile bootstrap interval of the mean "
              "per-case value over cases (seeded, cases resampled).")
_DIST_NOTE = ("Distribution metrics: the value on all cases; in brackets its 95% two-sample jackknife interval over "
              "cases: the sampling variability of the estimate at this n — not an interval of the distance itself "
              "(cases are never duplicated: a bootstrap would inflate Fréchet distances).")
_FLOOR_NOTE = ("GT/GT row: one half of the reference cases against the other (split by a seeded hash of the case id), "
               "the value a perfect generator could reach at this sample size.")
_GT_NOTE = "GT = the reference set scored as a method."


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


#: the part of a run's note that says a Fréchet-type estimate is dominated by its bias (run/aggregate.py)
_BIAS_NOTE = re.compile(r"(\d+) samples < (\d+) feature dimensions: "
                        r"the estimate is dominated by its bias \(compare KID\)")


def frechet_column(c: str, res: Results) -> bool:
    """A Fréchet-distance column (FID, FVD, FD on 3-D features): the bias note concerns these only."""
    names = {c, base_metric(c), _info(c, res).spec}
    return any(re.match(r"(fid|fvd|fd)(_|$)", n or "") for n in names)


def column_note(note: str, c: str, res: Results, n_cases: Any) -> str:
    """A summary row's note as the report shows it for column ``c``: the "dominated by its bias" part only
    on Fréchet-distance columns, counting cases (volumes) and naming the feature vectors behind them."""
    parts = []
    for part in (p.strip() for p in str(note or "").split(";")):
        m = _BIAS_NOTE.fullmatch(part)
        if m is None:
            parts.append(part)
        elif frechet_column(c, res):
            try:
                k = int(float(n_cases))
                cases = f"{k} case{'s' if k != 1 else ''} ({m.group(1)} feature vectors)"
            except (TypeError, ValueError):
                cases = f"{m.group(1)} feature vectors"
            parts.append(f"{cases} < {m.group(2)} feature dimensions: the estimate is dominated by its bias")
    return "; ".join(p for p in parts if p and p != "nan")


def care_note(res: Results, by: dict, cols: list[str], methods: list[str]) -> str | None:
    """"Read with care": every summary note of the table's values, with the methods and columns it
    concerns ("(every value)" when it concerns all of them)."""
    by_note: dict[str, list[tuple[str, str]]] = {}
    for (m, c), r in by.items():
        if c not in cols:
            continue
        for n in column_note(getattr(r, "note", ""), c, res, getattr(r, "n", None)).split("; "):
            if n and n != "measured once":
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


def table_notes(res: Results, key: str, cols: list[str], by: dict, methods: list[str], closest: list[str],
                devices: dict[str, str] | None = None) -> list[str]:
    """The notes under one table: what the values and their intervals are, how to read them, what needs
    care, the protocols behind them and where the numbers come from."""
    kinds = {_info(c, res).kind for c in cols}
    notes = ([_CASE_NOTE] if "case" in kinds else []) + ([_DIST_NOTE] if "distribution" in kinds else [])
    if any(c.endswith("_std") for c in cols):
        notes.append("Standard-deviation columns (std) have no interval.")
    notes.append(reading_note(res, cols, closest))
    if "distribution" in kinds and GT in methods:
        notes.append(_FLOOR_NOTE)
    if kinds - {"distribution"} and GT in methods:
        notes.append(_GT_NOTE)
    notes += [n for n in (care_note(res, by, cols, methods), protocol_note(res, cols)) if n]
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
    closest = mark_best(rows, cols, res, devices)
    return Table(key, title, columns, rows, table_notes(res, key, cols, by, methods, closest, devices),
                 caption=caption)


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
    """Our Table 1, Table 1 per class and Table 2 (only the tables that have at least one column)."""
    tables = (build_table(res, key, title, caption, ci=ci) for key, title, caption in TABLES)
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
    column; every cell through :func:`~trace_bench.results.escape.csv_cell` (formula-safe)."""
    s = res.summary
    by = {(r.method, r.metric): r for r in s.itertuples(index=False)}
    cols = [c for c in t.keys if c != "vram"] + (["vram_train", "vram"] if "vram" in t.keys else [])
    header = ["method"] + [f"{c}{suf}" for c in cols for suf in ("", "_ci_low", "_ci_high")]
    rows = []
    for r in t.rows:
        row: list[Any] = [r.key]
        for c in cols:
            x = by.get((r.key, c))
            row += [float(x.value), float(x.ci_low), float(x.ci_high)] if x is not None else ["", "", ""]
        rows.append(row)
    return csv_text(header, rows)
