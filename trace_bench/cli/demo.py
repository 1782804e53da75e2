"""``trace-bench demo --out DIR``: the full benchmark on the shipped demo data (see trace_bench.demo)."""

from __future__ import annotations

from typing import Optional

import typer

from . import app


@app.command("demo")
def demo_cmd(
    out: str = typer.Option("demo-out", "--out", "-o", help="Output folder."),
    seed: int = typer.Option(0, "--seed", help="Seed of the TRACE demo sampling and of the bootstrap."),
    workers: int = typer.Option(1, "--workers", "-j", help="Parallel worker processes."),
    metrics: Optional[str] = typer.Option(None, "--metrics", help="Comma-separated metrics (default: all, skipping unavailable ones)."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Progress bars on stderr."),
) -> None:
    """Run the benchmark on 2 shipped chest CTs with a slice-interpolation baseline and the TRACE demo
    checkpoint's volumes; writes the same files as `trace-bench run`."""
    from ..launch import run_demo
    from .run import print_outcome

    extra = {"metrics": [m.strip() for m in metrics.split(",") if m.strip()]} if metrics else {}
    print_outcome(run_demo(out, seed=seed, workers=workers, progress=progress, **extra))
