"""Reports of a ``trace-bench run`` output folder, rendered from saved results only.

:func:`render_report` writes ``report.md``, ``report.tex`` (booktabs), ``report.html``
(self-contained: plots embedded as base64 PNG), ``table1.csv`` / ``table2.csv`` and ``plots/``.
``trace-bench report OUT`` calls it; nothing is recomputed.
"""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path

from trace_bench.results import atomic_write_text, load_results

from .tables import Table, build_tables, published_tables, to_csv, to_html, to_latex, to_markdown

__all__ = ["render_report", "build_tables", "published_tables"]

_CSS = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:2em auto;max-width:1400px;color:#222;padding:0 1em}
table{border-collapse:collapse;margin:1em 0 .3em 0;font-size:13px}
caption{text-align:left;font-weight:600;font-size:15px;padding-bottom:.4em;white-space:nowrap}
th,td{padding:4px 8px;text-align:right;border-bottom:1px solid #ddd;vertical-align:top}
th[scope=row],thead th:first-child{text-align:left}
thead th{border-bottom:2px solid #333;border-top:2px solid #333}
tbody tr:last-child th,tbody tr:last-child td{border-bottom:2px solid #333}
.ci{color:#777;font-size:11px}
table.published{background:#f7f7f2}
table.published caption{color:#8a6d00}
p.note{font-size:12px;color:#555;margin:.2em 0}
img{max-width:100%;border:1px solid #eee;margin:.5em 0}
code{background:#f3f3f3;padding:1px 3px}
.warn{color:#8a4b00}
"""


def _methods_section(res) -> list[str]:
    prov = res.provenance
    folders = prov.get("input_folders", {})
    lines = []
    for m in res.methods:
        f = folders.get(m)
        if isinstance(f, dict):
            lines.append(f"- `{m}`: {f.get('folder')} (adapter `{f.get('adapter')}`)")
        elif f:
            lines.append(f"- `{m}`: reference set {f}")
    return lines


def render_report(out: str | Path, *, plots: bool = True, published: bool = True) -> dict[str, Path]:
    """Render every report file of ``out`` from its CSV/JSON results; returns {name: path}."""
    res = load_results(out)
    o = res.out
    tables = build_tables(res)
    pub: list[Table] = published_tables() if published else []
    meta = json.loads((o / "metrics.json").read_text(encoding="utf-8")) if (o / "metrics.json").is_file() else {}
    figs = {}
    if plots:
        from .plots import make_plots

        figs = make_plots(res, meta.get("plot_case"))
    files: dict[str, Path] = {}
    for t in tables:
        files[f"{t.key}.csv"] = atomic_write_text(o / f"{t.key}.csv", to_csv(t, res))

    prov = res.provenance
    tk = prov.get("toolkit", {})
    head = (f"trace-bench {tk.get('version', '?')} (commit {tk.get('git_commit') or 'unknown'}), "
            f"device {prov.get('device', {}).get('gpu') or prov.get('device', {}).get('requested', '?')}")
    n_err = len(res.errors)
    notes = list(prov.get("notes", []))
    skipped = res.skipped
    unscored = meta.get("unscored_methods", [])
    alerts = [f"Method {m!r} has no scored case: every case failed or was unpaired (see errors.csv)."
              for m in unscored]
    n_warn = len(res.warnings)

    # ---------------------------------------------------------------- markdown
    md = ["# trace-bench report", "", head, ""]
    md += ["## Inputs", ""] + _methods_section(res) + [""]
    for n in alerts:
        md.append(f"> **Warning:** {n}")
    if alerts:
        md.append("")
    for n in notes:
        md.append(f"> {n}")
    if notes:
        md.append("")
    for t in tables:
        md += [to_markdown(t)]
        for p in (x for x in pub if x.key == t.key):
            md += [to_markdown(p)]
    if skipped:
        md += ["## Metrics not computed", ""] + [f"- `{k}`: {v}" for k, v in sorted(skipped.items())] + [""]
    md += ["## Errors", "", f"{n_err} row(s) in `errors.csv`." + (" First rows:" if n_err else ""), ""]
    for r in res.errors.head(20).itertuples(index=False):
        md.append(f"- {r.method} / {r.case_id} / {r.stage}: {r.error}")
    if n_warn:
        md += ["", "## Warnings", "", f"{n_warn} row(s) in `warnings.csv` (scored anyway). First rows:", ""]
        for r in res.warnings.head(20).itertuples(index=False):
            md.append(f"- {r.method} / {r.case_id} / {r.stage}: {r.warning}")
    timing = _timing_rows(prov)
    if timing:
        md += ["", "## Timing", "", "| stage / metric | seconds |", "| --- | ---: |"]
        md += [f"| {k} | {v:.1f} |" for k, v in timing]
    if figs:
        md += ["", "## Figures", ""] + [f"![{k}]({p.relative_to(o).as_posix()})" for k, p in figs.items()]
    md += ["", "Files: `per_case.csv`, `summary.csv`, `errors.csv`, `warnings.csv`, `provenance.json`, `config.toml`, "
           "`stats/`.", ""]
    files["report.md"] = atomic_write_text(o / "report.md", "\n".join(md))

    # ---------------------------------------------------------------- latex
    tex = [r"\documentclass{article}", r"\usepackage[margin=1.5cm,landscape]{geometry}", r"\usepackage{booktabs}",
           r"\usepackage{graphicx}", r"\usepackage[utf8]{inputenc}", r"\begin{document}",
           r"\section*{trace-bench report}", head.replace("_", r"\_"), ""]
    for t in tables:
        tex.append(to_latex(t))
        for p in (x for x in pub if x.key == t.key):
            tex.append(to_latex(p))
    tex.append(r"\end{document}")
    files["report.tex"] = atomic_write_text(o / "report.tex", "\n".join(tex) + "\n")

    # ---------------------------------------------------------------- html
    h = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">', "<title>trace-bench report</title>",
         f"<style>{_CSS}</style></head><body>", "<h1>trace-bench report</h1>", f"<p>{html.escape(head)}</p>",
         "<h2>Inputs</h2><ul>"]
    h += [f"<li>{_code_spans(x[2:])}</li>" for x in _methods_section(res)]
    h.append("</ul>")
    h += [f'<p class="warn"><b>Warning:</b> {html.escape(n)}</p>' for n in alerts]
    h += [f'<p class="warn">{html.escape(n)}</p>' for n in notes]
    for t in tables:
        h.append(to_html(t))
        for p in (x for x in pub if x.key == t.key):
            h.append(to_html(p))
    if skipped:
        h.append("<h2>Metrics not computed</h2><ul>")
        h += [f"<li><code>{html.escape(k)}</code>: {html.escape(v)}</li>" for k, v in sorted(skipped.items())]
        h.append("</ul>")
    h.append(f"<h2>Errors</h2><p>{n_err} row(s) in <code>errors.csv</code>.</p>")
    if n_err:
        h.append('<table class="errors"><thead><tr><th>method</th><th>case</th><th>stage</th><th>error</th></tr></thead><tbody>')
        for r in res.errors.head(50).itertuples(index=False):
            h.append("<tr>" + "".join(f'<td style="text-align:left">{html.escape(str(x))}</td>'
                                      for x in (r.method, r.case_id, r.stage, r.error)) + "</tr>")
        h.append("</tbody></table>")
    if n_warn:
        h.append(f"<h2>Warnings</h2><p>{n_warn} row(s) in <code>warnings.csv</code> (scored anyway).</p>")
        h.append('<table class="errors"><thead><tr><th>method</th><th>case</th><th>stage</th><th>warning</th></tr></thead><tbody>')
        for r in res.warnings.head(50).itertuples(index=False):
            h.append("<tr>" + "".join(f'<td style="text-align:left">{html.escape(str(x))}</td>'
                                      for x in (r.method, r.case_id, r.stage, r.warning)) + "</tr>")
        h.append("</tbody></table>")
    if timing:
        h.append('<h2>Timing</h2><table class="timing"><thead><tr><th>stage / metric</th><th>seconds</th></tr></thead><tbody>')
        h += [f"<tr><td style=\"text-align:left\">{html.escape(k)}</td><td>{v:.1f}</td></tr>" for k, v in timing]
        h.append("</tbody></table>")
    if figs:
        h.append("<h2>Figures</h2>")
        for k, p in figs.items():
            b64 = base64.b64encode(p.read_bytes()).decode("ascii")
            h.append(f'<figure><img alt="{html.escape(k)}" src="data:image/png;base64,{b64}">'
                     f"<figcaption>{html.escape(p.name)}</figcaption></figure>")
    h.append("</body></html>")
    files["report.html"] = atomic_write_text(o / "report.html", "\n".join(h) + "\n")
    files.update({f"plots/{p.name}": p for p in figs.values()})
    return files


def _timing_rows(prov: dict) -> list[tuple[str, float]]:
    """Where the time went: the run's stages and the compute time of every metric (summed over the
    volumes computed in this run; cached results count 0), from provenance.json."""
    t = prov.get("timings_s", {}) or {}
    rows = [(k, float(v)) for k, v in t.items() if isinstance(v, (int, float)) and k not in ("report_s", "total_s")]
    rows += [(f"metric {k}", float(v)) for k, v in (t.get("metric_compute_s") or {}).items()]
    return rows


def _code_spans(text: str) -> str:
    """Escape ``text`` for HTML and turn Markdown `code` spans into <code> elements."""
    parts = html.escape(text).split("`")
    return "".join(f"<code>{p}</code>" if i % 2 else p for i, p in enumerate(parts))
