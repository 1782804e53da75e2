"""The one run lifecycle: plan -> per-case stage -> aggregate -> provenance -> report.

:func:`run` is a plain run. Torchrun ranks (:mod:`trace_bench.run.distributed`) and shard merges
(:mod:`trace_bench.run.merge`) produce their manifest and per-case records their own way and then call the same :func:`finish`,
so the three write identical tables for identical inputs.

Every run holds the output folder's lock (:mod:`.lock`) from before planning to the end. Outputs
derived by an earlier, different run are removed before anything new is written, and the run stamp
(:mod:`trace_bench.results.stamp`) is written once the tables are complete, so ``trace-bench
report`` can tell complete, current tables from stale or truncated ones.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from ..config import RunConfig
from ..errors import ConfigError
from ..results.files import atomic_write_json, atomic_write_text
from ..results.layout import RECORD_OK, Entry
from ..results.stamp import (RUN_FILES, clear_stale_outputs, file_digest, fingerprint, read_stamp, start_stamp,
                             write_stamp)
from .aggregate import aggregate
from .console import stderr_console
from .execute import corrupt_of, record_states, run_cases
from .finish_record import finish_key, forget_finish, outputs_current, record_finish
from .lock import OutputLock
from .plan import Plan, check_out, manifest_dict, plan_run
from .provenance import build_provenance

@dataclass
class RunResult:
    out: Path
    plan: Plan | None
    stats: dict[str, Any]


def _console(console=None):
    return console or stderr_console()


def _same_text(path: Path, text: str) -> bool:
    try:
        return path.read_bytes() == text.encode("utf-8")
    except OSError:
        return False


def _same_json(path: Path, obj: Any) -> bool:
    try:
        return json.loads(path.read_text(encoding="utf-8")) == json.loads(json.dumps(obj, allow_nan=True))
    except (OSError, ValueError):
        return False


def prepare_out(out: Path, config: RunConfig, manifest: dict[str, Any], console=None) -> None:
    """Remove a different earlier run's derived outputs, then write ``config.toml`` and ``manifest.json``
    and start the stamp; a file whose content is already the one to write is left as it is (a rerun
    rewrites nothing that is unchanged)."""
    fp = fingerprint(manifest)
    removed = clear_stale_outputs(out, fp)
    if removed and console is not None:
        console.print(f"[yellow]note[/yellow]: removed the outputs of an earlier, different run in {out}: "
                      f"{', '.join(removed)} (per-case results are kept and reused where still valid)")
    changed = False
    toml = config.to_toml()
    if not _same_text(out / "config.toml", toml):
        atomic_write_text(out / "config.toml", toml)
        changed = True
    if not _same_json(out / "manifest.json", manifest):
        atomic_write_json(out / "manifest.json", manifest)
        changed = True
    st = read_stamp(out)
    named = (st or {}).get("files", {})
    if changed or st is None or st.get("fingerprint") != fp or any(
            (out / n).is_file() and named.get(n) != file_digest(out / n) for n in RUN_FILES):
        start_stamp(out, fp)


def finish(out: Path, config: RunConfig, manifest: dict[str, Any], provenance: Callable[[dict[str, float]], dict[str, Any]],
           *, report: bool = True, console=None, t0: float | None = None,
           timings: dict[str, float] | None = None) -> dict[str, Any]:
    """Aggregate, stamp, provenance and report for a folder whose manifest and records are complete.

    ``provenance(timings)`` builds the provenance dict (plain runs, torchrun and merges differ there
    only). A shard folder (``config.shard``) gets provenance and its stamp but no tables."""
    t0 = time.perf_counter() if t0 is None else t0
    timings = dict(timings or {})
    console = _console(console)
    prepare_out(out, config, manifest, console)
    fp = fingerprint(manifest)
    if config.shard is not None:  # tables come from `trace-bench merge`
        timings["total_s"] = time.perf_counter() - t0
        atomic_write_json(out / "provenance.json", provenance(timings))
        write_stamp(out, fp)
        return {}
    if config.progress:
        console.print("[bold]aggregate[/bold]: merging states, bootstrap CIs")
    agg = aggregate(out, config.plugins)
    timings["aggregate_s"] = agg["aggregate_s"]
    write_stamp(out, fp)
    if config.train_reference:
        t1 = time.perf_counter()
        memorization_audit(out, config, console)
        timings["audit_s"] = time.perf_counter() - t1
    # the report reads provenance.json: written before it, and afterwards again with the same finish time
    # (only the report / total times, which the report does not show, are added), so that `trace-bench
    # report OUT` later renders the same files
    prov = provenance(timings)
    atomic_write_json(out / "provenance.json", prov)
    for m in agg["unscored_methods"]:
        console.print(f"[bold red]warning[/bold red]: method {m!r} has no scored case (every case failed or was "
                      f"unpaired); see {out / 'errors.csv'}")
    if report:
        if config.progress:
            console.print("[bold]report[/bold]: tables and plots")
        t1 = time.perf_counter()
        from reports import render_report

        render_report(out, plots=config.plots, published=config.published, tex_layout=config.tex_layout,
                      tex_width=config.tex_width, viewer_stacks=report_viewer_stacks(out, config, manifest, console))
        timings["report_s"] = time.perf_counter() - t1
    timings["total_s"] = time.perf_counter() - t0
    final = provenance(timings)
    if "finished_utc" in prov:
        final["finished_utc"] = prov["finished_utc"]
    atomic_write_json(out / "provenance.json", final)
    write_stamp(out, fp)
    return agg


def memorization_audit(out: Path, config: RunConfig, console=None) -> None:
    """The memorization audit of ``config.methods`` against ``config.train_reference``, calibrated on
    the reference set (:func:`trace_bench.audit.run_audit`), into ``OUT/audit/``."""
    from ..audit import run_audit

    folders = config.folders()
    if folders.reference is None or folders.train_reference is None:
        raise ConfigError("--train-reference needs --reference: the held-out real set calibrates the audit")
    if config.progress and console is not None:
        console.print("[bold]audit[/bold]: nearest training volumes and slices of every generated volume")
    run_audit(out, _pair(folders.train_reference), _pair(folders.reference),
              {m: _pair(f) for m, f in folders.methods.items()}, seed=int(config.seed))


def _pair(folder) -> tuple[str, str]:
    """The audit's (folder, adapter) form of an input folder (it reads the files with the adapter's defaults)."""
    return str(folder.path), folder.format


def report_viewer_stacks(out: Path, config: RunConfig, manifest: dict[str, Any], console=None) -> dict:
    """Slice stacks of the plot case for the HTML viewer that the per-case stage did not store with the
    plot inputs, read again from the inputs (normally none: see :mod:`.artifacts`; optional: the report
    says when they are missing)."""
    pc = manifest.get("plot_case")
    if not (config.plots and pc):
        return {}
    try:
        from ..report_inputs import viewer_stacks

        return viewer_stacks(out, [pc])
    except Exception as err:  # noqa: BLE001 - the viewer is optional; the tables are not affected
        if console is not None:
            console.print(f"[yellow]note[/yellow]: slice viewer without the input volumes ({type(err).__name__}: {err})")
        return {}


def run_plan(plan: Plan, *, console=None, report: bool = True, t0: float | None = None) -> RunResult:
    """Per-case stage and :func:`finish` for a plan (the caller holds the output lock)."""
    t0 = time.perf_counter() if t0 is None else t0
    console = _console(console)
    manifest = manifest_dict(plan)
    states = record_states(plan.out, plan.entries)  # every record read and verified once
    manifest["integrity"] = integrity_rows(plan, console, states)
    plan.out.mkdir(parents=True, exist_ok=True)
    prepare_out(plan.out, plan.config, manifest, console)
    from reports.console import skipped_summary, terminal_width

    for line in skipped_summary(plan.skipped, width=terminal_width()):  # one grouped sentence
        console.print(line, highlight=False, markup=False)
    n_todo = sum(1 for e in plan.entries if states[e][0] != RECORD_OK)
    if plan.config.progress:
        console.print(f"[bold]per-case[/bold]: {len(plan.entries)} entries "
                      f"({len(plan.entries) - n_todo} cached), metrics: {', '.join(m.name for m in plan.metrics)}")
    stats = run_cases(plan, console=console, prefetch=plan.config.prefetch, states=states)
    key = finish_key(plan.out, manifest, plan.entries, report=report, plugins=plan.config.plugins)
    if stats["computed"] == 0 and not plan.config.train_reference and outputs_current(
            plan.out, key, fingerprint(manifest)):
        if plan.config.progress:
            console.print("[bold]finish[/bold]: every record cached and the outputs current: nothing rewritten")
        stats.update(unscored_methods=recorded_unscored(plan.out), outputs_current=True)
        return RunResult(plan.out, plan, stats)
    forget_finish(plan.out)
    agg = finish(plan.out, plan.config, manifest, lambda t: build_provenance(plan, {**t, "per_case_s": stats["per_case_s"]}),
                 report=report, console=console, t0=t0)
    record_finish(plan.out, key)
    stats.update(agg)
    return RunResult(plan.out, plan, stats)


def recorded_unscored(out: Path) -> list[str]:
    """The methods without a scored case, as the last finish recorded them (``metrics.json``)."""
    try:
        return list(json.loads((out / "metrics.json").read_text(encoding="utf-8")).get("unscored_methods", []))
    except (OSError, ValueError):
        return []


def integrity_rows(plan: Plan, console=None,
                   states: dict[Entry, tuple[str, str]] | None = None) -> list[dict[str, str]]:
    """Records of this plan that carry their entry's key but fail their checksum (edited by hand,
    truncated): they are recomputed; the run says so in one line and ``warnings.csv`` keeps a row each.
    ``states``: :func:`~.execute.record_states` of the plan's entries when the caller has them."""
    bad = corrupt_of(states if states is not None else record_states(plan.out, plan.entries), plan.out)
    if not bad:
        return []
    rows = [{"method": e.method, "case_id": e.case_id,
             "warning": f"{p.relative_to(plan.out).as_posix()}: cached record failed its checksum (edited or "
                        "corrupted); recomputed"} for e, p in bad]
    if console is not None:
        console.print(f"[yellow]note[/yellow]: {len(bad)} cached record(s) failed their checksum (edited or corrupted) "
                      f"and are recomputed: {', '.join(r['warning'].split(':')[0] for r in rows[:3])}"
                      + (f" and {len(rows) - 3} more" if len(rows) > 3 else ""))
    return rows


def run(config: RunConfig, *, console=None, report: bool = True, notes: tuple[str, ...] = (),
        extra_skipped: dict[str, str] | None = None) -> RunResult:
    """Lock the output folder, plan, compute (resuming), aggregate, write provenance, render the reports.

    With ``config.shard = "I/N"`` only that shard's cases are scored and no tables are written
    (``trace-bench merge`` combines the shards)."""
    t0 = time.perf_counter()
    check_out(config)  # before the lock creates OUT/.trace-bench
    with OutputLock(config.out):
        plan = plan_run(config, notes=notes, extra_skipped=extra_skipped)
        return run_plan(plan, console=console, report=report, t0=t0)


def nothing_scored(result: RunResult) -> bool:
    """No method scored any case (every generated volume failed or was unpaired): the run failed."""
    if result.plan is not None and result.plan.config.shard is not None:
        return False
    meta = result.stats
    methods = [m for m in (result.plan.methods if result.plan is not None else [])]
    unscored = set(meta.get("unscored_methods", []))
    return bool(methods) and all(m in unscored for m in methods)


def strict_failures(result: RunResult) -> list[str]:
    """Why ``--strict`` fails this run: error rows and methods with no scored case."""
    from ..results.tables import load_results

    if result.plan is not None and result.plan.config.shard is not None:
        return []
    res = load_results(result.out)
    out = []
    if len(res.errors):
        out.append(f"{len(res.errors)} error row(s) in {result.out / 'errors.csv'}")
    for m in result.stats.get("unscored_methods", []):
        out.append(f"method {m!r} has no scored case")
    return out
