"""``trace-bench doctor [NAME=]DIR... [--reference DIR]``: one table per folder of generated volumes (formats,
shapes, spacing, value range and the convention it implies, geometry warnings, pairing with the reference)
and the ``run`` command and TOML that read every folder right (:mod:`trace_bench.doctor`).

A separate command rather than ``inspect`` on folders: ``inspect`` already reads a folder as one volume
(a DICOM series or a PNG stack), so a folder argument there cannot also mean "a folder of cases"."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from . import app


def _fmt_range(r) -> str:
    return "-" if r is None else f"[{r[0]:.4g}, {r[1]:.4g}]"


def _x(t) -> str:
    return "-" if t is None else " x ".join(f"{v:g}" for v in t)


def _print_folder(rep) -> None:
    from pathlib import Path as _P

    print(f"{rep.folder}  (method {rep.name}; adapter {rep.adapter}: {rep.adapter_reason})")
    rows = [("file", "format", "shape (z,y,x)", "spacing mm", "header", "dtype", "values (sampled)", "convention",
             "geometry")]
    for f in rep.files:
        if f.error:
            rows.append((_P(f.path).name, f.format or "-", "error", "", "", "", "", "", ""))
            continue
        rows.append((_P(f.path).name, f.format or "-", _x(f.shape_zyx), _x(f.spacing_zyx), f.orientation or "-",
                     f.dtype or "-", _fmt_range(f.value_range), f.convention or ("?" if f.value_range else "-"),
                     f.geometry or "-"))
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("  " + "  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip())
    for f in rep.files:
        if f.error:
            print(f"  error: {f.error}")
        for w in f.warnings:
            print(f"  warning: {w}")
    for p in rep.problems:
        print(f"  problem: {p}")
    if rep.reference is not None:
        def some(ids):
            return ", ".join(ids[:8]) + (f" (+{len(ids) - 8} more)" if len(ids) > 8 else "")

        print(f"  pairing with {rep.reference}: {len(rep.matched)} matched"
              + (f"; only here: {some(rep.only_here)}" if rep.only_here else "")
              + (f"; missing here: {some(rep.only_reference)}" if rep.only_reference else ""))
    for n in rep.notes:
        print(f"  note: {n}")
    print()


@app.command("doctor")
def doctor_cmd(
    folders: list[str] = typer.Argument(..., help="Folders of generated volumes, as DIR or NAME=DIR (NAME: the method name; default the folder's name)."),
    reference: Optional[Path] = typer.Option(None, "--reference", "-r", help="The reference folder to pair case ids with."),
    fmt: str = typer.Option("auto", "--format", "-f", help="Adapter of the folders (see `trace-bench adapters`); 'auto' detects per folder."),
    reference_format: str = typer.Option("nifti", "--reference-format", help="Adapter of the reference folder."),
    out: str = typer.Option("OUT", "--out", help="Output folder written into the suggested `run` command."),
    as_json: bool = typer.Option(False, "--json", help="One JSON object per folder, then the command and TOML."),
) -> None:
    """Diagnose folders of generated volumes: what they hold and how `run` must read them."""
    from dataclasses import asdict

    from ..doctor import diagnose, run_command, run_toml, undecided

    named: list[tuple[str | None, str]] = []
    for item in folders:
        name, sep, path = item.partition("=")
        named.append((name.strip(), path) if sep and name.strip() and not Path(item).exists() else (None, item))
    reports = diagnose(named, reference=reference, fmt=fmt, reference_format=reference_format)
    ref = None if reference is None else str(reference)
    cmd, toml = run_command(reports, ref, out, reference_format), run_toml(reports, ref, reference_format)
    todo = undecided(reports)
    if as_json:
        for r in reports:
            print(json.dumps(asdict(r)))
        print(json.dumps({"command": cmd, "toml": toml, "undecided": todo}))
        return
    for r in reports:
        _print_folder(r)
    print("read them right with:")
    print(f"  {cmd}")
    if ref is None:
        print("  with REFERENCE_DIR your folder of real volumes (`run` scores against it; give it to doctor with "
              "--reference to check the pairing and get a command that runs as printed)")
    if todo:
        print("  and, once you know them (the files cannot tell; without them run refuses those files): "
              + " ".join(f"--read {t}" for t in todo))
    print("or, in a TOML file passed with --config:")
    for line in toml.splitlines():
        print(f"  {line}".rstrip())
