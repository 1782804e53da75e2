"""Stage 2, per case: for every entry of the plan whose record is missing, read the volume, run the
metric and write one record file (:mod:`trace_bench.results.layout`), atomically.

A failure writes ``<metric>.error.json`` instead; no failure stops the other cases. Volumes are
grouped by (method, case) so each is decoded once for all its metrics. With ``workers > 1`` the
groups go to a pool of spawned processes that receive the :class:`~.plan.Plan` (without loaded
networks) and never plan again.

The serial path decodes the next task's volumes on a background thread while the current task
is scored (:class:`Reader`; ``--prefetch`` / ``--no-prefetch``, by default on when the run's device is a
GPU: :func:`prefetch_enabled`).

Volumes are read with their folder's reading options (:class:`~trace_bench.read_options.ReadOptions`)
through :func:`baselines.base.read_with_options` (the one call the report's viewer makes too); ``spacing``
/ ``layout = reference`` pass the paired reference volume, read first (the reader takes its grid).
Reader messages name this run's folder in their hints (:func:`run_hints`: ``--read gen.layout=SPL``).

Warnings recorded with a result (``warnings.csv``): what the adapter noticed while reading
(``volume.meta["warnings"]``, in every record of the volume) and the geometry check of a generated
volume against its reference (:mod:`trace_bench.geometry`; only in the records of the entries that
compare the two), which may also refuse the volume for reference-based metrics (stage ``geometry``
in ``errors.csv``), and what a metric noticed about the volume while scoring it
(:meth:`~trace_bench.metrics.base.CaseData.warn`, e.g. a chest protocol on a head CT; in that metric's
record). Per-volume records also keep the volume's spacing, which the aggregate stage compares with the
reference case's for the slice-based metrics.
"""

from __future__ import annotations

import os
import re
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

from ..cases import Case
from ..errors import ConfigError, TraceBenchError, option_hint
from ..metrics.base import CaseData
from ..read_options import ReadOptions
from ..results.layout import (RECORD_CORRUPT, RECORD_MISSING, RECORD_OK, Entry, check_record, entry_path, error_path,
                              write_error, write_state, write_values)
from ..results.tables import GT
from .artifacts import plot_artifact
from .console import PlainProgress
from .plan import Plan


def error_text(err: BaseException, folder: str | None = None) -> str:
    """One line for errors.csv: our typed errors as they are, others with their type; ``folder``: the
    folder's name in ``run`` (a method or ``reference``), which the readers' generic option hints then name
    (:func:`run_hints`)."""
    text = str(err) if isinstance(err, TraceBenchError) else f"{type(err).__name__}: {err}"
    return run_hints(text, folder) if folder else text


def _generic_hint_pattern() -> "re.Pattern[str]":
    """The readers' generic hint (:func:`trace_bench.errors.option_hint` without a name) as a regex."""
    generic = re.escape(option_hint("KEYX", "VALUEX"))
    generic = generic.replace("KEYX", r"(?P<k>\w+)", 1).replace("KEYX", r"(?P=k)")
    return re.compile(generic.replace("VALUEX", r"(?P<v>[^\s()]+)", 1).replace("VALUEX", r"(?P=v)"))


_GENERIC_HINT = _generic_hint_pattern()
#: a single-file command's flag for a reading option (``--format nifti``), which ``run`` spells ``--read NAME.format=``
_FILE_FLAG = re.compile(r"--(?P<k>format|convention|spacing|layout) (?P<v>[^\s;()]*[^\s;().,])")


def run_hints(text: str, folder: str) -> str:
    """``text`` with every reading-option hint of the readers spelled for this run's folder: the generic
    ``--read NAME.KEY=VALUE (`run`; ...)`` and the single-file flags (``--format nifti``) become ``--read
    gen.KEY=VALUE``, so each hint is a flag ``run`` accepts as printed."""
    text = _GENERIC_HINT.sub(lambda m: option_hint(m.group("k"), m.group("v"), folder), text)
    return _FILE_FLAG.sub(lambda m: option_hint(m.group("k"), m.group("v"), folder), text)


def folder_name(method: str) -> str:
    """A volume's folder as ``--read`` names it: the method, or ``reference`` for GT."""
    return "reference" if method == GT else method


def _as_read(read: ReadOptions | str) -> ReadOptions:
    return ReadOptions(format=read) if isinstance(read, str) else read


class Reader:
    """Reads volumes and label maps, keeping the last two decoded volumes in memory (tasks are ordered
    by case, so a case's reference is decoded once for all methods).

    With ``prefetch=True`` (the serial runner), :meth:`prefetch` decodes the next task's volumes on one
    background thread while the current task's metrics run: file reading and gzip/NIfTI/DICOM decoding
    overlap with the metric compute. The volume read ahead is exactly the one read later (same path,
    same reading options); a read error raised ahead is raised again where the volume is asked for, so
    the error rows are those of a run without prefetch. Cost: one more decoded volume in memory. A
    volume read onto its reference's grid (``spacing`` / ``layout = reference``) is not read ahead.
    """

    def __init__(self, prefetch: bool = False) -> None:
        self._cache: dict[str, Any] = {}  # insertion order = age; at most 2 entries
        self._pending: dict[str, Future] = {}
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="trace-bench-prefetch") if prefetch else None

    @staticmethod
    def _read(path: Path, read: ReadOptions, reference: Any = None):
        from baselines.base import read_with_options

        return read_with_options(path, read, reference=reference if read.uses_reference else None)

    @staticmethod
    def _key(path: Path, read: ReadOptions, reference: Any = None) -> str:
        ref = "" if reference is None else f"@{(getattr(reference, 'meta', None) or {}).get('path', id(reference))}"
        opts = read.describe() if len(read.key()) > 1 else read.format  # plain reads: ``format:path``
        return f"{opts}:{path}{ref}"

    def prefetch(self, items: list[tuple[Path, ReadOptions | str]]) -> None:
        """Start decoding ``(path, reading options or format)`` items in the background (no-op without
        prefetch). Volumes read ahead earlier but not among ``items`` (their task failed before reading
        them) are dropped, so at most the current and the next task's volumes are held."""
        if self._pool is None:
            return
        wanted = {self._key(path, r): (path, r) for path, r in ((p, _as_read(r)) for p, r in items)
                  if not r.uses_reference}
        for k in [k for k in self._pending if k not in wanted]:
            self._pending.pop(k).cancel()
        for k, (path, read) in wanted.items():
            if k not in self._cache and k not in self._pending:
                self._pending[k] = self._pool.submit(self._read, path, read)

    def volume(self, path: Path, read: ReadOptions | str, reference: Any = None):
        """The decoded volume (``reference``: the paired reference volume, for ``reference`` reading options)."""
        read = _as_read(read)
        k = self._key(path, read, reference if read.uses_reference else None)
        if k in self._cache:
            return self._cache[k]
        fut = self._pending.pop(k, None)
        v = fut.result() if fut is not None else self._read(path, read, reference)
        self._cache[k] = v
        while len(self._cache) > 2:
            self._cache.pop(next(iter(self._cache)))
        return v

    def pending(self) -> list[str]:
        """Keys (``format:path``; with reading options ``format=..., convention=...:path``) of the volumes
        being read ahead and not yet asked for."""
        return list(self._pending)

    def close(self) -> None:
        """Stop reading ahead and drop every volume held (they are released as soon as scored)."""
        if self._pool is not None:
            for f in self._pending.values():
                f.cancel()
            self._pool.shutdown(wait=True)
            self._pending.clear()
        self._cache.clear()

    @staticmethod
    def labels(path: Path | None):
        from ..io import read_label_map

        return None if path is None else read_label_map(path)


def task_files(plan: Plan, method: str, case: Case, entries: list[Entry]) -> list[tuple[Path, ReadOptions]]:
    """The ``(path, reading options)`` volumes :func:`process_task` will read for this task (for prefetching)."""
    cf = case.reference if method == GT else case.generated.get(method)
    files = [] if cf is None else [(cf.path, plan.folder(method).read)]
    if method != GT and case.reference is not None and needs_reference_volume(plan, method, entries):
        files.append((case.reference.path, plan.folder(GT).read))
    return files


def needs_reference_volume(plan: Plan, method: str, entries: list[Entry]) -> bool:
    """Whether a generated volume's task reads its reference: a reference-based metric, the plot
    artifact, or reading options that take the reference's grid."""
    metrics = {m.name: m for m in plan.metrics}
    return plan.folder(method).read.uses_reference or any(
        e.kind == "artifact" or metrics[e.metric].needs_reference for e in entries)


def _adapter_warnings(vol: Any, what: str, folder: str) -> list[str]:
    meta = getattr(vol, "meta", None) or {}
    return [f"{what}: {run_hints(w, folder)}" for w in meta.get("warnings", [])]


def geometry_warnings(vol: Any, ref: Any, policy: str, method: str) -> list[str]:
    """Warnings of the geometry policy for ``method``'s volume against its reference (raises the
    policy's refusal as a :class:`~trace_bench.errors.TraceBenchError`); hints name ``method``'s folder
    (``--read METHOD.layout=...``) and the reference's (``--read reference....``)."""
    from ..geometry import check_geometry

    return [f"geometry: {w}" for w in check_geometry(vol, ref, policy, names=(method, "reference"))]


class TaskInputs:
    """The volumes of one task: the volume, its label map, and (when needed) its reference and the
    geometry check's outcome. A failure to read is kept, not raised: it becomes error records."""

    def __init__(self, plan: Plan, method: str, case: Case, entries: list[Entry], reader: Reader) -> None:
        self.vol = self.mask = self.ref = self.ref_mask = None
        self.read_err: BaseException | None = None
        self.ref_err: BaseException | None = None
        self.geo_err: BaseException | None = None
        self.geo_warnings: list[str] = []
        read = plan.folder(method).read
        if method != GT and case.reference is not None and needs_reference_volume(plan, method, entries):
            try:
                self.ref = reader.volume(case.reference.path, plan.folder(GT).read)
                self.ref_mask = reader.labels(case.reference_mask)
            except Exception as err:  # noqa: BLE001
                self.ref_err = err
        cf = case.reference if method == GT else case.generated[method]
        try:
            if read.uses_reference and self.ref is None:
                raise self.ref_err or ConfigError("reference volume unavailable")
            self.vol = reader.volume(cf.path, read, self.ref)  # type: ignore[union-attr]
            self.mask = reader.labels(case.reference_mask if method == GT else case.method_masks.get(method))
        except Exception as err:  # noqa: BLE001 - one bad file never stops the run
            self.read_err = err
            return
        if self.ref is not None:
            try:
                self.geo_warnings = geometry_warnings(self.vol, self.ref, plan.config.geometry, method)
            except TraceBenchError as err:
                self.geo_err = err


def process_task(plan: Plan, method: str, case: Case, entries: list[Entry], reader: Reader | None = None) -> int:
    """Run the given entries of one volume; write one file per entry. Returns the number written."""
    out, ctx = plan.out, plan.ctx
    metrics = {m.name: m for m in plan.metrics}
    got = TaskInputs(plan, method, case, entries, reader or Reader())
    if got.read_err is not None:
        failed = folder_name(GT) if got.read_err is got.ref_err else folder_name(method)
        for e in entries:
            write_error(out, e, "read", error_text(got.read_err, failed))
        return len(entries)
    warnings = _adapter_warnings(got.vol, "read", folder_name(method))
    data = CaseData(method=method, case_id=case.case_id, volume=got.vol, reference=got.ref, prompt=case.prompt,
                    protocol=ctx.protocol, mask=got.mask, reference_mask=got.ref_mask if method != GT else None,
                    device=ctx.device)
    n = 0
    for e in entries:
        if e.kind == "artifact":
            continue
        metric = metrics[e.metric]
        n += 1
        paired = metric.needs_reference and method != GT
        if paired and got.ref is None:
            why = got.ref_err or ConfigError("reference volume unavailable")
            write_error(out, e, "read reference", error_text(why, folder_name(GT)))
            continue
        if paired and got.geo_err is not None:
            write_error(out, e, "geometry", error_text(got.geo_err))
            continue
        if metric.needs_prompt and not case.prompt:
            write_error(out, e, f"metric:{metric.name}", f"no prompt for case {case.case_id!r}")
            continue
        record_warnings = warnings + (got.geo_warnings if paired else [])
        t0 = time.perf_counter()
        mark = len(data.warnings)  # what this metric notices about the volume (CaseData.warn) goes with its record
        try:
            if metric.kind == "case":
                values = metric.case_values(data, ctx)
                write_values(out, e, values, protocol=metric.protocol_id(ctx), seconds=time.perf_counter() - t0,
                             warnings=record_warnings + data.warnings[mark:],
                             spacing=tuple(float(x) for x in got.vol.spacing))
            else:
                state = metric.case_state(data, ctx)
                write_state(out, e, state, warnings=record_warnings + data.warnings[mark:],
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


def _case_units(groups: list[tuple[str, str, list[Entry]]]) -> list[list[tuple[str, str, list[Entry]]]]:
    """The tasks grouped by case, in order: a worker thread scores one case's volumes after each other
    with one :class:`Reader`, so the reference is decoded once for all methods and released with the case."""
    units: dict[str, list[tuple[str, str, list[Entry]]]] = {}
    for g in groups:
        units.setdefault(g[1], []).append(g)
    return list(units.values())


def _run_unit(plan: Plan, unit: list[tuple[str, str, list[Entry]]]) -> list[tuple[str, int]]:
    """One case's tasks in this thread; returns ``(method, entries written)`` per task."""
    reader = Reader()
    try:
        return [(m, process_task(plan, m, plan.pairing.case(c), es, reader)) for m, c, es in unit]
    finally:
        reader.close()


#: how ``-j N`` runs the per-case stage: ``threads`` (default) or ``processes`` (``TRACE_BENCH_WORKERS``)
WORKER_KINDS = ("threads", "processes")


def worker_kind() -> str:
    """``threads`` unless ``TRACE_BENCH_WORKERS=processes``.

    Threads, measured (``benchmarks/bench_workers.py``): the per-case work is numpy / scipy / torch /
    zlib code that releases the GIL for most of its time, the models, label-map cache and imports are
    shared (one copy, not one per worker), and the peak memory grows by the volumes in flight only; spawned
    processes each import torch and the metrics again and hold their own copies (about 1.9 GB each on
    512^2 CT). Processes remain for plug-in metrics that are not thread-safe."""
    kind = os.environ.get("TRACE_BENCH_WORKERS", "threads").strip().lower() or "threads"
    if kind not in WORKER_KINDS:
        raise ConfigError(f"TRACE_BENCH_WORKERS={kind!r}: expected one of {', '.join(WORKER_KINDS)}")
    return kind


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


def record_states(out: Path, entries: list[Entry] | tuple[Entry, ...]) -> dict[Entry, tuple[str, str]]:
    """``{entry: (state of its result record, state of its error record)}`` (:func:`check_record`: each
    record read and its checksum and key verified once)."""
    states: dict[Entry, tuple[str, str]] = {}
    for e in entries:
        res = check_record(entry_path(out, e), e.key)
        ep = error_path(out, e)
        err = check_record(ep, e.key) if ep.is_file() else RECORD_MISSING
        states[e] = (res, err)
    return states


def corrupt_of(states: dict[Entry, tuple[str, str]], out: Path) -> list[tuple[Entry, Path]]:
    """The records (results or errors) that carry their entry's key but fail their checksum."""
    bad = []
    for e, (res, err) in states.items():
        if res == RECORD_CORRUPT:
            bad.append((e, entry_path(out, e)))
        if err == RECORD_CORRUPT:
            bad.append((e, error_path(out, e)))
    return bad


def run_cases(plan: Plan, *, console=None, prefetch: bool | None = None,
              states: dict[Entry, tuple[str, str]] | None = None) -> dict[str, Any]:
    """Stage 2: compute every entry whose result file is missing (resume = skip what is done).
    ``prefetch``: in the serial path, decode the next volume while the current one is scored
    (:class:`Reader`; None = :func:`prefetch_enabled` decides); worker processes read their own task.
    ``states``: :func:`record_states` of the plan's entries when the caller has them (else checked here)."""
    t0 = time.perf_counter()
    states = states if states is not None else record_states(plan.out, plan.entries)
    todo = [e for e in plan.entries if states[e][0] != RECORD_OK]
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
        if plan.config.workers > 1 and len(groups) > 1 and worker_kind() == "threads":
            from concurrent.futures import as_completed

            units = _case_units(groups)
            with ThreadPoolExecutor(max_workers=min(plan.config.workers, len(units)),
                                    thread_name_prefix="trace-bench-case") as ex:
                futs = [ex.submit(_run_unit, plan, u) for u in units]
                for f in as_completed(futs):
                    for m, n in f.result():
                        stats["computed"] += n
                        progress.advance(per_method[m])
                        progress.advance(overall)
                        done += 1
                        if plain is not None:
                            plain.tick(done, len(groups), "volumes")
        elif plan.config.workers > 1 and len(groups) > 1:
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
