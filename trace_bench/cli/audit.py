"""``trace-bench audit``: memorization audit of generated volumes against the training set, calibrated on
held-out real volumes (``trace_bench.audit.run_audit``)."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import typer

from . import app


@app.command("audit")
def audit_cmd(
    train_reference: str = typer.Option(..., "--train-reference", "-t", metavar="DIR[:FORMAT]",
                                        help="Folder of the generator's TRAINING volumes (FORMAT: adapter, default nifti)."),
    reference: str = typer.Option(..., "--reference", "-r", metavar="DIR[:FORMAT]",
                                  help="Folder of held-out real volumes the generator never saw (calibration)."),
    method: list[str] = typer.Option(..., "--method", "-m", metavar="NAME=DIR[:FORMAT]",
                                     help="Generated volumes; repeat per method."),
    out: Path = typer.Option(..., "--out", "-o", help="Output folder; the audit writes OUT/audit/."),
    cache_dir: Path | None = typer.Option(None, "--cache-dir", help="Feature cache root (default $TRACE_BENCH_CACHE/features)."),
    no_cache: bool = typer.Option(False, "--no-cache", help="Recompute every feature (nothing read from or written to the cache)."),
    feature: str = typer.Option("grid16x32x32", "--feature", help="Registered volume feature (name)."),
    top_k: int = typer.Option(32, "--top-k", min=1, help="Training slices kept per generated slice by the thumbnail pre-search."),
    batch_size: int = typer.Option(8, "--batch-size", min=1, help="Generated volumes searched together (memory only)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the k-means cells of C_T."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress lines on stderr."),
) -> None:
    """Does a generator copy its training volumes? Writes OUT/audit/memorization.csv, memorization_summary.csv,
    memorization.json, memorization.md and montage PNGs; prints the summary. A flag is evidence to look at,
    not proof (see the user guide's "Memorization audit" page, docs/guide/audit.md)."""
    from ..audit import run_audit
    from ..config import parse_pairs
    from ..folders import parse_folder

    def folder(name: str, spec: str) -> tuple[str, str]:
        f = parse_folder(name, spec)
        return str(f.path), f.format

    methods = {name: folder(name, spec) for name, spec in parse_pairs(method, "method").items()}
    last = [0.0]

    def progress(stage: str, done: int, total: int) -> None:
        now = time.monotonic()
        if quiet or (done < total and now - last[0] < 2.0):
            return
        last[0] = now
        print(f"audit: {stage} {done}/{total}", file=sys.stderr, flush=True)

    res = run_audit(out, folder("train_reference", train_reference), folder("reference", reference), methods,
                    cache_dir=cache_dir, use_cache=not no_cache, feature=feature, seed=seed, top_k=top_k,
                    batch_size=batch_size, progress=progress)
    h = res.data["heldout"]
    print(f"held-out calibration: {h['n_volumes']} volumes, volume threshold {h['volume_threshold']}, "
          f"slice NCC threshold {h['slice_threshold']}")
    for s in res.summary:
        ct = "n/a" if s["C_T"] != s["C_T"] else f"{s['C_T']:.2f}"
        print(f"{s['method']}: near-copy rate volumes {s['near_copy_rate_volume']:.3f} ({s['n_flagged']}/{s['n']}), "
              f"slices {s['near_copy_rate_slice']:.3f}, C_T {ct}, AuthPct {s['authpct']:.1f}%")
    for p in res.problems:
        print(f"skipped: {p['set']}: {p['path']}: {p['reason']}", file=sys.stderr)
    print(f"wrote {res.out_dir}/ (memorization.csv, memorization_summary.csv, memorization.json, memorization.md, montages)")
