"""LaTeX tables that fit the page of the common paper templates, at a readable size.

A table's natural width is estimated from the character widths of the Computer Modern fonts that
``pdflatex`` uses with ``\\usepackage[T1]{fontenc}`` (measured once with ``pdflatex``: ``\\setbox0\\hbox{\\small
X}\\typeout{\\the\\wd0}`` for every printable ASCII character and the symbols our tables print, at 10, 9, 8
and 7 pt, roman and bold; :data:`_WIDTHS`, in 1/100 pt). Times, the font of IEEEtran and NeurIPS, is
narrower, so a table sized for Computer Modern fits there too.

:func:`fit_layout` picks, for a target width (:data:`TEMPLATES`: LNCS / MICCAI text width, IEEE
two-column ``\\columnwidth`` or ``\\textwidth``, NeurIPS text width, or a width in pt), the first layout of
:func:`candidates` that fits: intervals inline, then stacked under the values, then as ±, each at 10, 9
then 8 pt (``\\small``, ``\\footnotesize``) with the standard or a narrower column gap; then the same split
into two tabulars; then values only; then three tabulars. Nothing is scaled (no ``\\resizebox``): the
text stays at least 8 pt (intervals at least ``\\footnotesize``). A table that fits in no layout keeps
the narrowest one and says so in its first lines.
"""

from __future__ import annotations

from dataclasses import dataclass

from trace_bench.results.table_model import (
    DASH,
    LAYOUTS,
    Cell,
    Table,
    TexLayout,
    header_lines,
    split_columns,
)
from trace_bench.results.tex_pages import TEMPLATES, Template, target_width

__all__ = ["TEMPLATES", "Fit", "Template", "candidates", "fit_layout", "table_width", "target_width"]

#: the characters of :data:`_WIDTHS`, in order
_CHARS = "".join(chr(c) for c in range(32, 127)) + "–↑↓≈±∞×·−"
#: widths in 1/100 pt of :data:`_CHARS` per "size:bold" (T1 Computer Modern, measured with pdflatex)
_WIDTHS: dict[str, tuple[int, ...]] = {
    "normalsize:0": (
        333, 278, 500, 833, 500, 833, 778, 278, 389, 389, 500, 778, 278, 333, 278, 500, 500, 500, 500,
        500, 500, 500, 500, 500, 500, 500, 278, 278, 778, 778, 778, 472, 778, 750, 708, 722, 764, 680,
        653, 785, 750, 361, 514, 778, 625, 916, 750, 778, 680, 778, 736, 555, 722, 750, 750, 1028, 750,
        750, 611, 278, 500, 278, 611, 778, 500, 500, 555, 444, 555, 444, 305, 500, 555, 278, 305, 528,
        278, 833, 555, 500, 555, 528, 392, 394, 389, 555, 528, 722, 528, 528, 444, 500, 278, 500, 611,
        500, 500, 500, 778, 778, 1000, 778, 278, 778),
    "normalsize:1": (
        383, 350, 575, 958, 575, 958, 894, 319, 447, 447, 575, 894, 319, 383, 319, 575, 575, 575, 575,
        575, 575, 575, 575, 575, 575, 575, 319, 319, 894, 894, 894, 543, 894, 869, 818, 830, 882, 755,
        723, 904, 900, 436, 594, 901, 691, 1091, 900, 864, 786, 864, 862, 639, 800, 885, 869, 1189, 869,
        869, 703, 319, 575, 319, 703, 894, 575, 559, 639, 511, 639, 527, 351, 575, 639, 319, 351, 607,
        319, 958, 639, 575, 639, 607, 473, 454, 447, 639, 607, 830, 607, 607, 511, 575, 319, 575, 703,
        575, 500, 500, 778, 778, 1000, 778, 278, 778),
    "small:0": (
        308, 257, 462, 771, 462, 771, 719, 257, 360, 360, 462, 719, 257, 308, 257, 462, 462, 462, 462,
        462, 462, 462, 462, 462, 462, 462, 257, 257, 719, 719, 719, 437, 719, 693, 655, 668, 706, 629,
        604, 726, 693, 334, 475, 719, 578, 848, 693, 719, 629, 719, 681, 514, 668, 693, 693, 950, 693,
        693, 565, 257, 462, 257, 565, 719, 462, 462, 514, 411, 514, 411, 283, 462, 514, 257, 283, 488,
        257, 771, 514, 462, 514, 488, 362, 365, 360, 514, 488, 668, 488, 488, 411, 462, 257, 462, 565,
        462, 462, 462, 719, 719, 925, 719, 257, 719),
    "small:1": (
        355, 324, 532, 887, 532, 887, 828, 296, 414, 414, 532, 828, 296, 355, 296, 532, 532, 532, 532,
        532, 532, 532, 532, 532, 532, 532, 296, 296, 828, 828, 828, 503, 828, 803, 757, 769, 816, 699,
        669, 837, 832, 402, 550, 833, 640, 1009, 832, 800, 727, 800, 798, 592, 741, 818, 803, 1099, 803,
        803, 651, 296, 532, 296, 651, 828, 532, 518, 592, 473, 592, 489, 325, 532, 592, 296, 325, 562,
        296, 887, 592, 532, 592, 562, 439, 420, 414, 592, 562, 769, 562, 562, 473, 532, 296, 532, 651,
        532, 462, 462, 719, 719, 925, 719, 257, 719),
    "footnotesize:0": (
        283, 236, 425, 708, 425, 708, 661, 236, 330, 330, 425, 661, 236, 283, 236, 425, 425, 425, 425,
        425, 425, 425, 425, 425, 425, 425, 236, 236, 661, 661, 661, 401, 661, 637, 602, 614, 649, 578,
        554, 667, 637, 306, 436, 660, 531, 778, 637, 661, 578, 661, 625, 472, 614, 637, 637, 873, 637,
        637, 519, 236, 425, 236, 519, 661, 425, 425, 472, 378, 472, 378, 260, 425, 472, 236, 260, 449,
        236, 708, 472, 425, 472, 449, 331, 335, 330, 472, 449, 614, 449, 449, 378, 425, 236, 425, 519,
        425, 425, 425, 661, 661, 850, 661, 236, 661),
    "footnotesize:1": (
        327, 298, 490, 816, 490, 816, 762, 272, 381, 381, 490, 762, 272, 327, 272, 490, 490, 490, 490,
        490, 490, 490, 490, 490, 490, 490, 272, 272, 762, 762, 762, 463, 762, 738, 695, 708, 750, 642,
        615, 770, 764, 367, 505, 765, 588, 927, 764, 736, 668, 736, 732, 544, 682, 751, 738, 1010, 738,
        738, 599, 272, 490, 272, 599, 762, 490, 476, 544, 435, 544, 449, 299, 490, 544, 272, 299, 517,
        272, 816, 544, 490, 544, 517, 405, 386, 381, 544, 517, 708, 517, 517, 435, 490, 272, 490, 599,
        490, 425, 425, 661, 661, 850, 661, 236, 661),
    "scriptsize:0": (
        269, 226, 399, 657, 399, 657, 614, 226, 312, 312, 399, 614, 226, 269, 226, 399, 399, 399, 399,
        399, 399, 399, 399, 399, 399, 399, 226, 226, 614, 614, 614, 377, 614, 590, 559, 571, 602, 537,
        516, 619, 590, 289, 408, 612, 494, 719, 590, 614, 537, 614, 580, 442, 571, 590, 590, 805, 590,
        590, 485, 226, 399, 226, 485, 614, 399, 399, 442, 355, 442, 355, 248, 399, 442, 226, 248, 420,
        226, 657, 442, 399, 442, 420, 312, 317, 312, 442, 420, 571, 420, 420, 355, 399, 226, 399, 485,
        399, 410, 410, 625, 625, 797, 625, 238, 625),
    "scriptsize:1": (
        304, 278, 453, 751, 453, 751, 701, 254, 354, 354, 453, 701, 254, 304, 254, 453, 453, 453, 453,
        453, 453, 453, 453, 453, 453, 453, 254, 254, 701, 701, 701, 428, 701, 677, 640, 652, 689, 591,
        566, 708, 701, 335, 466, 702, 541, 850, 701, 678, 615, 678, 672, 503, 628, 689, 677, 926, 677,
        677, 552, 255, 453, 255, 552, 701, 453, 441, 503, 403, 503, 415, 279, 453, 503, 254, 279, 478,
        254, 751, 503, 453, 503, 478, 374, 358, 354, 503, 478, 652, 478, 478, 403, 453, 254, 453, 552,
        453, 410, 410, 625, 625, 797, 625, 238, 625),
}
_SIZE_NAME = {10.0: "normalsize", 9.0: "small", 8.0: "footnotesize", 7.0: "scriptsize"}
_INDEX = {ch: i for i, ch in enumerate(_CHARS)}
#: a character the tables print as ``[U+XXXX]`` (pdflatex cannot set it) or an accented letter
_OTHER_WIDTH = 0.55


def text_width(text: str, points: float = 10.0, bold: bool = False) -> float:
    """Width in pt of ``text`` set in Computer Modern at ``points`` (10, 9, 8 or 7) pt."""
    table = _WIDTHS[f"{_SIZE_NAME.get(points, 'normalsize')}:{int(bold)}"]
    scale = 1.0 if points in _SIZE_NAME else points / 10.0
    w = 0.0
    for ch in text:
        i = _INDEX.get(ch)
        if i is not None:
            w += table[i] / 100.0
        elif ord(ch) < 0x180:  # Latin-1 / Latin Extended-A letters: about a lower-case letter
            w += table[_INDEX["n"]] / 100.0
        else:  # written as [U+XXXX]
            w += sum(table[_INDEX[c]] for c in "[U+0000]") / 100.0
    return w * scale


# ----------------------------------------------------------------------------- width estimate
_THIN = 1.67  # \, at 10 pt
_PM = 7.78  # $\pm$ at 10 pt


def _ci_points(layout: TexLayout) -> float:
    return layout.points if layout.size == "footnotesize" else 8.0


def _strip_unit(text: str) -> str:
    for suffix in ("%", " GB"):
        if text.endswith(suffix):
            return " / ".join(p.removesuffix(suffix) for p in text.split(" / "))
    return text


#: footnote marks a cell may carry (:attr:`Cell.mark`): about the width of a digit
_MARKS = "†‡§"


def _cell_width(cell: Cell, layout: TexLayout) -> float:
    marks = sum(text_width("0", layout.points) for ch in cell.mark if ch in _MARKS)
    return _value_width(cell, layout) + marks + text_width("".join(c for c in cell.mark if c not in _MARKS),
                                                           layout.points)


def _value_width(cell: Cell, layout: TexLayout) -> float:
    pt = layout.points
    txt = _strip_unit(cell.text).replace(DASH, "-")
    w = text_width(txt, pt, cell.best)
    ci_pt = _ci_points(layout)
    if layout.intervals in ("inline", "stacked") and cell.ci:
        lo, _, hi = cell.ci.strip("[]").partition(", ")
        ci = text_width(f"[{_strip_unit(lo)}, {_strip_unit(hi)}]" if cell.interval else "-", ci_pt)
        return w + text_width(" ", pt) + ci if layout.intervals == "inline" else max(w, ci)
    if layout.intervals == "pm" and cell.plus and cell.minus:
        p, m = _strip_unit(cell.plus), _strip_unit(cell.minus)
        if p == m:
            return w + (2 * _THIN + _PM) * ci_pt / 10.0 + text_width(p, ci_pt)
        return w + max(script_width("+" + p, pt), script_width("-" + m, pt))
    return w


#: widths in pt of a math superscript's characters (cmr7 at 10 pt; cmr6 at 9 and 8 pt), measured with pdflatex
#: (``\setbox0\hbox{$^{0}$}``), and ``\scriptspace`` after the script
_SCRIPT = {10.0: {"0": 3.986, ".": 2.375, "+": 6.139, "-": 6.25}, 9.0: {"0": 3.667, ".": 2.278, "+": 5.611, "-": 5.778}}
_SCRIPTSPACE = 0.5


def script_width(text: str, points: float) -> float:
    """Width in pt of ``$^{text}$`` (digits, '.', '+', '-') in a ``points``-pt paragraph."""
    table = _SCRIPT[10.0 if points >= 10.0 else 9.0]
    return sum(table.get(ch, table["0"]) if not ch.isdigit() else table["0"] for ch in text) + _SCRIPTSPACE


def _column_width(t: Table, key: str, layout: TexLayout) -> float:
    col = next(c for c in t.columns if c.key == key)
    cells = [_cell_width(r.cell(key), layout) for r in t.rows if not r.heading]
    heads = [text_width(x, layout.points) for x in header_lines(t, col, layout)]
    return max(cells + heads + [0.0])


def table_width(t: Table, layout: TexLayout) -> float:
    """Estimated natural width in pt of the widest tabular ``to_latex(t, layout=layout)`` writes."""
    sep = 6.0 if layout.colsep is None else layout.colsep
    stub = 0.0
    if t.stub is not None:
        stub = max([text_width(r.shown, layout.points) for r in t.rows] + [text_width(t.stub, layout.points)])
    widest = 0.0
    for cols in split_columns(t, layout):
        n = len(cols) + (t.stub is not None)
        w = stub + sum(_column_width(t, c.key, layout) for c in cols) + 2 * sep * max(n - 1, 0)
        widest = max(widest, w)
    return widest


# ----------------------------------------------------------------------------- choosing a layout
@dataclass(frozen=True)
class Fit:
    """The layout chosen for a table, its estimated width and the target (pt), whether it fits."""

    layout: TexLayout
    width: float
    target: float
    fits: bool

    def comment(self, where: str) -> str:
        """The ``%`` line saying what the layout fits."""
        size = f"{self.layout.points:g} pt in a 10-pt document"
        if self.fits:
            return (f"layout {self.layout.name}, {size}: about {self.width:.0f} pt wide, fits {where} "
                    f"({self.target:.0f} pt)")
        return (f"layout {self.layout.name}, {size}: about {self.width:.0f} pt wide, WIDER than {where} "
                f"({self.target:.0f} pt); choose another layout (split, compact) or fewer columns")


#: at most this share of the target is used (the estimate is within about 1% of pdflatex's widths)
MARGIN = 0.98


def candidates(style: str = "auto") -> list[TexLayout]:
    """The layouts tried for ``style`` ("auto" or a name of :data:`LAYOUTS`), best first."""
    if style == "auto":
        bases = [TexLayout(i, p) for p in (1, 2) for i in ("inline", "stacked", "pm")]
        bases += [TexLayout("none", 1), TexLayout("none", 2), TexLayout("stacked", 3), TexLayout("pm", 3),
                  TexLayout("none", 3)]
    else:
        bases = [TexLayout.parse(style)]
    return [TexLayout(b.intervals, b.parts, size, sep) for b in bases for size in ("", "small", "footnotesize")
            for sep in (None, 4.0)]


def fit_layout(t: Table, width: str | float = "lncs", style: str = "auto") -> Fit:
    """The first layout of :func:`candidates` whose estimated width fits ``width`` (see the module
    docstring); when none fits, the narrowest candidate (``fits=False``)."""
    if style != "auto" and style not in LAYOUTS:
        TexLayout.parse(style)  # raises with the list of layouts
    target = target_width(width)
    tried = [(lay, table_width(t, lay)) for lay in candidates(style)]
    for lay, w in tried:
        if w <= MARGIN * target:
            return Fit(lay, w, target, True)
    lay, w = min(tried, key=lambda lw: lw[1])
    return Fit(lay, w, target, False)
