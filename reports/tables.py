"""Table 1 / Table 2 of the TRACE paper from a run's ``summary.csv``: Markdown, LaTeX (booktabs),
HTML and CSV renderers over one :class:`Table` model.

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
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

from trace_bench.results import GT, MetricInfo, Results, base_metric, column_info, direction

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
        return "–"
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


@dataclass
class Cell:
    text: str
    ci: str = ""
    value: float = float("nan")
    best: bool = False


@dataclass
class Table:
    key: str
    title: str
    columns: list[str]
    arrows: dict[str, str]
    rows: list[tuple[str, dict[str, Cell]]]
    notes: list[str] = field(default_factory=list)
    published: bool = False
    #: column -> header text (from the metrics' declared labels)
    headers: dict[str, str] = field(default_factory=dict)
    #: method -> row label where it differs (GT of a distribution table is the GT/GT floor)
    row_labels: dict[str, str] = field(default_factory=dict)
    #: the title without its "Table N:" prefix (LaTeX numbers its tables itself)
    caption: str = ""
    #: column -> unit ("fraction", "mm", "bytes", ""): LaTeX headers carry the unit, cells the number
    units: dict[str, str] = field(default_factory=dict)

    def row_label(self, m: str) -> str:
        return self.row_labels.get(m, m)


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


def build_tables(res: Results, *, ci: bool = True) -> list[Table]:
    """Our Table 1 and Table 2 (only the tables that have at least one column)."""
    s = res.summary
    by = {(r.method, r.metric): r for r in s.itertuples(index=False)}
    methods = [m for m in res.methods if any(k[0] == m for k in by)]
    out = []
    prov = res.provenance
    for key, title, caption in TABLES:
        cols = table_columns(res, key)
        if not cols:
            continue
        arrows = {}
        for c in cols:
            hib = direction(c, res.metrics) if c != "vram" else False
            arrows[c] = "" if hib is None else ("↑" if hib else "↓")
        rows: list[tuple[str, dict[str, Cell]]] = []
        for m in methods:
            cells: dict[str, Cell] = {}
            for c in cols:
                if c == "vram":
                    tr, inf = by.get((m, "vram_train")), by.get((m, "vram"))
                    if tr is None and inf is None:
                        cells[c] = Cell("–")
                        continue
                    t_txt = fmt_value("vram", tr.value, res.metrics) if tr is not None else "–"
                    i_txt = fmt_value("vram", inf.value, res.metrics) if inf is not None else "–"
                    cells[c] = Cell(f"{t_txt} / {i_txt}", value=float(inf.value) if inf is not None else float("nan"))
                    continue
                r = by.get((m, c))
                if r is None:
                    cells[c] = Cell("–")
                    continue
                ci_txt = ""
                if ci and not (math.isnan(r.ci_low) or math.isnan(r.ci_high)):
                    ci_txt = f"[{fmt_value(c, r.ci_low, res.metrics)}, {fmt_value(c, r.ci_high, res.metrics)}]"
                cells[c] = Cell(fmt_value(c, r.value, res.metrics), ci_txt, float(r.value))
            rows.append((m, cells))
        closest: list[str] = []
        for c in cols:
            hib = direction(c, res.metrics) if c != "vram" else False
            cand = [(cells[c].value, i) for i, (m, cells) in enumerate(rows)
                    if m != GT and not math.isnan(cells[c].value)]
            if hib is None or len(cand) < 2:
                continue
            info = column_info(c, res.metrics)
            gt = next((cells[c].value for m, cells in rows if m == GT), float("nan"))
            if info is not None and info.closest_to_reference and not math.isnan(gt):
                closest.append(c)
                cand = [(abs(v - gt), i) for v, i in cand]
                best = min(v for v, _ in cand)
            else:
                best = max(v for v, _ in cand) if hib else min(v for v, _ in cand)
            for v, i in cand:
                if v == best:
                    rows[i][1][c].best = True
        kinds = {(column_info(c, res.metrics) or MetricInfo(None)).kind for c in cols}
        notes = []
        if kinds & {"case"}:
            notes.append("Per-case metrics: mean over cases with its 95% percentile bootstrap CI (seeded, resampling "
                         "cases).")
        if "distribution" in kinds:
            notes.append("Distribution metrics: the value on all cases with its 95% two-sample jackknife interval "
                         "over cases (cases are never duplicated: a bootstrap would inflate Fréchet distances). "
                         "GT row = GT/GT floor: one half of the reference cases against the other (split by a "
                         "seeded hash of the case id), the value a perfect generator could reach at this sample size.")
        notes.append("↑ higher is better, ↓ lower is better; best non-GT value in bold. GT = the reference set "
                     "scored as a method.")
        if closest:
            notes.append("For " + ", ".join(label(c, res.metrics) for c in closest) + " the best value is the one "
                         "closest to GT (|method - GT|): a smoothed or interpolated volume can score above real data.")
        by_note: dict[str, list[tuple[str, str]]] = {}
        for (m, c), r in by.items():
            n = str(getattr(r, "note", "") or "")
            if c in cols and n and n != "nan" and n != "measured once":
                by_note.setdefault(n, []).append((m, c))
        warn = []
        for n, where in sorted(by_note.items()):
            filled = {(m, c) for (m, c), r in by.items() if c in cols and not math.isnan(float(r.value))}
            if filled <= set(where):
                warn.append(f"{n} (every value)")
                continue
            per_m: dict[str, list[str]] = {}
            for m, c in sorted(where, key=lambda mc: (methods.index(mc[0]) if mc[0] in methods else 99, cols.index(mc[1]))):
                per_m.setdefault(m, []).append(label(c, res.metrics))
            warn.append(f"{n} ({'; '.join(f'{m}: ' + ', '.join(ls) for m, ls in per_m.items())})")
        if warn:
            notes.append("Read with care: " + "; ".join(warn) + ".")
        used = sorted({info.protocol for c in cols for info in [res.metrics.get(c) or res.metrics.get(base_metric(c))]
                       if info is not None and info.protocol and info.kind != "profile"})
        if used:
            notes.append("Protocol: " + "; ".join(used) + ".")
        if key.startswith("table1") and any((column_info(c, res.metrics) or MetricInfo(None)).spec == "segmentation"
                                            for c in cols):
            seg = (prov.get("config") or {}).get("segmenter") or "?"
            classes = (prov.get("config") or {}).get("classes") or "?"
            notes.append(f"Segmenter: {seg} ({classes} classes); JI / DC / 95HD compare each method's label map "
                         "with the reference's.")
        if key == "table1" and any(c in ("fps", "vram") for c in cols):
            notes.append("FPS and VRAM from `trace-bench profile` JSON files (--profile NAME=FILE).")
        if res.skipped:
            notes.append("Not computed in this run (see 'Metrics not computed'): " + ", ".join(sorted(res.skipped)) + ".")
        rl = {GT: "GT/GT"} if kinds == {"distribution"} else {}
        units = {c: (column_info(c, res.metrics) or MetricInfo(None)).unit for c in cols}
        out.append(Table(key, title, cols, arrows, rows, notes, headers={c: label(c, res.metrics) for c in cols},
                         row_labels=rl, caption=caption, units=units))
    return out


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
        arrows = {c: ("" if c in ("out", "vram") else "↓" if c in ("hd95", "fid", "fvd") else "↑") for c in cols}
        table_rows: list[tuple[str, dict[str, Cell]]] = []
        for i in sorted({int(r["row"]) for r in rs}):
            cells = {r["metric"]: Cell(r["printed"] if r["printed"] != "-" else "–") for r in rs if int(r["row"]) == i}
            table_rows.append((next(r["method"] for r in rs if int(r["row"]) == i), cells))
        out.append(Table(key, title, cols, arrows, table_rows,
                         [f"As published: {rs[0]['source']}, transcribed from the paper's text (reports/published/). "
                          "Other data, protocol and hardware than this run; shown for orientation only."], published=True,
                         headers={c: PUBLISHED_LABELS.get(c, c) for c in cols}))
    return out


# ----------------------------------------------------------------------------- renderers
def _head(t: Table, c: str) -> str:
    return f"{t.headers.get(c) or label(c)} {t.arrows.get(c, '')}".strip()


def to_markdown(t: Table) -> str:
    lines = [f"### {t.title}", "", "| Method | " + " | ".join(_head(t, c) for c in t.columns) + " |",
             "| --- | " + " | ".join("---:" for _ in t.columns) + " |"]
    for m, cells in t.rows:
        vals = []
        for c in t.columns:
            cell = cells.get(c, Cell("–"))
            txt = f"**{cell.text}**" if cell.best else cell.text
            vals.append(f"{txt} {cell.ci}".strip())
        lines.append(f"| {t.row_label(m).replace('|', '/')} | " + " | ".join(vals) + " |")
    lines.append("")
    lines += [f"*{n}*" if t.published else n for n in t.notes]
    return "\n".join(lines) + "\n"


_TEX_ESC = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
            "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}


def tex_escape(s: str) -> str:
    out = "".join(_TEX_ESC.get(ch, ch) for ch in s)
    return (out.replace("↑", r"$\uparrow$").replace("↓", r"$\downarrow$").replace("–", "--")
            .replace("∞", r"$\infty$"))


_UNIT_SUFFIXES = (("%", "%"), (" GB", "GB"))


def _column_suffix(t: Table, c: str) -> str:
    """The unit suffix every number of column ``c`` carries ("%", " GB") or ""; LaTeX moves it into the
    header so the cells hold plain numbers (siunitx-friendly, one number of decimals per column)."""
    texts = [x for _, cells in t.rows for cell in [cells.get(c, Cell("–"))]
             for x in [cell.text, *cell.ci.strip("[]").split(", ")] if x and x not in ("–", "∞", "-∞")]
    for suffix, _ in _UNIT_SUFFIXES:
        if texts and all(x.endswith(suffix) for x in texts):
            return suffix
    return ""


def _strip(text: str, suffix: str) -> str:
    if not suffix:
        return text
    return " / ".join(p[: -len(suffix)] if p.endswith(suffix) else p for p in text.split(" / "))


def _tex_header(t: Table, c: str, suffix: str) -> str:
    head = t.headers.get(c) or label(c)
    unit = dict(_UNIT_SUFFIXES).get(suffix, "")
    if unit and f"({unit})" not in head:
        head = f"{head} ({unit})"
    arrow = t.arrows.get(c, "")
    return tex_escape(f"{head} {arrow}".strip())


def to_latex(t: Table, *, ci: bool = True, caption: str | None = None, label: str | None = None,
             notes: bool = False) -> str:
    """One booktabs ``tabular`` (needs ``\\usepackage{booktabs}``), to ``\\input`` into a paper's own
    ``table`` float: no float, no caption. Units move into the headers (``Dice (\\%) $\\uparrow$``),
    cells hold plain numbers with the column's declared decimals, intervals as ``{\\scriptsize [lo, hi]}``
    (``ci=False`` leaves them out). With ``caption`` (and ``label``) the tabular is wrapped in a
    ``table`` float; ``notes=True`` adds the table's notes under it (footnotesize)."""
    suffixes = {c: _column_suffix(t, c) for c in t.columns}
    spec = "@{}l" + "r" * len(t.columns) + "@{}"
    lines = [f"% {t.title} -- written by trace-bench; needs \\usepackage{{booktabs}}",
             f"\\begin{{tabular}}{{{spec}}}", r"\toprule",
             "Method & " + " & ".join(_tex_header(t, c, suffixes[c]) for c in t.columns) + r" \\", r"\midrule"]
    for i, (m, cells) in enumerate(t.rows):
        vals = []
        for c in t.columns:
            cell = cells.get(c, Cell("–"))
            txt = tex_escape(_strip(cell.text, suffixes[c]))
            if cell.best:
                txt = f"\\textbf{{{txt}}}"
            if ci and cell.ci:
                lo, _, hi = cell.ci.strip("[]").partition(", ")
                txt += f" {{\\scriptsize [{tex_escape(_strip(lo, suffixes[c]))}, {tex_escape(_strip(hi, suffixes[c]))}]}}"
            vals.append(txt)
        lines.append(tex_escape(t.row_label(m)) + " & " + " & ".join(vals) + r" \\")
        if m == GT and i == 0 and len(t.rows) > 1 and not t.published:
            lines.append(r"\midrule")
    lines += [r"\bottomrule", r"\end{tabular}"]
    body = "\n".join(lines) + "\n"
    if caption is None:
        return body
    out = [r"\begin{table}[tbp]", r"\centering", f"\\caption{{{tex_escape(caption)}}}"]
    if label:
        out.append(f"\\label{{{label}}}")
    out.append(body.rstrip("\n"))
    if notes and t.notes:
        out.append(r"\par\smallskip{\footnotesize " + " ".join(tex_escape(n) for n in t.notes) + "}")
    out.append(r"\end{table}")
    return "\n".join(out) + "\n"


def to_csv(t: Table, res: Results) -> str:
    """Wide CSV of a table in stored units (fractions, mm, bytes): method + value/ci_low/ci_high per column."""
    s = res.summary
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    cols = [c for c in t.columns if c != "vram"] + (["vram_train", "vram"] if "vram" in t.columns else [])
    w.writerow(["method"] + [f"{c}{suf}" for c in cols for suf in ("", "_ci_low", "_ci_high")])
    from trace_bench.results import fmt_float

    for m, _ in t.rows:
        row: list[Any] = [m]
        for c in cols:
            r = s[(s.method == m) & (s.metric == c)]
            if len(r):
                row += [fmt_float(r.value.iloc[0]), fmt_float(r.ci_low.iloc[0]), fmt_float(r.ci_high.iloc[0])]
            else:
                row += ["", "", ""]
        w.writerow(row)
    return buf.getvalue()
