"""``trace-bench train --config FILE``: train the TRACE model (``trace_model.train``)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from . import app


@app.command("train")
def train_cmd(
    config: Path = typer.Option(..., "--config", help="TOML config (see trace_model/configs/: paper.toml, tiny_cpu.toml)."),
    out: Optional[Path] = typer.Option(None, "--out", help="Run folder (default: [train] out); the checkpoint goes to OUT/last."),
    resume: Optional[Path] = typer.Option(None, "--resume", help="Continue from a checkpoint folder written by train."),
    steps: Optional[int] = typer.Option(None, "--steps", help="Override [train] steps."),
    device: Optional[str] = typer.Option(None, "--device", help="cpu or cuda (default: cuda if available)."),
    threads: Optional[int] = typer.Option(None, "--threads", min=0, help="torch CPU threads (default 1 on CPU, or $TRACE_BENCH_THREADS / $OMP_NUM_THREADS; 0 = torch's default)."),
) -> None:
    """Train TRACE (AdamW, cosine LR with warmup; bf16 + gradient checkpointing on CUDA); prints the checkpoint folder."""
    from trace_model.config import load_config
    from trace_model.train import train

    cfg = load_config(config)
    if steps is not None:
        cfg = cfg.replace(train={"steps": steps})
    print(train(cfg, out=out, resume=resume, device=device, threads=threads))
