"""``trace-bench regress --checkpoint NEW --baseline OUT``: generate with a new TRACE checkpoint on the
baseline's masks and seed, score it with the baseline's exact config, compare (:mod:`trace_bench.regress`)."""

from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import Optional

import typer

from . import app


def _num(v: float) -> str:
    return "" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.6g}"


@app.command("regress")
def regress_cmd(
    checkpoint: Path = typer.Option(..., "--checkpoint", help="The new checkpoint folder (config.json + model.safetensors)."),
    baseline: Path = typer.Option(..., "--baseline", help="Output folder of the baseline `trace-bench run` (config.toml, manifest.json)."),
    masks: Optional[Path] = typer.Option(None, "--masks", help="Label maps to generate from (default: the baseline config's method / reference masks)."),
    config: Optional[Path] = typer.Option(None, "--config", help="TOML overlaid on the baseline's config.toml (moved paths, workers, device)."),
    out: Optional[Path] = typer.Option(None, "--out", help="Folder for the new volumes, the new run and the comparison (default: BASELINE-regress)."),
    method: Optional[str] = typer.Option(None, "--method", help="The baseline method to regenerate (default: its only method)."),
    steps: int = typer.Option(100, "--steps", min=1, help="DDIM steps per pass (as for the baseline's volumes)."),
    seed: int = typer.Option(0, "--seed", min=0, help="Generation seed (as for the baseline's volumes)."),
    mode: str = typer.Option("overlap", "--mode", help="overlap or markovian."),
    batch: int = typer.Option(4, "--batch", min=1, help="Volumes generated together."),
    device: Optional[str] = typer.Option(None, "--device", help="Generation device: cpu or cuda (default: cuda if available)."),
    tolerance: Optional[Path] = typer.Option(None, "--tolerance", help="TOML/JSON tolerances, as for `trace-bench compare`."),
    significance: Optional[float] = typer.Option(None, "--significance", metavar="ALPHA", min=1e-9, max=0.5,
                                                 help="A regression must also be significant (paired Wilcoxon p < ALPHA)."),
    report: bool = typer.Option(False, "--report/--no-report", help="Also render the new run's reports."),
) -> None:
    """Exit 1 when any metric regresses beyond its tolerance (as `compare`), 0 otherwise; refuse (exit 2)
    when the baseline's metric protocols or weights differ from those installed now."""
    from ..regress import regress
    from ..results import load_tolerances

    tol = load_tolerances(tolerance)
    res = regress(checkpoint, baseline, out=out, masks=masks, config=config, method=method, steps=steps, seed=seed,
                  mode=mode, batch=batch, device=device, tolerances=tol, significance=significance, report=report)
    df = res.comparison.rows
    head = ["method", "metric", "baseline", "candidate", "delta", "tolerance", "status"]
    rows = [[r.method, r.metric, _num(r.baseline), _num(r.candidate), _num(r.delta), _num(r.tolerance), r.status]
            for r in df.itertuples(index=False)]
    widths = [max(len(h), *(len(str(x[i])) for x in rows)) if rows else len(h) for i, h in enumerate(head)]
    print("  ".join(h.ljust(w) for h, w in zip(head, widths)).rstrip())
    for r in rows:
        print("  ".join(str(x).ljust(w) for x, w in zip(r, widths)).rstrip())
    for n in res.notes:
        print(f"trace-bench regress: note: {n}", file=sys.stderr)
    where = f"(comparison: {res.out / 'comparison.csv'})"
    if not res.ok:
        print(f"trace-bench regress: {res.comparison.regressions} regression(s) beyond tolerance {where}", file=sys.stderr)
        raise typer.Exit(1)
    print(f"trace-bench regress: no regression beyond tolerance {where}", file=sys.stderr)
