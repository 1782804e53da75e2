"""``trace-bench compare BASELINE_OUT CANDIDATE_OUT``: regression gate for new checkpoints."""

from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import Optional

import typer

from . import app


def _fmt(v: float) -> str:
    return "" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.6g}"


@app.command("compare")
def compare_cmd(
    baseline: Path = typer.Argument(..., help="Output folder of the baseline run."),
    candidate: Path = typer.Argument(..., help="Output folder of the candidate run."),
    tolerance: Optional[Path] = typer.Option(None, "--tolerance", help="TOML/JSON: metric = abs tolerance, or [metric] abs/rel."),
    csv_out: Optional[Path] = typer.Option(None, "--csv", help="Also write the comparison table to this CSV."),
) -> None:
    """Print the difference of every (method, metric) with the direction of "better"; exit 1 when any
    metric regresses beyond its tolerance (or disappears), 0 otherwise."""
    from ..results import compare_results, load_tolerances

    cmp = compare_results(baseline, candidate, load_tolerances(tolerance))
    df = cmp.rows
    head = ["method", "metric", "better", "baseline", "candidate", "delta", "tolerance", "status"]
    rows = [[r.method, r.metric, "" if r.higher_is_better is None else ("higher" if r.higher_is_better else "lower"),
             _fmt(r.baseline), _fmt(r.candidate), _fmt(r.delta), _fmt(r.tolerance), r.status]
            for r in df.itertuples(index=False)]
    widths = [max(len(h), *(len(str(x[i])) for x in rows)) if rows else len(h) for i, h in enumerate(head)]
    print("  ".join(h.ljust(w) for h, w in zip(head, widths)))
    for r in rows:
        print("  ".join(str(x).ljust(w) for x, w in zip(r, widths)))
    if csv_out is not None:
        from ..results import atomic_write_text

        atomic_write_text(csv_out, df.to_csv(index=False, lineterminator="\n"))
    if not cmp.ok:
        print(f"trace-bench compare: {cmp.regressions} regression(s) beyond tolerance", file=sys.stderr)
        raise typer.Exit(1)
    print("trace-bench compare: no regression beyond tolerance", file=sys.stderr)
