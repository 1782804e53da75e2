"""``trace-bench report OUT``: re-render tables, plots and reports from saved results (no recomputation)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer

from . import app


def run_settings(out: Path) -> dict:
    """The report settings of the run that wrote ``out`` (``OUT/config.toml``: published, tex_layout, tex_width,
    plots); empty when the file is missing or unreadable (then the defaults apply)."""
    import tomllib

    try:
        data = tomllib.loads((out / "config.toml").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return {k: data[k] for k in ("published", "tex_layout", "tex_width", "plots") if k in data}


@app.command("report")
def report_cmd(
    out: Path = typer.Argument(..., help="Output folder of a finished `trace-bench run`."),
    plots: Optional[bool] = typer.Option(None, "--plots/--no-plots", help="Redraw the plots (default: as the run)."),
    published: Optional[bool] = typer.Option(None, "--published/--no-published",
                                             help="Add the TRACE paper's own tables, labelled 'as published' "
                                                  "(default: as the run; the run's default is off)."),
    tex_layout: Optional[str] = typer.Option(None, "--tex-layout", metavar="LAYOUT",
                                             help="LaTeX tables: auto, full, stacked, pm, compact, split, split3, or "
                                                  "TABLE=LAYOUT,... (default: as the run)."),
    tex_width: Optional[str] = typer.Option(None, "--tex-width", metavar="PAGE",
                                            help="Page the LaTeX tables fit: lncs, ieee, ieee-wide, neurips or a "
                                                 "width in pt (default: as the run)."),
    plot_case: Optional[list[str]] = typer.Option(
        None, "--plot-case", help="Case for montage, overlay, per-slice curves and the slice viewer (repeatable; "
        "default: the run's plot case). Cases other than the run's need the input volumes still readable."),
    viewer: bool = typer.Option(True, "--viewer/--no-viewer",
                                help="Read the plot cases' input volumes again for the HTML slice viewer."),
) -> None:
    """Rewrite report.md, report.tex, the LaTeX tables in tables/, report.html, results.json, the table CSVs
    and plots/ from OUT's CSV/JSON files, then print the results summary. Refuses when those files are not
    exactly what OUT's last run wrote (truncated, edited, or left from an earlier run): the run stamp in
    OUT/.trace-bench/ says."""
    import json

    from reports import PlotCaseError, console_summary, render_report

    from ..config import RunConfig, parse_pairs
    from ..errors import ConfigError
    from ..report_inputs import viewer_stacks
    from ..results.stamp import check_stamp, stamp_outputs

    check_stamp(out)
    ran = run_settings(out)
    layout: str | dict | None = tex_layout
    if tex_layout and "=" in tex_layout:
        layout = parse_pairs([x for x in tex_layout.split(",") if x.strip()], "tex_layout")
    chosen = {"published": published, "tex_layout": layout, "tex_width": tex_width, "plots": plots}
    cfg = RunConfig().replace(**{**ran, **{k: v for k, v in chosen.items() if v is not None}})  # checked
    cases = list(dict.fromkeys(plot_case or []))
    if not cases:
        try:
            pc = json.loads((out / "metrics.json").read_text(encoding="utf-8")).get("plot_case")
        except (OSError, ValueError):
            pc = None
        cases = [pc] if pc else []
    stacks = viewer_stacks(out, cases, required=bool(plot_case)) if (viewer or plot_case) else {}
    try:
        files = render_report(out, plots=cfg.plots, published=cfg.published, plot_cases=cases or None,
                              viewer_stacks=stacks, tex_layout=cfg.tex_layout, tex_width=cfg.tex_width)
    except PlotCaseError as e:
        raise ConfigError(str(e)) from None
    stamp_outputs(out)  # the files written are the run's: named in its stamp
    print(f"report: {len(files)} files rewritten in {out}", file=sys.stderr)
    print(console_summary(out), end="")
