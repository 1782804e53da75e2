"""``trace-bench run`` under torchrun: one process per GPU, cases split by rank, rank 0 writes.

    torchrun --nproc-per-node 4 -m trace_bench run --reference ... --method ... --device cuda --out OUT

torchrun sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` / ``MASTER_PORT``;
``trace-bench run`` sees ``WORLD_SIZE`` > 1 and calls :func:`run_distributed`:

1. every rank plans only its part of the cases (:func:`trace_bench.run.assign.select_cases` with
   ``part = (rank + 1, world_size)``: the same stable-hash assignment as ``--shard``), with
   ``--device cuda`` mapped to ``cuda:LOCAL_RANK``, and runs the per-case stage, writing its
   per-case files into ``OUT/cases`` (so a killed run resumes, with any number of ranks);
2. the per-entry results (per-case values, mergeable states, recorded errors) are gathered to
   rank 0 with ``torch.distributed.gather_object`` in chunks of :data:`CHUNK` entries, as
   torchmetrics gathers metric states (``dist_reduce_fx``), except that states are kept per case
   (the bootstrap CIs resample cases). Rank 0 writes every result it does not already have, so
   ``OUT`` need not be on a shared file system; on a shared one it only checks the keys;
3. rank 0 checks the ranks' manifests agree (:func:`trace_bench.run.merge.combine_manifests`), finishes the
   run with the combined manifest (:func:`trace_bench.run.pipeline.finish`: aggregate, provenance, reports). Identical to a single
   process run, byte for byte.

The process group uses the ``gloo`` backend (set ``TRACE_BENCH_DIST_BACKEND`` to change it): only
Python objects travel, every rank computes its metrics on its own device. The collective timeout
(``TRACE_BENCH_DIST_TIMEOUT_S``, default 48 h) must exceed the longest rank's per-case stage, since
finished ranks wait in the gather. Combined with ``--shard I/N`` the torchrun job scores shard I and
rank 0 writes a shard folder for ``trace-bench merge``.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import time
import traceback
from typing import Any, Iterator

from ..config import RunConfig
from ..errors import TraceBenchError
from ..results.layout import Entry, read_record, write_record
from ..sharding import torchrun_env  # noqa: F401 - re-exported
from .lock import OutputLock
from .merge import combine_manifests
from .pipeline import RunResult, finish, integrity_rows
from .plan import Plan, check_out, manifest_dict, plan_run
from .provenance import build_provenance

#: entries per gather round (bounds the memory rank 0 holds at once)
CHUNK = 64


class DistributedError(TraceBenchError):
    """A rank failed; the message names the rank and its error."""


def _records(plan: Plan) -> Iterator[dict[str, Any]]:
    for e in plan.entries:
        rec = read_record(plan.out, e)
        if rec is not None:
            yield rec


def run_distributed(config: RunConfig, *, console=None, report: bool = True, notes: tuple[str, ...] = (),
                    extra_skipped: dict[str, str] | None = None) -> RunResult | None:
    """Run ``config`` as one rank of a torchrun job (see the module docstring). Rank 0 returns the
    :class:`~trace_bench.run.pipeline.RunResult`, the other ranks None. ``config`` already names
    its inputs (the demo is prepared above this level)."""
    import torch.distributed as dist

    created = False
    if not dist.is_initialized():
        timeout = datetime.timedelta(seconds=float(os.environ.get("TRACE_BENCH_DIST_TIMEOUT_S", 48 * 3600)))
        dist.init_process_group(backend=os.environ.get("TRACE_BENCH_DIST_BACKEND", "gloo"), timeout=timeout)
        created = True
    try:
        return _run(config, dist, console=console, report=report, notes=notes, extra_skipped=extra_skipped or {})
    finally:
        if created:
            dist.destroy_process_group()


def check_ranks(dist, problem: str | None) -> None:
    """All ranks learn whether any rank failed; then all raise the same error."""
    problems = [None] * dist.get_world_size()
    dist.all_gather_object(problems, problem)
    bad = [p for p in problems if p]
    if bad:
        raise DistributedError("torchrun: " + "; ".join(bad))


def _run(config: RunConfig, dist, *, console=None, report: bool = True, notes: tuple[str, ...] = (),
         extra_skipped: dict[str, str]) -> RunResult | None:
    from .console import stderr_console

    t0 = time.perf_counter()
    rank, world = dist.get_rank(), dist.get_world_size()
    local = int(os.environ.get("LOCAL_RANK", rank))
    console = console or stderr_console()
    from ..device import check_device

    resolved = check_device(config.device)
    device = f"cuda:{local}" if resolved == "cuda" else resolved
    cfg = config.replace(device=device, progress=bool(config.progress and rank == 0))

    if rank == 0:
        check_out(config)  # before the lock creates OUT/.trace-bench (every rank checks again in planning)
    lock = OutputLock(config.out) if rank == 0 else None
    with lock if lock is not None else contextlib.nullcontext():
        plan = None
        problem = None
        stats: dict[str, Any] = {}
        integrity: list[dict[str, str]] = []
        try:
            plan = plan_run(cfg, part=(rank + 1, world), notes=notes, extra_skipped=extra_skipped)
            plan.out.mkdir(parents=True, exist_ok=True)
            integrity = integrity_rows(plan, console if rank == 0 else None)
            if cfg.progress:
                console.print(f"[bold]torchrun[/bold]: {world} ranks, rank 0 scores {len(plan.shard['cases'])} of "
                              f"{plan.shard['n_cases']} cases")
            from .execute import run_cases

            stats = run_cases(plan, console=console, prefetch=plan.config.prefetch)
        except Exception as err:  # noqa: BLE001 - reported to every rank below
            if not isinstance(err, TraceBenchError):
                traceback.print_exc()
            problem = f"rank {rank}: {err if isinstance(err, TraceBenchError) else f'{type(err).__name__}: {err}'}"
        check_ranks(dist, problem)
        assert plan is not None

        # manifests and per-rank stats to rank 0
        mans: list[Any] = [None] * world if rank == 0 else None  # type: ignore[assignment]
        dist.gather_object((dict(manifest_dict(plan), integrity=integrity), stats), mans, dst=0)

        # per-entry results to rank 0, CHUNK entries per round
        counts: list[Any] = [None] * world
        dist.all_gather_object(counts, len(plan.entries))
        rounds = max((int(c) + CHUNK - 1) // CHUNK for c in counts)
        received = written = 0
        records = _records(plan)
        for _ in range(rounds):
            chunk = [rec for _, rec in zip(range(CHUNK), records)]
            got: list[Any] = [None] * world if rank == 0 else None  # type: ignore[assignment]
            dist.gather_object(chunk, got, dst=0)
            if rank == 0:
                for r, recs in enumerate(got):
                    if r == 0:
                        continue
                    for rec in recs:
                        received += 1
                        written += write_record(plan.out, rec)
        if rank != 0:
            return None

        merged = combine_manifests([(f"rank {r}", m) for r, (m, _) in enumerate(mans)], level="part")
        merged["config"] = config.to_dict()
        final = plan.replace(config=config, entries=tuple(Entry(**d) for d in merged["entries"]),
                             input_hashes=merged["inputs"], shard=merged["shard"])
        total = {k: sum(s.get(k, 0) for _, s in mans) for k in ("entries", "cached", "computed")}
        dist_info = {"distributed": {"world_size": world, "backend": dist.get_backend(),
                                     "cases_per_rank": [len(m["shard"]["cases"]) for m, _ in mans],
                                     "per_case_s_per_rank": [round(float(st.get("per_case_s", 0.0)), 3) for _, st in mans],
                                     "records_received": received, "records_written_by_rank0": written}}
        if config.progress:
            console.print(f"[bold]torchrun[/bold]: gathered {received} results from ranks 1..{world - 1} "
                          f"({written} written by rank 0, {received - written} already on disk)")
        agg = finish(final.out, config, merged, lambda t: build_provenance(final, t, dist_info), report=report,
                     console=console, t0=t0)
        total.update(agg)
        return RunResult(final.out, final, total)
