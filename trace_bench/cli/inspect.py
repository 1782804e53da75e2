"""``trace-bench inspect PATH...``: what a volume file holds, after canonicalisation, and what its header
fails to say (the same warning lines as ``run``'s ``warnings.csv``: :func:`trace_bench.geometry.volume_warnings`).
Folders of cases: ``trace-bench doctor``."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

import typer

from ..errors import TraceBenchError
from . import app


def _fmt_row(s: dict) -> str:
    z, y, x = s["shape_zyx"]
    sz, sy, sx = s["spacing_zyx_mm"]
    return (f"{s['path']}\n"
            f"  shape (z,y,x)      {z} x {y} x {x}\n"
            f"  spacing (z,y,x) mm {sz:g} x {sy:g} x {sx:g}   ({s['spacing_source']})\n"
            f"  orientation        {s['orientation']} (source {s['source_orientation']})\n"
            f"  dtype              {s['dtype']} (source {s['source_dtype']}, shape {s['source_shape']})\n"
            f"  HU min/max/mean    {s['hu_min']:.1f} / {s['hu_max']:.1f} / {s['hu_mean']:.1f}\n"
            f"  adapter            {s['adapter'] or s['format']}" + (f" ({s['adapter_reason']})" if s.get("adapter_reason") else "") + "\n"
            f"  convention         {s['convention']} ({s['convention_reason']})\n"
            f"  geometry           {s.get('geometry')}"
            + (f" (layout {s['read_layout']})" if s.get("read_layout") else "")
            + "".join(f"\n  mask {n:<13} {m}" for n, m in (s.get("masks") or {}).items())
            + "".join(f"\n  warning            {w}" for w in s.get("warnings") or ()))


@app.command("inspect")
def inspect_cmd(
    paths: list[Path] = typer.Argument(..., help="Volume files or DICOM/PNG folders."),
    fmt: str = typer.Option("nifti", "--format", "-f", help="Adapter that reads the files (see `trace-bench adapters`); 'auto' detects."),
    convention: Optional[str] = typer.Option(None, "--convention", "-c", help="Intensity convention: hu, hu/1000, unit[:lo:hi], symmetric[:lo:hi], byte[:lo:hi], hu+K."),
    spacing: Optional[str] = typer.Option(None, "--spacing", help="Voxel spacing z,y,x in mm for files without geometry (overrides the file's)."),
    layout: Optional[str] = typer.Option(None, "--layout", help="Orientation code of the stored axes for files without real geometry (e.g. SPL, LPS, RAS); `run`: --read NAME.layout=."),
    as_json: bool = typer.Option(False, "--json", help="One JSON object per line instead of text."),
) -> None:
    """Print shape (z, y, x), spacing, orientation, dtype, HU range, the convention used and geometry warnings."""
    from baselines import get_adapter
    from ..io import check_reader_environment, parse_spacing
    from ..read_options import parse_layout

    check_reader_environment()
    failed = 0
    sp = parse_spacing(spacing)
    lay = None if layout is None else parse_layout(layout, "--layout")
    for p in paths:
        try:
            if fmt == "auto":
                from baselines import detect_adapter  # provided by baselines/auto.py
                adapter, why = detect_adapter(p)
            else:
                adapter, why = get_adapter(fmt), "given with --format"
            vol = adapter.read(p, spacing=sp, convention=convention, layout=lay)
            s = vol.summary()
            s["adapter"] = vol.meta.get("adapter", adapter.name)
            s["adapter_reason"] = vol.meta.get("adapter_reason", why)
            s["masks"] = {k: str(v) for k, v in adapter.masks(p).items()}
        except TraceBenchError as e:
            failed += 1
            print(f"trace-bench: error: {e}", file=sys.stderr)
            continue
        except Exception as e:  # unexpected decoder failures still get one line
            failed += 1
            print(f"trace-bench: error: {p}: {type(e).__name__}: {e}", file=sys.stderr)
            continue
        print(json.dumps(s) if as_json else _fmt_row(s))
    if failed:
        raise typer.Exit(1)
