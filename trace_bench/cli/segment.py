"""``trace-bench segment IN OUT.nii.gz``: label map of one volume (and an optional overlay PNG)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer

from . import app


@app.command("segment")
def segment_cmd(
    path: Path = typer.Argument(..., help="CT volume (any format the adapter reads)."),
    out: Path = typer.Argument(..., help="Output label map (.nii.gz), on the input's canonical grid (LPS)."),
    segmenter: str = typer.Option("threshold", "--segmenter", "-s", help="threshold | vista3d (see the segmenter registry)."),
    classes: str = typer.Option("3", "--classes", help="full | 3 (0 bg, 1 lungs, 2 other) | 2 (0 bg, 1 body)."),
    fmt: str = typer.Option("nifti", "--format", "-f", help="Adapter that reads the input (see `trace-bench adapters`)."),
    convention: Optional[str] = typer.Option(None, "--convention", "-c", help="Intensity convention of the input."),
    spacing: Optional[str] = typer.Option(None, "--spacing", help="Voxel spacing z,y,x in mm (files without geometry)."),
    weights: list[str] = typer.Option([], "--weights", help="NAME=PATH, e.g. vista3d=/models/vista3d (a bundle folder)."),
    device: Optional[str] = typer.Option(None, "--device", help="cpu | cuda (default: GPU when present)."),
    overlay: Optional[Path] = typer.Option(None, "--overlay", help="Also write a PNG overlay (axial/coronal/sagittal)."),
    layout: Optional[str] = typer.Option(None, "--layout", help="Orientation code of the stored axes for files without real geometry (e.g. SPL, LPS, RAS)."),
    force: bool = typer.Option(False, "--force", help="Replace existing output files (never the input)."),
) -> None:
    """Segment one CT volume into a label map (prints label volumes in mL)."""
    import numpy as np

    from baselines import get_adapter

    from ..device import check_device
    from ..errors import ConfigError
    from ..io import check_output_path, check_reader_environment, parse_spacing, write_nifti
    from ..read_options import parse_layout
    from ..segmenters import SEGMENTERS, get_segmenter, save_overlay

    check_reader_environment()
    if segmenter not in SEGMENTERS or segmenter == "provided":
        raise ConfigError(f"--segmenter must be one of: {', '.join(n for n in SEGMENTERS.names() if n != 'provided')}")
    if not str(out).lower().endswith((".nii.gz", ".nii")):
        raise ConfigError(f"output {out} must end with .nii.gz or .nii")
    check_output_path(out, [path], force=force)
    if overlay is not None:
        check_output_path(overlay, [path, out], force=force)
    if device is not None:
        device = check_device(device)  # --device cuda without a GPU: one line, before any work
    lay = None if layout is None else parse_layout(layout, "--layout")
    paths = {}
    for w in weights:
        name, sep, p = w.partition("=")
        if not sep:
            raise ConfigError(f"--weights expects NAME=PATH, got {w!r}")
        paths[name.strip()] = p.strip()
    vol = get_adapter(fmt).read(path, spacing=parse_spacing(spacing), convention=convention, layout=lay)
    for w in vol.meta.get("warnings") or ():
        print(f"trace-bench: warning: {w}", file=sys.stderr)
    lm = get_segmenter(segmenter, device=device, weights=paths).segment(vol, classes)
    write_nifti(lm.to_volume(), out)
    ml = float(np.prod(lm.spacing)) / 1000.0
    for l in (int(v) for v in np.unique(lm.labels) if v != 0):
        name = lm.names.get(l, str(l))
        print(f"{l}\t{name}\t{(lm.labels == l).sum() * ml:.1f} mL")
    print(f"wrote {out} ({lm.segmenter}, classes {lm.classes})", file=sys.stderr)
    if overlay is not None:
        save_overlay(vol, lm.labels, overlay, names=lm.names, title=f"{path.name}: {lm.segmenter}, classes {lm.classes}")
        print(f"wrote {overlay}", file=sys.stderr)
