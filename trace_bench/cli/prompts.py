"""``trace-bench prompts ctrate``: the paper's CT-RATE prompts ("{age} years old {sex}: {impression}")
as a ``case_id,prompt`` CSV for ``trace-bench run --prompts`` (see :mod:`baselines.ctrate_prompts`)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer

from . import app

prompts_app = typer.Typer(no_args_is_help=True, help="Build prompt files (case_id,prompt) from a dataset's reports.")
app.add_typer(prompts_app, name="prompts")


@prompts_app.command("ctrate")
def ctrate_cmd(
    reports: list[Path] = typer.Option(..., "--reports", "-r", help="CT-RATE reports CSV (VolumeName, Impressions_EN, ...); repeatable."),
    metadata: list[Path] = typer.Option(..., "--metadata", "-m", help="CT-RATE metadata CSV (VolumeName, PatientAge, PatientSex, ...); repeatable."),
    out: Path = typer.Option(..., "--out", "-o", help="Output CSV with columns case_id,prompt."),
    template: Optional[str] = typer.Option(None, "--template", "-t", help="Python format string; fields: age, age_raw, sex, sex_raw, impression, findings, clinical_information, technique, volume_name, case_id. Default: the paper's '{age} years old {sex}: {impression}'."),
    volumes: Optional[Path] = typer.Option(None, "--volumes", help="Only the cases of the CT-RATE volumes in this folder (default: every report row)."),
    strict: bool = typer.Option(False, "--strict", help="Exit with status 1 when any case has no prompt (they are listed either way)."),
) -> None:
    """Write one prompt per case; every case without a prompt is listed on stderr, one line each."""
    from baselines.ctrate_prompts import PAPER_TEMPLATE, build_prompts, write_prompts_csv

    from ..errors import ConfigError

    cases = None
    if volumes is not None:
        from baselines import get_adapter

        if not volumes.is_dir():
            raise ConfigError(f"--volumes {volumes} is not a folder")
        ad = get_adapter("ctrate")
        cases = [ad.case_id(p) for p in ad.list_files(volumes)]
    table = build_prompts(reports, metadata, template=template or PAPER_TEMPLATE, cases=cases)
    for line in table.problems:
        print(f"trace-bench: no prompt: {line}", file=sys.stderr)
    write_prompts_csv(table.prompts, out)
    print(f"{out}: {len(table.prompts)} prompt(s)" + (f", {len(table.problems)} case(s) without one (listed above)"
                                                      if table.problems else ""))
    if strict and table.problems:
        raise typer.Exit(1)
