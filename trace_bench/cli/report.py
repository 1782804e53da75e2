"""``trace-bench report OUT``: re-render tables, plots and reports from saved results (no recomputation)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from . import app


@app.command("report")
def report_cmd(
    out: Path = typer.Argument(..., help="Output folder of a finished `trace-bench run`."),
    plots: bool = typer.Option(True, "--plots/--no-plots", help="Redraw the plots."),
    published: bool = typer.Option(True, "--published/--no-published", help="Show the paper's rows, labelled 'as published'."),
    plot_case: Optional[list[str]] = typer.Option(
        None, "--plot-case", help="Case for montage, overlay, per-slice curves and the slice viewer (repeatable; "
        "default: the run's plot case). Cases other than the run's need the input volumes still readable."),
    viewer: bool = typer.Option(True, "--viewer/--no-viewer",
                                help="Read the plot cases' input volumes again for the HTML slice viewer."),
) -> None:
    """Rewrite report.md, report.tex, tables/*.tex, report.html, results.json, table1/2.csv and plots/ from
    OUT's CSV/JSON files. Refuses when those files are not exactly what OUT's last run wrote (truncated,
    edited, or left from an earlier run): the run stamp in OUT/.trace-bench/ says."""
    import json

    from reports import PlotCaseError, render_report

    from ..errors import ConfigError
    from ..report_inputs import viewer_stacks
    from ..results.stamp import check_stamp, stamp_outputs

    check_stamp(out)
    cases = list(dict.fromkeys(plot_case or []))
    if not cases:
        try:
            pc = json.loads((out / "metrics.json").read_text(encoding="utf-8")).get("plot_case")
        except (OSError, ValueError):
            pc = None
        cases = [pc] if pc else []
    stacks = viewer_stacks(out, cases, required=bool(plot_case)) if (viewer or plot_case) else {}
    try:
        files = render_report(out, plots=plots, published=published, plot_cases=cases or None, viewer_stacks=stacks)
    except PlotCaseError as e:
        raise ConfigError(str(e)) from None
    stamp_outputs(out)  # the files written are the run's: named in its stamp
    for name, path in files.items():
        print(path)
