"""Training (sections 3.2, 4.1): epsilon-prediction on frame pairs (eq. 5), AdamW, cosine schedule with
linear warmup to a minimum LR, bf16 autocast + gradient checkpointing on CUDA, safetensors checkpoints
with the frozen config beside them, exact resume, DDP under torchrun with gradient accumulation.

Batches and noise: step s draws its ``batch_size`` pair indices, then the whole batch's text / guidance /
flow dropouts, timesteps and noise from one generator keyed by (seed, s) (:func:`step_draws`, the stream a
single process always used); every rank draws them all and takes its rows. So the result does not depend on
how the batch is split over ranks and micro-batches (``trace_model.distributed``), and resuming at step s continues the
uninterrupted run exactly. Data come through a DataLoader (workers, pinned memory on CUDA); with a prepared
set (``trace_model.prepare``) nothing is segmented or flow-estimated in the training process.

L = E_{(x0, m), t, eps} || eps - eps_theta(sqrt(abar_t) x0 + sqrt(1 - abar_t) eps, t, m) ||^2      (eq. 5)

Our choices where the paper is silent (documented in config.py):

* guidance maps in training: at inference the mask channels are replaced by guidance maps G
  (Algorithm 1, lines 7 and 10), so with probability ``guidance_train_prob`` the first channel becomes
  G(i) computed from the clean frame i, and in half of those cases the second becomes G(j) too;
* flow dropout: with probability ``flow_dropout`` the flow is null (the first pair at inference has none);
* text dropout: with probability ``text_dropout`` the prompt is empty.
"""

from __future__ import annotations

import base64
import contextlib
import json
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset, Sampler

from trace_bench.atomic import atomic_write_bytes

from .checkpoint import load_checkpoint, load_train_state, save_checkpoint
from .conditioning import guidance_map
from .config import TraceConfig, load_config
from .data import FramePairDataset
from .distributed import rank_positions
from .network import TextEncoder, TraceUNet, encode_prompts, load_text_encoder
from .prepare import PreparedPairDataset
from .runtime import torch_threads
from .sampler import make_scheduler

if TYPE_CHECKING:
    from .distributed import DistContext


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


def step_indices(n: int, batch: int, seed: int, step: int) -> list[int]:
    """The ``batch`` pair indices (of ``n``) of step ``step``: the same on every rank, keyed by (seed, step)."""
    g = torch.Generator().manual_seed(seed * 1_000_003 + step)
    return torch.randint(n, (batch,), generator=g).tolist()


@dataclass(frozen=True)
class StepDraws:
    """Every random number of one training step's global batch, drawn in one fixed order from the step's
    generator (keyed by (seed, step)): pair indices, then text dropout, guidance choice, flow dropout (flow
    models only), timestep and noise. A rank / micro-batch takes its rows (:meth:`take`), so the split of the
    batch changes nothing that is computed."""

    drop: torch.Tensor  # (B,) uniform: text dropout when < text_dropout
    u: torch.Tensor  # (B,) uniform: guidance maps in training
    keep: torch.Tensor | None  # (B,) uniform: flow dropout (None without flow conditioning)
    t: torch.Tensor  # (B,) timesteps
    noise: torch.Tensor  # (B, 2C, S, S)

    def take(self, positions: list[int]) -> StepDraws:
        i = torch.tensor(positions, dtype=torch.long)
        return StepDraws(self.drop[i], self.u[i], None if self.keep is None else self.keep[i], self.t[i], self.noise[i])


def step_draws(cfg: TraceConfig, n: int, step: int, use_flow: bool, num_train_timesteps: int) -> StepDraws:
    """The draws of step ``step`` over a dataset of ``n`` pairs (same stream as a single process always used)."""
    B, S = cfg.train.batch_size, cfg.model.image_size
    g = torch.Generator().manual_seed(cfg.train.seed * 1_000_003 + step)
    torch.randint(n, (B,), generator=g)  # the indices (step_indices); drawn to keep the stream's order
    drop = torch.rand(B, generator=g)
    u = torch.rand(B, generator=g)
    keep = torch.rand(B, generator=g) if use_flow else None
    t = torch.randint(0, num_train_timesteps, (B,), generator=g)
    noise = torch.randn((B, 2, S, S), generator=g)
    return StepDraws(drop, u, keep, t, noise)


def training_loss(model: TraceUNet, batch: dict, scheduler, g: torch.Generator | StepDraws,
                  device: torch.device, text_hidden: torch.Tensor | None = None, reduction: str = "mean") -> torch.Tensor:
    """One Monte-Carlo estimate of eq. 5 on a batch of pairs. Randomness from ``g``: a CPU generator, or the
    batch's rows of a step's :class:`StepDraws` (training). ``reduction="none"`` gives the per-sample losses (B,)."""
    pre = g if isinstance(g, StepDraws) else None
    inner = getattr(model, "module", model)  # DistributedDataParallel wraps the TraceUNet
    c = inner.cfg.conditioning
    x0 = batch["frames"].to(device)  # (B, 2C, S, S)
    B = x0.shape[0]
    cond = batch["masks"].to(device).clone()  # (B, 2, S, S): M(i), M(j)
    u = pre.u if pre is not None else torch.rand(B, generator=g)
    first = (u < c.guidance_train_prob).to(device)  # (G(i), M(j)) as in Algorithm 1 line 7
    both = (u < c.guidance_train_prob / 2).to(device)  # (G(i), G(j)) as in line 10
    if first.any():
        kw = dict(gamma=c.guidance_gamma, sigma=c.guidance_sigma, norm=c.guidance_norm)
        gi = guidance_map(x0[:, 0:1], cond[:, 0:1], **kw)
        gj = guidance_map(x0[:, 1:2], cond[:, 1:2], **kw)
        cond[:, 0:1] = torch.where(first.view(B, 1, 1, 1), gi, cond[:, 0:1])
        cond[:, 1:2] = torch.where(both.view(B, 1, 1, 1), gj, cond[:, 1:2])
    flow = None
    if inner.use_flow:
        keep = ((pre.keep if pre is not None else torch.rand(B, generator=g)) >= c.flow_dropout).float().view(B, 1, 1, 1).to(device)
        flow = batch["flow"].to(device) * keep
    if pre is not None:
        t, noise = pre.t.to(device), pre.noise.to(device)
    else:
        t = torch.randint(0, scheduler.num_train_timesteps, (B,), generator=g).to(device)
        noise = torch.randn(x0.shape, generator=g).to(device)
    xt = scheduler.add_noise(original_samples=x0, noise=noise, timesteps=t)  # sqrt(abar) x0 + sqrt(1-abar) eps
    out = model(xt, t, cond, batch["positions"].to(device), flow=flow, text_hidden=text_hidden)
    if scheduler.prediction_type == "v_prediction":  # v = sqrt(abar) eps - sqrt(1 - abar) x0
        target = scheduler.get_velocity(sample=x0, noise=noise, timesteps=t)
    else:  # eq. 5: the noise eps
        target = noise
    if reduction == "none":
        return (out.float() - target.float()).pow(2).flatten(1).mean(1)
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


class StepBatchSampler(Sampler[list[int]]):
    """Micro-batches of pair indices for this rank, step after step from ``start_step`` to ``steps``: the global
    batch of a step is :func:`step_indices`; rank r takes its positions (:func:`distributed.rank_positions`) in
    ``accum`` micro-batches of ``per_rank``. Stateless apart from the step, so resuming = starting at its step."""

    def __init__(self, n: int, batch: int, seed: int, start_step: int, steps: int, rank: int = 0, world: int = 1,
                 accum: int = 1):
        self.n, self.batch, self.seed, self.start, self.steps = n, batch, seed, start_step, steps
        self.rank, self.world, self.accum = rank, world, accum
        self.per_rank = batch // (world * accum)

    def micro_positions(self, m: int) -> list[int]:
        """Positions in the global batch of micro-batch ``m`` of this rank."""
        pos = rank_positions(self.batch, self.world, self.rank)
        return pos[m * self.per_rank:(m + 1) * self.per_rank]

    def __iter__(self) -> Iterator[list[int]]:
        for step in range(self.start, self.steps):
            idx = step_indices(self.n, self.batch, self.seed, step)
            for m in range(self.accum):
                yield [idx[b] for b in self.micro_positions(m)]

    def __len__(self) -> int:
        return max(0, self.steps - self.start) * self.accum


def rng_state() -> dict[str, Any]:
    """The process's global RNG states (torch CPU, CUDA, Python, NumPy), JSON-serialisable."""
    import random

    import numpy as np

    enc = lambda t: base64.b64encode(t.numpy().tobytes()).decode("ascii")
    st: dict[str, Any] = {"torch": enc(torch.get_rng_state()), "python": repr(random.getstate())}
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    st["numpy"] = {"kind": kind, "keys": base64.b64encode(keys.tobytes()).decode("ascii"), "pos": int(pos),
                   "has_gauss": int(has_gauss), "gauss": float(gauss)}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        st["cuda"] = [enc(s) for s in torch.cuda.get_rng_state_all()]
    return st


def set_rng_state(st: dict[str, Any]) -> None:
    """Restore what :func:`rng_state` saved (missing parts are left alone)."""
    import ast
    import random

    import numpy as np

    dec = lambda s: torch.frombuffer(bytearray(base64.b64decode(s)), dtype=torch.uint8).clone()
    if "torch" in st:
        torch.set_rng_state(dec(st["torch"]))
    if "python" in st:
        random.setstate(ast.literal_eval(st["python"]))
    if "numpy" in st:
        n = st["numpy"]
        np.random.set_state((n["kind"], np.frombuffer(base64.b64decode(n["keys"]), dtype=np.uint32).copy(), n["pos"],
                             n["has_gauss"], n["gauss"]))
    if "cuda" in st and torch.cuda.is_available() and len(st["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all([dec(s) for s in st["cuda"]])


def train(cfg: TraceConfig, *, out: str | Path | None = None, resume: str | Path | None = None,
          dataset: Dataset | None = None, prepared: str | Path | None = None, text_encoder: TextEncoder | None = None,
          device: str | None = None, log: Callable[[str], None] | None = None, threads: int | None = None,
          accum: int | None = None, per_rank_batch: int | None = None, loader_workers: int | None = None,
          stop_at: int | None = None) -> Path:
    """Train TRACE as configured; returns the checkpoint folder ``<out>/last``.

    Data: ``dataset`` (any Dataset of pair dicts), else ``prepared`` (a folder from ``trace-bench prepare``,
    read through :class:`~trace_model.data.PreparedPairDataset`), else ``cfg.data`` folders (segmentation and
    flow in this process). Under torchrun (``WORLD_SIZE`` > 1) this joins the job: DDP, NCCL on CUDA / gloo on
    CPU; the effective batch ``train.batch_size`` = per-rank batch x world x ``accum`` (give ``accum`` or
    ``per_rank_batch``; default accum 1). ``resume`` continues from a checkpoint written by this function (same
    model config): optimizer, step, RNG states; the batches and noise are keyed by (seed, step, sample), so the
    continued loss curve equals the uninterrupted one. ``stop_at``: stop (and checkpoint) after that step
    without changing the schedule (which still ends at ``train.steps``). ``threads``: torch CPU threads, by the
    rule of :mod:`trace_model.runtime`. ``loader_workers``: DataLoader processes (default 0 on CPU, 4 on CUDA)."""
    from .distributed import init_distributed, shutdown

    ctx, dev = init_distributed(device)
    try:
        with torch_threads(threads, dev):
            return _train(cfg, out=out, resume=resume, dataset=dataset, prepared=prepared, text_encoder=text_encoder,
                          dev=dev, log=log, ctx=ctx, accum=accum, per_rank_batch=per_rank_batch,
                          loader_workers=loader_workers, stop_at=stop_at)
    finally:
        shutdown(ctx)


def _truncate_log(path: Path, step: int) -> None:
    """Keep the log records up to ``step`` (a resumed run writes the later ones again)."""
    if not path.is_file():
        return
    keep = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            if int(json.loads(line).get("step", 0)) <= step:
                keep.append(line)
        except (json.JSONDecodeError, ValueError, AttributeError):
            continue
    atomic_write_bytes(path, "".join(k + "\n" for k in keep).encode("utf-8"))


def _train(cfg: TraceConfig, *, out: str | Path | None, resume: str | Path | None, dataset: Dataset | None,
           prepared: str | Path | None, text_encoder: TextEncoder | None, dev: torch.device,
           log: Callable[[str], None] | None, ctx: DistContext | None, accum: int | None,
           per_rank_batch: int | None, loader_workers: int | None, stop_at: int | None) -> Path:
    from .distributed import all_reduce_sum, barrier, split_batch

    rank, world = (ctx.rank, ctx.world) if ctx is not None else (0, 1)
    main = rank == 0
    log = log or (lambda s: print(s, file=sys.stderr, flush=True))
    if not main:
        log = lambda s: None
    out = Path(out or cfg.train.out)
    t = cfg.train
    per_rank, acc = split_batch(t.batch_size, world, accum, per_rank_batch)
    torch.manual_seed(t.seed)
    if resume is not None:
        model = load_checkpoint(resume, dev)
        if model.cfg.model != cfg.model or model.cfg.conditioning != cfg.conditioning:
            from trace_bench.errors import ConfigError

            raise ConfigError(f"{resume}: checkpoint config differs from the training config (model/conditioning)")
        model.cfg = cfg
    else:
        model = TraceUNet(cfg).to(dev)
    model.train()
    model.gradient_checkpointing = t.grad_checkpointing and dev.type == "cuda"
    autocast = t.bf16 and dev.type == "cuda"
    if dataset is not None:
        ds = dataset
    elif prepared is not None:
        ds = PreparedPairDataset(prepared, cfg)
    else:
        ds = FramePairDataset.from_folders(cfg)
    if text_encoder is None and cfg.conditioning.text != "none":
        text_encoder = load_text_encoder(cfg, dev)
    prompts = _PromptCache(text_encoder, dev)
    opt = torch.optim.AdamW(model.parameters(), lr=t.lr, weight_decay=t.weight_decay)
    step = 0
    if resume is not None:
        state = load_train_state(resume, opt)
        step = int(state.get("step", 0))
        if "rng" in state:
            set_rng_state(state["rng"])
    net: torch.nn.Module = model
    if ctx is not None:
        from torch.nn.parallel import DistributedDataParallel as DDP

        net = DDP(model, device_ids=[dev.index] if dev.type == "cuda" else None)
    scheduler = make_scheduler(cfg)
    end = t.steps if stop_at is None else min(t.steps, stop_at)
    if main:
        out.mkdir(parents=True, exist_ok=True)
        (out / "config.json").write_text(cfg.to_json(), encoding="utf-8")
        _truncate_log(out / "log.jsonl", step)
    sampler = StepBatchSampler(len(ds), t.batch_size, t.seed, step, end, rank, world, acc)
    nw = loader_workers if loader_workers is not None else (4 if dev.type == "cuda" else 0)
    loader = DataLoader(ds, batch_sampler=sampler, collate_fn=collate, num_workers=nw, pin_memory=dev.type == "cuda",
                        persistent_workers=False)
    log(f"train: {len(ds)} frame pairs, steps {step} -> {end} of {t.steps}, batch {t.batch_size} = {per_rank} per "
        f"rank x {world} rank(s) x accum {acc}, {nw} loader worker(s), device {dev}")
    logf = (out / "log.jsonl").open("a", encoding="utf-8") if main else None
    try:
        t0 = t_last = time.time()
        step_last = step
        it = iter(loader)
        while step < end:
            for group in opt.param_groups:
                group["lr"] = lr_at(step, cfg)
            opt.zero_grad(set_to_none=True)
            loss_sum = torch.zeros((), dtype=torch.float64)
            step_all = step_draws(cfg, len(ds), step, model.use_flow, scheduler.num_train_timesteps)
            for m in range(acc):
                batch = next(it)
                draws = step_all.take(sampler.micro_positions(m))
                text = prompts(batch["prompt"], draws.drop < cfg.conditioning.text_dropout)
                sync = contextlib.nullcontext() if (ctx is None or m == acc - 1) else net.no_sync()
                with sync:
                    with torch.autocast(device_type=dev.type, dtype=torch.bfloat16, enabled=autocast):
                        per = training_loss(net, batch, scheduler, draws, dev, text, reduction="none")
                    (per.sum() * (world / t.batch_size)).backward()  # DDP averages over ranks -> sum / batch
                loss_sum += per.detach().double().sum().cpu()
            if t.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), t.grad_clip)
            opt.step()
            step += 1
            if step % t.log_every == 0 or step == end:
                loss = all_reduce_sum(loss_sum, ctx).item() / t.batch_size
                if main:
                    now = time.time()
                    sps = (step - step_last) * t.batch_size / max(now - t_last, 1e-9)
                    rec = {"step": step, "loss": loss, "lr": lr_at(step - 1, cfg), "elapsed_s": round(now - t0, 1),
                           "samples_per_s": round(sps, 2)}
                    logf.write(json.dumps(rec) + "\n")
                    logf.flush()
                    log(f"step {step}/{t.steps} loss {loss:.4f} lr {rec['lr']:.2e} {rec['samples_per_s']} samples/s "
                        f"({rec['elapsed_s']} s)")
                    t_last, step_last = now, step
            if step % t.save_every == 0 or step == end:
                if main:
                    save_checkpoint(out / "last", model, opt,
                                    {"step": step, "samples_seen": step * t.batch_size, "rng": rng_state(),
                                     "sampler": {"kind": "step-keyed", "seed": t.seed, "next_step": step,
                                                 "batch_size": t.batch_size},
                                     "world_size": world, "per_rank_batch": per_rank, "accum": acc})
                barrier(ctx)
    finally:
        if logf is not None:
            logf.close()
    return out / "last"


def train_from_file(config: str | Path, **kw) -> Path:
    return train(load_config(config), **kw)
