"""``trace-bench run``: score folders of volumes, write tables, plots and reports (see trace_bench.runner)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer

from . import app


def _choices() -> tuple[str, str]:
    try:
        from ..runner import metric_choices, segmenter_choices

        return ", ".join(metric_choices()), ", ".join(segmenter_choices())
    except Exception:  # noqa: BLE001 - help text only
        return "all, weight-free, <metric names>", "threshold, provided, vista3d"


_METRICS, _SEGMENTERS = _choices()


def build_config(config: Optional[Path], **flags):
    """Defaults (RunConfig) < config file < flags that were given (None = not given)."""
    from ..config import RunConfig, load_config, parse_pairs

    base = load_config(config) if config is not None else RunConfig()
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
    if flags.get("hu_window") is not None:
        from ..errors import ConfigError

        try:
            lo, hi = (float(v) for v in flags["hu_window"].split(","))
        except ValueError:
            raise ConfigError(f"--hu-window {flags['hu_window']!r}: expected LO,HI in HU, e.g. -1000,1000") from None
        flags["hu_window"] = [lo, hi]
    return base.replace(**flags)


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


@app.command("run")
def run_cmd(
    config: Optional[Path] = typer.Option(None, "--config", help="TOML file with any of these settings (flags override it)."),
    out: Optional[str] = typer.Option(None, "--out", "-o", help="Output folder (default: trace-bench-out)."),
    reference: Optional[str] = typer.Option(None, "--reference", "-r", help="Folder of reference volumes. With no --reference and no --method: the shipped demo data."),
    reference_format: Optional[str] = typer.Option(None, "--reference-format", help="Adapter reading the reference folder (default nifti)."),
    method: Optional[list[str]] = typer.Option(None, "--method", "-m", help="NAME=DIR[:FORMAT] of generated volumes; repeat per method."),
    metrics: Optional[str] = typer.Option(None, "--metrics", help=f"Comma-separated list. Choices: {_METRICS}."),
    segmenter: Optional[str] = typer.Option(None, "--segmenter", help=f"Segmenter for Dice/Jaccard/HD95. Choices: {_SEGMENTERS}."),
    classes: Optional[str] = typer.Option(None, "--classes", help="Label granularity: 3, 2 or full."),
    reference_masks: Optional[str] = typer.Option(None, "--reference-masks", help="Folder of reference label maps (by case id)."),
    method_masks: Optional[list[str]] = typer.Option(None, "--method-masks", help="NAME=DIR of a method's label maps; repeatable."),
    prompts: Optional[str] = typer.Option(None, "--prompts", help="CSV (case_id,prompt) or JSON of text prompts."),
    device: Optional[str] = typer.Option(None, "--device", help="cpu, cuda or cuda:N."),
    workers: Optional[int] = typer.Option(None, "--workers", "-j", help="Parallel worker processes for the per-case stage."),
    skip_unavailable: Optional[bool] = typer.Option(None, "--skip-unavailable/--no-skip-unavailable", help="Run what is available; list skipped metrics in the report."),
    weights: Optional[list[str]] = typer.Option(None, "--weights", help="NAME=PATH of a weights file (registry name); repeatable."),
    profile: Optional[list[str]] = typer.Option(None, "--profile", help="NAME=FILE.json from `trace-bench profile`: adds FPS and VRAM for that method."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Seed of the bootstrap resampling (default 0)."),
    bootstrap: Optional[int] = typer.Option(None, "--bootstrap", help="Bootstrap resamples for per-case metrics (default 1000)."),
    bootstrap_distribution: Optional[int] = typer.Option(None, "--bootstrap-distribution", help="Bootstrap resamples for distribution metrics (default 100)."),
    confidence: Optional[float] = typer.Option(None, "--confidence", help="Confidence level of the intervals (default 0.95)."),
    frame_size: Optional[int] = typer.Option(None, "--frame-size", help="Frame protocol: in-plane size in pixels (default 256)."),
    hu_window: Optional[str] = typer.Option(None, "--hu-window", help="Frame protocol: HU window LO,HI (default -1000,1000)."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", help="Backbone batch size (default 32)."),
    plot_case: Optional[str] = typer.Option(None, "--plot-case", help="Case shown in montages, curves and overlays."),
    plots: Optional[bool] = typer.Option(None, "--plots/--no-plots", help="Draw plots (default on)."),
    published: Optional[bool] = typer.Option(None, "--published/--no-published", help="Show the paper's published rows (labelled 'as published')."),
    progress: Optional[bool] = typer.Option(None, "--progress/--no-progress", help="Progress bars on stderr."),
    shard: Optional[str] = typer.Option(None, "--shard", help="I/N: score only shard I of N (1-based) of the cases; combine the shard folders with `trace-bench merge`."),
    plugins: Optional[str] = typer.Option(None, "--plugins", help="Comma-separated modules ('module' or 'module:function') that register extra metric plug-ins."),
) -> None:
    """Score generated volumes against a reference set: per_case.csv, summary.csv, errors.csv,
    reports (md / tex / html), plots and provenance in --out. Rerun the same command to resume.
    Under torchrun (`torchrun --nproc-per-node G -m trace_bench run ...`) the cases are split by rank
    and rank 0 writes the outputs."""
    from ..runner import run

    cfg = build_config(config, out=out, reference=reference, reference_format=reference_format, methods=method,
                       metrics=metrics, segmenter=segmenter, classes=classes, reference_masks=reference_masks,
                       method_masks=method_masks, prompts=prompts, device=device, workers=workers,
                       skip_unavailable=skip_unavailable, weights=weights, profiles=profile, seed=seed,
                       bootstrap=bootstrap, bootstrap_distribution=bootstrap_distribution, confidence=confidence,
                       frame_size=frame_size, hu_window=hu_window, batch_size=batch_size, plot_case=plot_case,
                       plots=plots, published=published, progress=progress, shard=shard, plugins=plugins)
    print_outcome(run(cfg))
