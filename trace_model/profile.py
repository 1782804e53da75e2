"""Throughput and memory of a TRACE checkpoint (Table 1's FPS and VRAM columns).

* ``fps``: slices per second at volume level = (batch x slices) / wall time of Algorithm 1 for a batch of
  ``batch`` volumes of ``slices`` slices with ``steps`` DDIM steps per pass (after a short warm-up);
* ``inference_peak_bytes``: CUDA peak allocated memory during that run (``torch.cuda.max_memory_allocated``),
  or on CPU the process's peak resident set size (``ru_maxrss``; a process-lifetime peak, so it includes
  the interpreter and the loaded weights);
* ``train_peak_bytes``: the same for one training step (forward, backward, AdamW) at ``train_batch`` pairs
  (default: the config's batch size), with the config's bf16 / gradient checkpointing on CUDA.

Masks are a synthetic chest phantom (body ellipse with two lung ellipses) at the model's resolution, so
profiling needs no data. Text: the real frozen encoder when the model is text-conditioned, or, with
``text="zeros"``, an all-zero (1, 77, W) context (the cross-attention cost is kept, the once-per-volume CLIP
encoder cost is left out and the JSON says so).
"""

from __future__ import annotations

import json
import resource
import sys
import time
from pathlib import Path

import torch

from .checkpoint import load_checkpoint
from .conditioning import encode_labels
from .network import TraceUNet, encode_prompts, load_text_encoder
from .runtime import torch_threads
from .sampler import SamplerOptions, make_scheduler, sample_volumes
from .train import training_loss


def phantom_labels(slices: int, size: int) -> torch.Tensor:
    """(slices, size, size) integer labels: 0 outside, 2 body ellipse, 1 two lung ellipses that grow and shrink."""
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, size), torch.linspace(-1, 1, size), indexing="ij")
    out = torch.zeros(slices, size, size, dtype=torch.long)
    for z in range(slices):
        r = 0.15 + 0.2 * torch.sin(torch.tensor(3.1416 * (z + 0.5) / slices)).item()
        body = (xx / 0.85) ** 2 + (yy / 0.65) ** 2 <= 1
        lungs = (((xx - 0.38) / r) ** 2 + (yy / (1.3 * r)) ** 2 <= 1) | (((xx + 0.38) / r) ** 2 + (yy / (1.3 * r)) ** 2 <= 1)
        out[z][body] = 2
        out[z][body & lungs] = 1
    return out


def _peak_rss_bytes() -> int:
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024  # Linux reports KiB


def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def profile_model(model: TraceUNet, *, slices: int = 64, batch: int = 1, steps: int = 100, mode: str = "overlap",
                  train_batch: int | None = None, text: str = "encoder", seed: int = 0) -> dict:
    dev = next(model.parameters()).device
    cfg = model.cfg
    S = cfg.model.image_size
    masks = encode_labels(phantom_labels(slices, S), cfg.conditioning)[None].expand(batch, -1, -1, -1).contiguous()
    text_note = "none (model not text-conditioned)"
    hidden = None
    if model.use_text:
        if text == "zeros":
            hidden = torch.zeros(batch, 77, cfg.conditioning.text_dim, device=dev)
            text_note = "zeros context (CLIP encoder cost excluded)"
        else:
            enc = load_text_encoder(cfg, dev)
            hidden = encode_prompts(enc, ["60 years old male: no acute findings"] * batch, dev)
            text_note = f"{cfg.conditioning.text} encoder"
    opts = SamplerOptions(steps=steps, mode=mode)
    model.eval()
    # warm-up (kernels, allocator, flow net) on a 3-slice volume with 1 step
    sample_volumes(model, masks[:, :3], seeds=list(range(batch)), text=hidden, options=SamplerOptions(steps=1, mode=mode))
    if dev.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(dev)
    _sync(dev)
    t0 = time.perf_counter()
    sample_volumes(model, masks, seeds=[seed + b for b in range(batch)], text=hidden, options=opts)
    _sync(dev)
    elapsed = time.perf_counter() - t0
    inf_peak = torch.cuda.max_memory_allocated(dev) if dev.type == "cuda" else _peak_rss_bytes()

    # one training step
    tb = train_batch or cfg.train.batch_size
    model.train()
    model.gradient_checkpointing = cfg.train.grad_checkpointing and dev.type == "cuda"
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.train.lr)
    g = torch.Generator().manual_seed(seed)
    lab = encode_labels(phantom_labels(2, S), cfg.conditioning)
    b = {"frames": torch.rand(tb, 2, S, S, generator=g) * 2 - 1, "masks": lab[None].expand(tb, -1, -1, -1).clone(),
         "flow": torch.zeros(tb, 2, S, S), "positions": torch.rand(tb, 2, generator=g).sort(dim=1).values}
    th = None
    if model.use_text:
        th = (hidden[:1] if hidden is not None else None)
        th = th.expand(tb, -1, -1) if th is not None else None
    if dev.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(dev)
    with torch.autocast(device_type=dev.type, dtype=torch.bfloat16, enabled=cfg.train.bf16 and dev.type == "cuda"):
        loss = training_loss(model, b, make_scheduler(cfg), g, dev, th)
    loss.backward()
    opt.step()
    _sync(dev)
    train_peak = torch.cuda.max_memory_allocated(dev) if dev.type == "cuda" else _peak_rss_bytes()
    model.eval()
    passes = 1 + (slices - 2) * (2 if mode == "overlap" else 1)
    return {
        "fps": batch * slices / elapsed,
        "inference_peak_bytes": int(inf_peak),
        "train_peak_bytes": int(train_peak),
        "device": torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu",
        "slices": slices, "batch": batch, "steps": steps,
        "dtype": "bfloat16-autocast" if (dev.type == "cuda") else "float32",
        "train_batch": tb, "train_dtype": "bfloat16-autocast" if (cfg.train.bf16 and dev.type == "cuda") else "float32",
        "grad_checkpointing": bool(model.gradient_checkpointing),
        "mode": mode, "seconds": elapsed, "ddim_passes_per_volume": passes,
        "network_evals_per_volume": passes * steps, "image_size": S,
        "parameters": sum(p.numel() for p in model.parameters()),
        "memory_kind": "cuda max_memory_allocated" if dev.type == "cuda" else "process peak RSS (ru_maxrss)",
        "text": text_note,
    }


def profile_checkpoint(checkpoint: str | Path, *, slices: int = 64, batch: int = 1, steps: int = 100,
                       device: str | None = None, mode: str = "overlap", train_batch: int | None = None,
                       text: str = "encoder", out: str | Path | None = None, threads: int | None = None) -> dict:
    """Profile a checkpoint folder; writes the JSON to ``out`` when given. Keys: fps, inference_peak_bytes,
    train_peak_bytes, device, slices, batch, steps, dtype, threads (+ details). ``threads``: torch CPU threads
    by the rule of :mod:`trace_model.runtime` (default 1 on CPU; 0 keeps torch's setting; restored afterwards)."""
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    with torch_threads(threads, dev) as n_threads:
        model = load_checkpoint(checkpoint, dev)
        res = profile_model(model, slices=slices, batch=batch, steps=steps, mode=mode, train_batch=train_batch,
                            text=text)
    res["threads"] = n_threads
    res["checkpoint"] = str(checkpoint)
    if out is not None:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(json.dumps(res, indent=2), encoding="utf-8")
    return res


if __name__ == "__main__":  # python -m trace_model.profile CKPT
    print(json.dumps(profile_checkpoint(sys.argv[1]), indent=2))
