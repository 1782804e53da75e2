"""Render every report file of a run's output folder from its saved CSV / JSON results, in named
stages: gather what the report says (:class:`ReportContent`), pick the plot cases, draw the figures,
then write each format (tables as CSV, ``results.json``, ``report.md``, LaTeX, ``report.html``).
Nothing is recomputed; every user string is escaped by :mod:`trace_bench.results.escape`.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from trace_bench.results import (
    Results,
    TraceBenchError,
    atomic_write_json,
    atomic_write_text,
    load_results,
)
from trace_bench.results.escape import (
    code,
    latex_text,
    literal,
    markdown_text,
    prose_latex,
    prose_markdown,
)
from trace_bench.results.problems import warnings_sentence
from trace_bench.results.table_model import (
    Cell,
    Column,
    Row,
    Table,
    markdown_grid,
    notes_latex,
    to_latex,
    to_markdown,
)

from .html_report import grouped_rows, render_html
from .leaderboard import SCHEMA, results_json
from .skipped import skipped_rows
from .tables import build_tables, notes_once, published_tables, to_csv
from .tex_fit import TEMPLATES, Fit, fit_layout, target_width
from .utility import render_utility
from .viewer import case_viewer

__all__ = ["FILES", "PlotCaseError", "ReportContent", "problem_alerts", "render_report", "report_tex", "tex_fits"]


class PlotCaseError(TraceBenchError, ValueError):
    """A requested plot case has neither a stored plot artifact nor arrays read from its inputs."""


#: what each file of OUT is (the HTML "Files" list and README)
FILES = [("summary.csv", "value, interval, n, interval method and note of every (method, metric)"),
         ("per_case.csv", "every per-case value with its protocol id"),
         ("table1.csv", "Table 1 in stored units"), ("table1b.csv", "Table 1 per class"),
         ("table2.csv", "Table 2 in stored units"),
         ("anatomy.csv", "the anatomy table (whole volume) in stored units"),
         ("anatomy_labels.csv", "organ volume and HU per label in stored units"),
         ("anatomy_dist.csv", "organ distributions, generated vs reference, per label in stored units"),
         ("utility/utility.json", "downstream utility (train on synthetic, test on real): protocols and summaries"),
         ("results.json", "every summary row with its meaning and the run's metadata (schema trace-bench/results/v1)"),
         ("results.schema.json", "the JSON schema of results.json"),
         ("report.tex", "LaTeX document; `tables/*.tex` are the tabulars to `\\input` into a paper"),
         ("tables/table1.tex", "Table 1 tabular (booktabs)"), ("tables/table1b.tex", "Table 1 per class tabular"),
         ("tables/table2.tex", "Table 2 tabular"), ("report.md", "this report as Markdown"),
         ("errors.csv", "failed, refused or unpaired cases"), ("warnings.csv", "cases scored with a warning"),
         ("provenance.json", "versions, commit, device, config, protocols, weights, inputs, timings"),
         ("config.toml", "the effective configuration (rerun with `trace-bench run --config`)"),
         ("metrics.json", "per-column display information and the metrics not computed")]

def problem_alerts(res: Results) -> list[str]:
    """The errors and warnings of the run, counted, for the top of the report (the rows are under Problems)."""
    out = []
    if len(res.errors):
        out.append(f"{len(res.errors)} error row(s): those cases or metrics have no value; read errors.csv "
                   "(Problems, below).")
    sentence = warnings_sentence(zip(res.warnings["stage"], res.warnings["warning"])) if len(res.warnings) else None
    if sentence:
        out.append(f"{sentence}: those cases were scored anyway; read warnings.csv (Problems, below).")
    return out


#: the first rows of errors.csv / warnings.csv listed in report.md
MD_ROWS = 20


# ----------------------------------------------------------------------------- stage 1: what the report says
@dataclass
class ReportContent:
    """Everything the report files say, gathered once from the run's saved results."""

    res: Results
    meta: dict[str, Any]
    tables: list[Table]
    published: list[Table]
    head: str
    inputs: list[str]
    alerts: list[str]
    notes: list[str]
    timing: list[tuple[str, float]]
    memorization: dict | None
    #: the downstream-utility tables (OUT/utility/, :mod:`reports.utility`) and their plot
    utility: list[Table] = field(default_factory=list)
    utility_png: list[Path] = field(default_factory=list)

    @classmethod
    def gather(cls, res: Results, *, published: bool = False, plots: bool = True) -> ReportContent:
        o = res.out
        meta = json.loads((o / "metrics.json").read_text(encoding="utf-8")) if (o / "metrics.json").is_file() else {}
        prov = res.provenance
        tk = prov.get("toolkit", {})
        dev = prov.get("device", {})
        head = (f"trace-bench {tk.get('version', '?')} (commit {tk.get('git_commit') or 'unknown'}), "
                f"device {dev.get('gpu') or dev.get('requested', '?')}")
        alerts = [f"Method {literal(repr(m))} has no scored case: every case failed or was unpaired (see errors.csv)."
                  for m in meta.get("unscored_methods", [])]
        alerts += problem_alerts(res)
        utility, pngs = render_utility(o, plot=plots)
        return cls(res, meta, build_tables(res), published_tables() if published else [], head, input_lines(res),
                   alerts, list(prov.get("notes", [])), timing_rows(prov), memorization(o), utility, pngs)

    def with_published(self, t: Table) -> list[Table]:
        """``t`` followed by the paper's own numbers for the same table."""
        return [t] + [p for p in self.published if p.key == t.key]


def input_lines(res: Results) -> list[str]:
    """One prose line per method: its folder and adapter (the reference set for GT)."""
    folders = res.provenance.get("input_folders", {})
    lines = []
    for m in res.methods:
        f = folders.get(m)
        if isinstance(f, dict):
            lines.append(f"{code(m)}: {literal(f.get('folder'))} (adapter {code(f.get('adapter'))})")
        elif f:
            lines.append(f"{code(m)}: reference set {literal(f)}")
    return lines


def memorization(o: Path) -> dict | None:
    """``OUT/audit/memorization.json`` when the run (or `trace-bench audit`) wrote one."""
    p = o / "audit" / "memorization.json"
    try:
        return json.loads(p.read_text(encoding="utf-8")) if p.is_file() else None
    except (OSError, ValueError):
        return None


def timing_rows(prov: dict) -> list[tuple[str, float]]:
    """Where the time went: the run's stages and the compute time of every metric (summed over the
    volumes computed in this run; cached results count 0), from provenance.json."""
    t = prov.get("timings_s", {}) or {}
    rows = [(k, float(v)) for k, v in t.items() if isinstance(v, (int, float)) and k not in ("report_s", "total_s")]
    rows += [(f"metric {k}", float(v)) for k, v in (t.get("metric_compute_s") or {}).items()]
    return rows


# ----------------------------------------------------------------------------- stage 2: plot cases and figures
def plot_case_arts(res: Results, meta: dict, plot_cases: list[str] | None,
                   stacks: dict[str, dict[str, dict[str, Any]]]) -> dict[str, dict]:
    """The arrays to draw per plot case (default: the run's plot case); a requested case with
    neither a stored artifact nor arrays read from its inputs raises :class:`PlotCaseError`."""
    from .plots import case_arts

    cases = list(dict.fromkeys(plot_cases if plot_cases else ([meta["plot_case"]] if meta.get("plot_case") else [])))
    arts = {c: case_arts(res, c, stacks.get(c)) for c in cases}
    for c, a in arts.items():
        if not a:
            raise PlotCaseError(f"plot case {c!r}: no plot artifact under {res.out / 'cases'} and no arrays read from "
                                "the inputs (input volumes unreadable or case unknown)")
    return arts


def draw_figures(res: Results, arts: dict[str, dict]) -> dict[str, Path]:
    """The metric bars and every plot case's figures, as PNG files under ``OUT/plots``."""
    from .plots import case_figures, make_plots

    figs = make_plots(res, [], None)
    for c, a in arts.items():
        figs.update(case_figures(a, c, res.out / "plots"))
    return figs


# ----------------------------------------------------------------------------- stage 3: Markdown
def _md_grouped(df, column: str) -> list[str]:
    """errors.csv / warnings.csv grouped by (stage, message), as in the HTML: the first groups as a list
    (messages are data: they quote case ids and files)."""
    rows = grouped_rows(df, column)
    out = [f"- {markdown_text(st)}: {markdown_text(msg)} ({n} row{'s' if n != 1 else ''}: {markdown_text(where)})"
           for st, msg, n, where in rows[:MD_ROWS]]
    if len(rows) > MD_ROWS:
        out.append(f"- ... {len(rows) - MD_ROWS} more group(s)")
    return out


def _md_problems(res: Results) -> list[str]:
    """Metrics not computed (grouped by reason, listed once in the report), errors and warnings."""
    md = []
    if res.skipped:
        md += ["## Metrics not computed", ""]
        for reason, metrics, detail in skipped_rows(res.skipped):
            md.append(f"- {prose_markdown(reason)}: {markdown_text(metrics)}"
                      + (f" ({markdown_text(detail)})" if detail else ""))
        md += ["", "Full reasons (with download addresses): `metrics.json` -> `skipped`.", ""]
    n_err, n_warn = len(res.errors), len(res.warnings)
    md += ["## Errors", "", f"{n_err} row(s) in `errors.csv`" + (", grouped by stage and message:" if n_err else "."),
           ""]
    md += _md_grouped(res.errors, "error")
    if n_warn:
        md += ["", "## Warnings", "",
               f"{n_warn} row(s) in `warnings.csv` (scored anyway), grouped by stage and message:", ""]
        md += _md_grouped(res.warnings, "warning")
    return md


def timing_table(timing: list[tuple[str, float]]) -> Table:
    return Table("timing", "Timing", [Column("seconds")],
                 [Row(k, {"seconds": Cell(f"{v:.1f}", value=v)}) for k, v in timing], stub="stage / metric")


def report_markdown(c: ReportContent, figs: dict[str, Path]) -> str:
    """``report.md``: inputs, warnings, notes, the tables, problems, the memorization audit, timing,
    figures and the list of files."""
    o = c.res.out
    md = ["# trace-bench report", "", markdown_text(c.head), "", "## Inputs", ""]
    md += [f"- {prose_markdown(x)}" for x in c.inputs] + [""]
    md += [f"> **Warning:** {prose_markdown(n)}" for n in c.alerts] + ([""] if c.alerts else [])
    md += [f"> {prose_markdown(n)}" for n in c.notes] + ([""] if c.notes else [])
    md += [to_markdown(x) for x in notes_once([x for t in c.tables for x in c.with_published(t)])]
    if c.utility:
        md += ["## Downstream utility (train on synthetic, test on real)", ""]
        md += [to_markdown(t) for t in c.utility]
        md += [f"![utility]({p.relative_to(o).as_posix()})" for p in c.utility_png] + [""]
    md += _md_problems(c.res)
    memo_md = o / "audit" / "memorization.md"
    if memo_md.is_file():  # written (escaped) by the memorization audit (--train-reference / trace-bench audit)
        body = memo_md.read_text(encoding="utf-8").strip().splitlines()
        md += ["", "## Memorization audit", ""] + [ln for ln in body if not ln.startswith("# ")]
    if c.timing:
        md += ["", "## Timing", ""] + markdown_grid(timing_table(c.timing))
    if figs:
        md += ["", "## Figures", ""]
        md += [f"![{markdown_text(k)}]({p.relative_to(o).as_posix()})" for k, p in figs.items()]
    md += ["", "Files: `per_case.csv`, `summary.csv`, `errors.csv`, `warnings.csv`, `provenance.json`, `config.toml`, "
           "`results.json`, `tables/*.tex`, `stats/`.", ""]
    return "\n".join(md)


# ----------------------------------------------------------------------------- stage 4: LaTeX
def _label(key: str) -> str:
    return "tab:trace-" + re.sub(r"[^A-Za-z0-9]+", "-", key)


def tex_name(t: Table) -> str:
    """File name (without ``.tex``) of a table's tabular under ``tables/``."""
    return f"{t.key}_published" if t.published else t.key


def tex_fits(tables: list[Table], layout: str | dict[str, str] = "auto", width: str | float = "lncs"
             ) -> dict[str, Fit]:
    """The LaTeX layout of every table (:func:`reports.tex_fit.fit_layout`): ``layout`` is one name for
    all tables ("auto", "full", "stacked", "pm", "compact", "split", "split+pm", ...) or a mapping
    table key -> name (missing keys: "auto"); ``width`` a template of :data:`reports.tex_fit.TEMPLATES`
    or a width in pt."""
    fits = {}
    for t in tables:
        style = layout.get(t.key, layout.get(tex_name(t), "auto")) if isinstance(layout, dict) else layout
        fits[tex_name(t)] = fit_layout(t, width, style or "auto")
    return fits


def _where(width: str | float) -> str:
    key = str(width).strip().lower()
    return f"\\linewidth of {TEMPLATES[key].name}" if key in TEMPLATES else f"a {target_width(width):.0f} pt line"


def _preamble(width: str | float) -> list[str]:
    """A page with the template's text and column width (10-pt body, Computer Modern, T1)."""
    key = str(width).strip().lower()
    tpl = TEMPLATES.get(key)
    text = tpl.textwidth if tpl is not None else target_width(width)
    two = tpl is not None and tpl.twocolumn
    return [f"\\documentclass[10pt{',twocolumn' if two else ''}]{{article}}",
            f"\\usepackage[a4paper,textwidth={text:g}pt,textheight=700pt"
            f"{',columnsep=12pt' if two else ''}]{{geometry}}",
            r"\usepackage{booktabs}", r"\usepackage[T1]{fontenc}", r"\usepackage[utf8]{inputenc}"]


def report_tex(tables: list[Table], pub: list[Table], head: str, *, folder: str = "tables",
               width: str | float = "lncs", fits: dict[str, Fit] | None = None, skipped: list[str] = ()) -> str:
    """A complete LaTeX document, on a page of the ``width`` template's size, that ``\\input``s
    ``{folder}/<key>.tex`` for every table, each in a ``table`` float with caption, label and the table's
    notes; nothing is scaled (the tabulars are sized to fit, see :func:`tex_fits`). ``skipped``: one line
    on the metrics not computed."""
    wide = str(width).strip().lower() == "ieee-wide"
    float_env = "table*" if wide else "table"
    tex = _preamble(width) + [r"\begin{document}", r"\section*{trace-bench report}", latex_text(head) + r"\par", ""]
    tex += [r"{\raggedright " + prose_latex(x) + r"\par}" for x in skipped] + ([""] if skipped else [])
    for t in tables + pub:
        name = tex_name(t)
        fit = (fits or {}).get(name)
        tex += [f"\\begin{{{float_env}}}[htbp]", r"\centering", f"\\caption{{{prose_latex(t.caption or t.title)}}}",
                f"\\label{{{_label(name)}}}", r"\input{" + f"{folder}/{name}" + "}"]
        if fit is not None and not fit.fits:
            tex.append("% " + fit.comment(_where(width)))
        tex += [notes_latex(t), f"\\end{{{float_env}}}", ""]
    tex.append(r"\end{document}")
    return "\n".join(tex) + "\n"


def write_latex(o: Path, c: ReportContent, layout: str | dict[str, str] = "auto",
                width: str | float = "lncs") -> dict[str, Path]:
    tables = c.tables + c.utility
    fits = tex_fits(tables + c.published, layout, width)
    where = _where(width)
    files = {}
    for t in tables + c.published:
        fit = fits[tex_name(t)]
        files[f"tables/{tex_name(t)}.tex"] = atomic_write_text(
            o / "tables" / f"{tex_name(t)}.tex", to_latex(t, layout=fit.layout, comment=fit.comment(where)))
    skipped = []
    if c.res.skipped:
        skipped = [f"Not computed in this run: {len(c.res.skipped)} metrics ("
                   + ", ".join(literal(k) for k in sorted(c.res.skipped)) + "); why and how to get them: report.html."]
    files["report.tex"] = atomic_write_text(o / "report.tex", report_tex(tables, c.published, c.head, width=width,
                                                                      fits=fits, skipped=skipped))
    return files


# ----------------------------------------------------------------------------- stage 5: HTML
def viewers_of(arts: dict[str, dict]) -> tuple[list[dict[str, Any]], list[str]]:
    """The slice viewer's data per plot case, and notes on what it could not show."""
    viewers, notes = [], []
    for c, a in arts.items():
        v = case_viewer(c, a)
        if v is None:
            continue
        viewers.append(v)
        if v["mode"] == "planes":
            notes.append(f"Case {literal(c)}: the input volumes were not available when this report was rendered "
                         "(moved, or rendered without reading them), so only the stored mid-planes are shown; "
                         "`trace-bench report OUT` with the inputs in place adds a scrollable stack.")
    if not arts:
        notes.append("No plot case in this run (run with plots on, or `trace-bench report OUT --plot-case ID`).")
    return viewers, notes


def report_html(c: ReportContent, arts: dict[str, dict], figs: dict[str, Path]) -> str:
    viewers, viewer_notes = viewers_of(arts)
    return render_html(c.res, c.tables, c.published, head=c.head, inputs=c.inputs, alerts=c.alerts, notes=c.notes,
                       timing=c.timing, figs=figs, viewers=viewers, viewer_notes=viewer_notes, links=FILES,
                       memorization=c.memorization, utility=(c.utility, c.utility_png))


# ----------------------------------------------------------------------------- all stages
def render_report(out: str | Path, *, plots: bool = True, published: bool = False,
                  plot_cases: list[str] | None = None,
                  viewer_stacks: dict[str, dict[str, dict[str, Any]]] | None = None,
                  tex_layout: str | dict[str, str] = "auto", tex_width: str | float = "lncs") -> dict[str, Path]:
    """Render every report file of ``out`` from its CSV/JSON results; returns {name: path}.

    ``published``: add the TRACE paper's own tables, labelled "as published" (only when asked: they are
    not this run's numbers). ``tex_layout`` / ``tex_width``: the LaTeX layout of every table ("auto" picks
    the richest that fits) or per table key, and the page it must fit (see :func:`tex_fits`).
    ``plot_cases``: cases to draw (montage, overlay, per-slice curves) and show in the slice viewer;
    default the run's plot case. ``viewer_stacks``: ``{case: {method: arrays}}`` read from the input
    volumes by :func:`trace_bench.report_inputs.viewer_stacks` (``None``: the stored artifacts only).
    A requested case with neither raises :class:`PlotCaseError` naming it."""
    res = load_results(out)
    o = res.out
    content = ReportContent.gather(res, published=published, plots=plots)
    arts = plot_case_arts(res, content.meta, plot_cases, viewer_stacks or {})
    figs = draw_figures(res, arts) if plots else {}
    files: dict[str, Path] = {f"{t.key}.csv": atomic_write_text(o / f"{t.key}.csv", to_csv(t, res))
                              for t in content.tables}
    files["results.json"] = atomic_write_json(o / "results.json", results_json(res, content.meta))
    files["results.schema.json"] = atomic_write_json(o / "results.schema.json", SCHEMA)
    files["report.md"] = atomic_write_text(o / "report.md", report_markdown(content, figs))
    files.update(write_latex(o, content, tex_layout, tex_width))
    if not published:  # an earlier render's paper tables are not this report's
        for stale in (o / "tables").glob("*_published.tex"):
            stale.unlink()
    files["report.html"] = atomic_write_text(o / "report.html", report_html(content, arts, figs))
    files.update({f"plots/{p.name}": p for p in figs.values()})
    files.update({p.relative_to(o).as_posix(): p for p in content.utility_png})
    return files
