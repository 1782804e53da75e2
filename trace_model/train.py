"""Training (sections 3.2, 4.1): epsilon-prediction on frame pairs (eq. 5), AdamW, cosine schedule with
linear warmup to a minimum LR, bf16 autocast + gradient checkpointing on CUDA, safetensors checkpoints
with the frozen config beside them, resume.

L = E_{(x0, m), t, eps} || eps - eps_theta(sqrt(abar_t) x0 + sqrt(1 - abar_t) eps, t, m) ||^2      (eq. 5)

Our choices where the paper is silent (documented in config.py):
* guidance maps in training: at inference the mask channels are replaced by guidance maps G
  (Algorithm 1, lines 7 and 10), so with probability ``guidance_train_prob`` the first channel becomes
  G(i) computed from the clean frame i, and in half of those cases the second becomes G(j) too;
* flow dropout: with probability ``flow_dropout`` the flow is null (the first pair at inference has none);
* text dropout: with probability ``text_dropout`` the prompt is empty.
"""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F

from .checkpoint import load_checkpoint, load_train_state, save_checkpoint
from .conditioning import guidance_map
from .config import TraceConfig, load_config
from .data import FramePairDataset
from .network import TextEncoder, TraceUNet, encode_prompts, load_text_encoder
from .runtime import torch_threads
from .sampler import make_scheduler


def lr_at(step: int, cfg: TraceConfig) -> float:
    """Linear warmup 0 -> lr over ``warmup_steps``, then cosine annealing lr -> min_lr at ``steps``."""
    t = cfg.train
    if step < t.warmup_steps:
        return t.lr * (step + 1) / t.warmup_steps
    span = max(1, t.steps - t.warmup_steps)
    prog = min(1.0, (step - t.warmup_steps) / span)
    return t.min_lr + 0.5 * (t.lr - t.min_lr) * (1.0 + math.cos(math.pi * prog))


def collate(items: list[dict]) -> dict:
    out = {k: torch.stack([it[k] for it in items]) for k in ("frames", "masks", "flow", "positions")}
    out["prompt"] = [it["prompt"] for it in items]
    return out


def sample_batch(ds: FramePairDataset, batch_size: int, g: torch.Generator) -> dict:
    idx = torch.randint(len(ds), (batch_size,), generator=g).tolist()
    return collate([ds[i] for i in idx])


def training_loss(model: TraceUNet, batch: dict, scheduler, g: torch.Generator, device: torch.device,
                  text_hidden: torch.Tensor | None = None) -> torch.Tensor:
    """One Monte-Carlo estimate of eq. 5 on a batch of pairs (all randomness from ``g``, a CPU generator)."""
    c = model.cfg.conditioning
    x0 = batch["frames"].to(device)  # (B, 2C, S, S)
    B = x0.shape[0]
    cond = batch["masks"].to(device).clone()  # (B, 2, S, S): M(i), M(j)
    u = torch.rand(B, generator=g)
    first = (u < c.guidance_train_prob).to(device)  # (G(i), M(j)) as in Algorithm 1 line 7
    both = (u < c.guidance_train_prob / 2).to(device)  # (G(i), G(j)) as in line 10
    if first.any():
        kw = dict(gamma=c.guidance_gamma, sigma=c.guidance_sigma, norm=c.guidance_norm)
        gi = guidance_map(x0[:, 0:1], cond[:, 0:1], **kw)
        gj = guidance_map(x0[:, 1:2], cond[:, 1:2], **kw)
        cond[:, 0:1] = torch.where(first.view(B, 1, 1, 1), gi, cond[:, 0:1])
        cond[:, 1:2] = torch.where(both.view(B, 1, 1, 1), gj, cond[:, 1:2])
    flow = None
    if model.use_flow:
        keep = (torch.rand(B, generator=g) >= c.flow_dropout).float().view(B, 1, 1, 1).to(device)
        flow = batch["flow"].to(device) * keep
    t = torch.randint(0, scheduler.num_train_timesteps, (B,), generator=g).to(device)
    noise = torch.randn(x0.shape, generator=g).to(device)
    xt = scheduler.add_noise(original_samples=x0, noise=noise, timesteps=t)  # sqrt(abar) x0 + sqrt(1-abar) eps
    out = model(xt, t, cond, batch["positions"].to(device), flow=flow, text_hidden=text_hidden)
    if scheduler.prediction_type == "v_prediction":  # v = sqrt(abar) eps - sqrt(1 - abar) x0
        target = scheduler.get_velocity(sample=x0, noise=noise, timesteps=t)
    else:  # eq. 5: the noise eps
        target = noise
    return F.mse_loss(out.float(), target.float())


class _PromptCache:
    """Frozen CLIP hidden states per distinct prompt (text dropout -> the empty prompt)."""

    def __init__(self, encoder: TextEncoder | None, device: torch.device):
        self.encoder, self.device, self.memo = encoder, device, {}

    def __call__(self, prompts: list[str], drop: torch.Tensor) -> torch.Tensor | None:
        if self.encoder is None:
            return None
        prompts = ["" if d else p for p, d in zip(prompts, drop.tolist())]
        new = sorted({p for p in prompts if p not in self.memo})
        if new:
            for p, h in zip(new, encode_prompts(self.encoder, new, self.device)):
                self.memo[p] = h
        return torch.stack([self.memo[p] for p in prompts])


def train(cfg: TraceConfig, *, out: str | Path | None = None, resume: str | Path | None = None,
          dataset: FramePairDataset | None = None, text_encoder: TextEncoder | None = None,
          device: str | None = None, log: Callable[[str], None] | None = None, threads: int | None = None) -> Path:
    """Train TRACE as configured; returns the checkpoint folder ``<out>/last``. ``resume`` continues from a
    checkpoint written by this function (same config required). ``threads``: torch CPU threads while training,
    by the rule of :mod:`trace_model.runtime` (default 1 on CPU, 0 keeps torch's setting; restored afterwards)."""
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    with torch_threads(threads, dev):
        return _train(cfg, out=out, resume=resume, dataset=dataset, text_encoder=text_encoder, dev=dev, log=log)


def _train(cfg: TraceConfig, *, out: str | Path | None, resume: str | Path | None, dataset: FramePairDataset | None,
           text_encoder: TextEncoder | None, dev: torch.device, log: Callable[[str], None] | None) -> Path:
    log = log or (lambda s: print(s, file=sys.stderr, flush=True))
    out = Path(out or cfg.train.out)
    torch.manual_seed(cfg.train.seed)
    if resume is not None:
        model = load_checkpoint(resume, dev)
        if model.cfg.model != cfg.model or model.cfg.conditioning != cfg.conditioning:
            from trace_bench.errors import ConfigError

            raise ConfigError(f"{resume}: checkpoint config differs from the training config (model/conditioning)")
        model.cfg = cfg
    else:
        model = TraceUNet(cfg).to(dev)
    model.train()
    model.gradient_checkpointing = cfg.train.grad_checkpointing and dev.type == "cuda"
    autocast = cfg.train.bf16 and dev.type == "cuda"
    ds = dataset if dataset is not None else FramePairDataset.from_folders(cfg)
    if text_encoder is None and cfg.conditioning.text != "none":
        text_encoder = load_text_encoder(cfg, dev)
    prompts = _PromptCache(text_encoder, dev)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.train.lr, weight_decay=cfg.train.weight_decay)
    step = 0
    if resume is not None:
        step = int(load_train_state(resume, opt).get("step", 0))
    scheduler = make_scheduler(cfg)
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(cfg.to_json(), encoding="utf-8")
    logf = (out / "log.jsonl").open("a", encoding="utf-8")
    t0 = time.time()
    while step < cfg.train.steps:
        g = torch.Generator().manual_seed(cfg.train.seed * 1_000_003 + step)  # resume == uninterrupted
        batch = sample_batch(ds, cfg.train.batch_size, g)
        text = prompts(batch["prompt"], torch.rand(len(batch["prompt"]), generator=g) < cfg.conditioning.text_dropout)
        for group in opt.param_groups:
            group["lr"] = lr_at(step, cfg)
        with torch.autocast(device_type=dev.type, dtype=torch.bfloat16, enabled=autocast):
            loss = training_loss(model, batch, scheduler, g, dev, text)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.train.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.train.grad_clip)
        opt.step()
        step += 1
        if step % cfg.train.log_every == 0 or step == cfg.train.steps:
            rec = {"step": step, "loss": loss.item(), "lr": lr_at(step - 1, cfg), "elapsed_s": round(time.time() - t0, 1)}
            logf.write(json.dumps(rec) + "\n")
            logf.flush()
            log(f"step {step}/{cfg.train.steps} loss {rec['loss']:.4f} lr {rec['lr']:.2e} ({rec['elapsed_s']} s)")
        if step % cfg.train.save_every == 0 or step == cfg.train.steps:
            save_checkpoint(out / "last", model, opt, {"step": step})
    logf.close()
    return out / "last"


def train_from_file(config: str | Path, **kw) -> Path:
    return train(load_config(config), **kw)
