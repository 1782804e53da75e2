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
    plugins: str = typer.Option("", "--plugins", help="Comma-separated metric plug-in modules the shards were scored with."),
    allow_plugins: bool = typer.Option(False, "--allow-plugins", help="Load the plug-ins the shards' manifests name (Python code)."),
    force: bool = typer.Option(False, "--force", help="Write into a non-empty --out that trace-bench did not write (its files are left alone)."),
) -> None:
    """Check that the shards are complete and consistent (same settings, protocols, weights and inputs),
    combine their per-case results and write per_case.csv, summary.csv, errors.csv and the reports,
    identical to those of one unsharded run."""
    from ..run.merge import merge_shards
    from .run import print_outcome

    res = merge_shards(shards, out, report=report, plugins=[p.strip() for p in plugins.split(",") if p.strip()],
                       allow_plugins=allow_plugins, force=force)
    print_outcome(res)
