"""DDIM (eq. 2) + overlapping frame guidance (section 3.3, Algorithm 1) for volumes of any length N >= 2.

The scheduler (MONAI ``DDIMScheduler``) is separate from the network; :func:`ddim` is one DDIM pass
x_T ~ N(0, I) -> x_0 for a batch of frame pairs, eta = 0 (deterministic):

    x_{t-1} = sqrt(abar_{t-1}) f_theta(x_t, t) + sqrt(1 - abar_{t-1}) eps_theta(x_t, t)         (eq. 2)

:func:`sample_volumes` runs Algorithm 1 with the batch axis carrying volumes (each with its own length
and its own noise generator, so a volume's output does not depend on what it is batched with).

Flow at inference (``inference_flow``), where frame n+1 does not exist yet:

  * ``zero``: null flow everywhere (the model saw null flows in training via flow dropout);
  * ``previous`` (default): the pair (n, n+1) gets the flow of the last generated pair x(n-1) -> x(n);
  * ``refine``: like ``previous`` for line 8; line 11 gets the flow of line 8's own pair x~(n) -> x~(n+1).

The first pair (line 4) always gets a null flow.

Reading of Algorithm 1 (``line9``): line 9 as printed builds G(n+1) from x~(n) with the mask M(n+1); we read
the index as a typo and use x~(n+1), the first pass's estimate of slice n+1 (``line9="literal"`` follows the
print). Each slice n >= 1 is written twice (as x(n+1) at step n-1, then as x(n) at step n, line 11); its final
value is the one from step n. ``mode="markovian"`` runs lines 6-8 only: x(n+1) = x~(n+1), x(n) is kept.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from collections.abc import Callable

import torch
from monai.networks.schedulers import DDIMScheduler

from trace_bench.errors import ConfigError

from .conditioning import guidance_map
from .config import INFERENCE_FLOWS, TraceConfig
from .flow import FlowEstimator
from .network import TraceUNet


def make_scheduler(cfg: TraceConfig) -> DDIMScheduler:
    d = cfg.diffusion
    return DDIMScheduler(num_train_timesteps=d.num_train_timesteps, schedule=d.schedule, beta_start=d.beta_start,
                         beta_end=d.beta_end, clip_sample=d.clip_sample, set_alpha_to_one=True,
                         prediction_type=d.prediction_type)


@dataclass(frozen=True)
class SamplerOptions:
    steps: int = 100  # DDIM steps per pass (paper's best row: 100)
    mode: str = "overlap"  # "overlap" = Algorithm 1; "markovian" = lines 6-8 only (paper's ablation)
    inference_flow: str | None = None  # None -> the checkpoint's conditioning.inference_flow
    gamma: float | None = None  # None -> conditioning.guidance_gamma
    sigma: float | None = None  # None -> conditioning.guidance_sigma (H)
    norm: str | None = None  # None -> conditioning.guidance_norm (F)
    line9: str = "next"  # "next": G(n+1) from x~(n+1); "literal": from x~(n), as line 9 is printed
    bf16: bool = True  # autocast on CUDA only
    record: bool = False  # keep a log of every DDIM pass (for tests / inspection)

    def __post_init__(self) -> None:
        if self.steps < 1:
            raise ConfigError(f"steps must be >= 1, got {self.steps}")
        if self.mode not in ("overlap", "markovian"):
            raise ConfigError(f"mode must be 'overlap' or 'markovian', got {self.mode!r}")
        if self.inference_flow is not None and self.inference_flow not in INFERENCE_FLOWS:
            raise ConfigError(f"inference_flow must be one of {INFERENCE_FLOWS}, got {self.inference_flow!r}")
        if self.line9 not in ("next", "literal"):
            raise ConfigError(f"line9 must be 'next' or 'literal', got {self.line9!r}")


@dataclass
class SampleResult:
    frames: torch.Tensor  # (B, N_max, S, S) in [-1, 1]; volume b uses frames[b, :lengths[b]]
    lengths: list[int]
    log: list[dict] = field(default_factory=list)


def ddim_timesteps(scheduler: DDIMScheduler, steps: int) -> list[int]:
    """"Trailing" DDIM timesteps T-1, T-1-s, ..., s = T // steps, kept on the CPU. MONAI's ``step`` takes the
    previous timestep as t - T // steps; its own ``set_timesteps`` spaces them by (T-1)/(steps-1) instead, so
    each step would land between the grid points. With this grid eq. 2 is evaluated exactly at the next
    timestep the network is called with."""
    T = scheduler.num_train_timesteps
    if not 1 <= steps <= T:
        raise ConfigError(f"steps must be in [1, {T}], got {steps}")
    scheduler.set_timesteps(steps)  # sets num_inference_steps (used by step()) and validates
    s = T // steps
    return [T - 1 - i * s for i in range(steps)]


def accepts_pass_cache(model: Callable) -> bool:
    """Whether ``model`` (its ``forward`` for a module) takes the ``pass_cache`` keyword of ``TraceUNet.forward``."""
    try:
        params = inspect.signature(getattr(model, "forward", model)).parameters
    except (TypeError, ValueError):
        return False
    return "pass_cache" in params


@torch.no_grad()
def ddim(model: TraceUNet, scheduler: DDIMScheduler, noise: torch.Tensor, cond: torch.Tensor, positions: torch.Tensor,
         flow: torch.Tensor | None, text: torch.Tensor | None, steps: int, autocast: bool = False) -> torch.Tensor:
    """One deterministic DDIM pass (eq. 2, eta = 0) from ``noise`` (B, 2, S, S) to the pair x_0 (B, 2, S, S)."""
    timesteps = ddim_timesteps(scheduler, steps)
    x, x0 = noise, noise
    # position / flow / text features computed once per pass (TraceUNet.forward's pass_cache); other denoisers
    # (test oracles, spies replacing forward) are called without it
    kw: dict = {"pass_cache": {}} if accepts_pass_cache(model) else {}
    for t in timesteps:
        tt = torch.full((x.shape[0],), t, device=x.device, dtype=torch.long)
        with torch.autocast(device_type=x.device.type, dtype=torch.bfloat16, enabled=autocast):
            eps = model(x, tt, cond, positions, flow=flow, text_hidden=text, **kw)  # eps_theta(x_t, t | .) (or v)
        x, x0 = scheduler.step(eps.float(), t, x, eta=0.0)  # x_{t-1}, eq. 2 (sigma_t = 0); x0 = f_theta(x_t, t)
    return x0  # = x after the last step when it reaches t = -1 (abar = 1); the clean estimate otherwise


@torch.no_grad()
def sample_volumes(model: TraceUNet, masks: torch.Tensor, *, lengths: list[int] | None = None,
                   seeds: list[int] | None = None, text: torch.Tensor | None = None,
                   options: SamplerOptions = SamplerOptions(), flow_estimator: FlowEstimator | None = None,
                   progress: Callable[[int, int], None] | None = None) -> SampleResult:
    """Algorithm 1 for a batch of volumes.

    masks: (B, N_max, S, S) mask channels M(n) in [0, 1] (``data.labels_to_cond``); lengths[b] <= N_max slices
    of volume b (default: all N_max); seeds[b]: the noise seed of volume b; text: (B, L, W) CLIP hidden states;
    progress(done, total): called after each DDIM pass (total = 1 + (N_max - 2) * (2 overlap | 1 markovian)).
    """
    cfg, c = model.cfg, model.cfg.conditioning
    dev = next(model.parameters()).device
    B, N, S, _ = masks.shape
    lengths = list(lengths or [N] * B)
    if len(lengths) != B or min(lengths) < 2 or max(lengths) > N:
        raise ConfigError(f"every volume needs 2 <= length <= {N} slices, got lengths {lengths}")
    if S != cfg.model.image_size:
        raise ConfigError(f"masks are {S} px but the model works at {cfg.model.image_size} px")
    seeds = list(seeds if seeds is not None else range(B))
    gens = [torch.Generator().manual_seed(int(s)) for s in seeds]  # one noise stream per volume
    kw = dict(gamma=options.gamma or c.guidance_gamma, sigma=c.guidance_sigma if options.sigma is None else options.sigma,
              norm=options.norm or c.guidance_norm)
    flow_mode = options.inference_flow or c.inference_flow
    if model.use_flow and flow_mode != "zero" and flow_estimator is None:
        flow_estimator = FlowEstimator(c.flow, dev)
    autocast = options.bf16 and dev.type == "cuda"
    sched = make_scheduler(cfg)
    M = masks.to(dev).float()
    L = torch.tensor(lengths, device=dev)
    x = torch.zeros(B, N, S, S, device=dev)  # the frames {x(n)}
    log: list[dict] = []
    zero_flow = torch.zeros(B, 2, S, S, device=dev) if model.use_flow else None

    def noise() -> torch.Tensor:  # x_T of one pass, drawn per volume
        return torch.stack([torch.randn(2, S, S, generator=g) for g in gens]).to(dev)

    def pos(n: int) -> torch.Tensor:  # (r_n, r_{n+1}) per volume, r = n / (N_b - 1) (eq. 7)
        a = torch.tensor([n, n + 1], device=dev, dtype=torch.float32)[None].expand(B, 2)
        return (a / (L[:, None] - 1).float()).clamp(max=1.0)

    def flow(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor | None:
        if not model.use_flow or flow_mode == "zero":
            return zero_flow
        return flow_estimator(a[:, None], b[:, None]).to(dev)

    def G(frame: torch.Tensor, m: torch.Tensor) -> torch.Tensor:  # G = M + (1 - M) * F(H(x^gamma)), lines 6 / 9
        return guidance_map(frame[:, None], m[:, None], **kw)[:, 0]

    total_passes = 1 + (max(lengths) - 2) * (2 if options.mode == "overlap" else 1)
    done_passes = 0

    def run(cond0, cond1, n, f, line):
        nonlocal done_passes
        out = ddim(model, sched, noise(), torch.stack([cond0, cond1], 1), pos(n), f, text, options.steps, autocast)
        if options.record:
            log.append({"line": line, "n": n, "frames": (n, n + 1), "out": out.clamp(-1, 1).cpu()})
        done_passes += 1
        if progress is not None:
            progress(done_passes, total_passes)
        return out

    # lines 3-4: (x(0), x(1)) <- DDIM(Concat(x_T, M(0), M(1)))
    x[:, 0:2] = run(M[:, 0], M[:, 1], 0, zero_flow, 4)
    active_until = max(lengths) - 1
    for n in range(1, active_until):  # line 5: pairs (n, n+1) up to the last slice N_b - 1
        live = (L - 1 > n).view(B, 1, 1)  # volumes that still have a slice n+1
        f_prev = flow(x[:, n - 1], x[:, n])
        Gn = G(x[:, n], M[:, n])  # line 6
        pair = run(Gn, M[:, n + 1], n, f_prev, 8)  # lines 7-8: (x~(n), x~(n+1))
        if options.mode == "markovian":  # each new slice depends on the previous one only
            x[:, n + 1] = torch.where(live, pair[:, 1], x[:, n + 1])
            continue
        src = pair[:, 1] if options.line9 == "next" else pair[:, 0]
        Gn1 = G(src, M[:, n + 1])  # line 9
        f2 = flow(pair[:, 0], pair[:, 1]) if flow_mode == "refine" else f_prev
        pair = run(Gn, Gn1, n, f2, 11)  # lines 10-11: (x(n), x(n+1)) overwritten
        x[:, n] = torch.where(live, pair[:, 0], x[:, n])
        x[:, n + 1] = torch.where(live, pair[:, 1], x[:, n + 1])
    return SampleResult(x.clamp(-1, 1).cpu(), lengths, log)
