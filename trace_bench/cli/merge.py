"""``trace-bench merge``: combine the output folders of sharded runs (see trace_bench.run.merge)."""

from __future__ import annotations

from pathlib import Path

import typer

from . import app


@app.command("merge")
def merge_cmd(
    shards: list[Path] = typer.Argument(..., help="The --out folders of `trace-bench run --shard I/N`, all N of them."),
    out: Path = typer.Option(..., "--out", "-o", help="Output folder of the merged run (a new folder, not a shard)."),
    report: bool = typer.Option(True, "--report/--no-report", help="Render report.md / .tex / .html and plots."),
) -> None:
    """Check that the shards are complete and consistent (same settings, protocols, weights and inputs),
    combine their per-case results and write per_case.csv, summary.csv, errors.csv and the reports,
    identical to those of one unsharded run."""
    from ..run.merge import merge_shards
    from .run import print_outcome

    res = merge_shards(shards, out, report=report)
    print_outcome(res)
