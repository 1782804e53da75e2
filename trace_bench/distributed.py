"""``trace-bench run`` under torchrun: one process per GPU, cases split by rank, rank 0 writes (issue 9).

    torchrun --nproc-per-node 4 -m trace_bench run --reference ... --method ... --device cuda --out OUT

torchrun sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` / ``MASTER_PORT``;
:func:`trace_bench.runner.run` sees ``WORLD_SIZE`` > 1 and calls :func:`run_distributed`:

1. every rank plans only its part of the cases (:func:`trace_bench.shard.select_cases` with
   ``part = (rank + 1, world_size)``: the same stable-hash assignment as ``--shard``), with
   ``--device cuda`` mapped to ``cuda:LOCAL_RANK``, and runs the per-case stage, writing its
   per-case files into ``OUT/cases`` (so a killed run resumes, with any number of ranks);
2. the per-entry results (per-case values, mergeable states, recorded errors) are gathered to
   rank 0 with ``torch.distributed.gather_object`` in chunks of :data:`CHUNK` entries, as
   torchmetrics gathers metric states (``dist_reduce_fx``), except that states are kept per case
   (the bootstrap CIs resample cases). Rank 0 writes every result it does not already have, so
   ``OUT`` need not be on a shared file system; on a shared one it only checks the keys;
3. rank 0 checks the ranks' manifests agree (:func:`trace_bench.shard.combine_manifests`), writes
   the combined manifest, aggregates, writes provenance and the reports. Identical to a single
   process run, byte for byte.

The process group uses the ``gloo`` backend (set ``TRACE_BENCH_DIST_BACKEND`` to change it): only
Python objects travel, every rank computes its metrics on its own device. The collective timeout
(``TRACE_BENCH_DIST_TIMEOUT_S``, default 48 h) must exceed the longest rank's per-case stage, since
finished ranks wait in the gather. Combined with ``--shard I/N`` the torchrun job scores shard I and
rank 0 writes a shard folder for ``trace-bench merge``.
"""

from __future__ import annotations

import datetime
import json
import os
import time
import traceback
from typing import Any, Iterator

import numpy as np

from .config import RunConfig
from .errors import TraceBenchError

#: entries per gather round (bounds the memory rank 0 holds at once)
CHUNK = 64


class DistributedError(TraceBenchError):
    """A rank failed; the message names the rank and its error."""


def torchrun_env() -> tuple[int, int, int] | None:
    """(rank, world size, local rank) when started by torchrun with more than one process, else None."""
    try:
        world = int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        return None
    if world <= 1 or "RANK" not in os.environ:
        return None
    return int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", os.environ["RANK"]))


# ----------------------------------------------------------------------------- result records
def read_record(out, e) -> dict[str, Any] | None:
    """One entry's result as a picklable record: per-case values (JSON), a state (arrays) or a recorded
    error; None when the entry has no result with its key (should not happen after run_cases)."""
    from .runner import _load_state, _stored_key, entry_done, entry_path, error_path

    if entry_done(out, e):
        p = entry_path(out, e)
        if e.kind == "case":
            return {"entry": e.to_dict(), "type": "json", "data": json.loads(p.read_text(encoding="utf-8"))}
        arrays = _load_state(p)
        return {"entry": e.to_dict(), "type": "npz", "data": arrays}
    ep = error_path(out, e)
    if ep.is_file() and _stored_key(ep) == e.key:
        return {"entry": e.to_dict(), "type": "error", "data": json.loads(ep.read_text(encoding="utf-8"))}
    return None


def write_record(out, rec: dict[str, Any]) -> bool:
    """Write a gathered record into ``out`` unless a result with its key is there. True if written."""
    from .results import atomic_write_json, atomic_write_npz
    from .runner import Entry, _stored_key, entry_done, entry_path, error_path

    e = Entry(**rec["entry"])
    if rec["type"] == "error":
        ep = error_path(out, e)
        if entry_done(out, e) or (ep.is_file() and _stored_key(ep) == e.key):
            return False
        atomic_write_json(ep, rec["data"])
        return True
    if entry_done(out, e):
        return False
    if rec["type"] == "json":
        atomic_write_json(entry_path(out, e), rec["data"])
    else:
        arrays = dict(rec["data"])
        arrays["__key__"] = np.asarray(e.key)
        atomic_write_npz(entry_path(out, e), arrays)
    ep = error_path(out, e)
    if ep.exists():
        ep.unlink()
    return True


def _records(plan) -> Iterator[dict[str, Any]]:
    for e in plan.entries:
        rec = read_record(plan.out, e)
        if rec is not None:
            yield rec


# ----------------------------------------------------------------------------- the run
def run_distributed(config: RunConfig, *, console=None, report: bool = True):
    """Run ``config`` as one rank of a torchrun job (see the module docstring). Rank 0 returns the
    :class:`~trace_bench.runner.RunResult`, the other ranks None."""
    import torch.distributed as dist

    created = False
    if not dist.is_initialized():
        timeout = datetime.timedelta(seconds=float(os.environ.get("TRACE_BENCH_DIST_TIMEOUT_S", 48 * 3600)))
        dist.init_process_group(backend=os.environ.get("TRACE_BENCH_DIST_BACKEND", "gloo"), timeout=timeout)
        created = True
    try:
        return _run(config, dist, console=console, report=report)
    finally:
        if created:
            dist.destroy_process_group()


def _check(dist, rank: int, problem: str | None) -> None:
    """All ranks learn whether any rank failed; then all raise the same error."""
    problems = [None] * dist.get_world_size()
    dist.all_gather_object(problems, problem)
    bad = [p for p in problems if p]
    if bad:
        raise DistributedError("torchrun: " + "; ".join(bad))


def _run(config: RunConfig, dist, *, console=None, report: bool = True):
    from rich.console import Console

    from .results import atomic_write_json, atomic_write_text
    from .runner import Entry, RunResult, aggregate, manifest_dict, plan_run, run_cases, write_provenance
    from .shard import combine_manifests

    t0 = time.perf_counter()
    rank, world = dist.get_rank(), dist.get_world_size()
    local = int(os.environ.get("LOCAL_RANK", rank))
    console = console or Console(stderr=True)
    notes: list[str] = []
    extra_skipped: dict[str, str] = {}
    if config.uses_demo:  # rank 0 writes the demo inputs, the others use them
        box: list[Any] = [None]
        problem = None
        if rank == 0:
            try:
                from .demo import prepare_demo

                cfg0, notes, extra_skipped = prepare_demo(config, console=console)
                box = [(cfg0.to_dict(), notes, extra_skipped)]
            except Exception as err:  # noqa: BLE001
                problem = f"rank 0: {type(err).__name__}: {err}"
        _check(dist, rank, problem)
        dist.broadcast_object_list(box, src=0)
        cfg_dict, notes, extra_skipped = box[0]
        config = RunConfig(**cfg_dict)
    user_config = config
    device = f"cuda:{local}" if config.device == "cuda" else config.device
    cfg = config.replace(device=device, progress=bool(config.progress and rank == 0))

    plan = None
    problem = None
    stats: dict[str, Any] = {}
    try:
        plan = plan_run(cfg, part=(rank + 1, world))
        plan.out.mkdir(parents=True, exist_ok=True)
        if cfg.progress:
            console.print(f"[bold]torchrun[/bold]: {world} ranks, rank 0 scores {len(plan.shard['cases'])} of "
                          f"{plan.shard['n_cases']} cases")
        stats = run_cases(plan, console=console)
    except Exception as err:  # noqa: BLE001 - reported to every rank below
        traceback.print_exc()
        problem = f"rank {rank}: {err if isinstance(err, TraceBenchError) else f'{type(err).__name__}: {err}'}"
    _check(dist, rank, problem)
    assert plan is not None

    # manifests and per-rank stats to rank 0
    mans: list[Any] = [None] * world if rank == 0 else None  # type: ignore[assignment]
    dist.gather_object((manifest_dict(plan), dict(stats, per_case_s=plan.timings.get("per_case_s", 0.0))), mans, dst=0)

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
    merged["config"] = user_config.to_dict()
    plan.config = user_config
    plan.entries = [Entry(**d) for d in merged["entries"]]
    plan.input_hashes = merged["inputs"]
    plan.shard = merged["shard"]
    plan.notes += notes
    for k, v in extra_skipped.items():
        plan.skipped.setdefault(k, v)
    merged["skipped"] = dict(sorted(plan.skipped.items()))
    total = {"entries": sum(s.get("entries", 0) for _, s in mans), "cached": sum(s.get("cached", 0) for _, s in mans),
             "computed": sum(s.get("computed", 0) for _, s in mans)}
    dist_info = {"distributed": {"world_size": world, "backend": dist.get_backend(),
                                 "cases_per_rank": [len(m["shard"]["cases"]) for m, _ in mans],
                                 "per_case_s_per_rank": [round(float(st["per_case_s"]), 3) for _, st in mans],
                                 "records_received": received, "records_written_by_rank0": written}}
    if user_config.progress:
        console.print(f"[bold]torchrun[/bold]: gathered {received} results from ranks 1..{world - 1} "
                      f"({written} written by rank 0, {received - written} already on disk)")
    atomic_write_text(plan.out / "config.toml", user_config.to_toml())
    atomic_write_json(plan.out / "manifest.json", merged)
    if user_config.shard is not None:
        write_provenance(plan, {"total_s": time.perf_counter() - t0}, dist_info)
        return RunResult(plan.out, plan, total)
    agg = aggregate(plan.out)
    total.update(agg)
    timings = {"aggregate_s": agg["aggregate_s"]}
    write_provenance(plan, timings, dist_info)
    if report:
        from reports import render_report

        t1 = time.perf_counter()
        render_report(plan.out, plots=user_config.plots, published=user_config.published)
        timings["report_s"] = time.perf_counter() - t1
    timings["total_s"] = time.perf_counter() - t0
    write_provenance(plan, timings, dist_info)
    return RunResult(plan.out, plan, total)
