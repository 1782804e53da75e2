"""``trace-bench profile``: FPS and peak memory of a TRACE checkpoint (``trace_model.profile``). Any other
generator is profiled as a black box by ``trace-bench profile-command`` (:mod:`.profile_command`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from . import app


@app.command("profile")
def profile_cmd(
    checkpoint: Path = typer.Option(..., "--checkpoint", help="TRACE checkpoint folder (config.json + "
                                    "model.safetensors). Other generators: `trace-bench profile-command`."),
    slices: int = typer.Option(64, "--slices", help="Slices per volume."),
    batch: int = typer.Option(1, "--batch", help="Volumes generated together."),
    steps: int = typer.Option(100, "--steps", help="DDIM steps per pass."),
    device: Optional[str] = typer.Option(None, "--device", help="cpu or cuda (default: cuda if available)."),
    mode: str = typer.Option("overlap", "--mode", help="overlap or markovian."),
    train_batch: Optional[int] = typer.Option(None, "--train-batch", help="Pairs in the profiled training step (default: config)."),
    text: str = typer.Option("encoder", "--text", help="encoder (real CLIP) or zeros (zero context, encoder cost excluded)."),
    out: Optional[Path] = typer.Option(None, "--out", help="Write the JSON here (also printed)."),
    threads: Optional[int] = typer.Option(None, "--threads", min=0, help="torch CPU threads (default 1 on CPU, or $TRACE_BENCH_THREADS / $OMP_NUM_THREADS; 0 = torch's default)."),
) -> None:
    """Slices per second (volume level), inference and training peak memory of a TRACE checkpoint, as
    JSON (usable with `trace-bench run --profile NAME=FILE`)."""
    from trace_model.profile import profile_checkpoint

    res = profile_checkpoint(checkpoint, slices=slices, batch=batch, steps=steps, device=device, mode=mode,
                             train_batch=train_batch, text=text, out=out, threads=threads)
    print(json.dumps(res, indent=2))
