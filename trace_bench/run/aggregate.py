"""Stage 3, aggregate: read ``manifest.json`` and the per-case records only; write the tables.

per-case metrics: value = mean over cases (NaN values skipped, counted in ``n``), CI = seeded
percentile bootstrap of the mean (``ci_method`` ``bootstrap-percentile:B``).

distribution metrics: value = ``compute(merge(method states), merge(GT states))`` on the full sample;
CI = two-sample jackknife t-interval over cases (:func:`~trace_bench.results.stats.two_sample_jackknife_ci`;
``ci_method`` ``jackknife-2sample-t:G+H`` with the numbers of leave-out groups, ``n_resamples_ok`` the
leave-out evaluations that succeeded). Resampling cases with replacement is not used for them: a
duplicated case duplicates its slices and inflates a Fréchet distance. The GT row of a distribution
metric is the split-half floor (one half of the reference cases against the other), never the
reference set against itself. ``note`` flags small samples (few cases; fewer feature vectors than
dimensions).
Deterministic: byte-identical on rerun, resume, sharded merge and torchrun.

Writes ``per_case.csv``, ``summary.csv``, ``errors.csv``, ``warnings.csv``, ``metrics.json`` and ``stats/``.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from ..config import RunConfig
from ..metrics.base import METRICS
from ..results.files import atomic_write_json, atomic_write_npz, stable_seed, write_csv
from ..results.layout import (RECORD_OK, Entry, check_record, entry_path, error_path, load_state, load_warnings,
                              safe_name)
from ..results.stamp import TABLE_FILES, add_to_stamp
from ..results.stats import (bootstrap_ci, jackknife_groups, mean_finite_or_inf, split_half,
                             two_sample_jackknife_ci)
from ..results.tables import (ALL_CASES, ERROR_COLUMNS, GT, PER_CASE_COLUMNS, PROFILE_CASE, PROFILE_METRICS,
                              SUMMARY_COLUMNS, WARNING_COLUMNS)
from .plan import make_context
from .select import load_metric_registry


#: fewer cases than this: the interval is flagged as unreliable in summary.csv and the report
MIN_CASES = 10


def small_n_note(n: int) -> str:
    """A warning for intervals over few cases (empty when n is large enough)."""
    if n < 2:
        return f"n = {n}: no interval possible"
    if n < MIN_CASES:
        return f"only {n} cases: treat the interval as a rough guide"
    return ""


def sample_note(info: dict[str, int]) -> str:
    """A warning when a Fréchet-type estimate has fewer samples than feature dimensions."""
    n, d = info.get("samples"), info.get("dim")
    if n is not None and d is not None and n < d:
        return f"{n} samples < {d} feature dimensions: the estimate is dominated by its bias (compare KID)"
    return ""


def split_half_states(ref: dict[str, Any], seed: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """The reference cases' states split in two halves (:func:`~trace_bench.results.stats.split_half`)."""
    a, b = split_half(sorted(ref), seed)
    return {c: ref[c] for c in a}, {c: ref[c] for c in b}


@dataclass
class Rows:
    """The rows the aggregate stage collects before writing its tables."""

    per_case: list[tuple[str, str, str, float, str]] = field(default_factory=list)
    summary: list[tuple] = field(default_factory=list)
    errors: list[tuple[str, str, str, str]] = field(default_factory=list)
    warnings: set[tuple[str, str, str, str]] = field(default_factory=set)
    #: (method, metric) -> case id -> a distribution metric's per-case state
    states: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    #: (method, case id, metric) -> the scored volume's spacing (z, y, x), from per-case records
    spacing: dict[tuple[str, str, str], list[float]] = field(default_factory=dict)


def aggregate(out: str | Path, plugins: Iterable[str] = ()) -> dict[str, Any]:
    """Stage 3 (see the module docstring). Returns row counts and the time it took.

    ``plugins``: the metric plug-ins to import (those of the run, named by the user); plug-ins named
    in a manifest are never imported from it. Stages: :func:`collect_records` ->
    :func:`case_metric_rows` -> :func:`distribution_metric_rows` -> :func:`profile_rows` -> :func:`write_tables`."""
    t0 = time.perf_counter()
    out = Path(out)
    man = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    cfg = RunConfig(**man["config"])
    load_metric_registry(plugins)
    methods: list[str] = list(man["methods"])
    rows = collect_records(out, man)
    slice_spacing_warnings(rows, man, cfg)
    case_metric_rows(rows, cfg)
    distribution_metric_rows(rows, man, methods, cfg, out / "stats")
    reference_stats(rows, man, out / "stats")
    profile_rows(rows, man, methods)
    meta = write_tables(out, rows, man, methods, cfg)
    stats = sorted(f"stats/{p.name}" for p in (out / "stats").glob("*.npz")) if (out / "stats").is_dir() else []
    add_to_stamp(out, list(TABLE_FILES) + stats)  # what this stage wrote is the run's (never the user's)
    return {"per_case_rows": len(rows.per_case), "summary_rows": len(rows.summary), "errors": len(rows.errors),
            "warnings": len(rows.warnings), "unscored_methods": meta["unscored_methods"],
            "aggregate_s": time.perf_counter() - t0}


def collect_records(out: Path, man: dict[str, Any]) -> Rows:
    """Pairing problems, per-case values, states, recorded errors and warnings of every manifest entry
    (an entry without a sound record with its key is an error row: not computed)."""
    rows = Rows()
    for p in man["problems"]:
        reason = f"{p['path']}: {p['reason']}" if p["path"] else p["reason"]
        rows.errors.append((p["method"], p["case_id"], "pairing", reason))
    for r in man.get("integrity", []):
        rows.warnings.add((r["method"], r["case_id"], "cache", r["warning"]))
    for d in man["entries"]:
        e = Entry(**d)
        if e.kind == "artifact":
            continue
        rp, ep = entry_path(out, e), error_path(out, e)
        if check_record(rp, e.key) == RECORD_OK:
            if e.kind == "case":
                rec = json.loads(rp.read_text(encoding="utf-8"))
                for col, v in sorted(rec["values"].items()):
                    rows.per_case.append((e.method, e.case_id, col, float(v), rec.get("protocol", "")))
                if isinstance(rec.get("spacing"), list) and len(rec["spacing"]) == 3:
                    rows.spacing[(e.method, e.case_id, e.metric)] = [float(x) for x in rec["spacing"]]
            else:
                rows.states.setdefault((e.method, e.metric), {})[e.case_id] = load_state(rp)
            for w in load_warnings(rp):
                stage, _, text = w.partition(": ")
                rows.warnings.add((e.method, e.case_id, stage if text else "read", text or w))
        elif check_record(ep, e.key) == RECORD_OK:
            rec = json.loads(ep.read_text(encoding="utf-8"))
            rows.errors.append((e.method, e.case_id, rec["stage"], rec["error"]))
        else:
            rows.errors.append((e.method, e.case_id, f"metric:{e.metric}",
                                "not computed (run interrupted? rerun the same command to resume)"))
    return rows


def slice_metrics(man: dict[str, Any], cfg: RunConfig) -> list[str]:
    """Per-volume metrics whose value depends on the slice spacing: they score the frames of the frame
    protocol (the VBench dimensions, temporal flickering: their protocol id starts with the frame
    protocol's) and do not map the volume onto its reference's grid."""
    frames = make_context(cfg).protocol.id
    return sorted(n for n, info in man["metrics"].items() if info["kind"] == "case" and not info["needs_reference"]
                  and str(info.get("protocol", "")).startswith(frames))


def slice_spacing_warnings(rows: Rows, man: dict[str, Any], cfg: RunConfig) -> None:
    """A warning per generated volume whose z spacing differs from its reference case's (more than
    ``geometry.SPACING_RTOL``) when slice-based per-volume metrics scored it: their values then
    describe other slice distances than GT's and are not comparable with its row. Warned, not
    resampled: resampling along z would change the frames every published VBench number is defined on."""
    from ..geometry import SPACING_RTOL

    names = slice_metrics(man, cfg)
    for (m, c, name), sp in sorted(rows.spacing.items()):
        if m == GT or name not in names:
            continue
        ref = rows.spacing.get((GT, c, name))
        if ref is None:
            continue
        if abs(sp[0] - ref[0]) > SPACING_RTOL * max(abs(sp[0]), abs(ref[0])):
            which = ", ".join(n for n in names if (m, c, n) in rows.spacing)
            rows.warnings.add((m, c, "spacing", f"z spacing {sp[0]:g} mm differs from the reference case's {ref[0]:g} "
                                                f"mm: {which} are computed over slices and not comparable with GT's"))


def case_metric_rows(rows: Rows, cfg: RunConfig) -> None:
    """Per-case metrics: the mean over cases with its seeded percentile-bootstrap interval."""
    case_vals: dict[tuple[str, str], list[float]] = {}
    for m, c, col, v, _ in rows.per_case:
        case_vals.setdefault((m, col), []).append(v)
    boot = f"bootstrap-percentile:{cfg.bootstrap}" if cfg.bootstrap > 0 else "none"
    for (m, col), vals in case_vals.items():
        mean, n = mean_finite_or_inf(vals)
        lo, hi = bootstrap_ci(vals, n_boot=cfg.bootstrap, confidence=cfg.confidence, seed=stable_seed(cfg.seed, m, col))
        ok = cfg.bootstrap if n >= 2 else 0
        rows.summary.append((m, col, mean, lo, hi, n, boot if ok else "none", ok, small_n_note(n)))


def distribution_metric_rows(rows: Rows, man: dict[str, Any], methods: list[str], cfg: RunConfig,
                             stats_dir: Path) -> None:
    """Distribution metrics: every method's merged states against the reference set's (GT: the split-half floor)."""
    ctx = make_context(cfg, "cpu")  # set-level statistics run on the CPU
    for name, info in sorted(man["metrics"].items()):
        if info["kind"] != "distribution":
            continue
        metric = METRICS.get(name)(info.get("options") or {})
        ref_states = rows.states.get((GT, name), {})
        for m in methods:
            if m == GT and info["needs_reference"]:
                continue
            if m == GT:  # the GT/GT floor: one half of the reference set against the other
                gen, ref = split_half_states(ref_states, cfg.seed)
                if not gen or not ref:
                    continue
                floor = f"GT/GT floor: reference split in half by case ({len(gen)} vs {len(ref)} cases)"
            else:
                gen, ref, floor = rows.states.get((m, name), {}), ref_states, ""
            if gen:
                set_level_rows(rows, metric, m, gen, ref, floor, info["protocol"], cfg, ctx, stats_dir)


def set_level_rows(rows: Rows, metric: Any, m: str, gen: dict[str, Any], ref: dict[str, Any], floor: str,
                   protocol: str, cfg: RunConfig, ctx: Any, stats_dir: Path) -> None:
    """One method's set-level values of a distribution metric with their two-sample jackknife intervals."""
    name = metric.name
    try:
        g_state = metric.merge([gen[c] for c in sorted(gen)])
        r_state = metric.merge([ref[c] for c in sorted(ref)]) if ref else {}
        vals = metric.compute(g_state, r_state, ctx)
    except Exception as err:  # noqa: BLE001
        rows.errors.append((m, ALL_CASES, f"metric:{name}", f"{type(err).__name__}: {err}"))
        return
    if m != GT:  # GT_{metric}.npz holds the whole reference set (reference_stats), not a half
        atomic_write_npz(stats_dir / f"{safe_name(m)}_{name}.npz", metric.export_stats(g_state))
    info_n = metric.sample_info(g_state)
    why = metric.value_notes(g_state, r_state, ctx)  # column -> why it is NaN (e.g. too few volumes)
    g_groups = jackknife_groups(sorted(gen), cfg.jackknife_groups, cfg.seed)
    r_groups = jackknife_groups(sorted(ref), cfg.jackknife_groups, cfg.seed) if ref else []
    memo: dict[tuple, dict[str, float]] = {}  # every column from one recomputation per leave-out

    def leave_out(gi: tuple[str, ...], ri: tuple[str, ...]) -> dict[str, float]:
        if (gi, ri) not in memo:
            gs = metric.merge([gen[c] for c in gi])
            rs = metric.merge([ref[c] for c in ri]) if ri else {}
            memo[(gi, ri)] = metric.compute(gs, rs, ctx)
        return memo[(gi, ri)]

    for col, v in sorted(vals.items()):
        def recompute(gi: tuple[str, ...], ri: tuple[str, ...], _col=col) -> float:
            return leave_out(gi, ri)[_col]
        lo, hi, ok, tried = two_sample_jackknife_ci(float(v), g_groups, r_groups, recompute, confidence=cfg.confidence)
        notes = [x for x in (floor, why.get(col, ""), small_n_note(min(len(g_groups), len(r_groups) if ref else len(g_groups))),
                             sample_note(info_n), f"{tried - ok} of {tried} leave-out evaluations failed"
                             if ok < tried else "") if x]
        rows.per_case.append((m, ALL_CASES, col, float(v), protocol))
        rows.summary.append((m, col, float(v), lo, hi, len(gen), f"jackknife-2sample-t:{len(g_groups)}+{len(r_groups)}"
                             if np.isfinite(lo) else "none", ok, "; ".join(notes)))


def reference_stats(rows: Rows, man: dict[str, Any], stats_dir: Path) -> None:
    """``stats/GT_<metric>.npz``: the whole reference set's statistics of every distribution metric."""
    for name in sorted({k[1] for k in rows.states if k[0] == GT}):
        metric = METRICS.get(name)(man["metrics"].get(name, {}).get("options") or {})
        g = rows.states[(GT, name)]
        atomic_write_npz(stats_dir / f"{GT}_{name}.npz", metric.export_stats(metric.merge([g[c] for c in sorted(g)])))


def profile_rows(rows: Rows, man: dict[str, Any], methods: list[str]) -> None:
    """FPS and VRAM rows of the methods with a profile (a profiled method without volumes is added last)."""
    for m, prof in man["profiles"].items():
        for col, v in (("fps", prof.get("fps")), ("vram", prof.get("inference_peak_bytes")),
                       ("vram_train", prof.get("train_peak_bytes"))):
            if v is None:
                continue
            rows.per_case.append((m, PROFILE_CASE, col, float(v), f"profile: {prof.get('device', 'unknown device')}"))
            rows.summary.append((m, col, float(v), float("nan"), float("nan"), 1, "none", 0, "measured once"))
        if m not in methods:
            methods.append(m)


def unscored_methods(rows: Rows, man: dict[str, Any], methods: list[str]) -> list[str]:
    """Methods with no summary row. The reference (GT) counts only when some entry could give it a row:
    a run of reference-based per-case metrics (segmentation only) has no GT row by design."""
    scored = {r[0] for r in rows.summary}
    gt_entries = any(d["method"] == GT and d["kind"] != "artifact" for d in man["entries"])
    return [m for m in methods if m not in scored and m not in man["profiles"] and (m != GT or gt_entries)]


def write_tables(out: Path, rows: Rows, man: dict[str, Any], methods: list[str], cfg: RunConfig) -> dict[str, Any]:
    """per_case.csv, summary.csv, errors.csv, warnings.csv and metrics.json, in a stable order."""
    order = {m: i for i, m in enumerate(methods)}

    def mkey(m: str) -> int:
        return order.get(m, len(order))

    per_case = sorted(rows.per_case, key=lambda r: (mkey(r[0]), r[0], r[1], r[2]))
    summary = sorted(rows.summary, key=lambda r: (mkey(r[0]), r[0], r[1]))
    errors = sorted(set(rows.errors), key=lambda r: (mkey(r[0]), r[0], r[1], r[2], r[3]))
    warn_rows = sorted(rows.warnings, key=lambda r: (mkey(r[0]), r[0], r[1], r[2], r[3]))
    rows.errors = errors
    write_csv(out / "per_case.csv", PER_CASE_COLUMNS, per_case)
    write_csv(out / "summary.csv", SUMMARY_COLUMNS, summary)
    write_csv(out / "errors.csv", ERROR_COLUMNS, errors)
    write_csv(out / "warnings.csv", WARNING_COLUMNS, warn_rows)
    columns = dict(man["columns"])
    for col, info in PROFILE_METRICS.items():
        if any(r[1] == col for r in summary):
            columns[col] = info.to_dict()
    for col in sorted({r[1] for r in summary} - set(columns)):  # per-class columns inherit their family's info
        base = col.split("[", 1)[0]
        if base in columns:
            columns[col] = dict(columns[base], label=f"{columns[base].get('label') or base}{col[len(base):]}")
    meta = {"methods": methods, "columns": columns, "skipped": man["skipped"], "plot_case": man.get("plot_case"),
            "segmenter": cfg.segmenter, "classes": cfg.classes,
            "unscored_methods": unscored_methods(rows, man, methods)}
    atomic_write_json(out / "metrics.json", meta)
    return meta
