"""Reports of a ``trace-bench run`` output folder, rendered from saved results only.

:func:`render_report` writes, from the CSV / JSON files of ``OUT`` (nothing is recomputed):

* ``tables/table1.tex``, ``tables/table1b.tex``, ``tables/table2.tex`` (and ``*_published.tex``): one
  booktabs ``tabular`` each, to ``\\input`` into a paper's own ``table`` float;
* ``report.tex``: a complete document that ``\\input``s them (``pdflatex report.tex`` in ``OUT``);
* ``report.md``; ``report.html`` (one self-contained file: sortable tables, per-case table, slice
  viewer, protocol legend, plots as embedded PNG); ``table1.csv`` / ``table1b.csv`` / ``table2.csv``;
* ``results.json`` (schema ``trace-bench/results/v1``, see :mod:`reports.leaderboard`) and ``plots/``.

``viewer_stacks`` (from :func:`trace_bench.report_inputs.viewer_stacks`) adds arrays read again from
the input volumes: a scrollable stack for the viewer and the per-case figures of cases other than
the run's plot case. ``trace-bench report OUT [--plot-case ID]`` and the run pipeline call it.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from trace_bench.results import atomic_write_json, atomic_write_text, load_results

from .html_report import render_html
from .leaderboard import SCHEMA, results_json
from .tables import Table, build_tables, published_tables, to_csv, to_latex, to_markdown
from .viewer import case_viewer

__all__ = ["render_report", "build_tables", "published_tables", "report_tex", "PlotCaseError"]


class PlotCaseError(ValueError):
    """A requested plot case has neither a stored plot artifact nor arrays read from its inputs."""


#: what each file of OUT is (the HTML "Files" list and README)
FILES = [("summary.csv", "value, interval, n, interval method and note of every (method, metric)"),
         ("per_case.csv", "every per-case value with its protocol id"),
         ("table1.csv", "Table 1 in stored units"), ("table1b.csv", "Table 1 per class"),
         ("table2.csv", "Table 2 in stored units"),
         ("results.json", "every summary row with its meaning and the run's metadata (schema trace-bench/results/v1)"),
         ("results.schema.json", "the JSON schema of results.json"),
         ("report.tex", "LaTeX document; `tables/*.tex` are the tabulars to `\\input` into a paper"),
         ("tables/table1.tex", "Table 1 tabular (booktabs)"), ("tables/table1b.tex", "Table 1 per class tabular"),
         ("tables/table2.tex", "Table 2 tabular"), ("report.md", "this report as Markdown"),
         ("errors.csv", "failed, refused or unpaired cases"), ("warnings.csv", "cases scored with a warning"),
         ("provenance.json", "versions, commit, device, config, protocols, weights, inputs, timings"),
         ("config.toml", "the effective configuration (rerun with `trace-bench run --config`)"),
         ("metrics.json", "per-column display information and the metrics not computed")]


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


def _label(key: str) -> str:
    return "tab:trace-" + re.sub(r"[^A-Za-z0-9]+", "-", key)


def report_tex(tables: list[Table], pub: list[Table], head: str, *, folder: str = "tables") -> str:
    """A complete LaTeX document that ``\\input``s ``{folder}/<key>.tex`` for every table, each in a
    ``table`` float with caption, label and the table's notes."""
    from .tables import tex_escape

    tex = [r"\documentclass{article}", r"\usepackage[margin=1.5cm,landscape]{geometry}", r"\usepackage{booktabs}",
           r"\usepackage{graphicx}", r"\usepackage[T1]{fontenc}", r"\usepackage[utf8]{inputenc}",
           r"\begin{document}", r"\section*{trace-bench report}", tex_escape(head), ""]
    for t in tables + pub:
        name = f"{t.key}_published" if t.published else t.key
        tex += [r"\begin{table}[htbp]", r"\centering", f"\\caption{{{tex_escape(t.caption or t.title)}}}",
                f"\\label{{{_label(name)}}}", r"\resizebox{\linewidth}{!}{\input{" + f"{folder}/{name}" + "}}",
                r"\par\smallskip{\footnotesize " + " ".join(tex_escape(n) for n in t.notes) + "}",
                r"\end{table}", ""]
    tex.append(r"\end{document}")
    return "\n".join(tex) + "\n"


def render_report(out: str | Path, *, plots: bool = True, published: bool = True,
                  plot_cases: list[str] | None = None,
                  viewer_stacks: dict[str, dict[str, dict[str, Any]]] | None = None) -> dict[str, Path]:
    """Render every report file of ``out`` from its CSV/JSON results; returns {name: path}.

    ``plot_cases``: cases to draw (montage, overlay, per-slice curves) and show in the slice viewer;
    default the run's plot case. ``viewer_stacks``: ``{case: {method: arrays}}`` read from the input
    volumes by :func:`trace_bench.report_inputs.viewer_stacks` (``None``: the stored artifacts only).
    A requested case with neither raises :class:`PlotCaseError` naming it."""
    res = load_results(out)
    o = res.out
    tables = build_tables(res)
    pub: list[Table] = published_tables() if published else []
    meta = json.loads((o / "metrics.json").read_text(encoding="utf-8")) if (o / "metrics.json").is_file() else {}
    stacks = viewer_stacks or {}
    cases = list(dict.fromkeys(plot_cases if plot_cases else ([meta["plot_case"]] if meta.get("plot_case") else [])))
    from .plots import case_arts

    arts_by_case = {c: case_arts(res, c, stacks.get(c)) for c in cases}
    for c, a in arts_by_case.items():
        if not a:
            raise PlotCaseError(f"plot case {c!r}: no plot artifact under {o / 'cases'} and no arrays read from the "
                                "inputs (input volumes unreadable or case unknown)")
    figs: dict[str, Path] = {}
    if plots:
        from .plots import make_plots

        figs = make_plots(res, [], None)
        for c, a in arts_by_case.items():
            from .plots import case_figures

            figs.update(case_figures(a, c, o / "plots"))
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

    # ---------------------------------------------------------------- results.json
    files["results.json"] = atomic_write_json(o / "results.json", results_json(res, meta))
    files["results.schema.json"] = atomic_write_json(o / "results.schema.json", SCHEMA)

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
    memo_md = o / "audit" / "memorization.md"
    if memo_md.is_file():  # written by the memorization audit (--train-reference / trace-bench audit)
        body = memo_md.read_text(encoding="utf-8").strip().splitlines()
        md += ["", "## Memorization audit", ""] + [ln for ln in body if not ln.startswith("# ")]
    timing = _timing_rows(prov)
    if timing:
        md += ["", "## Timing", "", "| stage / metric | seconds |", "| --- | ---: |"]
        md += [f"| {k} | {v:.1f} |" for k, v in timing]
    if figs:
        md += ["", "## Figures", ""] + [f"![{k}]({p.relative_to(o).as_posix()})" for k, p in figs.items()]
    md += ["", "Files: `per_case.csv`, `summary.csv`, `errors.csv`, `warnings.csv`, `provenance.json`, `config.toml`, "
           "`results.json`, `tables/*.tex`, `stats/`.", ""]
    files["report.md"] = atomic_write_text(o / "report.md", "\n".join(md))

    # ---------------------------------------------------------------- latex
    for t in tables + pub:
        name = f"{t.key}_published" if t.published else t.key
        files[f"tables/{name}.tex"] = atomic_write_text(o / "tables" / f"{name}.tex", to_latex(t))
    files["report.tex"] = atomic_write_text(o / "report.tex", report_tex(tables, pub, head))

    # ---------------------------------------------------------------- html
    viewers, viewer_notes = [], []
    for c, a in arts_by_case.items():
        v = case_viewer(c, a)
        if v is not None:
            viewers.append(v)
            if v["mode"] == "planes":
                viewer_notes.append(f"Case {c}: the input volumes were not available when this report was rendered "
                                    "(moved, or rendered without reading them), so only the stored mid-planes are "
                                    "shown; `trace-bench report OUT` with the inputs in place adds a scrollable stack.")
    if not cases:
        viewer_notes.append("No plot case in this run (run with plots on, or `trace-bench report OUT --plot-case ID`).")
    page = render_html(res, tables, pub, head=head, inputs=[x[2:] for x in _methods_section(res)], alerts=alerts,
                       notes=notes, timing=timing, figs=figs, viewers=viewers, viewer_notes=viewer_notes, links=FILES,
                       memorization=_memorization(o))
    files["report.html"] = atomic_write_text(o / "report.html", page)
    files.update({f"plots/{p.name}": p for p in figs.values()})
    return files


def _memorization(o: Path) -> dict | None:
    """``OUT/audit/memorization.json`` when the run (or `trace-bench audit`) wrote one."""
    p = o / "audit" / "memorization.json"
    try:
        return json.loads(p.read_text(encoding="utf-8")) if p.is_file() else None
    except (OSError, ValueError):
        return None


def _timing_rows(prov: dict) -> list[tuple[str, float]]:
    """Where the time went: the run's stages and the compute time of every metric (summed over the
    volumes computed in this run; cached results count 0), from provenance.json."""
    t = prov.get("timings_s", {}) or {}
    rows = [(k, float(v)) for k, v in t.items() if isinstance(v, (int, float)) and k not in ("report_s", "total_s")]
    rows += [(f"metric {k}", float(v)) for k, v in (t.get("metric_compute_s") or {}).items()]
    return rows
