"""``trace-bench profile``: FPS and peak memory of a TRACE checkpoint (``trace_model.profile``), or of any
generator's command as a black box (``--command``, :mod:`trace_bench.profiling`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from ..errors import ConfigError
from . import app
from .profile_command import WARMUP_OPTION_HELP


@app.command("profile")
def profile_cmd(
    checkpoint: Optional[Path] = typer.Option(None, "--checkpoint", help="TRACE checkpoint folder (config.json + model.safetensors); or --command for any generator."),
    slices: int = typer.Option(64, "--slices", help="Slices per volume."),
    batch: int = typer.Option(1, "--batch", help="Volumes generated together."),
    steps: int = typer.Option(100, "--steps", help="DDIM steps per pass."),
    device: Optional[str] = typer.Option(None, "--device", help="cpu or cuda (default: cuda if available)."),
    mode: str = typer.Option("overlap", "--mode", help="overlap or markovian."),
    train_batch: Optional[int] = typer.Option(None, "--train-batch", help="Pairs in the profiled training step (default: config)."),
    text: str = typer.Option("encoder", "--text", help="encoder (real CLIP) or zeros (zero context, encoder cost excluded)."),
    out: Optional[Path] = typer.Option(None, "--out", help="Write the JSON here (also printed)."),
    threads: Optional[int] = typer.Option(None, "--threads", min=0, help="torch CPU threads (default 1 on CPU, or $TRACE_BENCH_THREADS / $OMP_NUM_THREADS; 0 = torch's default)."),
    command: Optional[str] = typer.Option(None, "--command", help="Profile any generator's command as a black box."),
    output_dir: Optional[Path] = typer.Option(None, "--output-dir", help="With --command: the folder it writes volumes to."),
    fmt: str = typer.Option("nifti", "--format", help="With --command: adapter reading its outputs."),
    interval: float = typer.Option(0.2, "--interval", min=0.01, help="With --command: seconds between samples."),
    warmup: str = typer.Option("first-output", "--warmup", help=WARMUP_OPTION_HELP),
    shell: bool = typer.Option(False, "--shell", help="With --command: run through /bin/sh."),
    train_command: Optional[str] = typer.Option(None, "--train-command", help="Training command: its peak memory is train_peak_bytes."),
    train_seconds: Optional[float] = typer.Option(None, "--train-seconds", min=0.1, help="Stop the training command after this long."),
    gpu: bool = typer.Option(True, "--gpu/--no-gpu", help="With --command: measure GPU memory through NVML."),
) -> None:
    """Slices per second (volume level), inference and training peak memory, as JSON (usable with
    `trace-bench run --profile NAME=FILE`)."""
    if command is not None or train_command is not None:
        if checkpoint is not None:
            raise ConfigError("--checkpoint and --command/--train-command exclude each other")
        from .profile_command import run_profile_command

        tail = (device or "0").split(":")[-1]  # --device cuda:N or N -> NVML index N
        run_profile_command(command, output_dir, fmt=fmt, device=int(tail) if tail.isdigit() else 0, interval=interval,
                            warmup=warmup, shell=shell, train_command=train_command, train_seconds=train_seconds,
                            out=out, gpu=gpu)
        return
    if checkpoint is None:
        raise ConfigError("give --checkpoint CKPT (TRACE) or --command CMD --output-dir DIR (any generator)")
    from trace_model.profile import profile_checkpoint

    res = profile_checkpoint(checkpoint, slices=slices, batch=batch, steps=steps, device=device, mode=mode,
                             train_batch=train_batch, text=text, out=out, threads=threads)
    print(json.dumps(res, indent=2))
