"""Table 1 / Table 2 of the TRACE paper from a run's ``summary.csv``, as
:class:`~trace_bench.results.table_model.Table` (rendered by :mod:`trace_bench.results.table_model`:
Markdown, LaTeX booktabs, HTML) and as wide CSV in stored units.

Layout follows the paper: Table 1 = six VBench dimensions, JI / DC / 95HD, FPS, Train/Infer VRAM;
Table 2 = FID, FVD (I3D), CLIP score. Rows are methods (``GT`` first), cells the mean over cases
with its bootstrap CI; arrows give the direction of "better"; the best non-GT value of a column is
bold. Fractions are stored as fractions and shown as percentages. The paper's own numbers
(``reports/published``) are rendered as separate tables labelled "as published".
"""

from __future__ import annotations

import csv
import io
import math
from importlib import resources
from typing import Any

from trace_bench.results import (
    GT,
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

__all__ = [
    "PUBLISHED_LABELS",
    "TABLES",
    "Table",
    "build_table",
    "build_tables",
    "fmt_value",
    "label",
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


def _arrow(c: str, res: Results) -> str:
    hib = direction(c, res.metrics) if c != "vram" else False
    return "" if hib is None else ("↑" if hib else "↓")


def _info(c: str, res: Results) -> MetricInfo:
    return column_info(c, res.metrics) or MetricInfo(None)


def _vram_cell(res: Results, by: dict, m: str) -> Cell:
    """Train / infer memory of one method in one cell (``vram`` stands for both columns)."""
    tr, inf = by.get((m, "vram_train")), by.get((m, "vram"))
    if tr is None and inf is None:
        return Cell()
    t_txt = fmt_value("vram", tr.value, res.metrics) if tr is not None else DASH
    i_txt = fmt_value("vram", inf.value, res.metrics) if inf is not None else DASH
    return Cell(f"{t_txt} / {i_txt}", value=float(inf.value) if inf is not None else float("nan"))


def value_cell(res: Results, by: dict, m: str, c: str, *, ci: bool = True) -> Cell:
    """The cell of method ``m`` in column ``c``: value in its table unit, interval when finite."""
    if c == "vram":
        return _vram_cell(res, by, m)
    r = by.get((m, c))
    if r is None:
        return Cell()
    ci_txt = ""
    if ci and not (math.isnan(r.ci_low) or math.isnan(r.ci_high)):
        ci_txt = f"[{fmt_value(c, r.ci_low, res.metrics)}, {fmt_value(c, r.ci_high, res.metrics)}]"
    return Cell(fmt_value(c, r.value, res.metrics), ci_txt, float(r.value))


def mark_best(rows: list[Row], cols: list[str], res: Results) -> list[str]:
    """Set ``best`` on the best non-GT value of every column with a direction (at least two values);
    the columns whose metric ranks by closeness to the GT row (|method - GT|) are returned."""
    closest: list[str] = []
    gt_row = next((r for r in rows if r.key == GT), None)
    for c in cols:
        cand = [(r.cell(c).value, r) for r in rows if r.key != GT and not math.isnan(r.cell(c).value)]
        hib = direction(c, res.metrics) if c != "vram" else False
        if hib is None or len(cand) < 2:
            continue
        gt = gt_row.cell(c).value if gt_row is not None else float("nan")
        if _info(c, res).closest_to_reference and not math.isnan(gt):
            closest.append(c)
            cand = [(abs(v - gt), r) for v, r in cand]
            best = min(v for v, _ in cand)
        else:
            best = max(v for v, _ in cand) if hib else min(v for v, _ in cand)
        for v, r in cand:
            if v == best:
                r.cells[c].best = True
    return closest


_CASE_NOTE = "Per-case metrics: mean over cases with its 95% percentile bootstrap CI (seeded, resampling cases)."
_DIST_NOTE = ("Distribution metrics: the value on all cases with its 95% two-sample jackknife interval over cases "
              "(cases are never duplicated: a bootstrap would inflate Fréchet distances). GT row = GT/GT floor: one "
              "half of the reference cases against the other (split by a seeded hash of the case id), the value a "
              "perfect generator could reach at this sample size.")
_READING_NOTE = ("↑ higher is better, ↓ lower is better; best non-GT value in bold. GT = the reference set scored "
                 "as a method.")


def care_note(res: Results, by: dict, cols: list[str], methods: list[str]) -> str | None:
    """"Read with care": every summary note of the table's values, with the methods and columns it
    concerns ("(every value)" when it concerns all of them)."""
    by_note: dict[str, list[tuple[str, str]]] = {}
    for (m, c), r in by.items():
        n = str(getattr(r, "note", "") or "")
        if c in cols and n and n != "nan" and n != "measured once":
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


def setup_notes(res: Results, key: str, cols: list[str]) -> list[str]:
    """Where a table's numbers come from: the segmenter, the profiler, the metrics not computed."""
    notes = []
    cfg = res.provenance.get("config") or {}
    if key.startswith("table1") and any(_info(c, res).spec == "segmentation" for c in cols):
        notes.append(f"Segmenter: {literal(cfg.get('segmenter') or '?')} ({literal(cfg.get('classes') or '?')} "
                     "classes); JI / DC / 95HD compare each method's label map with the reference's.")
    if key == "table1" and any(c in ("fps", "vram") for c in cols):
        notes.append("FPS and VRAM from `trace-bench profile` JSON files (--profile NAME=FILE).")
    if res.skipped:
        notes.append("Not computed in this run (see 'Metrics not computed'): "
                     + ", ".join(literal(k) for k in sorted(res.skipped)) + ".")
    return notes


def table_notes(res: Results, key: str, cols: list[str], by: dict, methods: list[str], closest: list[str]) -> list[str]:
    """The notes under one table: what the values are, how to read them, what needs care, the
    protocols behind them and where the numbers come from."""
    kinds = {_info(c, res).kind for c in cols}
    notes = ([_CASE_NOTE] if "case" in kinds else []) + ([_DIST_NOTE] if "distribution" in kinds else [])
    notes.append(_READING_NOTE)
    if closest:
        notes.append("For " + ", ".join(literal(label(c, res.metrics)) for c in closest) + " the best value is the "
                     "one closest to GT (|method - GT|): a smoothed or interpolated volume can score above real data.")
    notes += [n for n in (care_note(res, by, cols, methods), protocol_note(res, cols)) if n]
    return notes + setup_notes(res, key, cols)


def build_table(res: Results, key: str, title: str, caption: str, *, ci: bool = True) -> Table | None:
    """One of our tables (``None`` when it has no column): columns, one row per method (GT first,
    a rule under it), best values marked, notes."""
    cols = table_columns(res, key)
    if not cols:
        return None
    by = {(r.method, r.metric): r for r in res.summary.itertuples(index=False)}
    methods = [m for m in res.methods if any(k[0] == m for k in by)]
    kinds = {_info(c, res).kind for c in cols}
    columns = [Column(c, label(c, res.metrics), _arrow(c, res), unit=_info(c, res).unit) for c in cols]
    rows = [Row(m, {c: value_cell(res, by, m, c, ci=ci) for c in cols},
                label="GT/GT" if m == GT and kinds == {"distribution"} else None, rule_below=(m == GT and i == 0))
            for i, m in enumerate(methods)]
    closest = mark_best(rows, cols, res)
    return Table(key, title, columns, rows, table_notes(res, key, cols, by, methods, closest), caption=caption)


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
