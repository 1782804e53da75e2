"""``trace-bench report OUT``: re-render tables, plots and reports from saved results (no recomputation)."""

from __future__ import annotations

from pathlib import Path

import typer

from . import app


@app.command("report")
def report_cmd(
    out: Path = typer.Argument(..., help="Output folder of a finished `trace-bench run`."),
    plots: bool = typer.Option(True, "--plots/--no-plots", help="Redraw the plots."),
    published: bool = typer.Option(True, "--published/--no-published", help="Show the paper's rows, labelled 'as published'."),
) -> None:
    """Rewrite report.md, report.tex, report.html, table1/2.csv and plots/ from OUT's CSV/JSON files.
    Refuses when those files are not exactly what OUT's last run wrote (truncated, edited, or left
    from an earlier run): the run stamp in OUT/.trace-bench/ says."""
    from reports import render_report

    from ..results.stamp import check_stamp

    check_stamp(out)
    for name, path in render_report(out, plots=plots, published=published).items():
        print(path)
