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

import numpy as np
from pathlib import Path
from typing import Any

from ..config import RunConfig
from ..metrics.base import METRICS
from ..results.files import atomic_write_json, atomic_write_npz, stable_seed, write_csv
from ..results.layout import (Entry, entry_path, error_path, load_state, load_warnings, safe_name, stored_key)
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


def aggregate(out: str | Path) -> dict[str, Any]:
    """Stage 3 (see the module docstring). Returns row counts and the time it took."""
    t0 = time.perf_counter()
    out = Path(out)
    man = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    cfg = RunConfig(**man["config"])
    ctx = make_context(cfg, "cpu")  # set-level statistics run on the CPU
    load_metric_registry(cfg.plugins)
    methods: list[str] = list(man["methods"])
    order = {m: i for i, m in enumerate(methods)}
    per_case: list[tuple[str, str, str, float, str]] = []
    errors: list[tuple[str, str, str, str]] = []
    warnings: set[tuple[str, str, str, str]] = set()
    states: dict[tuple[str, str], dict[str, Any]] = {}
    case_vals: dict[tuple[str, str], list[float]] = {}
    for p in man["problems"]:
        errors.append((p["method"], p["case_id"], "pairing", f"{p['path']}: {p['reason']}" if p["path"] else p["reason"]))
    for d in man["entries"]:
        e = Entry(**d)
        rp, ep = entry_path(out, e), error_path(out, e)
        if e.kind == "artifact":
            continue
        if rp.is_file() and stored_key(rp) == e.key:
            if e.kind == "case":
                rec = json.loads(rp.read_text(encoding="utf-8"))
                for col, v in sorted(rec["values"].items()):
                    per_case.append((e.method, e.case_id, col, float(v), rec.get("protocol", "")))
            else:
                states.setdefault((e.method, e.metric), {})[e.case_id] = load_state(rp)
            for w in load_warnings(rp):
                stage, _, text = w.partition(": ")
                warnings.add((e.method, e.case_id, stage if text else "read", text or w))
        elif ep.is_file() and stored_key(ep) == e.key:
            rec = json.loads(ep.read_text(encoding="utf-8"))
            errors.append((e.method, e.case_id, rec["stage"], rec["error"]))
        else:
            errors.append((e.method, e.case_id, f"metric:{e.metric}", "not computed (run interrupted? rerun the same command to resume)"))
    for m, c, col, v, _ in per_case:
        case_vals.setdefault((m, col), []).append(v)

    summary: list[tuple] = []
    boot = f"bootstrap-percentile:{cfg.bootstrap}" if cfg.bootstrap > 0 else "none"
    for (m, col), vals in case_vals.items():
        mean, n = mean_finite_or_inf(vals)
        lo, hi = bootstrap_ci(vals, n_boot=cfg.bootstrap, confidence=cfg.confidence, seed=stable_seed(cfg.seed, m, col))
        ok = cfg.bootstrap if n >= 2 else 0
        summary.append((m, col, mean, lo, hi, n, boot if ok else "none", ok, small_n_note(n)))

    stats_dir = out / "stats"
    for name, info in sorted(man["metrics"].items()):
        if info["kind"] != "distribution":
            continue
        metric = METRICS.get(name)(info.get("options") or {})
        ref_states = states.get((GT, name), {})
        for m in methods:
            if m == GT and info["needs_reference"]:
                continue
            if m == GT:  # the GT/GT floor: one half of the reference set against the other
                gen, ref = split_half_states(ref_states, cfg.seed)
                if not gen or not ref:
                    continue
                floor = f"GT/GT floor: reference split in half by case ({len(gen)} vs {len(ref)} cases)"
            else:
                gen, ref, floor = states.get((m, name), {}), ref_states, ""
            if not gen:
                continue
            try:
                g_state = metric.merge([gen[c] for c in sorted(gen)])
                r_state = metric.merge([ref[c] for c in sorted(ref)]) if ref else {}
                vals = metric.compute(g_state, r_state, ctx)
            except Exception as err:  # noqa: BLE001
                errors.append((m, ALL_CASES, f"metric:{name}", f"{type(err).__name__}: {err}"))
                continue
            if m != GT:  # GT_{metric}.npz holds the whole reference set (below), not a half
                atomic_write_npz(stats_dir / f"{safe_name(m)}_{name}.npz", metric.export_stats(g_state))
            info_n = metric.sample_info(g_state)
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
                lo, hi, ok, tried = two_sample_jackknife_ci(float(v), g_groups, r_groups, recompute,
                                                            confidence=cfg.confidence)
                notes = [x for x in (floor, small_n_note(min(len(g_groups), len(r_groups) if ref else len(g_groups))),
                                     sample_note(info_n), f"{tried - ok} of {tried} leave-out evaluations failed"
                                     if ok < tried else "") if x]
                per_case.append((m, ALL_CASES, col, float(v), info["protocol"]))
                summary.append((m, col, float(v), lo, hi, len(gen), f"jackknife-2sample-t:{len(g_groups)}+{len(r_groups)}"
                                if np.isfinite(lo) else "none", ok, "; ".join(notes)))
    for name in sorted({k[1] for k in states if k[0] == GT}):  # the reference side's statistics
        metric = METRICS.get(name)(man["metrics"].get(name, {}).get("options") or {})
        g = states[(GT, name)]
        atomic_write_npz(stats_dir / f"{GT}_{name}.npz",
                         metric.export_stats(metric.merge([g[c] for c in sorted(g)])))

    for m, prof in man["profiles"].items():
        rows = [("fps", prof.get("fps")), ("vram", prof.get("inference_peak_bytes")), ("vram_train", prof.get("train_peak_bytes"))]
        for col, v in rows:
            if v is None:
                continue
            src = f"profile: {prof.get('device', 'unknown device')}"
            per_case.append((m, PROFILE_CASE, col, float(v), src))
            summary.append((m, col, float(v), float("nan"), float("nan"), 1, "none", 0, "measured once"))
        if m not in order:
            order[m] = len(order)
            methods.append(m)

    def mkey(m: str) -> int:
        return order.get(m, len(order))

    per_case.sort(key=lambda r: (mkey(r[0]), r[0], r[1], r[2]))
    summary.sort(key=lambda r: (mkey(r[0]), r[0], r[1]))
    errors = sorted(set(errors), key=lambda r: (mkey(r[0]), r[0], r[1], r[2], r[3]))
    warn_rows = sorted(warnings, key=lambda r: (mkey(r[0]), r[0], r[1], r[2], r[3]))
    write_csv(out / "per_case.csv", PER_CASE_COLUMNS, per_case)
    write_csv(out / "summary.csv", SUMMARY_COLUMNS, summary)
    write_csv(out / "errors.csv", ERROR_COLUMNS, errors)
    write_csv(out / "warnings.csv", WARNING_COLUMNS, warn_rows)
    columns = dict(man["columns"])
    for col, info in PROFILE_METRICS.items():
        if any(r[1] == col for r in summary):
            columns[col] = info.to_dict()
    extra = sorted({r[1] for r in summary} - set(columns))
    for col in extra:  # per-class columns inherit their family's info
        base = col.split("[", 1)[0]
        if base in columns:
            columns[col] = dict(columns[base], label=f"{columns[base].get('label') or base}{col[len(base):]}")
    scored = {m for m, *_ in summary}
    unscored = [m for m in methods if m not in scored and m in order and m not in man["profiles"]]
    atomic_write_json(out / "metrics.json", {"methods": methods, "columns": columns, "skipped": man["skipped"],
                                             "plot_case": man.get("plot_case"),
                                             "segmenter": cfg.segmenter, "classes": cfg.classes,
                                             "unscored_methods": unscored})
    return {"per_case_rows": len(per_case), "summary_rows": len(summary), "errors": len(errors),
            "warnings": len(warn_rows), "unscored_methods": unscored, "aggregate_s": time.perf_counter() - t0}
