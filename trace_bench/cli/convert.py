"""``trace-bench convert IN OUT.nii.gz``: any peer's file -> canonical NIfTI (float32 HU, LPS, real affine);
``trace-bench adapters``: the adapter registry."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

import typer

from ..errors import ConfigError, InvalidVolumeError, TraceBenchError
from . import app


def convert_file(src: Path, dst: Path, *, fmt: str = "auto", spacing: str | None = None,
                 convention: str | None = None, with_masks: bool = False, layout: str | None = None,
                 force: bool = False) -> dict:
    """Read ``src`` with adapter ``fmt`` ('auto' detects), write ``dst`` as NIfTI; return provenance.

    With ``with_masks``, every label map the peer wrote beside ``src`` is written next to ``dst`` as
    ``<dst stem>_<name>.nii.gz`` on the same canonical grid (integer labels). Never writes over ``src``
    (or into it, for a folder), and never over an existing file unless ``force``
    (:func:`trace_bench.io.check_output_path`), checked before anything is read.
    """
    import numpy as np

    from baselines import detect_adapter, get_adapter
    from ..io import check_output_path, check_reader_environment, parse_spacing, write_nifti
    from ..read_options import parse_layout

    check_reader_environment()
    if not str(dst).lower().endswith((".nii.gz", ".nii")):
        raise ConfigError(f"output {dst} must end with .nii.gz or .nii")
    check_output_path(dst, [src], force=force)
    sp = parse_spacing(spacing)
    lay = None if layout is None else parse_layout(layout, "--layout")
    if fmt == "auto":
        adapter, why = detect_adapter(src)
    else:
        adapter, why = get_adapter(fmt), "given with --format"
    masks = adapter.masks(src) if with_masks else {}
    stem = dst.name[: -len(".nii.gz")] if dst.name.lower().endswith(".nii.gz") else dst.name[: -len(".nii")]
    for name in masks:
        check_output_path(dst.parent / f"{stem}_{name}.nii.gz", [src, *masks.values()], force=force)
    vol = adapter.read(src, spacing=sp, convention=convention, layout=lay)
    vol.meta.setdefault("adapter_reason", why)
    write_nifti(vol, dst)
    info = {"input": str(src), "output": str(dst), "adapter": vol.meta.get("adapter", adapter.name),
            "adapter_reason": vol.meta.get("adapter_reason"), "convention": vol.meta.get("convention"),
            "convention_reason": vol.meta.get("convention_reason"), "spacing_zyx_mm": list(vol.spacing),
            "spacing_source": vol.meta.get("spacing_source"), "orientation": vol.orientation,
            "shape_zyx": list(vol.shape), "masks": {}, "warnings": list(vol.meta.get("warnings") or [])}
    if with_masks:
        for name, mpath in masks.items():
            mvol = adapter.read_mask(mpath, name=name, spacing=sp)
            if mvol.shape != vol.shape or not np.allclose(mvol.affine, vol.affine, atol=1e-3):
                raise InvalidVolumeError(mpath, f"mask grid (shape {mvol.shape}, {mvol.orientation}) differs from the "
                                                f"volume's (shape {vol.shape}, {vol.orientation})")
            out = write_nifti(mvol, dst.parent / f"{stem}_{name}.nii.gz")
            info["masks"][name] = str(out)
    return info


@app.command("convert")
def convert_cmd(
    src: Path = typer.Argument(..., help="A peer's volume file (or DICOM/PNG folder)."),
    dst: Path = typer.Argument(..., help="Output NIfTI (.nii.gz): float32 HU, LPS, real affine."),
    fmt: str = typer.Option("auto", "--format", "-f", help="Adapter (see `trace-bench adapters`); 'auto' detects and says why."),
    spacing: Optional[str] = typer.Option(None, "--spacing", help="Voxel spacing z,y,x in mm (overrides the adapter's default / the file's)."),
    convention: Optional[str] = typer.Option(None, "--convention", "-c", help="Intensity convention: hu, hu/1000, unit[:lo:hi], symmetric[:lo:hi], byte[:lo:hi], hu+K."),
    with_masks: bool = typer.Option(False, "--masks", help="Also write the label maps the peer stored beside the volume (<out>_<name>.nii.gz)."),
    layout: Optional[str] = typer.Option(None, "--layout", help="Orientation code of the stored axes for files without real geometry (e.g. SPL, LPS, RAS); `run`: --read NAME.layout=."),
    force: bool = typer.Option(False, "--force", help="Replace an existing output file (never the input)."),
    as_json: bool = typer.Option(False, "--json", help="Print the provenance as JSON."),
) -> None:
    """Write the canonical volume as NIfTI with a correct affine, so other tools can open it too."""
    try:
        info = convert_file(src, dst, fmt=fmt, spacing=spacing, convention=convention, with_masks=with_masks,
                            layout=layout, force=force)
    except (TraceBenchError, OSError):  # the CLI boundary prints one line, exit status 2
        raise
    except Exception as e:  # unexpected decoder failures still get one line naming the file
        print(f"trace-bench: error: {src}: {type(e).__name__}: {e}", file=sys.stderr)
        raise typer.Exit(1)
    if as_json:
        print(json.dumps(info))
        return
    sz, sy, sx = info["spacing_zyx_mm"]
    print(f"{info['output']}\n"
          f"  adapter            {info['adapter']} ({info['adapter_reason']})\n"
          f"  convention         {info['convention']} ({info['convention_reason']})\n"
          f"  spacing (z,y,x) mm {sz:g} x {sy:g} x {sx:g}   ({info['spacing_source']})\n"
          f"  shape (z,y,x)      {' x '.join(map(str, info['shape_zyx']))}, orientation {info['orientation']}"
          + "".join(f"\n  mask {n:<13} {p}" for n, p in info["masks"].items()))
    for w in info["warnings"]:
        print(f"trace-bench: warning: {w}", file=sys.stderr)


@app.command("adapters")
def adapters_cmd(as_json: bool = typer.Option(False, "--json", help="One JSON object per line.")) -> None:
    """List the adapters (formats) trace-bench reads, with their default geometry and intensity convention."""
    import baselines  # noqa: F401
    from baselines.base import ADAPTERS

    for name in ADAPTERS.names():
        d = ADAPTERS.get(name).describe()
        if as_json:
            print(json.dumps(d))
            continue
        print(f"{name}\n  {d['description']}\n  geometry:   {d['geometry']}"
              + (f" ({d['geometry_note']})" if d["geometry_note"] else "")
              + f"\n  convention: {d['convention']}" + (f" ({d['convention_note']})" if d["convention_note"] else ""))
