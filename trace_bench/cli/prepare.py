"""``trace-bench prepare``: volumes (+ masks or a segmenter) -> a prepared TRACE training set
(``trace_model.prepare``): canonical frames, masks, optical flows, prompts; sharded safetensors + manifest."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from . import app


@app.command("prepare")
def prepare_cmd(
    config: Path = typer.Option(..., "--config", help="TOML config of the model to train (image size, skips, granularity, flow kind)."),
    out: Path = typer.Option(..., "--out", help="Prepared folder: OUT/cases/<case_id>.safetensors + OUT/manifest.json."),
    volumes: Optional[str] = typer.Option(None, "--volumes", metavar="DIR[:FORMAT]", help="Folder of CT volumes; FORMAT an adapter (nifti, ctrate, ...). Default: [data] volumes."),
    masks: Optional[Path] = typer.Option(None, "--masks", help="Folder of label maps paired by case id."),
    segmenter: Optional[str] = typer.Option(None, "--segmenter", help="Compute label maps instead (threshold, vista3d)."),
    prompts: Optional[Path] = typer.Option(None, "--prompts", help="CSV/JSON case_id -> prompt (e.g. from `trace-bench prompts ctrate`)."),
    workers: int = typer.Option(1, "--workers", min=1, help="Worker processes (one torch thread each); the output does not depend on it."),
    shard: Optional[str] = typer.Option(None, "--shard", metavar="I/N", help="Prepare only shard I of N (same case assignment as `run --shard`)."),
    device: str = typer.Option("cpu", "--device", help="Device of the flow network (RAFT); cpu or cuda."),
    recursive: bool = typer.Option(False, "--recursive", help="Find volumes in every sub-folder (the official CT-RATE download layout)."),
) -> None:
    """Prepare a TRACE training set (resumable: finished cases are skipped); prints the manifest path."""
    from trace_bench.errors import ConfigError
    from trace_model.config import load_config
    from trace_model.prepare import prepare

    if masks is not None and segmenter is not None:
        raise ConfigError("give --masks DIR or --segmenter NAME, not both")
    vol_dir, fmt = None, "nifti"
    if volumes is not None:
        from trace_bench.folders import parse_folder

        folder = parse_folder("volumes", volumes, paired=False)
        vol_dir, fmt = str(folder.path), folder.format
    res = prepare(load_config(config), out, volumes=vol_dir, volume_format=fmt, masks=masks, segmenter=segmenter,
                  prompts=prompts, workers=workers, shard=shard, device=device, recursive=recursive)
    print(res["manifest"])
