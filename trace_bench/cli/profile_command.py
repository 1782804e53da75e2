"""``trace-bench profile-command``: FPS and peak memory of ANY generator, run as a black box
(:mod:`trace_bench.profiling`); the one command for that job (``trace-bench profile`` profiles a TRACE
checkpoint). Writes the keys of ``trace-bench profile`` so the file goes to
``trace-bench run --profile NAME=FILE`` unchanged."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from . import app

WARMUP_OPTION_HELP = ("Warm-up rule of the fps figure: first-output (default: exclude the time up to the first "
                      "complete output volume, and its slices), first:K (the first K volumes, e.g. one batch), "
                      "or none (include start-up and model loading).")


@app.command("profile-command")
def profile_command_cmd(
    command: Optional[str] = typer.Option(None, "--command", help="The generator's command line, e.g. \"python sample.py --n 8\" "
                                          "(split with shlex, no shell unless --shell)."),
    output_dir: Optional[Path] = typer.Option(None, "--output-dir", help="Folder the command writes its volumes to (watched)."),
    fmt: str = typer.Option("nifti", "--format", help="Adapter reading the output volumes (`trace-bench adapters`)."),
    device: int = typer.Option(0, "--device", min=0, help="NVML GPU index (nvidia-smi numbering) to measure."),
    interval: float = typer.Option(0.2, "--interval", min=0.01, help="Seconds between samples."),
    warmup: str = typer.Option("first-output", "--warmup", help=WARMUP_OPTION_HELP),
    shell: bool = typer.Option(False, "--shell", help="Run the command(s) through /bin/sh (pipes, env assignments, &&)."),
    train_command: Optional[str] = typer.Option(None, "--train-command", help="A training command: its peak memory becomes train_peak_bytes."),
    train_seconds: Optional[float] = typer.Option(None, "--train-seconds", min=0.1, help="Stop the training command after this many seconds."),
    gpu: bool = typer.Option(True, "--gpu/--no-gpu", help="Measure GPU memory through NVML (default: when a driver is present)."),
    out: Optional[Path] = typer.Option(None, "--out", help="Write the JSON here (also printed, without the timeline)."),
) -> None:
    """Run any generator as a black box: slices per second from the volumes it writes, peak GPU memory
    (NVML) and host RSS of its process tree; optionally the training command's peak memory. Without a
    GPU the JSON says gpu_available false and the VRAM figures are null."""
    from ..profiling import profile_command

    res = profile_command(command, output_dir, fmt=fmt, device=device, interval=interval, warmup=warmup, shell=shell,
                          train_command=train_command, train_seconds=train_seconds, out=out, use_gpu=gpu)
    print(json.dumps({k: v for k, v in res.items() if k not in ("timeline", "outputs")}, indent=2))
