"""One table model for every table a writer renders, and its four renderers.

Report Tables 1 / 2 (``reports.tables``), the HTML per-case and problem tables, the reader study's
Table 3 / agreement / detection tables and the memorization audit's tables are all a :class:`Table`:
columns (key, header, direction arrow, alignment, unit), rows (a label plus one :class:`Cell` per
column: display text, interval, sort value, "best" flag), notes. :func:`to_markdown`,
:func:`to_latex` (booktabs ``tabular``), :func:`to_html` render it; every string goes through
:mod:`trace_bench.results.escape`, so no writer escapes on its own. CSV files are written from stored
values (not display text) with :func:`trace_bench.results.escape.csv_text`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from .escape import (
    html_attr,
    html_text,
    latex_text,
    markdown_cell,
    prose_html,
    prose_latex,
    prose_markdown,
)

DASH = "–"


@dataclass(frozen=True)
class Column:
    """One column: ``key`` (a metric name or field), its header, direction arrow ("↑", "↓", ""),
    alignment ("l", "r", "c"), unit ("fraction", "mm", "bytes", "": as :class:`ColumnStyle` declares)
    and whether its cells are prose (messages with Markdown code spans)."""

    key: str
    header: str = ""
    arrow: str = ""
    align: str = "r"
    unit: str = ""
    prose: bool = False

    @property
    def heading(self) -> str:
        return f"{self.header or self.key} {self.arrow}".strip()


@dataclass
class Cell:
    """Display text of one value, its interval text (``[lo, hi]``), its numeric value (sorting,
    best-of-column; NaN when none), whether it is the column's best, and HTML class / hover text."""

    text: str = DASH
    ci: str = ""
    value: float = float("nan")
    best: bool = False
    css: str = ""
    hover: str = ""


@dataclass
class Row:
    """A row: ``key`` (the method or item it is about), its cells by column key, the label shown in
    the row-label column (``None``: the key), ``heading`` (a group heading spanning the table: only
    the label is shown) and ``rule_below`` (a rule under it in LaTeX)."""

    key: str
    cells: dict[str, Cell] = field(default_factory=dict)
    label: str | None = None
    heading: bool = False
    rule_below: bool = False

    @property
    def shown(self) -> str:
        return self.key if self.label is None else self.label

    def cell(self, column: str) -> Cell:
        return self.cells.get(column, Cell())


@dataclass
class Table:
    """A table: ``key`` (file / anchor name), ``title`` (Markdown / HTML heading), ``columns``,
    ``rows``, ``notes`` (prose under the table), ``caption`` (LaTeX; '' = the title), ``stub`` (header
    of the row-label column; ``None``: no row labels, every value is a cell) and ``published`` (the
    paper's own numbers, shown apart)."""

    key: str
    title: str
    columns: list[Column]
    rows: list[Row]
    notes: list[str] = field(default_factory=list)
    caption: str = ""
    stub: str | None = "Method"
    published: bool = False

    @property
    def keys(self) -> list[str]:
        return [c.key for c in self.columns]

    @property
    def arrows(self) -> dict[str, str]:
        return {c.key: c.arrow for c in self.columns}


# ----------------------------------------------------------------------------- Markdown
_MD_ALIGN = {"l": "---", "r": "---:", "c": ":---:"}


def markdown_grid(t: Table) -> list[str]:
    """The GFM table lines (header, alignment, rows); the best value of a column in bold."""
    heads = ([markdown_cell(t.stub)] if t.stub is not None else []) + [markdown_cell(c.heading) for c in t.columns]
    aligns = (["---"] if t.stub is not None else []) + [_MD_ALIGN.get(c.align, "---") for c in t.columns]
    lines = ["| " + " | ".join(heads) + " |", "| " + " | ".join(aligns) + " |"]
    for r in t.rows:
        if r.heading:
            lines.append("| " + " | ".join([f"**{markdown_cell(r.shown)}**"] + [""] * (len(heads) - 1)) + " |")
            continue
        vals = [markdown_cell(r.shown)] if t.stub is not None else []
        for c in t.columns:
            cell = r.cell(c.key)
            txt = prose_markdown(cell.text, cell=True) if c.prose else markdown_cell(cell.text)
            if cell.best and txt:
                txt = f"**{txt}**"
            vals.append(f"{txt} {markdown_cell(cell.ci)}".strip())
        lines.append("| " + " | ".join(vals) + " |")
    return lines


def to_markdown(t: Table, *, heading: bool = True) -> str:
    """``### title``, the table and its notes (italic for the paper's own numbers); ``heading=False``:
    the table lines only."""
    if not heading:
        return "\n".join(markdown_grid(t)) + "\n"
    lines = [f"### {prose_markdown(t.title)}", "", *markdown_grid(t), ""]
    lines += [f"*{prose_markdown(n)}*" if t.published else prose_markdown(n) for n in t.notes]
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------- LaTeX
_UNIT_SUFFIXES = (("%", "%"), (" GB", "GB"))


def _column_suffix(t: Table, c: str) -> str:
    """The unit suffix every number of column ``c`` carries ("%", " GB") or ""; LaTeX moves it into the
    header so the cells hold plain numbers (siunitx-friendly, one number of decimals per column)."""
    texts = [x for r in t.rows if not r.heading for cell in [r.cell(c)]
             for x in [cell.text, *cell.ci.strip("[]").split(", ")] if x and x not in (DASH, "∞", "-∞")]
    for suffix, _ in _UNIT_SUFFIXES:
        if texts and all(x.endswith(suffix) for x in texts):
            return suffix
    return ""


def _strip(text: str, suffix: str) -> str:
    if not suffix:
        return text
    return " / ".join(p.removesuffix(suffix) for p in text.split(" / "))


def _tex_header(col: Column, suffix: str) -> str:
    head = col.header or col.key
    unit = dict(_UNIT_SUFFIXES).get(suffix, "")
    if unit and f"({unit})" not in head:
        head = f"{head} ({unit})"
    return latex_text(f"{head} {col.arrow}".strip())


def _tex_cell(cell: Cell, suffix: str, ci: bool) -> str:
    txt = latex_text(_strip(cell.text, suffix))
    if cell.best:
        txt = f"\\textbf{{{txt}}}"
    if ci and cell.ci:
        lo, _, hi = cell.ci.strip("[]").partition(", ")
        txt += f" {{\\scriptsize [{latex_text(_strip(lo, suffix))}, {latex_text(_strip(hi, suffix))}]}}"
    return txt


def to_latex(t: Table, *, ci: bool = True, caption: str | None = None, label: str | None = None,
             notes: bool = False) -> str:
    """One booktabs ``tabular`` (needs ``\\usepackage{booktabs}``), to ``\\input`` into a paper's own
    ``table`` float: no float, no caption. Units move into the headers (``Dice (\\%) $\\uparrow$``),
    cells hold plain numbers with the column's declared decimals, intervals as ``{\\scriptsize [lo, hi]}``
    (``ci=False`` leaves them out). With ``caption`` (and ``label``) the tabular is wrapped in a
    ``table`` float; ``notes=True`` adds the table's notes under it (footnotesize)."""
    suffixes = {c.key: _column_suffix(t, c.key) for c in t.columns}
    stub = t.stub is not None
    ncol = len(t.columns) + stub
    spec = "@{}" + ("l" if stub else "") + "".join(c.align if c.align in "lrc" else "r" for c in t.columns) + "@{}"
    title = " ".join(t.title.split())  # a comment line: no newline may end it early
    heads = ([latex_text(t.stub)] if stub else []) + [_tex_header(c, suffixes[c.key]) for c in t.columns]
    lines = [f"% {title} -- written by trace-bench; needs \\usepackage{{booktabs}}",
             f"\\begin{{tabular}}{{{spec}}}", r"\toprule", " & ".join(heads) + r" \\", r"\midrule"]
    for i, r in enumerate(t.rows):
        if r.heading:
            if i:
                lines.append(r"\midrule")
            lines.append(f"\\multicolumn{{{ncol}}}{{l}}{{\\textit{{{latex_text(r.shown)}}}}} \\\\")
            continue
        vals = ([latex_text(r.shown)] if stub else []) + [_tex_cell(r.cell(c.key), suffixes[c.key], ci)
                                                          for c in t.columns]
        lines.append(" & ".join(vals) + r" \\")
        if r.rule_below and i + 1 < len(t.rows):
            lines.append(r"\midrule")
    lines += [r"\bottomrule", r"\end{tabular}"]
    body = "\n".join(lines) + "\n"
    if caption is None:
        return body
    out = [r"\begin{table}[tbp]", r"\centering", f"\\caption{{{prose_latex(caption)}}}"]
    if label:
        out.append(f"\\label{{{label}}}")
    out.append(body.rstrip("\n"))
    if notes and t.notes:
        out.append(notes_latex(t))
    out.append(r"\end{table}")
    return "\n".join(out) + "\n"


def notes_latex(t: Table) -> str:
    """The notes of a table as one footnotesize paragraph."""
    return r"\par\smallskip{\footnotesize " + " ".join(prose_latex(n) for n in t.notes) + "}"


# ----------------------------------------------------------------------------- HTML
def _num(v: float) -> str:
    return "" if v is None or (isinstance(v, float) and math.isnan(v)) else repr(float(v))


def _html_cell(cell: Cell, col: Column) -> str:
    txt = prose_html(cell.text) if col.prose else html_text(cell.text)
    if cell.best:
        txt = f"<b>{txt}</b>"
    if cell.ci:
        txt += f'<br><span class="ci">{html_text(cell.ci)}</span>'
    attrs = ""
    v = _num(cell.value)
    if v:
        attrs += f' data-v="{html_attr(v)}"'
    css = " ".join(x for x in ("l" if col.align == "l" else "", cell.css) if x)
    if css:
        attrs += f' class="{html_attr(css)}"'
    if cell.hover:
        attrs += f' title="{html_attr(cell.hover)}"'
    return f"<td{attrs}>{txt}</td>"


def to_html(t: Table, *, css: str = "", anchor: str | None = None, caption: bool = True, notes: bool = True) -> str:
    """A sortable ``<table>`` (class ``css sortable``, id ``anchor``), its caption (the title), a row
    header per row (``<th scope="row">``) when the table has row labels, and its notes."""
    ident = f' id="{html_attr(anchor)}"' if anchor else ""
    h = [f'<table class="{html_attr((css + " sortable").strip())}"{ident}>']
    if caption and t.title:
        h.append(f"<caption>{prose_html(t.title)}</caption>")
    heads = ([t.stub] if t.stub is not None else []) + [c.heading for c in t.columns]
    h.append("<thead><tr>" + "".join(f"<th>{html_text(x)}</th>" for x in heads) + "</tr></thead><tbody>")
    for r in t.rows:
        if r.heading:
            h.append(f'<tr class="group"><th scope="rowgroup" colspan="{len(heads)}">{html_text(r.shown)}</th></tr>')
            continue
        stub = f'<th scope="row">{html_text(r.shown)}</th>' if t.stub is not None else ""
        h.append("<tr>" + stub + "".join(_html_cell(r.cell(c.key), c) for c in t.columns) + "</tr>")
    h.append("</tbody></table>")
    if notes:
        h += [f'<p class="note">{prose_html(n)}</p>' for n in t.notes]
    return "\n".join(h) + "\n"
