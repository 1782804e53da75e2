"""One table model for every table a writer renders, and its renderers (Markdown, LaTeX, HTML, text).

Report Tables 1 / 2 (``reports.tables``), the HTML per-case and problem tables, the reader study's
Table 3 / agreement / detection tables and the memorization audit's tables are all a :class:`Table`:
columns (key, header, direction arrow, alignment, unit), rows (a label plus one :class:`Cell` per
column: display text, interval, sort value, "best" flag), notes. :func:`to_markdown`,
:func:`to_latex` (booktabs ``tabular`` in a :class:`TexLayout`), :func:`to_html` and :func:`to_text`
(a terminal) render it; every string goes through
:mod:`trace_bench.results.escape`, so no writer escapes on its own. CSV files are written from stored
values (not display text) with :func:`trace_bench.results.escape.csv_text`.
"""

from __future__ import annotations

import itertools
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
    terminal_text,
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
    """Display text of one value, its interval text (``[lo, hi]``; :data:`DASH` = no interval because n is too
    small), its numeric value (sorting, best-of-column; NaN when none), whether it is the column's best, HTML
    class / hover text, the interval's distances from the value (``plus`` / ``minus``, display text) and
    ``mark``: footnote marks printed after the cell ("†", "‡", "§": the table's notes say what they mean)."""

    text: str = DASH
    ci: str = ""
    value: float = float("nan")
    best: bool = False
    css: str = ""
    hover: str = ""
    #: display text of (upper - value, value - lower): the ``pm`` LaTeX layout prints them
    plus: str = ""
    minus: str = ""
    mark: str = ""

    @property
    def interval(self) -> bool:
        """The cell prints an interval ``[lo, hi]`` (not :data:`DASH`)."""
        return bool(self.ci) and self.ci != DASH


@dataclass
class Row:
    """A row: ``key`` (the method or item it is about), its cells by column key, the label shown in
    the row-label column (``None``: the key), ``heading`` (a group heading spanning the table: only
    the label is shown), ``rule_below`` (a rule under it in LaTeX) and ``pinned`` (a reference row, e.g.
    GT: kept first when the HTML table is sorted)."""

    key: str
    cells: dict[str, Cell] = field(default_factory=dict)
    label: str | None = None
    heading: bool = False
    rule_below: bool = False
    pinned: bool = False

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
            vals.append((f"{txt} {markdown_cell(cell.ci)}".strip() + markdown_cell(cell.mark)).strip())
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
#: the named LaTeX layouts (``TexLayout.parse``) and what each prints
LAYOUTS = {
    "full": "value and its interval in brackets on one line",
    "stacked": "value with its interval on the line below",
    "pm": "value ± half-width; value with +upper/-lower distances where the interval is not symmetric at the "
          "printed precision",
    "compact": "values only (the intervals are in the CSV, Markdown and HTML files)",
    "split": "the columns in two tabulars, one above the other (combine: split+pm, split+compact, split+stacked)",
    "split3": "the columns in three tabulars, one above the other (combine as split)",
}
_PARTS = {"split": 2, "split3": 3}
_INTERVALS = {"full": "inline", "stacked": "stacked", "pm": "pm", "compact": "none"}
#: font sizes a layout may ask for, with their size in a 10-pt document (the standard classes' sizes)
TEX_SIZES = {"": 10.0, "small": 9.0, "footnotesize": 8.0}


@dataclass(frozen=True)
class TexLayout:
    """How a table becomes LaTeX: ``intervals`` ("inline", "stacked", "pm", "none"), ``parts`` (1, or 2 for a
    table split into two tabulars), ``size`` (font size command: "" = the document's, "small", "footnotesize";
    intervals are set one size smaller but never below ``\\footnotesize``) and ``colsep`` (``\\tabcolsep`` in pt;
    ``None`` = the document's)."""

    intervals: str = "inline"
    parts: int = 1
    size: str = ""
    colsep: float | None = None

    @classmethod
    def parse(cls, text: str | TexLayout) -> TexLayout:
        """``"full"``, ``"stacked"``, ``"pm"``, ``"compact"``, ``"split"`` or ``"split+<one of the others>"``."""
        if isinstance(text, TexLayout):
            return text
        words = [w.strip() for w in str(text).lower().replace(",", "+").split("+") if w.strip()]
        bad = [w for w in words if w not in LAYOUTS]
        splits = [w for w in words if w in _PARTS]
        if not words or bad or len(words) > 2 or len(splits) > 1 or (len(words) == 2 and not splits):
            raise ValueError(f"LaTeX layout {text!r}: expected one of {', '.join(LAYOUTS)} (or split+pm, "
                             "split+compact, split+stacked)")
        style = next((w for w in words if w not in _PARTS), "full")
        return cls(_INTERVALS[style], _PARTS[splits[0]] if splits else 1)

    @property
    def name(self) -> str:
        style = next(k for k, v in _INTERVALS.items() if v == self.intervals)
        if self.parts <= 1:
            return style
        split = "split" if self.parts == 2 else f"split{self.parts}"
        return split if style == "full" else f"{split}+{style}"

    @property
    def points(self) -> float:
        """Body font size in a 10-pt document."""
        return TEX_SIZES[self.size]


_UNIT_SUFFIXES = (("%", "%"), (" GB", "GB"))


def _column_suffix(t: Table, c: str) -> str:
    """The unit suffix every number of column ``c`` carries ("%", " GB") or ""; LaTeX moves it into the
    header so the cells hold plain numbers (siunitx-friendly, one number of decimals per column)."""
    texts = [x for r in t.rows if not r.heading for cell in [r.cell(c)]
             for x in [cell.text, *(cell.ci.strip("[]").split(", ") if cell.interval else []), cell.plus, cell.minus]
             if x and x not in (DASH, "∞", "-∞")]
    for suffix, _ in _UNIT_SUFFIXES:
        if texts and all(x.endswith(suffix) for x in texts):
            return suffix
    return ""


def _strip(text: str, suffix: str) -> str:
    if not suffix:
        return text
    return " / ".join(p.removesuffix(suffix) for p in text.split(" / "))


def cell_chars(cell: Cell, layout: TexLayout) -> int:
    """Characters a cell's widest line holds in ``layout`` (header wrapping and column splits use it)."""
    ci = cell.ci if layout.intervals in ("inline", "stacked") else ""
    mark = len(cell.mark)
    if layout.intervals == "inline":
        return len(cell.text) + (1 + len(ci) if ci else 0) + mark
    if layout.intervals == "stacked":
        return max(len(cell.text), len(ci)) + mark
    if layout.intervals == "pm" and cell.plus:
        return len(cell.text) + (2 + len(cell.plus) if cell.plus == cell.minus else 1 + max(len(cell.plus),
                                                                                           len(cell.minus))) + mark
    return len(cell.text) + mark


def header_text(t: Table, col: Column) -> str:
    """A column's LaTeX header as plain text: header, unit moved out of the cells, arrow."""
    head = col.header or col.key
    unit = dict(_UNIT_SUFFIXES).get(_column_suffix(t, col.key), "")
    if unit and f"({unit})" not in head:
        head = f"{head} ({unit})"
    return f"{head} {col.arrow}".strip()


def _header_words(text: str) -> list[str]:
    """Words of a header; a direction arrow stays with the word before it."""
    words = text.split()
    if len(words) > 1 and len(words[-1]) <= 3 and not any(ch.isalnum() for ch in words[-1].replace("GT", "")):
        words[-2:] = [f"{words[-2]} {words[-1]}"]
    return words


def header_lines(t: Table, col: Column, layout: TexLayout) -> list[str]:
    """The header of ``col`` broken at spaces into lines no longer than its widest cell (at least its
    longest word; an arrow stays with the word before it): a narrow column of numbers keeps a narrow header."""
    words = _header_words(header_text(t, col))
    cells = [cell_chars(r.cell(col.key), layout) for r in t.rows if not r.heading]
    width = max([max(cells, default=1), *(len(w) for w in words)])
    lines: list[str] = []
    for w in words:
        if lines and len(lines[-1]) + 1 + len(w) <= width:
            lines[-1] += " " + w
        else:
            lines.append(w)
    return lines or [""]


def split_columns(t: Table, layout: TexLayout) -> list[list[Column]]:
    """The columns of each tabular: all of them, or ``layout.parts`` contiguous groups whose widest is as
    narrow as possible (widths in characters of each column's widest line, header or cell)."""
    cols = list(t.columns)
    k = min(max(layout.parts, 1), len(cols))
    if k <= 1:
        return [cols]
    widths = [max([cell_chars(r.cell(c.key), layout) for r in t.rows if not r.heading]
                  + [max(len(x) for x in header_lines(t, c, layout))]) + 2 for c in cols]
    best: tuple[int, tuple[int, ...]] | None = None
    for cuts in itertools.combinations(range(1, len(cols)), k - 1):
        bounds = (0, *cuts, len(cols))
        score = max(sum(widths[a:b]) for a, b in zip(bounds, bounds[1:]))
        if best is None or score < best[0]:
            best = (score, bounds)
    assert best is not None
    return [cols[a:b] for a, b in zip(best[1], best[1][1:])]


def _tex_header(t: Table, col: Column, layout: TexLayout, wrap: bool) -> str:
    lines = header_lines(t, col, layout) if wrap else [header_text(t, col)]
    if len(lines) == 1:
        return latex_text(lines[0])
    align = col.align if col.align in "lrc" else "r"
    return f"\\begin{{tabular}}[b]{{@{{}}{align}@{{}}}}" + r"\\".join(latex_text(x) for x in lines) + r"\end{tabular}"


def _math_number(text: str) -> bool:
    return bool(text) and all(ch in "0123456789.," for ch in text)


def _tex_cell(cell: Cell, suffix: str, layout: TexLayout, align: str) -> str:
    mark = latex_text(cell.mark)
    return _tex_value(cell, suffix, layout, align) + (f"\\rlap{{{mark}}}" if mark else "")


def _tex_value(cell: Cell, suffix: str, layout: TexLayout, align: str) -> str:
    txt = latex_text(_strip(cell.text, suffix))
    if cell.best:
        txt = f"\\textbf{{{txt}}}"
    small = "" if layout.size == "footnotesize" else "\\footnotesize "
    if layout.intervals in ("inline", "stacked") and cell.ci:
        if cell.interval:
            lo, _, hi = cell.ci.strip("[]").partition(", ")
            ci = f"{{{small}[{latex_text(_strip(lo, suffix))}, {latex_text(_strip(hi, suffix))}]}}"
        else:
            ci = f"{{{small}{latex_text(cell.ci)}}}"
        if layout.intervals == "inline":
            return f"{txt} {ci}"
        a = align if align in "lrc" else "r"
        return f"\\begin{{tabular}}[t]{{@{{}}{a}@{{}}}}{txt}\\\\ {ci}\\end{{tabular}}"
    if layout.intervals == "pm" and cell.plus and cell.minus:
        p, m = _strip(cell.plus, suffix), _strip(cell.minus, suffix)
        if p == m:
            return f"{txt}{{{small}\\,$\\pm$\\,{latex_text(p)}}}"
        if _math_number(p) and _math_number(m):
            return f"{txt}$^{{+{p}}}_{{-{m}}}$"
        return f"{txt}{{{small} +{latex_text(p)}/$-${latex_text(m)}}}"
    return txt


def _tabular(t: Table, cols: list[Column], layout: TexLayout, suffixes: dict[str, str], wrap: bool) -> list[str]:
    stub = t.stub is not None
    ncol = len(cols) + stub
    spec = "@{}" + ("l" if stub else "") + "".join(c.align if c.align in "lrc" else "r" for c in cols) + "@{}"
    heads = ([latex_text(t.stub)] if stub else []) + [_tex_header(t, c, layout, wrap) for c in cols]
    lines = [f"\\begin{{tabular}}{{{spec}}}", r"\toprule", " & ".join(heads) + r" \\", r"\midrule"]
    for i, r in enumerate(t.rows):
        if r.heading:
            if i:
                lines.append(r"\midrule")
            lines.append(f"\\multicolumn{{{ncol}}}{{l}}{{\\textit{{{latex_text(r.shown)}}}}} \\\\")
            continue
        vals = ([latex_text(r.shown)] if stub else []) + [_tex_cell(r.cell(c.key), suffixes[c.key], layout, c.align)
                                                          for c in cols]
        lines.append(" & ".join(vals) + r" \\")
        if r.rule_below and i + 1 < len(t.rows):
            lines.append(r"\midrule")
    return lines + [r"\bottomrule", r"\end{tabular}"]


def to_latex(t: Table, *, ci: bool = True, caption: str | None = None, label: str | None = None,
             notes: bool = False, layout: str | TexLayout | None = None, wrap: bool = True,
             comment: str = "") -> str:
    """One booktabs ``tabular`` (needs ``\\usepackage{booktabs}``), to ``\\input`` into a paper's own
    ``table`` float: no float, no caption. Units move into the headers (``Dice (\\%) $\\uparrow$``),
    cells hold plain numbers with the column's declared decimals; long headers break at spaces to the
    width of their column (``wrap``). ``layout`` (:class:`TexLayout` or its name, see :data:`LAYOUTS`):
    intervals inline ``97.48 {\\footnotesize [97.45, 97.51]}`` (default), stacked under the value, as
    ``± half-width``, or left out (``ci=False`` is ``compact``); ``split`` (``split3``) writes two (three)
    tabulars one above the other. With ``caption`` (and ``label``) the tabular is wrapped in a ``table``
    float; ``notes=True`` adds the table's notes under it (footnotesize). ``comment``: an extra ``%`` line
    (what the layout fits)."""
    lay = TexLayout.parse(layout or "full")
    if not ci:
        lay = TexLayout("none", lay.parts, lay.size, lay.colsep)
    suffixes = {c.key: _column_suffix(t, c.key) for c in t.columns}
    title = " ".join(t.title.split())  # a comment line: no newline may end it early
    lines = [f"% {title} -- written by trace-bench; needs \\usepackage{{booktabs}}"]
    if comment:
        lines.append("% " + " ".join(comment.split()))
    group = bool(lay.size or lay.colsep is not None)
    if group:
        lines.append("{" + (f"\\{lay.size}" if lay.size else "")
                     + (f"\\setlength{{\\tabcolsep}}{{{lay.colsep:g}pt}}" if lay.colsep is not None else "") + "%")
    parts = split_columns(t, lay)
    for k, cols in enumerate(parts):
        if k:
            lines.append(r"\par\medskip")
        lines += _tabular(t, cols, lay, suffixes, wrap)
    if len(parts) > 1:
        lines[-1] += r"\par"
    if group:  # no space from the line end inside the group
        lines[-1] += "%"
        lines.append("}")
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
    """The notes of a table as one footnotesize paragraph, ragged right (protocol ids and file names do not
    break into a justified line)."""
    return r"\par\smallskip{\footnotesize\raggedright " + " ".join(prose_latex(n) for n in t.notes) + r"\par}"


# ----------------------------------------------------------------------------- plain text (console)
def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: max(1, width - 1)] + "…"


def _wrap_words(text: str, width: int) -> list[str]:
    lines: list[str] = []
    for w in _header_words(text):
        if lines and len(lines[-1]) + 1 + len(w) <= width:
            lines[-1] += " " + w
        else:
            lines.append(_clip(w, width))
    return lines or [""]


def to_text(t: Table, width: int = 80, *, ci: bool = True, stub_width: int = 18, best_mark: str = "*") -> list[str]:
    """The table as plain text lines no wider than ``width`` (a terminal): headers wrapped at spaces,
    one line per row (pinned rows first, a dashed rule under ``rule_below`` rows), the best value of a
    column followed by ``best_mark``; columns that do not fit continue in a second block under the first
    (the row labels repeated). Intervals ``[lo, hi]`` follow the values when ``ci``; a unit every number of
    a column carries ("%", " GB") moves into its header, as in LaTeX."""
    stub = t.stub is not None
    grouped = any(r.heading for r in t.rows)  # per-label tables: each group keeps its own order
    rows = list(t.rows) if grouped else [r for r in t.rows if r.pinned] + [r for r in t.rows if not r.pinned]
    labels = [_clip(terminal_text(r.shown), stub_width) for r in rows]
    lw = max([len(x) for x in labels] + [len(t.stub or "")]) if stub else 0
    texts: dict[str, list[str]] = {}
    heading: dict[str, str] = {}
    for c in t.columns:
        suffix = _column_suffix(t, c.key)
        pad = " " * len(best_mark) if any(r.cell(c.key).best for r in rows) else ""
        vals = []
        for r in rows:
            cell = r.cell(c.key)
            v = terminal_text(_strip(cell.text, suffix)) + (best_mark if cell.best else pad)
            lo, _, hi = cell.ci.strip("[]").partition(", ")
            iv = f"[{_strip(lo, suffix)}, {_strip(hi, suffix)}]" if cell.interval else cell.ci
            mark = terminal_text(cell.mark)
            vals.append("" if r.heading else (f"{v} {iv}{mark}" if ci and iv else f"{v}{mark}"))
        texts[c.key] = vals
        heading[c.key] = terminal_text(header_text(t, c))
    widths = {}
    for c in t.columns:
        longest = max([len(v) for v in texts[c.key]] + [1])
        word = max((len(w) for w in _header_words(heading[c.key])), default=1)
        widths[c.key] = max(longest, min(word, 14), 4)
    blocks: list[list[Column]] = [[]]
    used = lw
    for c in t.columns:
        need = widths[c.key] + 2
        if blocks[-1] and used + need > width:
            blocks.append([])
            used = lw
        blocks[-1].append(c)
        used += need
    out: list[str] = []
    for b, cols in enumerate(blocks):
        if b:
            out.append("")
        heads = {c.key: _wrap_words(heading[c.key], widths[c.key]) for c in cols}
        depth = max(len(h) for h in heads.values())
        for k in range(depth):
            first = terminal_text(t.stub or "") if stub and k == depth - 1 else ""
            line = first.ljust(lw) if stub else ""
            for c in cols:
                h = heads[c.key]
                txt = h[k - (depth - len(h))] if k >= depth - len(h) else ""
                line += "  " + (txt.ljust(widths[c.key]) if c.align == "l" else txt.rjust(widths[c.key]))
            out.append(line.rstrip())
        out.append("-" * min(width, lw + sum(widths[c.key] + 2 for c in cols)))
        for i, r in enumerate(rows):
            line = labels[i].ljust(lw) if stub else ""
            if not r.heading:
                for c in cols:
                    v = texts[c.key][i]
                    line += "  " + (v.ljust(widths[c.key]) if c.align == "l" else v.rjust(widths[c.key]))
            out.append(line.rstrip())
            if r.rule_below and i + 1 < len(rows):
                out.append("-" * min(width, lw + sum(widths[c.key] + 2 for c in cols)))
    return out


# ----------------------------------------------------------------------------- HTML
def _num(v: float) -> str:
    return "" if v is None or (isinstance(v, float) and math.isnan(v)) else repr(float(v))


def _html_cell(cell: Cell, col: Column) -> str:
    txt = prose_html(cell.text) if col.prose else html_text(cell.text)
    if cell.best:
        txt = f"<b>{txt}</b>"
    if cell.ci:
        tip = "" if cell.interval else ' title="no interval: n too small"'
        txt += f'<br><span class="ci"{tip}>{html_text(cell.ci)}</span>'
    if cell.mark:
        txt += f"<sup>{html_text(cell.mark)}</sup>"
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
        cells = "".join(_html_cell(r.cell(c.key), c) for c in t.columns)
        h.append(('<tr class="pinned">' if r.pinned else "<tr>") + stub + cells + "</tr>")
    h.append("</tbody></table>")
    if notes:
        h += [f'<p class="note">{prose_html(n)}</p>' for n in t.notes]
    return "\n".join(h) + "\n"
