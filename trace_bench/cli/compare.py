"""``trace-bench compare BASELINE_OUT CANDIDATE_OUT``: regression gate for new checkpoints, with the
paired analysis of the two runs beside it."""

from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import Any, Optional

import typer

from . import app


def _fmt(v: float) -> str:
    return "" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.6g}"


def _paired_cell(r: Any) -> str:
    """``Δ [lo, hi] p=… n=…`` (p of the sign-flip test; ``jk`` instead of p for the set-level metrics'
    jackknife), or the note."""
    if int(r.n_pairs) == 0 or math.isnan(r.paired_delta):
        return str(r.paired_note or "")
    text = f"{r.paired_delta:+.4g}"
    if not math.isnan(r.paired_ci_low):
        text += f" [{r.paired_ci_low:.4g}, {r.paired_ci_high:.4g}]"
    if not math.isnan(r.p_signflip):
        text += f" p={r.p_signflip:.3g}"
    elif not math.isnan(r.paired_ci_low):
        text += " jk"
    text += f" n={int(r.n_pairs)}"
    return text + (f" ({r.paired_note})" if r.paired_note else "")


@app.command("compare")
def compare_cmd(
    baseline: Path = typer.Argument(..., help="Output folder of the baseline run."),
    candidate: Path = typer.Argument(..., help="Output folder of the candidate run."),
    tolerance: Optional[Path] = typer.Option(None, "--tolerance", help="TOML/JSON: metric = abs tolerance, or [metric] abs/rel."),
    csv_out: Optional[Path] = typer.Option(None, "--csv", help="Also write the comparison table (all columns) to this CSV."),
    confidence: float = typer.Option(0.95, "--confidence", min=0.5, max=0.999,
                                     help="Confidence level of the paired intervals."),
    significance: Optional[float] = typer.Option(
        None, "--significance", metavar="ALPHA", min=0.001, max=0.5,
        help="A regression must be both beyond tolerance and significant: a metric with per-case values "
             "whose exact sign-flip p >= ALPHA is reported 'worse (n.s.)' and does not fail. The test needs "
             "enough non-zero paired differences to reach ALPHA (6 at 0.05; printed); with fewer, the "
             "tolerance alone decides. Default: off."),
    jackknife: bool = typer.Option(True, "--jackknife/--no-jackknife",
                                   help="Recompute the set-level metrics' paired jackknife interval from the case states."),
    method_map: Optional[list[str]] = typer.Option(
        None, "--map", metavar="OLD=NEW",
        help="Compare the baseline's method OLD with the candidate's method NEW (a renamed method; repeatable)."),
    allow_protocol_change: bool = typer.Option(
        False, "--allow-protocol-change",
        help="Compare runs whose protocol ids or weights differ (refused otherwise); the differences are printed."),
) -> None:
    """Print the difference of every (method, metric) with the direction of "better"; exit 1 when any
    metric regresses beyond its tolerance (or disappears), 0 otherwise.

    The column "paired" pairs the two runs case by case (cases scored in both only). Per-case
    metrics: mean difference candidate - baseline, its studentised bootstrap interval (seed 0, level
    --confidence; none below 5 pairs), the exact two-sided sign-flip p-value, n (the CSV adds the
    Wilcoxon signed-rank p). Set-level metrics (FID, ...): the full-sample difference and a delete-one
    jackknife t-interval ("jk"). The exit status is driven by the tolerances (and --significance) only.
    Runs that share no method, or whose protocols or weights differ, are refused (exit 2)."""
    from ..results import (NOT_SIGNIFICANT, SIGNIFICANCE_TEST, comparable_runs, compare_results, load_results,
                           load_tolerances, min_nonzero_pairs, parse_method_map, unmatched_methods)

    tol = load_tolerances(tolerance)  # the user's files are checked before any work
    mapping = parse_method_map(method_map)
    b, c = load_results(baseline), load_results(candidate)
    renamed, _ = comparable_runs(b, c, mapping, allow_protocol_change=allow_protocol_change)  # refusals first
    extra = None
    if jackknife:
        from ..run.paired_distribution import paired_distribution_stats

        extra = paired_distribution_stats(baseline, candidate, confidence, method_map=mapping)
    cmp = compare_results(b, c, tol, confidence=confidence, significance=significance, paired_extra=extra,
                          method_map=mapping, allow_protocol_change=allow_protocol_change)
    df = cmp.rows
    for old, new in mapping.items():
        print(f"note: baseline method {old} compared with candidate method {new} (--map)")
    if cmp.protocol_changes:
        print(f"note: PROTOCOL CHANGED, compared anyway (--allow-protocol-change): {'; '.join(cmp.protocol_changes)}")
    only_b, only_c = unmatched_methods(renamed, c)
    if only_b and only_c:
        print(f"note: methods only in the baseline: {', '.join(only_b)}; only in the candidate: {', '.join(only_c)} "
              f"(a renamed method? --map {only_b[0]}={only_c[0]})")
    head = ["method", "metric", "better", "baseline", "candidate", "delta", "tolerance", "status",
            f"paired: delta [{confidence:.0%} CI] p n"]
    rows = [[r.method, r.metric, "" if r.higher_is_better is None else ("higher" if r.higher_is_better else "lower"),
             _fmt(r.baseline), _fmt(r.candidate), _fmt(r.delta), _fmt(r.tolerance), r.status, _paired_cell(r)]
            for r in df.itertuples(index=False)]
    widths = [max(len(h), *(len(str(x[i])) for x in rows)) if rows else len(h) for i, h in enumerate(head)]
    print("  ".join(h.ljust(w) for h, w in zip(head, widths)).rstrip())
    for r in rows:
        print("  ".join(str(x).ljust(w) for x, w in zip(r, widths)).rstrip())
    if csv_out is not None:
        from ..results import atomic_write_text

        atomic_write_text(csv_out, df.to_csv(index=False, lineterminator="\n"))
    gate = ""
    if significance is not None:
        ns = int((df.status == NOT_SIGNIFICANT).sum())
        need = min_nonzero_pairs(significance)
        few = int(df.paired_note.astype(str).str.contains("tolerance gate alone", regex=False).sum())
        gate = (f" (per-case metrics also significant at {significance:g}, {SIGNIFICANCE_TEST}, which can reach "
                f"p < {significance:g} only with >= {need} non-zero paired differences: {ns} not significant, "
                f"{few} with fewer pairs judged by tolerance alone)")
    if not cmp.ok:
        print(f"trace-bench compare: {cmp.regressions} regression(s) beyond tolerance{gate}", file=sys.stderr)
        raise typer.Exit(1)
    print(f"trace-bench compare: no regression beyond tolerance{gate}", file=sys.stderr)
