"""Multi-process training under torchrun (``torchrun --nproc-per-node G -m trace_bench train ...``).

One process per GPU (NCCL) or per CPU slot (gloo, used by the tests). The rank / world size come from the
environment torchrun sets (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``; read by
:func:`trace_bench.sharding.torchrun_env`, the same rule ``trace-bench run`` uses).

How a step is split (see ``trace_model.train``): the global batch of ``train.batch_size`` pair indices of a
step is drawn from a generator keyed by (seed, step), identically on every rank; rank r takes positions
r, r + W, r + 2W, ... (DistributedSampler's split) and walks them in ``accum`` micro-batches. The whole
batch's noise, timesteps and dropouts are drawn on every rank from the step's generator and each rank takes
its rows (``train.StepDraws``), so the split does not change what is computed, only where: W ranks x accum micro-batches == one process with the
whole batch, up to floating-point summation order.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.distributed as dist

from trace_bench.errors import ConfigError


@dataclass(frozen=True)
class DistContext:
    """Where this process sits in a torchrun job."""

    rank: int
    world: int
    local_rank: int
    backend: str
    owns_group: bool  # True when this module created the process group (and so destroys it)

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(device: str | None) -> tuple[DistContext | None, torch.device]:
    """Join the torchrun job when there is one: (context, this rank's device); (None, device) otherwise.

    ``device``: ``cpu`` forces gloo on CPU; ``cuda`` or None with CUDA available gives NCCL on
    ``cuda:LOCAL_RANK``."""
    from trace_bench.sharding import torchrun_env

    env = torchrun_env()
    want_cuda = device not in (None, "cpu") or (device is None and torch.cuda.is_available())
    if env is None:
        return None, torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    rank, world, local = env
    if want_cuda:
        if not torch.cuda.is_available():
            raise ConfigError(f"--device {device}: CUDA is not available on rank {rank}")
        if local >= torch.cuda.device_count():
            raise ConfigError(f"rank {rank}: LOCAL_RANK {local} but only {torch.cuda.device_count()} CUDA device(s)")
        torch.cuda.set_device(local)
        dev, backend = torch.device("cuda", local), "nccl"
    else:
        dev, backend = torch.device("cpu"), "gloo"
    owns = not dist.is_initialized()
    if owns:
        dist.init_process_group(backend=backend)
    return DistContext(rank, world, local, dist.get_backend(), owns), dev


def split_batch(batch: int, world: int, accum: int | None, per_rank_batch: int | None) -> tuple[int, int]:
    """(per-rank micro-batch, accumulation steps) with per-rank batch x world x accum == ``batch`` exactly."""
    if accum is not None and per_rank_batch is not None:
        if per_rank_batch * world * accum != batch:
            raise ConfigError(f"per-rank batch {per_rank_batch} x {world} process(es) x accum {accum} != "
                              f"train.batch_size {batch}")
        return per_rank_batch, accum
    if per_rank_batch is not None:
        if per_rank_batch < 1 or batch % (per_rank_batch * world):
            raise ConfigError(f"train.batch_size {batch} is not a multiple of per-rank batch {per_rank_batch} x "
                              f"{world} process(es)")
        return per_rank_batch, batch // (per_rank_batch * world)
    a = accum or 1
    if a < 1 or batch % (world * a):
        raise ConfigError(f"train.batch_size {batch} is not divisible by {world} process(es) x accum {a}")
    return batch // (world * a), a


def rank_positions(batch: int, world: int, rank: int) -> list[int]:
    """Positions in the global batch that rank ``rank`` of ``world`` computes (DistributedSampler's split)."""
    return list(range(batch))[rank::world]


def all_reduce_sum(t: torch.Tensor, ctx: DistContext | None) -> torch.Tensor:
    """Sum of ``t`` over the ranks (``t`` itself without a job)."""
    if ctx is not None:
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def barrier(ctx: DistContext | None) -> None:
    if ctx is not None:
        dist.barrier()


def shutdown(ctx: DistContext | None) -> None:
    """Leave the process group if this module created it."""
    if ctx is not None and ctx.owns_group and dist.is_initialized():
        dist.destroy_process_group()
