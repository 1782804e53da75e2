"""``trace-bench study make|score``: the reader-study kit of the paper's Table 3 (blinded HTML packets
for the raters, then unblinding and scoring of their exported answers). See :mod:`trace_bench.study`."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer

from . import app

study_app = typer.Typer(no_args_is_help=True, help="Reader study (Table 3): make blinded packets, score the answers.")
app.add_typer(study_app, name="study")


@study_app.command("make")
def make_cmd(
    out: Path = typer.Option(..., "--out", "-o", help="Study folder to create (key.json, study.json, packets/<rater>.html)."),
    raters: str = typer.Option(..., "--raters", help="Comma-separated rater names, e.g. R1,R2 (one packet each)."),
    config: Optional[Path] = typer.Option(None, "--config", help="A run's config.toml (OUT/config.toml): its reference and methods."),
    reference: Optional[str] = typer.Option(None, "--reference", "-r", help="Folder of reference (real) volumes."),
    reference_format: Optional[str] = typer.Option(None, "--reference-format", help="Adapter reading the reference folder (default nifti)."),
    method: Optional[list[str]] = typer.Option(None, "--method", "-m", help="NAME=DIR[:FORMAT] of generated volumes; repeatable."),
    methods: Optional[str] = typer.Option(None, "--methods", help="Comma-separated subset of the methods to include."),
    cases: Optional[int] = typer.Option(None, "--cases", help="Sample this many case ids (default: every case all methods have)."),
    include_real: Optional[int] = typer.Option(None, "--include-real", help="Real volumes to mix in (default: one per five generated items)."),
    criteria: str = typer.Option("paper", "--criteria", help="'paper' (Table 3's eight 1..10 criteria) or a JSON file of criteria."),
    detection: bool = typer.Option(True, "--detection/--no-detection", help="Ask 'real or generated?' for every item."),
    seed: int = typer.Option(0, "--seed", help="Seed of the sampling and of every rater's order."),
    size: int = typer.Option(160, "--size", help="In-plane cap of the embedded images (pixels on the longer side)."),
    slices: int = typer.Option(64, "--slices", help="Cap on the embedded axial slices per item (evenly spaced)."),
    force: bool = typer.Option(False, "--force", help="Overwrite an existing study (its key!) in --out."),
) -> None:
    """Write a blinded, randomised packet per rater (self-contained HTML) and the key (key.json)."""
    from ..config import parse_pairs
    from ..folders import parse_folder
    from ..errors import ConfigError
    from ..study.criteria import load_criteria
    from ..study.packet import config_inputs, make_study, parse_raters, plan_study

    ref, ref_fmt, specs = None, "nifti", {}
    if config is not None:  # paths in the config are relative to its folder
        ref, ref_fmt, specs = config_inputs(config)
    if reference is not None:
        ref = reference
    if reference_format is not None:
        ref_fmt = reference_format
    specs.update(parse_pairs(method, "method"))
    folders = {name: (str(f.path), f.format) for name, f in ((n, parse_folder(n, s)) for n, s in specs.items())}
    if methods:
        wanted = [m.strip() for m in methods.split(",") if m.strip()]
        unknown = [m for m in wanted if m not in folders]
        if unknown:
            raise ConfigError(f"--methods: unknown method(s) {', '.join(unknown)} (known: {', '.join(folders) or 'none'})")
        folders = {m: folders[m] for m in wanted}
    names = parse_raters(raters)
    crit = load_criteria(criteria, detection=detection)
    settings = {"reference_format": ref_fmt, "size": size, "slices": slices, "cases": cases, "include_real": include_real}
    plan = plan_study(ref, folders, reference_format=ref_fmt, raters=names, criteria=crit, cases=cases,
                      include_real=include_real, seed=seed, settings=settings)

    tty = sys.stderr.isatty()

    def progress(i: int, n: int) -> None:
        if tty:
            print(f"\rencoding item {i}/{n}", end="" if i < n else "\n", file=sys.stderr, flush=True)
        elif i == n or i % 10 == 0:
            print(f"encoding item {i}/{n}", file=sys.stderr, flush=True)

    res = make_study(out, plan, size=size, slices=slices, force=force, progress=progress)
    print(f"study: {res.n_items} items ({res.n_real} real), {len(crit)} questions, raters {', '.join(names)}")
    print(f"key (keep it; do not send): {res.key}  sha256 {res.key_sha256}")
    for r, p in res.packets.items():
        print(f"packet for {r}: {p}  ({p.stat().st_size / 1e6:.1f} MB)")


@study_app.command("score")
def score_cmd(
    study: Path = typer.Argument(..., help="The study folder written by `trace-bench study make`."),
    answers: list[Path] = typer.Argument(..., help="The CSV files the raters exported from their packets."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Where to write the tables (default STUDY/scores)."),
    allow_incomplete: bool = typer.Option(False, "--allow-incomplete", help="Score even if answers are missing (listed in the report)."),
    bootstrap: int = typer.Option(1000, "--bootstrap", min=0, help="Bootstrap resamples of the kappa interval."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Seed of the kappa bootstrap (default: the study's seed)."),
    confidence: float = typer.Option(0.95, "--confidence", help="Confidence level of every interval."),
    digits: int = typer.Option(1, "--digits", min=0, max=4, help="Decimals of mean and SD in Table 3."),
) -> None:
    """Unblind the answers: Table 3 (md, tex, csv), inter-rater agreement, real-vs-generated detection."""
    from ..study.score import score_study

    res = score_study(study, answers, out=out, allow_incomplete=allow_incomplete, resamples=bootstrap, seed=seed,
                      confidence=confidence, digits=digits)
    if res.missing:
        print("trace-bench: warning: incomplete answers: " + res.missing_text, file=sys.stderr)
    print(res.files["table3.md"].read_text(encoding="utf-8"))
    for p in res.files.values():
        print(f"wrote {p}", file=sys.stderr)

