"""``trace-bench train --config FILE [--prepared PREP]``: train the TRACE model (``trace_model.train``).

Under torchrun (``torchrun --nproc-per-node G -m trace_bench train ...``) every process runs this command and
joins the job (DDP); only rank 0 prints, logs and writes checkpoints.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from . import app


@app.command("train")
def train_cmd(
    config: Path = typer.Option(..., "--config", help="TOML config (see trace_model/configs/: paper.toml, tiny_cpu.toml)."),
    prepared: Optional[Path] = typer.Option(None, "--prepared", help="Folder written by `trace-bench prepare` (default: prepare in-process from [data])."),
    out: Optional[Path] = typer.Option(None, "--out", help="Run folder (default: [train] out); the checkpoint goes to OUT/last."),
    resume: Optional[Path] = typer.Option(None, "--resume", help="Continue from a checkpoint folder written by train (exact: optimizer, step, RNG)."),
    steps: Optional[int] = typer.Option(None, "--steps", help="Override [train] steps (the end of the LR schedule)."),
    stop_after: Optional[int] = typer.Option(None, "--stop-after", min=1, help="Stop (and checkpoint) after this step; the schedule still ends at --steps."),
    accum: Optional[int] = typer.Option(None, "--accum", min=1, help="Gradient accumulation steps (batch = per-rank batch x ranks x accum)."),
    per_rank_batch: Optional[int] = typer.Option(None, "--per-rank-batch", min=1, help="Micro-batch per process; --accum is then derived from [train] batch_size."),
    loader_workers: Optional[int] = typer.Option(None, "--loader-workers", min=0, help="DataLoader worker processes (default 0 on CPU, 4 on CUDA)."),
    device: Optional[str] = typer.Option(None, "--device", help="cpu or cuda (default: cuda if available; under torchrun cuda:LOCAL_RANK)."),
    threads: Optional[int] = typer.Option(None, "--threads", min=0, help="torch CPU threads (default 1 on CPU, or $TRACE_BENCH_THREADS / $OMP_NUM_THREADS; 0 = torch's default)."),
) -> None:
    """Train TRACE (AdamW, cosine LR with warmup; bf16 + gradient checkpointing on CUDA; DDP under torchrun); prints the checkpoint folder."""
    import os

    from trace_model.config import load_config
    from trace_model.train import train

    cfg = load_config(config)
    if steps is not None:
        cfg = cfg.replace(train={"steps": steps})
    ck = train(cfg, out=out, resume=resume, prepared=prepared, device=device, threads=threads, accum=accum,
               per_rank_batch=per_rank_batch, loader_workers=loader_workers, stop_at=stop_after)
    if os.environ.get("RANK", "0") == "0":
        print(ck)
