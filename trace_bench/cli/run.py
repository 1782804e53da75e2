"""``trace-bench run``: score folders of volumes, write tables, plots and reports (see trace_bench.run).

Nothing heavy is imported at start-up: metric and segmenter names in ``--help`` come from static
text; the registries validate names when the command runs (with suggestions)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer

from . import app


_METRICS_HELP = ("Comma-separated: metric names (e.g. temporal_flickering, segmentation, fid, fvd), output names "
                 "(dice, jaccard, hd95 -> segmentation), 'available' (default: every metric whose weights are "
                 "installed; the others are listed in the report), 'weight-free' (metrics that need no weights "
                 "file) or 'all' (missing weights stop the run unless --skip-unavailable). "
                 "`trace-bench metrics` lists them.")


def build_config(config: Optional[Path], *, reads: Optional[list[str]] = None, allow_plugins: bool = False, **flags):
    """Defaults (RunConfig) < config file < flags that were given (None = not given); ``reads``: the
    ``--read NAME.KEY=VALUE`` flags, applied last. Plug-ins run code: from a config file they load
    only with ``allow_plugins`` (``--allow-plugins``); ``--plugins`` on the command line names them."""
    from ..config import RunConfig, apply_reads, load_config, parse_pairs
    from ..errors import ConfigError

    base = load_config(config) if config is not None else RunConfig()
    named = [m.strip() for m in (flags.get("plugins") or "").split(",") if m.strip()]
    if any(m not in named for m in base.plugins) and not allow_plugins:
        raise ConfigError(f"{config}: plugins = {base.plugins}: plug-ins are Python code; a config file loads them "
                          "only with --allow-plugins (or name them with --plugins on the command line)")
    for name in ("methods", "method_masks", "weights", "profiles"):
        items = flags.get(name)
        if items:
            merged = dict(getattr(base, name))
            merged.update(parse_pairs(items, {"methods": "method", "profiles": "profile"}.get(name, name)))
            flags[name] = merged
        else:
            flags[name] = None
    for name in ("metrics", "plugins"):
        if flags.get(name) is not None:
            flags[name] = [m.strip() for m in flags[name].split(",") if m.strip()]
    if flags.get("options"):
        from ..config import parse_options

        flags["options"] = parse_options(flags["options"], base.options)
    else:
        flags["options"] = None
    if flags.get("hu_window") is not None:
        from ..errors import ConfigError

        try:
            lo, hi = (float(v) for v in flags["hu_window"].split(","))
        except ValueError:
            raise ConfigError(f"--hu-window {flags['hu_window']!r}: expected LO,HI in HU, e.g. -1000,1000") from None
        flags["hu_window"] = [lo, hi]
    if flags.get("reference_format") and isinstance(base.reference, dict) and flags.get("reference") is None:
        flags["reference"] = {**base.reference, "format": flags["reference_format"]}  # the flag wins over the file
    cfg = base.replace(**flags)
    return apply_reads(cfg, reads) if reads else cfg


def print_outcome(result) -> None:
    """Where the results are (stdout) and what went wrong (stderr)."""
    from ..results import load_results

    if result is None:  # a torchrun rank other than 0: rank 0 writes and prints
        return
    out = result.out
    plan = getattr(result, "plan", None)
    if plan is not None and plan.config.shard is not None:
        st = result.stats
        print(f"shard {result.plan.config.shard}: {out}")
        print(f"trace-bench: shard {result.plan.config.shard}: {st.get('computed', 0)} computed, "
              f"{st.get('cached', 0)} reused from the cache, {st.get('entries', 0)} entries; when every shard is done "
              f"run `trace-bench merge SHARD_DIR... --out OUT`", file=sys.stderr)
        return
    res = load_results(result.out)
    print(f"results: {out}")
    for name in ("per_case.csv", "summary.csv", "errors.csv", "report.md", "report.html", "report.tex", "provenance.json"):
        if (out / name).is_file():
            print(f"  {out / name}")
    s = res.summary
    if len(s):
        w = max(len(m) for m in s.method)
        for r in s.itertuples(index=False):
            ci = "" if r.ci_low != r.ci_low else f"  [{r.ci_low:.6g}, {r.ci_high:.6g}]"
            print(f"  {r.method:<{w}}  {r.metric:<26} {r.value:.6g}{ci}  n={r.n}")
    st = result.stats
    if "shards" in st:  # trace-bench merge
        print(f"trace-bench: merged {st['shards']} shard(s), {st['entries']} entries, {len(res.errors)} error row(s)",
              file=sys.stderr)
    else:
        print(f"trace-bench: {st.get('computed', 0)} computed, {st.get('cached', 0)} reused from the cache, "
              f"{len(res.errors)} error row(s)", file=sys.stderr)
    if len(res.errors):
        print(f"trace-bench: see {out / 'errors.csv'}", file=sys.stderr)
    from ..run.console import warnings_summary

    line = warnings_summary(zip(res.warnings["stage"], res.warnings["warning"]), out)
    if line:
        print(line, file=sys.stderr)


@app.command("run")
def run_cmd(
    config: Optional[Path] = typer.Option(None, "--config", help="TOML file with any of these settings (flags override it)."),
    out: Optional[str] = typer.Option(None, "--out", "-o", help="Output folder (default: trace-bench-out)."),
    reference: Optional[str] = typer.Option(None, "--reference", "-r", help="Folder of reference volumes. With no --reference and no --method: the shipped demo data."),
    reference_format: Optional[str] = typer.Option(None, "--reference-format", help="Adapter reading the reference folder (default nifti)."),
    method: Optional[list[str]] = typer.Option(None, "--method", "-m", help="NAME=DIR[:FORMAT] of generated volumes; repeat per method."),
    read: Optional[list[str]] = typer.Option(None, "--read", help="NAME.KEY=VALUE: how to read a folder's files (NAME: a method, reference or train_reference; KEY: format, convention, spacing, layout), e.g. TRACE.convention=unit, TRACE.spacing=reference; repeatable; TOML [methods.NAME] tables."),
    metrics: Optional[str] = typer.Option(None, "--metrics", help=_METRICS_HELP),
    option: Optional[list[str]] = typer.Option(None, "--option", help="METRIC.NAME=VALUE: a metric option, e.g. fid.weights=inception-fid-pth, fid.slices=40, segmentation.resample=world; repeatable (`trace-bench metrics` lists each metric's options)."),
    segmenter: Optional[str] = typer.Option(None, "--segmenter", help="Segmenter for Dice/Jaccard/HD95: threshold (default), provided, vista3d."),
    classes: Optional[str] = typer.Option(None, "--classes", help="Label granularity: 3, 2 or full."),
    reference_masks: Optional[str] = typer.Option(None, "--reference-masks", help="Folder of reference label maps (by case id)."),
    method_masks: Optional[list[str]] = typer.Option(None, "--method-masks", help="NAME=DIR of a method's label maps; repeatable."),
    prompts: Optional[str] = typer.Option(None, "--prompts", help="CSV (case_id,prompt) or JSON of text prompts."),
    device: Optional[str] = typer.Option(None, "--device", help="auto (default: cuda when a GPU is visible, else cpu), cpu, cuda or cuda:N."),
    workers: Optional[int] = typer.Option(None, "--workers", "-j", help="Parallel workers for the per-case stage: threads sharing the models and caches, one case each (TRACE_BENCH_WORKERS=processes: spawned processes)."),
    skip_unavailable: Optional[bool] = typer.Option(None, "--skip-unavailable/--no-skip-unavailable", help="Run what is available; list skipped metrics in the report."),
    weights: Optional[list[str]] = typer.Option(None, "--weights", help="NAME=PATH of a weights file (registry name); repeatable."),
    profile: Optional[list[str]] = typer.Option(None, "--profile", help="NAME=FILE.json from `trace-bench profile`: adds FPS and VRAM for that method."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Seed of the bootstrap resampling (default 0)."),
    bootstrap: Optional[int] = typer.Option(None, "--bootstrap", help="Bootstrap resamples for per-case metrics (default 1000)."),
    bootstrap_distribution: Optional[int] = typer.Option(None, "--bootstrap-distribution", help="Deprecated, ignored: distribution metrics use the jackknife (--jackknife-groups).", hidden=True),
    jackknife_groups: Optional[int] = typer.Option(None, "--jackknife-groups", help="Distribution metrics: at most this many leave-out groups of cases per set for the jackknife interval (default 20)."),
    confidence: Optional[float] = typer.Option(None, "--confidence", help="Confidence level of the intervals (default 0.95)."),
    frame_size: Optional[int] = typer.Option(None, "--frame-size", help="Frame protocol: in-plane size in pixels (default 256)."),
    hu_window: Optional[str] = typer.Option(None, "--hu-window", help="Frame protocol: HU window LO,HI (default -1000,1000)."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", help="Backbone batch size (default 32)."),
    plot_case: Optional[str] = typer.Option(None, "--plot-case", help="Case shown in montages, curves and overlays."),
    plots: Optional[bool] = typer.Option(None, "--plots/--no-plots", help="Draw plots (default on)."),
    published: Optional[bool] = typer.Option(None, "--published/--no-published", help="Show the paper's published rows (labelled 'as published')."),
    progress: Optional[bool] = typer.Option(None, "--progress/--no-progress", help="Progress bars on stderr."),
    prefetch: Optional[bool] = typer.Option(None, "--prefetch/--no-prefetch", help="Decode the next volume on a background thread while the current one is scored (default: on when the device is a GPU; serial runs)."),
    shard: Optional[str] = typer.Option(None, "--shard", help="I/N: score only shard I of N (1-based) of the cases; combine the shard folders with `trace-bench merge`."),
    plugins: Optional[str] = typer.Option(None, "--plugins", help="Comma-separated modules ('module' or 'module:function') that register extra metric plug-ins."),
    allow_plugins: Optional[bool] = typer.Option(None, "--allow-plugins", help="Load the plug-ins a --config file names (they are Python code; without this flag a config file's plugins are refused)."),
    force: Optional[bool] = typer.Option(None, "--force", help="Write into a non-empty --out that trace-bench did not write (its files are left alone)."),
    geometry: Optional[str] = typer.Option(None, "--geometry", help="What to do when a generated volume's grid differs from its reference's: see `trace-bench run --help` in the README (refuse, the default: mismatched field of view or orientation is not scored; warn; strict)."),
    strict: Optional[bool] = typer.Option(None, "--strict/--no-strict", help="Exit 1 when any error row is written or a method has no scored case."),
    relative_paths: Optional[bool] = typer.Option(None, "--relative-paths/--absolute-paths", help="Keep absolute input paths out of reports and provenance."),
    fast: Optional[bool] = typer.Option(None, "--fast/--full", help="CPU-practical protocol for quick looks (16 slices from the central 40% for FID/KID/PRDC, 2 clips for FVD, every 8th slice for FID 2.5D); in every protocol id; not for published numbers."),
    train_reference: Optional[str] = typer.Option(None, "--train-reference", help="DIR[:FORMAT] of the generator's training volumes: adds the memorization audit (OUT/audit/, report section), calibrated on --reference."),
) -> None:
    """Score generated volumes against a reference set: per_case.csv, summary.csv, errors.csv,
    reports (md / tex / html), plots and provenance in --out. Rerun the same command to resume.
    Under torchrun (`torchrun --nproc-per-node G -m trace_bench run ...`) the cases are split by rank
    and rank 0 writes the outputs."""
    from ..launch import launch
    from ..run.pipeline import nothing_scored, strict_failures

    cfg = build_config(config, reads=read, allow_plugins=bool(allow_plugins), force=force, out=out, reference=reference,
                       reference_format=reference_format, methods=method,
                       metrics=metrics, options=option, geometry=geometry, strict=strict, relative_paths=relative_paths,
                       train_reference=train_reference, fast=fast,
                       segmenter=segmenter, classes=classes, reference_masks=reference_masks,
                       method_masks=method_masks, prompts=prompts, device=device, workers=workers,
                       skip_unavailable=skip_unavailable, weights=weights, profiles=profile, seed=seed,
                       bootstrap=bootstrap, bootstrap_distribution=bootstrap_distribution, jackknife_groups=jackknife_groups,
                       confidence=confidence,
                       frame_size=frame_size, hu_window=hu_window, batch_size=batch_size, plot_case=plot_case,
                       plots=plots, published=published, progress=progress, prefetch=prefetch, shard=shard, plugins=plugins)
    result = launch(cfg)
    print_outcome(result)
    if result is not None and nothing_scored(result):
        print(f"trace-bench: no method scored any case; see {result.out / 'errors.csv'}", file=sys.stderr)
        raise typer.Exit(1)
    if result is not None and cfg.strict:
        failures = strict_failures(result)
        if failures:
            print("trace-bench: --strict: " + "; ".join(failures), file=sys.stderr)
            raise typer.Exit(1)
