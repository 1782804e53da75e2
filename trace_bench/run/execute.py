"""Stage 2, per case: for every entry of the plan whose record is missing, read the volume, run the
metric and write one record file (:mod:`trace_bench.results.layout`), atomically.

A failure writes ``<metric>.error.json`` instead; no failure stops the other cases. Volumes are
grouped by (method, case) so each is decoded once for all its metrics. With ``workers > 1`` the
groups go to a pool of spawned processes that receive the :class:`~.plan.Plan` (without loaded
networks) and never plan again.

The serial path decodes the next task's volumes on a background thread while the current task
is scored (:class:`Reader`; ``--prefetch`` / ``--no-prefetch``, by default on when the run's device is a
GPU: :func:`prefetch_enabled`).

Warnings recorded with a result (``warnings.csv``): what the adapter noticed while reading
(``volume.meta["warnings"]``) and the geometry check of a generated volume against its reference
(:mod:`trace_bench.geometry`), which may also refuse the volume for reference-based metrics
(stage ``geometry`` in ``errors.csv``).
"""

from __future__ import annotations

import os
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

from ..cases import Case
from ..errors import ConfigError, TraceBenchError
from ..metrics.base import CaseData
from ..results.layout import Entry, entry_done, write_error, write_state, write_values
from ..results.tables import GT
from .artifacts import plot_artifact
from .console import PlainProgress
from .plan import Plan


def error_text(err: BaseException) -> str:
    """One line for errors.csv: our typed errors as they are, others with their type."""
    return str(err) if isinstance(err, TraceBenchError) else f"{type(err).__name__}: {err}"


class Reader:
    """Reads volumes and label maps, keeping the last two decoded volumes in memory (tasks are ordered
    by case, so a case's reference is decoded once for all methods).

    With ``prefetch=True`` (the serial runner), :meth:`prefetch` decodes the next task's volumes on one
    background thread while the current task's metrics run: file reading and gzip/NIfTI/DICOM decoding
    overlap with the metric compute. The volume read ahead is exactly the one read later (same adapter,
    same path); a read error raised ahead is raised again where the volume is asked for, so the error
    rows are those of a run without prefetch. Cost: one more decoded volume in memory.
    """

    def __init__(self, prefetch: bool = False) -> None:
        self._cache: dict[str, Any] = {}  # insertion order = age; at most 2 entries
        self._pending: dict[str, Future] = {}
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="trace-bench-prefetch") if prefetch else None

    @staticmethod
    def _read(path: Path, adapter: str):
        from baselines import get_adapter

        return get_adapter(adapter).read(path)

    def prefetch(self, items: list[tuple[Path, str]]) -> None:
        """Start decoding ``(path, adapter)`` items in the background (no-op without prefetch). Volumes read
        ahead earlier but not among ``items`` (their task failed before reading them) are dropped, so at
        most the current and the next task's volumes are held."""
        if self._pool is None:
            return
        wanted = {f"{adapter}:{path}": (path, adapter) for path, adapter in items}
        for k in [k for k in self._pending if k not in wanted]:
            self._pending.pop(k).cancel()
        for k, (path, adapter) in wanted.items():
            if k not in self._cache and k not in self._pending:
                self._pending[k] = self._pool.submit(self._read, path, adapter)

    def volume(self, path: Path, adapter: str):
        k = f"{adapter}:{path}"
        if k in self._cache:
            return self._cache[k]
        fut = self._pending.pop(k, None)
        v = fut.result() if fut is not None else self._read(path, adapter)
        self._cache[k] = v
        while len(self._cache) > 2:
            self._cache.pop(next(iter(self._cache)))
        return v

    def pending(self) -> list[str]:
        """Keys (``adapter:path``) of the volumes being read ahead and not yet asked for."""
        return list(self._pending)

    def close(self) -> None:
        if self._pool is not None:
            for f in self._pending.values():
                f.cancel()
            self._pool.shutdown(wait=True)
            self._pending.clear()

    @staticmethod
    def labels(path: Path | None):
        from ..io import read_label_map

        return None if path is None else read_label_map(path)


def task_files(plan: Plan, method: str, case: Case, entries: list[Entry]) -> list[tuple[Path, str]]:
    """The ``(path, adapter)`` volumes :func:`process_task` will read for this task (for prefetching)."""
    cf = case.reference if method == GT else case.generated.get(method)
    files = [] if cf is None else [(cf.path, cf.adapter)]
    metrics = {m.name: m for m in plan.metrics}
    if method != GT and case.reference is not None and any(
            e.kind == "artifact" or metrics[e.metric].needs_reference for e in entries):
        files.append((case.reference.path, case.reference.adapter))
    return files


def _adapter_warnings(vol: Any, what: str) -> list[str]:
    meta = getattr(vol, "meta", None) or {}
    return [f"{what}: {w}" for w in meta.get("warnings", [])]


def geometry_warnings(vol: Any, ref: Any, policy: str) -> list[str]:
    """Warnings of the geometry policy for a generated volume against its reference (raises the
    policy's refusal as a :class:`~trace_bench.errors.TraceBenchError`)."""
    from ..geometry import check_geometry

    return [f"geometry: {w}" for w in check_geometry(vol, ref, policy)]


def process_task(plan: Plan, method: str, case: Case, entries: list[Entry], reader: Reader | None = None) -> int:
    """Run the given entries of one volume; write one file per entry. Returns the number written."""
    out, ctx = plan.out, plan.ctx
    reader = reader or Reader()
    metrics = {m.name: m for m in plan.metrics}
    cf = case.reference if method == GT else case.generated[method]
    try:
        vol = reader.volume(cf.path, cf.adapter)  # type: ignore[union-attr]
        mask_path = case.reference_mask if method == GT else case.method_masks.get(method)
        mask = reader.labels(mask_path)
    except Exception as err:  # noqa: BLE001 - one bad file never stops the run
        for e in entries:
            write_error(out, e, "read", error_text(err))
        return len(entries)
    warnings = _adapter_warnings(vol, "read")
    ref = ref_mask = None
    ref_err: BaseException | None = None
    geo_err: BaseException | None = None
    need_ref = method != GT and case.reference is not None and any(
        e.kind == "artifact" or metrics[e.metric].needs_reference for e in entries)
    if need_ref:
        try:
            ref = reader.volume(case.reference.path, case.reference.adapter)  # type: ignore[union-attr]
            ref_mask = reader.labels(case.reference_mask)
        except Exception as err:  # noqa: BLE001
            ref_err = err
        if ref is not None:
            try:
                warnings += geometry_warnings(vol, ref, plan.config.geometry)
            except TraceBenchError as err:
                geo_err = err
    data = CaseData(method=method, case_id=case.case_id, volume=vol, reference=ref, prompt=case.prompt,
                    protocol=ctx.protocol, mask=mask, reference_mask=ref_mask if method != GT else None,
                    device=ctx.device)
    n = 0
    for e in entries:
        if e.kind == "artifact":
            continue
        metric = metrics[e.metric]
        n += 1
        if metric.needs_reference and method != GT:
            if ref is None:
                write_error(out, e, "read reference", error_text(ref_err or ConfigError("reference volume unavailable")))
                continue
            if geo_err is not None:
                write_error(out, e, "geometry", error_text(geo_err))
                continue
        if metric.needs_prompt and not case.prompt:
            write_error(out, e, f"metric:{metric.name}", f"no prompt for case {case.case_id!r}")
            continue
        t0 = time.perf_counter()
        try:
            if metric.kind == "case":
                values = metric.case_values(data, ctx)
                write_values(out, e, values, protocol=metric.protocol_id(ctx), seconds=time.perf_counter() - t0,
                             warnings=warnings)
            else:
                write_state(out, e, metric.case_state(data, ctx), warnings=warnings,
                            seconds=time.perf_counter() - t0)
        except Exception as err:  # noqa: BLE001
            write_error(out, e, f"metric:{metric.name}", error_text(err))
    for e in entries:
        if e.kind == "artifact":
            try:
                write_state(out, e, plot_artifact(data, plan.metrics, ctx))
            except Exception as err:  # noqa: BLE001
                write_error(out, e, "plot", error_text(err))
            n += 1
    return n


def _task_groups(todo: list[Entry]) -> list[tuple[str, str, list[Entry]]]:
    groups: dict[tuple[str, str], list[Entry]] = {}
    for e in todo:
        groups.setdefault(e.task, []).append(e)
    return [(m, c, es) for (m, c), es in groups.items()]


_WORKER_PLAN: Plan | None = None


def _worker_init(plan: Plan, plugins: list[str]) -> None:
    """Runs once in every spawned worker: receive the plan (no re-planning, no re-hashing)."""
    global _WORKER_PLAN
    import warnings

    from .select import load_metric_registry

    warnings.filterwarnings("ignore")
    load_metric_registry(plugins)
    _WORKER_PLAN = plan


def _worker_run(method: str, case_id: str, entries: list[Entry]) -> int:
    assert _WORKER_PLAN is not None
    plan = _WORKER_PLAN
    return process_task(plan, method, plan.pairing.case(case_id), entries)


def prefetch_enabled(setting: bool | None, device: Any) -> bool:
    """The config's ``prefetch`` (True / False), or when None (auto) whether ``device`` is a GPU: then
    the CPU is idle while the GPU computes and decoding ahead hides the read time; on a CPU run the
    metrics keep the cores busy and decoding ahead gained nothing measurable (benchmarks/bench_prefetch.py)."""
    return bool(setting) if setting is not None else str(device).startswith("cuda")


def run_cases(plan: Plan, *, console=None, prefetch: bool | None = None) -> dict[str, Any]:
    """Stage 2: compute every entry whose result file is missing (resume = skip what is done).
    ``prefetch``: in the serial path, decode the next volume while the current one is scored
    (:class:`Reader`; None = :func:`prefetch_enabled` decides); worker processes read their own task."""
    t0 = time.perf_counter()
    todo = [e for e in plan.entries if not entry_done(plan.out, e)]
    groups = _task_groups(todo)
    stats: dict[str, Any] = {"entries": len(plan.entries), "cached": len(plan.entries) - len(todo), "computed": 0}
    progress = _progress(plan.config, console)
    plain = None
    if plan.config.progress and not progress.console.is_terminal:  # a log file: a line per interval instead
        plain = PlainProgress(progress.console, "per-case", float(os.environ.get("TRACE_BENCH_LOG_INTERVAL_S", 30)))
    done = 0
    with progress:
        per_method = {m: progress.add_task(f"{m}", total=sum(1 for g in groups if g[0] == m))
                      for m in plan.method_order if any(g[0] == m for g in groups)}
        overall = progress.add_task("all volumes", total=len(groups))
        if plan.config.workers > 1 and len(groups) > 1:
            import multiprocessing as mp
            from concurrent.futures import ProcessPoolExecutor, as_completed

            with ProcessPoolExecutor(max_workers=plan.config.workers, mp_context=mp.get_context("spawn"),
                                     initializer=_worker_init, initargs=(plan, list(plan.config.plugins))) as ex:
                futs = {ex.submit(_worker_run, m, c, es): m for m, c, es in groups}
                for f in as_completed(futs):
                    stats["computed"] += f.result()
                    progress.advance(per_method[futs[f]])
                    progress.advance(overall)
                    done += 1
                    if plain is not None:
                        plain.tick(done, len(groups), "volumes")
        else:
            reader = Reader(prefetch=prefetch_enabled(prefetch, plan.ctx.device))
            try:
                for i, (m, c, es) in enumerate(groups):
                    progress.update(per_method[m], description=f"{m} [{c}]")
                    case = plan.pairing.case(c)
                    ahead = task_files(plan, m, case, es)
                    if i + 1 < len(groups):
                        nm, nc, nes = groups[i + 1]
                        ahead += task_files(plan, nm, plan.pairing.case(nc), nes)
                    reader.prefetch(ahead)
                    stats["computed"] += process_task(plan, m, case, es, reader)
                    progress.advance(per_method[m])
                    progress.advance(overall)
                    done += 1
                    if plain is not None:
                        plain.tick(done, len(groups), f"volumes (last: {m} / {c})")
            finally:
                reader.close()
    stats["per_case_s"] = time.perf_counter() - t0
    return stats


def _progress(config, console=None):
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                               TimeRemainingColumn)

    from .console import stderr_console

    console = console or stderr_console()
    return Progress(TextColumn("{task.description:<28}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    TextColumn("ETA"), TimeRemainingColumn(), console=console, disable=not config.progress,
                    transient=False)
