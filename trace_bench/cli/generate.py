"""``trace-bench generate``: volumes from label maps with a TRACE checkpoint (``trace_model.generate``)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from . import app


@app.command("generate")
def generate_cmd(
    checkpoint: Path = typer.Option(..., "--checkpoint", help="Checkpoint folder (config.json + model.safetensors)."),
    masks: Path = typer.Option(..., "--masks", help="A label map file or a folder of them (0 = background)."),
    out: Path = typer.Option(..., "--out", help="Output folder: OUT/<case_id>.nii.gz in HU."),
    prompts: Optional[Path] = typer.Option(None, "--prompts", help="CSV (case_id,prompt) or JSON; needed by text-conditioned models."),
    length: Optional[int] = typer.Option(None, "--length", help="Slices per volume (masks resampled along z); default: as the masks."),
    steps: int = typer.Option(100, "--steps", help="DDIM steps per pass."),
    seed: int = typer.Option(0, "--seed", help="Noise seed (same seed -> identical output)."),
    mode: str = typer.Option("overlap", "--mode", help="overlap (Algorithm 1) or markovian (ablation)."),
    batch: int = typer.Option(4, "--batch", help="Volumes per batch."),
    inference_flow: Optional[str] = typer.Option(None, "--inference-flow", help="zero, previous or refine (default: the checkpoint's)."),
    device: Optional[str] = typer.Option(None, "--device", help="cpu or cuda (default: cuda if available)."),
    threads: Optional[int] = typer.Option(None, "--threads", min=0, help="torch CPU threads (default 1 on CPU, or $TRACE_BENCH_THREADS / $OMP_NUM_THREADS; 0 = torch's default)."),
    no_progress: bool = typer.Option(False, "--no-progress", help="Do not print DDIM-pass progress on stderr."),
) -> None:
    """Generate CT volumes of any length with overlapping-frame guidance; prints the written files."""
    from trace_model.generate import generate

    for p in generate(checkpoint, masks, out, prompts=prompts, length=length, steps=steps, seed=seed, mode=mode,
                      batch=batch, device=device, inference_flow=inference_flow,
                      threads=threads, progress=not no_progress):
        print(p)
