"""``report.html``: one self-contained file (no network): tables you can sort by clicking a header
(GT stays on top as the reference row), a ranking view (:mod:`reports.ranking`), per-case
distributions as inline SVG (:mod:`reports.distributions`), a per-case table with outliers marked, a
protocol legend, compact warning / error / not-computed tables (each message once), figures as
embedded PNG and a slice viewer (reference vs every method, label overlay).
"""

from __future__ import annotations

import base64
import math
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from trace_bench.results import (
    ALL_CASES,
    PROFILE_CASE,
    Results,
    base_metric,
    column_info,
)
from trace_bench.results.escape import html_attr, html_text, json_script, prose_html
from trace_bench.results.table_model import Cell, Column, Row, Table, to_html

from .distributions import anatomy_distributions_section, distributions_section
from .protocols import describe_protocol
from .ranking import ranking_table
from .skipped import skipped_rows
from .tables import arrow, fmt_value, label, notes_once

CSS = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:2em auto;max-width:1400px;color:#222;padding:0 1em}
nav a{margin-right:1em}
table{border-collapse:collapse;margin:1em 0 .3em 0;font-size:13px}
caption{text-align:left;font-weight:600;font-size:15px;padding-bottom:.4em;white-space:nowrap}
th,td{padding:4px 8px;text-align:right;border-bottom:1px solid #ddd;vertical-align:top}
th[scope=row],thead th:first-child,td.l{text-align:left}
thead th{border-bottom:2px solid #333;border-top:2px solid #333}
tbody tr:last-child th,tbody tr:last-child td{border-bottom:2px solid #333}
tr.pinned th,tr.pinned td{background:#f4f6f8;border-bottom:1px solid #999}
svg.dist{max-width:100%;height:auto;font-family:inherit}
figure.dist{margin:.4em 0}
table.sortable thead th{cursor:pointer;user-select:none}
table.sortable thead th:after{content:" \\2195";color:#bbb;font-size:10px}
table.sortable thead th.asc:after{content:" \\25B2";color:#333}
table.sortable thead th.desc:after{content:" \\25BC";color:#333}
.ci{color:#777;font-size:11px}
table.published{background:#f7f7f2}
table.published caption{color:#8a6d00}
p.note{font-size:12px;color:#555;margin:.2em 0}
img{max-width:100%;border:1px solid #eee;margin:.5em 0}
code{background:#f3f3f3;padding:1px 3px}
.warn{color:#8a4b00}
td.outlier{background:#fde2c8;font-weight:600}
.viewer{border:1px solid #ddd;padding:.6em;margin:1em 0}
.viewer .panels{display:flex;flex-wrap:wrap;gap:10px}
.viewer figure{margin:0;text-align:center;font-size:12px}
.viewer canvas{background:#000;image-rendering:pixelated;border:1px solid #ccc}
.viewer input[type=range]{width:420px;vertical-align:middle}
dl.legend dt{font-family:monospace;margin-top:.5em}
dl.legend dd{margin-left:1.5em;font-size:13px}
"""

#: sort a table by a clicked header (numbers by their data-v, text otherwise; pinned reference rows stay
#: first); also used by the leaderboard page (:mod:`reports.board`)
SORT_JS = r"""
document.querySelectorAll('table.sortable').forEach(function(t){
  t.querySelectorAll('thead th').forEach(function(th,col){
    th.title='click to sort';
    th.addEventListener('click',function(){
      var asc=!th.classList.contains('asc');
      t.querySelectorAll('thead th').forEach(function(h){h.classList.remove('asc','desc');});
      th.classList.add(asc?'asc':'desc');
      var body=t.tBodies[0], all=Array.prototype.slice.call(body.rows), groups=[[]];
      all.forEach(function(r){
        if(r.classList.contains('group')) groups.push([r]); else groups[groups.length-1].push(r);});
      function key(r){var c=r.cells[col]; if(!c) return [1,''];
        var v=c.getAttribute('data-v'); if(v!==null&&v!==''&&!isNaN(parseFloat(v))) return [0,parseFloat(v)];
        return [1,c.textContent.trim().toLowerCase()];}
      groups.forEach(function(g){  /* a group heading (per-label tables) stays above its rows */
        var head=g.filter(function(r){return r.classList.contains('group')||r.classList.contains('pinned');});
        var rows=g.filter(function(r){return !(r.classList.contains('group')||r.classList.contains('pinned'));});
        rows.sort(function(a,b){var x=key(a),y=key(b);
          if(x[0]!==y[0]) return x[0]-y[0];
          var r=x[1]<y[1]?-1:(x[1]>y[1]?1:0); return asc?r:-r;});
        head.concat(rows).forEach(function(r){body.appendChild(r);});
      });
    });
  });
});
"""

#: the slice viewer: slider or mouse wheel (wheel down = next slice, as in the reader-study packet)
VIEWER_JS = r"""
(function(){
  var el=document.getElementById('viewer-data'); if(!el) return;
  var cases=JSON.parse(el.textContent);
  cases.forEach(function(c,ci){
    var root=document.getElementById('viewer-'+ci); if(!root) return;
    var slider=root.querySelector('input[type=range]'), ov=root.querySelector('input[type=checkbox]');
    var info=root.querySelector('.pos'), panels=root.querySelector('.panels');
    var n=Math.max.apply(null,c.volumes.map(function(v){return v.n;}));
    slider.max=n-1; slider.value=Math.floor((n-1)/2);
    var items=c.volumes.map(function(v){
      var fig=document.createElement('figure'), cv=document.createElement('canvas');
      var w=256, h=Math.round(256*(c.mode==='stack'?v.aspect:1));
      cv.width=w; cv.height=h; fig.appendChild(cv);
      var cap=document.createElement('figcaption'); fig.appendChild(cap); panels.appendChild(fig);
      var img=new Image(), lab=null; img.onload=draw; img.src=v.img;
      if(v.lab){lab=new Image(); lab.onload=draw; lab.src=v.lab;}
      cv.addEventListener('wheel',function(e){e.preventDefault();
        slider.value=Math.min(n-1,Math.max(0,+slider.value+(e.deltaY>0?1:-1))); draw();});
      return {v:v,cv:cv,cap:cap,img:img,lab:lab};
    });
    function draw(){
      var k=+slider.value;
      items.forEach(function(it){
        var v=it.v, i=Math.min(v.n-1,Math.round(k*(v.n-1)/Math.max(1,n-1)));
        var g=it.cv.getContext('2d'); g.imageSmoothingEnabled=false; g.globalAlpha=1;
        g.clearRect(0,0,it.cv.width,it.cv.height);
        var sx=(i%c.cols)*c.tw, sy=Math.floor(i/c.cols)*c.th, tw=v.tile[1], th=v.tile[0];
        if(it.img.complete&&it.img.naturalWidth) g.drawImage(it.img,sx,sy,tw,th,0,0,it.cv.width,it.cv.height);
        if(ov.checked&&it.lab&&it.lab.complete&&it.lab.naturalWidth){g.globalAlpha=0.45;
          g.drawImage(it.lab,sx,sy,tw,th,0,0,it.cv.width,it.cv.height);}
        var where=(c.mode==='stack')?('z = '+v.z[i]+' mm (slice '+(i+1)+' of '+v.n+')'):(v.z[i]+' mid-plane');
        var d=(v.dice&&v.dice[i]!==null&&v.dice[i]!==undefined)?(', Dice '+v.dice[i].toFixed(3)):'';
        it.cap.textContent=v.name+': '+where+d+(v.lab?'':' (no label map)');
      });
      info.textContent=(c.mode==='stack')?('position '+(k+1)+' / '+n):['axial','coronal','sagittal'][k];
    }
    slider.addEventListener('input',draw); ov.addEventListener('change',draw); draw();
  });
})();
"""


def table_html(t: Table) -> str:
    """One of Tables 1 / 2 (ours, or the paper's own numbers apart)."""
    return to_html(t, css="published" if t.published else "ours",
                   anchor=f"{t.key}-published" if t.published else t.key)


def simple_table(cls: str, head: list[str], rows: list[list[Any]], *, prose: tuple[int, ...] = ()) -> str:
    """A sortable table without row labels: numbers (int / float) sort by value and align right (a
    column of numbers only), text aligns left; ``prose``: columns holding messages with `code` spans."""
    def number(x: Any) -> bool:
        return isinstance(x, (int, float)) and not isinstance(x, bool)

    cols = [Column(f"c{i}", h, align="r" if all(number(r[i]) or r[i] is None for r in rows) else "l",
                   prose=i in prose) for i, h in enumerate(head)]
    out = []
    for r in rows:
        cells = {f"c{i}": (Cell(f"{x:g}" if isinstance(x, float) else str(x), value=float(x)) if number(x)
                           else Cell("" if x is None else str(x))) for i, x in enumerate(r)}
        out.append(Row(str(len(out)), cells))
    return to_html(Table(cls, "", cols, out, stub=None), css=cls)


def _cases_text(pairs: list[tuple[str, str]], limit: int = 12) -> str:
    by: dict[str, list[str]] = defaultdict(list)
    for m, c in pairs:
        by[m].append(c)
    parts = []
    for m, cs in by.items():
        shown = ", ".join(cs[:limit]) + (f" (+{len(cs) - limit})" if len(cs) > limit else "")
        parts.append(f"{m}: {shown}")
    return "; ".join(parts)


def grouped_rows(df, text_col: str) -> list[list[Any]]:
    """Rows of errors / warnings grouped by (stage, message): stage, message, count, where."""
    groups: dict[tuple[str, str], list[tuple[str, str]]] = defaultdict(list)
    for r in df.itertuples(index=False):
        groups[(str(r.stage), str(getattr(r, text_col)))].append((str(r.method), str(r.case_id)))
    return [[st, msg, len(v), _cases_text(v)] for (st, msg), v in sorted(groups.items(), key=lambda kv: -len(kv[1]))]


#: figures of CT images (not of numbers): embedded as JPEG, the lossless PNG stays in plots/
PHOTO_FIGURES = ("montage", "overlay")


def figure_uri(kind: str, path: Path) -> str:
    """A figure as a data URI: charts as their PNG; CT montages and overlays as JPEG (quality 90), a
    quarter of the PNG's size (the PNG is linked under the figure)."""
    data = path.read_bytes()
    if kind.split(":", 1)[0] in PHOTO_FIGURES:
        import io

        from PIL import Image

        buf = io.BytesIO()
        with Image.open(io.BytesIO(data)) as im:
            im.convert("RGB").save(buf, format="JPEG", quality=90)
        return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")


def ranking_section(res: Results) -> list[str]:
    """Methods ranked per metric with the rank's uncertainty and the overall order (:mod:`reports.ranking`)."""
    t = ranking_table(res)
    if t is None:
        return []
    return ['<h2 id="ranking">Ranking</h2>', to_html(t, css="ranking", anchor="ranking-table", caption=False)]


def protocol_legend(res: Results) -> list[str]:
    prov = res.provenance
    protos: dict[str, list[str]] = defaultdict(list)
    for name, p in sorted((prov.get("protocols") or {}).items()):
        protos[str(p)].append(name)
    if not protos:
        for c, info in res.metrics.items():
            if info.protocol and base_metric(c) == c and not info.hidden:
                protos[info.protocol].append(c)
    frame = prov.get("frame_protocol")
    h = ['<h2 id="protocols">Protocols</h2>',
         "<p>Every number carries the id of the protocol that produced it (in <code>per_case.csv</code>, the cache "
         "keys and <code>results.json</code>). The parts of an id are separated by <code>|</code>:</p>",
         '<dl class="legend">']
    if frame:
        h.append(f"<dt>{html_text(frame)}</dt><dd>(frame protocol of this run) "
                 + "; ".join(html_text(d) for _, d in describe_protocol(str(frame), res.metrics)) + "</dd>")
    for p, names in protos.items():
        h.append(f"<dt>{html_text(p)}</dt><dd>used by {html_text(', '.join(names))}<ul>"
                 + "".join(f"<li><code>{html_text(part)}</code>: {html_text(d)}</li>"
                           for part, d in describe_protocol(p, res.metrics))
                 + "</ul></dd>")
    h.append("</dl>")
    return h


def per_case_section(res: Results) -> list[str]:
    """All per-case metrics of every (method, case) as one sortable table; a value more than 2 SD from
    its method's mean over cases (n >= 3) is an outlier, marked in the worse or better direction."""
    pc = res.per_case
    pc = pc[~pc.case_id.isin([ALL_CASES, PROFILE_CASE])]
    if pc.empty:
        return []
    cols = [c for c in dict.fromkeys(pc.metric.tolist())
            if (column_info(c, res.metrics) is None or not column_info(c, res.metrics).hidden)]
    cols.sort(key=lambda c: ((column_info(base_metric(c), res.metrics) or column_info(c, res.metrics)).rank
                             if column_info(c, res.metrics) else 100.0, base_metric(c) != c, c))
    wide = pc.pivot_table(index=["method", "case_id"], columns="metric", values="value", aggfunc="first")
    stats = pc.groupby(["method", "metric"]).value.agg(["mean", "std", "count"])
    order = {m: i for i, m in enumerate(res.methods)}
    keys = sorted(wide.index, key=lambda k: (order.get(k[0], 99), k[1]))
    columns = [Column("method", "Method", align="l"), Column("case", "Case", align="l")]
    columns += [Column(c, label(c, res.metrics), arrow(c, res)) for c in cols]
    rows = []
    for m, case in keys:
        cells = {"method": Cell(m), "case": Cell(case)}
        for c in cols:
            v = wide.loc[(m, case)].get(c, np.nan) if c in wide.columns else np.nan
            if v is None or (isinstance(v, float) and math.isnan(v)):
                continue
            cells[c] = Cell(fmt_value(c, float(v), res.metrics), value=float(v))
            if (m, c) in stats.index:
                mu, sd, n = stats.loc[(m, c)]
                if n >= 3 and sd and np.isfinite(sd) and sd > 0 and abs(v - mu) > 2 * sd:
                    cells[c].css, cells[c].hover = "outlier", f"z = {(v - mu) / sd:+.1f} vs {m} mean"
        rows.append(Row(f"{m}/{case}", cells))
    h = ['<h2 id="per-case">Per case</h2>',
         f"<p>Every per-case value ({len(keys)} volumes, from <a href=\"per_case.csv\">per_case.csv</a>). "
         "Highlighted: more than 2 SD from the method's mean over its cases (methods with 3 or more cases); "
         "hover for the z-score. Click a header to sort.</p>",
         to_html(Table("per-case", "", columns, rows, stub=None), css="percase", anchor="per-case-table")]
    return h


def viewer_section(viewers: list[dict[str, Any]], notes: list[str]) -> list[str]:
    if not viewers and not notes:
        return []
    h = ['<h2 id="viewer">Slice viewer</h2>']
    h += [f'<p class="note">{prose_html(n)}</p>' for n in notes]
    for i, v in enumerate(viewers):
        what = ("Scroll through z (slider or mouse wheel over an image); the volumes are shown at reduced "
                "resolution (HU window [-1000, 1000])." if v["mode"] == "stack" else
                "Only the mid-planes were stored for this case (the input volumes were not readable when this "
                "report was rendered): the slider steps through axial, coronal and sagittal.")
        h += [f'<div class="viewer" id="viewer-{i}"><h3>Case {html_text(v["case"])}</h3>'
              f'<p class="note">{html_text(what)}</p>',
              f'<label>slice <input type="range" min="0" max="0" value="0" '
              f'aria-label="slice of case {html_attr(v["case"])}"></label> '
              '<span class="pos"></span> <label><input type="checkbox" checked> label overlay</label>',
              '<div class="panels"></div></div>']
    data = json_script(viewers, separators=(",", ":"))
    h.append(f'<script type="application/json" id="viewer-data">{data}</script>')
    return h


def utility_section(tables: list[Table], pngs: list[Path]) -> list[str]:
    """The downstream-utility tables (OUT/utility/, :mod:`reports.utility`) and their plot."""
    if not tables:
        return []
    h = ['<h2 id="utility">Downstream utility (train on synthetic, test on real)</h2>']
    h += [to_html(t, css="utility", anchor=t.key) for t in tables]
    for p in pngs:
        h.append(f'<figure><img alt="downstream utility" src="{figure_uri("utility", p)}"><figcaption>'
                 f'<a href="utility/{html_attr(p.name)}">utility/{html_text(p.name)}</a>; every number: '
                 '<a href="utility/utility.json">utility/utility.json</a> and the CSV files beside it</figcaption>'
                 '</figure>')
    return h


def memorization_section(data: dict, o: Path) -> list[str]:
    """The memorization audit (OUT/audit/memorization.json): per-method near-copy rates, C_T, AuthPct,
    and the montages of the closest generated / training pairs."""
    h = ['<h2 id="memorization">Memorization audit</h2>', f'<p class="note">{html_text(data.get("note", ""))}</p>']
    cols = ["method", "n", "n_flagged", "near_copy_rate_volume", "near_copy_rate_slice", "C_T", "authpct"]
    rows = [[m.get(c) if not isinstance(m.get(c), float) else round(m.get(c), 4) for c in cols]
            for m in data.get("methods", [])]
    h.append(simple_table("memorization", cols, rows))
    for m in data.get("methods", []):
        mont = m.get("montage")
        p = (o / "audit" / mont) if mont else None
        if p is not None and p.is_file():
            b64 = base64.b64encode(p.read_bytes()).decode("ascii")
            h.append(f'<figure><img alt="montage {html_attr(m.get("method"))}" src="data:image/png;base64,{b64}">'
                     f'<figcaption>{html_text(m.get("method"))}: closest generated / training pairs</figcaption></figure>')
    h.append('<p class="note">Details: <a href="audit/memorization.csv">audit/memorization.csv</a>, '
             '<a href="audit/memorization_summary.csv">audit/memorization_summary.csv</a>.</p>')
    return h


def render_html(res: Results, tables: list[Table], pub: list[Table], *, head: str, inputs: list[str],
                alerts: list[str], notes: list[str], timing: list[tuple[str, float]], figs: dict[str, Path],
                viewers: list[dict[str, Any]], viewer_notes: list[str], links: list[tuple[str, str]],
                memorization: dict | None = None, utility: tuple[list[Table], list[Path]] = ([], [])) -> str:
    o = res.out
    h = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">', "<title>trace-bench report</title>",
         f"<style>{CSS}</style></head><body>", "<h1>trace-bench report</h1>", f"<p>{html_text(head)}</p>",
         '<nav><a href="#tables">Tables</a>' + ('<a href="#utility">Utility</a>' if utility[0] else "")
         + '<a href="#ranking">Ranking</a><a href="#distributions">Distributions</a>'
         '<a href="#per-case">Per case</a><a href="#viewer">Slice viewer</a>'
         '<a href="#figures">Figures</a><a href="#protocols">Protocols</a><a href="#problems">Problems</a>'
         '<a href="#files">Files</a></nav>', "<h2>Inputs</h2><ul>"]
    h += [f"<li>{prose_html(x)}</li>" for x in inputs]
    h.append("</ul>")
    h += [f'<p class="warn"><b>Warning:</b> {prose_html(n)}</p>' for n in alerts]
    h += [f'<p class="warn">{prose_html(n)}</p>' for n in notes]
    if res.skipped:
        n = len(res.skipped)
        h.append(f'<p class="warn">{n} metric{"s" if n != 1 else ""} not computed in this run: see '
                 '<a href="#problems">Problems</a> for why and how to get them.</p>')
    h.append('<h2 id="tables">Tables</h2><p class="note">Click a column header to sort; GT stays on top as the '
             'reference row.</p>')
    shown = notes_once([x for t in tables for x in [t] + [p for p in pub if p.key == t.key]])
    for t in shown:
        h.append(table_html(t))
        if not t.published:
            h.append(f'<p class="note">As CSV: <a href="{t.key}.csv">{t.key}.csv</a>; as LaTeX: '
                     f'<a href="tables/{t.key}.tex">tables/{t.key}.tex</a></p>')
    h += utility_section(*utility)
    h += ranking_section(res)
    h += distributions_section(res)
    h += anatomy_distributions_section(res)
    h += per_case_section(res)
    h += viewer_section(viewers, viewer_notes)
    if figs:
        h.append('<h2 id="figures">Figures</h2>')
        for k, p in figs.items():
            h.append(f'<figure><img alt="{html_attr(k)}" src="{figure_uri(k, p)}">'
                     f'<figcaption><a href="plots/{html_attr(p.name)}">{html_text(p.name)}</a> (full resolution)'
                     '</figcaption></figure>')
    if memorization:
        h += memorization_section(memorization, o)
    h += protocol_legend(res)
    h.append('<h2 id="problems">Problems</h2>')
    if res.skipped:
        h.append(f"<h3>Metrics not computed ({len(res.skipped)})</h3>")
        h.append(simple_table("skipped", ["reason", "metrics", "detail"], skipped_rows(res.skipped), prose=(0,)))
        h.append('<p class="note">Full reasons (with download addresses): <code>metrics.json</code> → '
                 '<code>skipped</code>, and <a href="results.json">results.json</a>.</p>')
    n_err, n_warn = len(res.errors), len(res.warnings)
    h.append(f'<h3>Errors</h3><p>{n_err} row(s) in <a href="errors.csv">errors.csv</a>'
             + (", grouped by stage and message:" if n_err else ".") + "</p>")
    if n_err:
        h.append(simple_table("errors", ["stage", "error", "rows", "method: cases"], grouped_rows(res.errors, "error")))
    h.append(f'<h3>Warnings</h3><p>{n_warn} row(s) in <a href="warnings.csv">warnings.csv</a>'
             + (" (scored anyway), grouped by stage and message:" if n_warn else ".") + "</p>")
    if n_warn:
        h.append(simple_table("warnings", ["stage", "warning", "rows", "method: cases"],
                              grouped_rows(res.warnings, "warning")))
    if timing:
        h.append("<h2>Timing</h2>")
        h.append(simple_table("timing", ["stage / metric", "seconds"], [[k, round(v, 1)] for k, v in timing]))
    h.append('<h2 id="files">Files</h2><ul>')
    h += [f'<li><a href="{html_attr(name)}">{html_text(name)}</a>: {prose_html(what)}</li>' for name, what in links
          if (o / name).exists()]
    h.append("</ul>")
    h.append(f"<script>{SORT_JS}{VIEWER_JS}</script>")
    h.append("</body></html>")
    return "\n".join(h) + "\n"
