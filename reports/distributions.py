"""Per-case distributions of every per-case metric, one static inline SVG per metric (no script, no
network: the report stays one offline file and small).

Each method is a row (GT first, its median drawn as a dotted reference line across the plot): every case
is a dot (hover: its case id and value), the median a bar, and with at least :data:`MIN_BOX` cases the box
spans the quartiles with whiskers to the most extreme case within 1.5 IQR of the box (Tukey). Values are
in the column's display unit (percent for fractions, GB for bytes). Static SVG was chosen over an
interactive library: Vega-Lite or Plotly inlined add 0.4-3.5 MB of script to every report for hover and
zoom that the per-case table (sortable, with outliers marked) already gives.
"""

from __future__ import annotations

import math

import numpy as np

from trace_bench.results import ALL_CASES, GT, PROFILE_CASE, Results, base_metric, column_info
from trace_bench.results.escape import html_attr, html_text

from .tables import TABLES, arrow, label, table_columns

__all__ = ["anatomy_distributions_section", "distribution_svg", "distributions_section", "nice_ticks"]

#: fewer cases than this: dots and median only (a box of 2-4 points says nothing more)
MIN_BOX = 5
_W, _LEFT, _RIGHT, _ROW, _TOP, _BOTTOM = 640, 150, 20, 26, 10, 34
_COLOURS = ("#0173b2", "#de8f05", "#029e73", "#d55e00", "#cc78bc", "#ca9161", "#fbafe4", "#949494", "#ece133",
            "#56b4e9")  # seaborn "colorblind"


def nice_ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    """About ``n`` round tick values covering [lo, hi] (steps of 1, 2 or 5 x 10^k)."""
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return []
    if hi <= lo:
        lo, hi = lo - 1.0, hi + 1.0
    raw = (hi - lo) / max(n, 1)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(s * mag for s in (1, 2, 5, 10) if s * mag >= raw)
    start = math.floor(lo / step) * step
    ticks = []
    x = start
    while x <= hi + step * 1e-9:
        ticks.append(round(x, 12))
        x += step
    return ticks


def _scale(info) -> tuple[float, str]:
    unit = info.unit if info is not None else ""
    if unit == "fraction":
        return 100.0, "%"
    if unit == "bytes":
        return 1 / 2**30, "GB"
    return 1.0, "mm" if unit == "mm" else ""


def _fmt(v: float) -> str:
    return f"{v:.4g}"


def distribution_svg(title: str, groups: list[tuple[str, list[tuple[str, float]]]], unit: str = "",
                     colours: dict[str, str] | None = None) -> str:
    """One SVG: a row per ``(method, [(case id, value), ...])`` in display units; GT (if first) is the
    reference line; ``colours``: a colour per method (the same in every plot). Empty string when there is
    no finite value."""
    vals = [v for _, pts in groups for _, v in pts if math.isfinite(v)]
    if not vals:
        return ""
    ticks = nice_ticks(min(vals), max(vals))
    lo, hi = min(ticks[0], min(vals)), max(ticks[-1], max(vals))
    span = hi - lo or 1.0
    height = _TOP + _ROW * len(groups) + _BOTTOM

    def x(v: float) -> float:
        return _LEFT + (v - lo) / span * (_W - _LEFT - _RIGHT)

    out = [f'<svg class="dist" xmlns="http://www.w3.org/2000/svg" width="{_W}" height="{height}" '
           f'viewBox="0 0 {_W} {height}" role="img" aria-label="{html_attr(title)}">']
    bottom = _TOP + _ROW * len(groups)
    for t in ticks:
        out.append(f'<line x1="{x(t):.1f}" y1="{_TOP}" x2="{x(t):.1f}" y2="{bottom}" stroke="#eee"/>'
                   f'<text x="{x(t):.1f}" y="{bottom + 14}" text-anchor="middle" font-size="10">{_fmt(t)}</text>')
    out.append(f'<text x="{(_LEFT + _W - _RIGHT) / 2:.0f}" y="{bottom + 29}" text-anchor="middle" font-size="11">'
               f'{html_text(title)}{html_text(" (" + unit + ")") if unit and f"({unit})" not in title else ""}</text>')
    for i, (method, pts) in enumerate(groups):
        yc = _TOP + _ROW * i + _ROW / 2
        colour = "#555" if method == GT else (colours or {}).get(method, _COLOURS[i % len(_COLOURS)])
        out.append(f'<text x="{_LEFT - 8}" y="{yc + 4:.1f}" text-anchor="end" font-size="11">'
                   f'{html_text(method if len(method) <= 22 else method[:21] + "…")}</text>')
        v = np.array([p for _, p in pts if math.isfinite(p)], dtype=float)
        if v.size == 0:
            out.append(f'<text x="{_LEFT + 4}" y="{yc + 4:.1f}" font-size="10" fill="#999">no value</text>')
            continue
        med = float(np.median(v))
        if i == 0 and method == GT:
            out.append(f'<line x1="{x(med):.1f}" y1="{_TOP}" x2="{x(med):.1f}" y2="{bottom}" stroke="#555" '
                       'stroke-dasharray="2,3"><title>GT median</title></line>')
        if v.size >= MIN_BOX:
            q1, q3 = (float(q) for q in np.percentile(v, [25, 75]))
            iqr = q3 - q1
            lo_w = float(v[v >= q1 - 1.5 * iqr].min())
            hi_w = float(v[v <= q3 + 1.5 * iqr].max())
            out.append(f'<line x1="{x(lo_w):.1f}" y1="{yc:.1f}" x2="{x(hi_w):.1f}" y2="{yc:.1f}" stroke="{colour}"/>'
                       f'<rect x="{x(q1):.1f}" y="{yc - 7:.1f}" width="{max(x(q3) - x(q1), 1):.1f}" height="14" '
                       f'fill="{colour}" fill-opacity="0.15" stroke="{colour}"/>')
        out.append(f'<line x1="{x(med):.1f}" y1="{yc - 9:.1f}" x2="{x(med):.1f}" y2="{yc + 9:.1f}" '
                   f'stroke="{colour}" stroke-width="2.5"><title>{html_text(method)} median {_fmt(med)}</title></line>')
        for k, (case, p) in enumerate(pts):
            if not math.isfinite(p):
                continue
            jitter = ((k * 0.618034) % 1.0 - 0.5) * 10  # deterministic spread (golden-ratio sequence)
            out.append(f'<circle cx="{x(p):.1f}" cy="{yc + jitter:.1f}" r="2.6" fill="{colour}" fill-opacity="0.7">'
                       f'<title>{html_text(case)}: {_fmt(p)}</title></circle>')
    out.append("</svg>")
    return "".join(out)


def distribution_columns(res: Results) -> list[str]:
    """The per-case columns of Table 1 (each metric's own columns; per-class and profile columns left out)."""
    cols = [c for key, _, _ in TABLES if key != "table1b" for c in table_columns(res, key)]
    out = []
    for c in cols:
        info = column_info(c, res.metrics)
        if base_metric(c) == c and info is not None and info.kind == "case":
            out.append(c)
    return out


def distributions_section(res: Results) -> list[str]:
    """The HTML section: one SVG per per-case metric, methods as rows (GT first)."""
    pc = res.per_case
    pc = pc[~pc.case_id.isin([ALL_CASES, PROFILE_CASE])]
    cols = [c for c in distribution_columns(res) if c in set(pc.metric)]
    if not cols:
        return []
    colours = {m: _COLOURS[i % len(_COLOURS)] for i, m in enumerate(m for m in res.methods if m != GT)}
    h = ['<h2 id="distributions">Per-case distributions</h2>',
         f'<p class="note">Every case is a dot (hover for its case id); the bar is the median; with {MIN_BOX} or more '
         "cases the box spans the quartiles and the whiskers reach the most extreme case within 1.5 IQR. The dotted "
         "line is GT's median. Sort the per-case table to find a case.</p>"]
    for c in cols:
        info = column_info(c, res.metrics)
        scale, unit = _scale(info)
        d = pc[pc.metric == c]
        groups = []
        for m in res.methods:
            rows = d[d.method == m]
            if len(rows):
                groups.append((m, [(str(cid), float(v) * scale) for cid, v in zip(rows.case_id, rows.value)]))
        title = f"{label(c, res.metrics)} {arrow(c, res)}".strip()
        svg = distribution_svg(title, groups, unit, colours)
        if svg:
            h.append(f'<figure class="dist">{svg}</figure>')
    return h


#: the per-case anatomy families drawn per label (trace_bench.metrics.anatomy): organ volume and median HU
ANATOMY_FAMILIES = ("anat_volume_ml", "anat_hu_median")


def anatomy_distributions_section(res: Results) -> list[str]:
    """Per label group, the per-case organ volumes and median HU of every method and GT (the distributions the
    ``anatomy_dist`` distances compare), one SVG each, methods as rows."""
    pc = res.per_case
    pc = pc[~pc.case_id.isin([ALL_CASES, PROFILE_CASE])]
    figs = []
    colours = {m: _COLOURS[i % len(_COLOURS)] for i, m in enumerate(m for m in res.methods if m != GT)}
    cols = sorted({c for c in set(pc.metric) if base_metric(c) in ANATOMY_FAMILIES and base_metric(c) != c},
                  key=lambda c: (c[len(base_metric(c)):], ANATOMY_FAMILIES.index(base_metric(c))))
    for c in cols:
        info = column_info(c, res.metrics)
        scale, unit = _scale(info)
        d = pc[pc.metric == c]
        groups = [(m, [(str(cid), float(v) * scale) for cid, v in zip(rows.case_id, rows.value)])
                  for m in res.methods for rows in [d[d.method == m]] if len(rows)]
        svg = distribution_svg(label(c, res.metrics), groups, unit, colours)
        if svg:
            figs.append(f'<figure class="dist">{svg}</figure>')
    if not figs:
        return []
    return ['<h3 id="anatomy-distributions">Anatomy: organ volume and median HU per case</h3>',
            '<p class="note">Per label group of the run\'s segmenter, every volume is a dot (GT: the reference '
            "volumes); the anatomy distances (KS, W1) compare these distributions between each method and GT.</p>",
            *figs]
