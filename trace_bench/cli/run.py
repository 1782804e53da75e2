"""``trace-bench run``: score folders of volumes, write tables, plots and reports (see trace_bench.run).

Nothing heavy is imported at start-up: metric and segmenter names in ``--help`` come from static
text; the registries validate names when the command runs (with suggestions)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer

from . import app


_METRICS_HELP = ("Comma-separated metric or output names (fid, dice), 'available' (default: what is installed), "
                 "'weight-free' or 'all' (see `trace-bench metrics`).")


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
    if flags.get("tex_layout") and "=" in flags["tex_layout"]:  # TABLE=LAYOUT,... (one layout per table)
        flags["tex_layout"] = {**(base.tex_layout if isinstance(base.tex_layout, dict) else {}),
                               **parse_pairs([x for x in flags["tex_layout"].split(",") if x.strip()], "tex_layout")}
    if flags.get("reference_format") and isinstance(base.reference, dict) and flags.get("reference") is None:
        flags["reference"] = {**base.reference, "format": flags["reference_format"]}  # the flag wins over the file
    cfg = base.replace(**flags)
    return apply_reads(cfg, reads) if reads else cfg


def print_outcome(result) -> None:
    """What the run found (stdout): the compact results tables, the errors and warnings with the files to
    read, the metrics not computed and "open OUT/report.html" (:func:`reports.console.results_summary`);
    what the run did (stderr): one line of counts."""
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
    from reports.console import results_summary, terminal_width

    from ..results import load_results
    from ..run.console import warnings_summary

    res = load_results(out)
    st = result.stats
    if "shards" in st:  # trace-bench merge
        print(f"trace-bench: merged {st['shards']} shard(s), {st['entries']} entries", file=sys.stderr)
    else:
        print(f"trace-bench: {st.get('computed', 0)} computed, {st.get('cached', 0)} reused from the cache",
              file=sys.stderr)
    if st.get("utility_error"):
        print(f"trace-bench: {st['utility_error']}", file=sys.stderr)
    line = warnings_summary(zip(res.warnings["stage"], res.warnings["warning"]), out)
    if line:  # diagnostics on stderr (issue: a warnings summary after every run), results on stdout
        print(line, file=sys.stderr)
    width = terminal_width()
    names = [n for n in ("report.html", "report.md", "report.tex", "summary.csv", "per_case.csv")
             if (out / n).is_file()]
    print(f"results in {out}" + (f" ({', '.join(names)}, ...)" if names else ""))
    print("\n".join(results_summary(res, width=width)))


#: the panels of `trace-bench run --help`
INPUTS, METRICS, STATS, OUTPUT, SPEED, ADVANCED = "Inputs", "Metrics", "Statistics", "Output", "Performance", "Advanced"


@app.command("run")
def run_cmd(
    config: Optional[Path] = typer.Option(None, "--config", metavar="FILE", rich_help_panel=INPUTS,
                                          help="TOML file with any of these settings (flags override it)."),
    reference: Optional[str] = typer.Option(None, "--reference", "-r", metavar="DIR", rich_help_panel=INPUTS,
                                            help="Reference (real) volumes. No --reference and no --method: the "
                                                 "shipped demo data."),
    reference_format: Optional[str] = typer.Option(None, "--reference-format", metavar="ADAPTER",
                                                   rich_help_panel=INPUTS,
                                                   help="Adapter reading --reference (default nifti)."),
    method: Optional[list[str]] = typer.Option(None, "--method", "-m", metavar="NAME=DIR", rich_help_panel=INPUTS,
                                               help="Generated volumes of a method (DIR[:FORMAT]); repeatable."),
    read: Optional[list[str]] = typer.Option(None, "--read", metavar="NAME.KEY=VAL", rich_help_panel=INPUTS,
                                             help="How to read a folder: KEY format, convention, spacing or layout, "
                                                  "e.g. TRACE.convention=unit; repeatable."),
    reference_masks: Optional[str] = typer.Option(None, "--reference-masks", metavar="DIR", rich_help_panel=INPUTS,
                                                  help="Label maps of the reference volumes (by case id)."),
    method_masks: Optional[list[str]] = typer.Option(None, "--method-masks", metavar="NAME=DIR",
                                                     rich_help_panel=INPUTS,
                                                     help="Label maps of a method's volumes; repeatable."),
    prompts: Optional[str] = typer.Option(None, "--prompts", metavar="FILE", rich_help_panel=INPUTS,
                                          help="Text prompts: CSV (case_id,prompt) or JSON."),
    train_reference: Optional[str] = typer.Option(None, "--train-reference", metavar="DIR", rich_help_panel=INPUTS,
                                                  help="The generator's training volumes: adds the memorization "
                                                       "audit (OUT/audit/)."),
    metrics: Optional[str] = typer.Option(None, "--metrics", metavar="LIST", rich_help_panel=METRICS,
                                          help=_METRICS_HELP),
    option: Optional[list[str]] = typer.Option(None, "--option", metavar="M.NAME=VAL", rich_help_panel=METRICS,
                                               help="A metric option, e.g. fid.slices=40; repeatable (`trace-bench "
                                                    "metrics` lists them)."),
    segmenter: Optional[str] = typer.Option(None, "--segmenter", metavar="NAME", rich_help_panel=METRICS,
                                            help="For Dice / Jaccard / HD95: threshold (default), provided, "
                                                 "vista3d."),
    classes: Optional[str] = typer.Option(None, "--classes", metavar="3|2|full", rich_help_panel=METRICS,
                                          help="Label granularity of the segmenter."),
    weights: Optional[list[str]] = typer.Option(None, "--weights", metavar="NAME=PATH", rich_help_panel=METRICS,
                                                help="A weights file for a registry name; repeatable."),
    fast: Optional[bool] = typer.Option(None, "--fast/--full", rich_help_panel=METRICS,
                                        help="CPU-practical protocol for quick looks (fewer slices and clips; in "
                                             "every protocol id); not for published numbers."),
    frame_size: Optional[int] = typer.Option(None, "--frame-size", metavar="PX", rich_help_panel=METRICS,
                                             help="Frame protocol: in-plane size (default 256)."),
    hu_window: Optional[str] = typer.Option(None, "--hu-window", metavar="LO,HI", rich_help_panel=METRICS,
                                            help="Frame protocol: HU window (default -1000,1000)."),
    geometry: Optional[str] = typer.Option(None, "--geometry", metavar="POLICY", rich_help_panel=METRICS,
                                           help="A generated grid unlike its reference's: refuse (default: another "
                                                "field of view or orientation is not scored), warn or strict."),
    seed: Optional[int] = typer.Option(None, "--seed", rich_help_panel=STATS,
                                       help="Seed of every resampling (default 0)."),
    bootstrap: Optional[int] = typer.Option(None, "--bootstrap", metavar="B", rich_help_panel=STATS,
                                            help="Bootstrap resamples of per-case metrics (default 1000)."),
    bootstrap_distribution: Optional[int] = typer.Option(None, "--bootstrap-distribution", hidden=True,
                                                         help="Deprecated, ignored (see --jackknife-groups)."),
    jackknife_groups: Optional[int] = typer.Option(None, "--jackknife-groups", metavar="G", rich_help_panel=STATS,
                                                   help="Distribution metrics: leave-out groups per set (default "
                                                        "20)."),
    confidence: Optional[float] = typer.Option(None, "--confidence", metavar="P", rich_help_panel=STATS,
                                               help="Confidence level of the intervals (default 0.95)."),
    out: Optional[str] = typer.Option(None, "--out", "-o", metavar="DIR", rich_help_panel=OUTPUT,
                                      help="Output folder (default trace-bench-out)."),
    plots: Optional[bool] = typer.Option(None, "--plots/--no-plots", rich_help_panel=OUTPUT,
                                         help="Draw plots (default on)."),
    plot_case: Optional[str] = typer.Option(None, "--plot-case", metavar="ID", rich_help_panel=OUTPUT,
                                            help="Case shown in montages, curves, overlays, viewer."),
    published: Optional[bool] = typer.Option(None, "--published/--no-published", rich_help_panel=OUTPUT,
                                             help="Add the TRACE paper's own tables, labelled 'as published' "
                                                  "(default off)."),
    tex_layout: Optional[str] = typer.Option(None, "--tex-layout", metavar="LAYOUT", rich_help_panel=OUTPUT,
                                             help="LaTeX tables: auto (default), full, stacked, pm, compact, split, "
                                                  "split3, or TABLE=LAYOUT,... ."),
    tex_width: Optional[str] = typer.Option(None, "--tex-width", metavar="PAGE", rich_help_panel=OUTPUT,
                                            help="Page the LaTeX tables fit: lncs (default), ieee, ieee-wide, "
                                                 "neurips or a width in pt."),
    profile: Optional[list[str]] = typer.Option(None, "--profile", metavar="NAME=FILE", rich_help_panel=OUTPUT,
                                                help="JSON of `trace-bench profile`: adds FPS and memory."),
    relative_paths: Optional[bool] = typer.Option(None, "--relative-paths/--absolute-paths",
                                                  rich_help_panel=OUTPUT,
                                                  help="Keep absolute input paths out of the outputs."),
    force: Optional[bool] = typer.Option(None, "--force", rich_help_panel=OUTPUT,
                                         help="Write into a non-empty --out trace-bench did not write."),
    device: Optional[str] = typer.Option(None, "--device", metavar="DEV", rich_help_panel=SPEED,
                                         help="auto (default: a GPU when visible), cpu, cuda, cuda:N."),
    workers: Optional[int] = typer.Option(None, "--workers", "-j", metavar="N", rich_help_panel=SPEED,
                                          help="Parallel workers for the per-case stage: threads sharing models and caches "
                                               "(TRACE_BENCH_WORKERS=processes: processes)."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", metavar="N", rich_help_panel=SPEED,
                                             help="Backbone batch size (default 32)."),
    prefetch: Optional[bool] = typer.Option(None, "--prefetch/--no-prefetch", rich_help_panel=SPEED,
                                            help="Decode the next volume meanwhile (default: on a GPU)."),
    shard: Optional[str] = typer.Option(None, "--shard", metavar="I/N", rich_help_panel=SPEED,
                                        help="Score shard I of N of the cases; then `trace-bench merge`."),
    progress: Optional[bool] = typer.Option(None, "--progress/--no-progress", rich_help_panel=SPEED,
                                            help="Progress on stderr."),
    strict: Optional[bool] = typer.Option(None, "--strict/--no-strict", rich_help_panel=ADVANCED,
                                          help="Exit 1 on any error row or unscored method."),
    plugins: Optional[str] = typer.Option(None, "--plugins", metavar="MODULES", rich_help_panel=ADVANCED,
                                          help="Modules ('module' or 'module:function') registering metric "
                                               "plug-ins."),
    allow_plugins: Optional[bool] = typer.Option(None, "--allow-plugins", rich_help_panel=ADVANCED,
                                                 help="Load the plug-ins a --config file names (Python code)."),
    skip_unavailable: Optional[bool] = typer.Option(None, "--skip-unavailable", rich_help_panel=ADVANCED,
                                                    help="With --metrics all or names: run what is available, list "
                                                         "the rest in the report."),
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
                       plots=plots, published=published, tex_layout=tex_layout, tex_width=tex_width, progress=progress,
                       prefetch=prefetch, shard=shard, plugins=plugins)
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
