"""``trace-bench utility``: downstream utility of generated volumes (train on synthetic, test on real):
``seg-tstr`` and ``probe`` (``trace_bench.utility.run.run_utility``)."""

from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import Optional

import typer

from . import app


@app.command("utility")
def utility_cmd(
    config: Optional[Path] = typer.Option(None, "--config", "-c", help="TOML file: run settings at top level "
                                          "(reference, methods, masks, out, device) and the 'utility' table."),
    protocol: Optional[list[str]] = typer.Option(None, "--protocol", "-p", help="seg-tstr or probe; repeatable "
                                                 "(default: the config's, else seg-tstr)."),
    variant: Optional[str] = typer.Option(None, "--variant", help="full (the published protocol) or tiny (CPU smoke "
                                          "runs; its numbers are not comparable with full ones)."),
    seeds: Optional[int] = typer.Option(None, "--seeds", min=1, max=100, help="seg-tstr: number of seeds (the "
                                        "spread over seeds is reported)."),
    reference: Optional[str] = typer.Option(None, "--reference", "-r", metavar="DIR[:FORMAT]",
                                            help="Real volumes the generators were conditioned on (training set of "
                                                 "the real arm)."),
    reference_masks: Optional[str] = typer.Option(None, "--reference-masks", metavar="DIR",
                                                  help="Their label maps (the conditioning masks, by case id)."),
    method: Optional[list[str]] = typer.Option(None, "--method", "-m", metavar="NAME=DIR[:FORMAT]",
                                               help="Generated volumes of a method; repeatable (added to the "
                                                    "config's)."),
    method_masks: Optional[list[str]] = typer.Option(None, "--method-masks", metavar="NAME=DIR",
                                                     help="A method's own conditioning masks; repeatable."),
    only: Optional[list[str]] = typer.Option(None, "--only", metavar="NAME", help="Evaluate only these methods."),
    test_reference: Optional[str] = typer.Option(None, "--test-reference", metavar="DIR[:FORMAT]",
                                                 help="Held-out real test volumes (nobody trained on them)."),
    test_masks: Optional[str] = typer.Option(None, "--test-masks", metavar="DIR", help="Their label maps (seg-tstr)."),
    test_fraction: Optional[float] = typer.Option(None, "--test-fraction", help="Instead: hold out this fraction of "
                                                  "the real cases (chosen by sha256 of the case id)."),
    labels: Optional[str] = typer.Option(None, "--labels", metavar="CSV", help="probe: case_id (or VolumeName) + one "
                                         "0/1 column per label, e.g. CT-RATE's multi_abnormality_labels.csv."),
    features: Optional[str] = typer.Option(None, "--features", metavar="SPACE", help="probe: catalogue feature space "
                                           "(default astra)."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Output folder; results go to OUT/utility/."),
    device: Optional[str] = typer.Option(None, "--device", help="auto (a GPU when one is visible), cpu, cuda, cuda:N."),
    threads: Optional[int] = typer.Option(None, "--threads", min=0, help="torch CPU threads (0: torch's default)."),
    cache_dir: Optional[Path] = typer.Option(None, "--cache-dir", help="Cache root for prepared pairs and features."),
    no_resume: bool = typer.Option(False, "--no-resume", help="Train every arm again (ignore finished arms and "
                                   "checkpoints in OUT/utility/)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress lines on stderr."),
) -> None:
    """Does training on a generator's volumes help a real task? Trains the protocol's networks on real, on each
    method's and on real + method volumes, tests them on held-out real cases; writes OUT/utility/ (CSV, JSON with
    protocol ids, utility.png) and prints the Dice / AUROC summary. Under torchrun, seg-tstr training runs DDP."""
    from ..config import RunConfig, parse_pairs
    from ..utility.config import UtilityConfig, load_utility_config
    from ..utility.run import run_utility

    run, ucfg = load_utility_config(config) if config is not None else (RunConfig(), UtilityConfig())
    changes: dict = {"out": str(out) if out is not None else None, "device": device,
                     "reference_masks": reference_masks}
    if reference is not None:
        changes["reference"] = reference
    if method:
        changes["methods"] = {**run.methods, **parse_pairs(method, "method")}
    if method_masks:
        changes["method_masks"] = {**run.method_masks, **parse_pairs(method_masks, "method_masks")}
    run = run.replace(**changes)
    ucfg = ucfg.replace(protocols=list(protocol) if protocol else None, variant=variant, n_seeds=seeds,
                        methods=list(only) if only else None, test_reference=test_reference, test_masks=test_masks,
                        test_fraction=test_fraction, labels=labels, feature_space=features,
                        cache_dir=str(cache_dir) if cache_dir is not None else None, threads=threads,
                        resume=False if no_resume else None)
    res = run_utility(run, ucfg, progress=not quiet)
    if not res.files:  # a torchrun rank other than 0
        return
    if res.seg:
        s = res.seg["summary"]
        for r in s[(s.label == "mean") & (s.metric == "dice")].itertuples():
            name = "real" if r.arm == "real" else (r.method if r.arm == "method" else f"real + {r.method}")
            ci = "" if math.isnan(r.ci_low) else f" [{100 * r.ci_low:.2f}, {100 * r.ci_high:.2f}]"
            print(f"{res.seg['info']['protocol']}: trained on {name}: Dice {100 * r.mean:.2f}%{ci} on "
                  f"{r.n_cases} real test cases, {r.n_seeds} seed(s)")
    if res.probe:
        for m in res.probe["macro"]:
            au = "n/a" if m["mean_auroc"] is None else f"{m['mean_auroc']:.3f}"
            print(f"{res.probe['info']['protocol']}: trained on {m['name']}: mean AUROC {au} over {m['n_labels']} "
                  "label(s)")
    for p in res.problems:
        print(f"skipped: {p.method}: {p.case_id or '-'}: {p.reason}", file=sys.stderr)
    print(f"wrote {res.out_dir}/ ({', '.join(sorted(Path(f).name for f in res.files))})")
