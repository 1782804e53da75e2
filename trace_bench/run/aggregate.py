"""Stage 3, aggregate: read ``manifest.json`` and the per-case records only; write the tables.

per-case metrics: value = mean over cases (NaN values skipped, counted in ``n``), CI = seeded
percentile bootstrap of the mean (``ci_method`` ``bootstrap-percentile:B``).

distribution metrics: value = ``compute(merge(method states), merge(GT states))`` on the full sample;
CI = two-sample jackknife t-interval over cases (:func:`~trace_bench.results.stats.two_sample_jackknife`: an
interval of the estimator's expected value at these sample sizes, not of the distance itself; ``ci_flag``
``heavy-tailed`` where its leave-out estimates say its coverage is poor;
``ci_method`` ``jackknife-2sample-t:G+H`` with the numbers of leave-out groups, ``n_resamples_ok`` the
leave-out evaluations that succeeded). Resampling cases with replacement is not used for them: a
duplicated case duplicates its slices and inflates a Fréchet distance. Like with like: the GT/GT floor
(the reference's halves A and B by case against each other, both ways averaged) is in the columns
``<column>_half``, beside every method's half-vs-half value (its A cases against the reference's B and
its B cases against A, averaged; :func:`~trace_bench.results.stats.cross_halves`): the same sample sizes,
so a perfect generator's expected value equals the floor's. The full-sample columns have no GT row (no
split of the reference has their sample sizes). Fewer than ``MIN_HALF_CASES`` reference cases per half:
no floor and no half-vs-half values, the methods' rows say so in their note. ``note`` flags small samples
(few cases; fewer feature vectors than dimensions).
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
from ..results.stats import (HEAVY_TAIL_KURTOSIS, HEAVY_TAILED, MIN_HALF_CASES, bootstrap_ci, cross_halves,
                             jackknife_groups, mean_finite_or_inf, split_half, two_sample_jackknife)
from ..results.tables import (ALL_CASES, ERROR_COLUMNS, GT, HALF_SUFFIX, PER_CASE_COLUMNS, PROFILE_CASE,
                              PROFILE_METRICS, SUMMARY_COLUMNS, WARNING_COLUMNS)
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


def heavy_tail_note(kurtosis: float) -> str:
    """Why an interval carries ``ci_flag = heavy-tailed``
    (coverage simulations: tests/results/test_stats_intervals.py)."""
    return (f"heavy-tailed leave-out estimates (excess kurtosis {kurtosis:.1f} > {HEAVY_TAIL_KURTOSIS:g}): in "
            "simulations such jackknife intervals covered the estimator's expected value less often than stated "
            "(t3 features: 46-81 % for 95 %); a rough guide")


def sample_note(info: dict[str, int], n_cases: int | None = None) -> str:
    """A warning when a Fréchet-type estimate (a statistic whose ``sample_info`` gives a feature dimension)
    has fewer feature vectors than dimensions, counting the cases (volumes) behind them:
    "2 cases (109 feature vectors) < 2048 feature dimensions: ..."."""
    n, d = info.get("samples"), info.get("dim")
    if n is None or d is None or n >= d:
        return ""
    k = n_cases if n_cases is not None else info.get("volumes")
    what = f"{k} case{'s' if k != 1 else ''} ({n} feature vectors)" if k is not None else f"{n} feature vectors"
    return f"{what} < {d} feature dimensions: the estimate is dominated by its bias"


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
    #: distribution metrics without a GT/GT floor (paired, or too few reference cases per half): no GT row
    floorless: set[str] = field(default_factory=set)


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
            which = [n for n in names if (m, c, n) in rows.spacing]
            verb = "is" if len(which) == 1 else "are"
            rows.warnings.add((m, c, "spacing", f"z spacing {sp[0]:g} mm differs from the reference case's {ref[0]:g} "
                                                f"mm: {', '.join(which)} {verb} computed over slices and not comparable "
                                                "with GT's"))


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
        rows.summary.append((m, col, mean, lo, hi, n, boot if ok else "none", ok, small_n_note(n), ""))


def distribution_metric_rows(rows: Rows, man: dict[str, Any], methods: list[str], cfg: RunConfig,
                             stats_dir: Path) -> None:
    """Distribution metrics: every method's merged states against the reference set's (all cases), and, when
    each half of the reference split has :data:`MIN_HALF_CASES`, every method's half-vs-half value
    (``<column>_half``) and the GT/GT floor in the same column (:func:`~trace_bench.results.stats.cross_halves`):
    like with like. With fewer reference cases, no floor: the methods' rows say why in their note."""
    ctx = make_context(cfg, "cpu")  # set-level statistics run on the CPU
    for name, info in sorted(man["metrics"].items()):
        if info["kind"] != "distribution":
            continue
        metric = METRICS.get(name)(info.get("options") or {})
        ref_states = rows.states.get((GT, name), {})
        ref_a, ref_b = split_half(sorted(ref_states), cfg.seed)
        halves = min(len(ref_a), len(ref_b)) >= MIN_HALF_CASES
        no_floor = "" if halves or info["needs_reference"] else (
            f"no GT/GT floor: {len(ref_states)} reference case(s), at least {MIN_HALF_CASES} per half needed to "
            "compare the reference's halves (and the methods' half-vs-half values)")
        if not halves or info["needs_reference"]:
            rows.floorless.add(name)  # GT has no row of this metric (paired metrics never have one)
        first = len(rows.summary)
        for m in methods:
            if m == GT:
                if halves and not info["needs_reference"]:
                    floor_rows(rows, metric, ref_states, info["protocol"], cfg, ctx)
                continue
            gen = rows.states.get((m, name), {})
            if not gen:
                continue
            set_level_rows(rows, metric, m, gen, ref_states, info["protocol"], cfg, ctx, stats_dir, no_floor)
            if halves and not info["needs_reference"]:
                half_rows(rows, metric, m, gen, ref_states, info["protocol"], cfg, ctx)
        flag_metric(rows, first)


def flag_metric(rows: Rows, first: int) -> None:
    """One metric's intervals (its summary rows from index ``first``) share their ``ci_flag``: heavy-tailed
    leave-out estimates in any of them (the reference side is common to all) flag every one, since the
    simulations tie poor coverage to the feature distribution, not to one method."""
    mine = rows.summary[first:]
    if not any(r[9] == HEAVY_TAILED for r in mine):
        return
    why = next(n for r in mine if r[9] == HEAVY_TAILED for n in r[8].split("; ") if n.startswith("heavy-tailed"))
    for i, r in enumerate(mine, start=first):
        if r[9] != HEAVY_TAILED and np.isfinite(r[3]):
            rows.summary[i] = (*r[:8], "; ".join(x for x in (r[8], f"{why} (another interval of this metric)") if x),
                               HEAVY_TAILED)


class Evaluator:
    """``evaluate(gen_ids, ref_ids)``: a metric's columns on subsets of two sets of per-case states,
    memoised (every column and every statistic built on the same subsets share one computation)."""

    def __init__(self, metric: Any, gen: dict[str, Any], ref: dict[str, Any], ctx: Any) -> None:
        self.metric, self.gen, self.ref, self.ctx = metric, gen, ref, ctx
        self.memo: dict[tuple, dict[str, float]] = {}

    def __call__(self, gi: tuple[str, ...], ri: tuple[str, ...]) -> dict[str, float]:
        gi, ri = tuple(sorted(gi)), tuple(sorted(ri))  # one key (and one merge order) per subset
        if (gi, ri) not in self.memo:
            gs = self.metric.merge([self.gen[c] for c in gi])
            rs = self.metric.merge([self.ref[c] for c in ri]) if ri else {}
            self.memo[(gi, ri)] = self.metric.compute(gs, rs, self.ctx)
        return self.memo[(gi, ri)]


def jackknife_rows(rows: Rows, m: str, vals: dict[str, float], compute: Any, g_groups: list, r_groups: list,
                   n: int, protocol: str, cfg: RunConfig, notes: list[str], suffix: str = "",
                   col_notes: dict[str, str] | None = None) -> None:
    """Summary (and ``(all)`` per-case) rows of one set-level statistic: every column's value with its
    two-sample jackknife interval (``compute(gen_ids, ref_ids) -> {column: value}``) and its ``ci_flag``
    (:class:`~trace_bench.results.stats.JackknifeInterval`). ``col_notes``: a column's own note (why it is NaN);
    a column without a finite value gets no interval (nothing is recomputed for it)."""
    col_notes = col_notes or {}
    for col, v in sorted(vals.items()):
        if not np.isfinite(v):
            why = [x for x in (col_notes.get(col, ""), *notes) if x]
            rows.per_case.append((m, ALL_CASES, col + suffix, float(v), protocol))
            rows.summary.append((m, col + suffix, float(v), float("nan"), float("nan"), n, "none", 0, "; ".join(why), ""))
            continue
        def recompute(gi: tuple[str, ...], ri: tuple[str, ...], _col=col) -> float:
            return compute(gi, ri)[_col]
        ci = two_sample_jackknife(float(v), g_groups, r_groups, recompute, confidence=cfg.confidence)
        flag = ci.flag if np.isfinite(ci.lo) else ""
        row_notes = [x for x in (*notes, small_n_note(min(len(g_groups), len(r_groups) if r_groups else len(g_groups))),
                                 heavy_tail_note(ci.kurtosis) if flag else "",
                                 f"{ci.n_tried - ci.n_ok} of {ci.n_tried} leave-out evaluations failed"
                                 if ci.n_ok < ci.n_tried else "") if x]
        rows.per_case.append((m, ALL_CASES, col + suffix, float(v), protocol))
        rows.summary.append((m, col + suffix, float(v), ci.lo, ci.hi, n,
                             f"jackknife-2sample-t:{len(g_groups)}+{len(r_groups)}" if np.isfinite(ci.lo) else "none",
                             ci.n_ok, "; ".join(row_notes), flag))


def set_level_rows(rows: Rows, metric: Any, m: str, gen: dict[str, Any], ref: dict[str, Any], protocol: str,
                   cfg: RunConfig, ctx: Any, stats_dir: Path, no_floor: str = "") -> None:
    """One method's set-level values of a distribution metric (all its cases against all the reference's)
    with their two-sample jackknife intervals; ``no_floor``: why the metric has no GT/GT floor (a note)."""
    name = metric.name
    ev = Evaluator(metric, gen, ref, ctx)
    try:
        g_state = metric.merge([gen[c] for c in sorted(gen)])
        vals = ev(tuple(sorted(gen)), tuple(sorted(ref)))
    except Exception as err:  # noqa: BLE001
        rows.errors.append((m, ALL_CASES, f"metric:{name}", f"{type(err).__name__}: {err}"))
        return
    atomic_write_npz(stats_dir / f"{safe_name(m)}_{name}.npz", metric.export_stats(g_state))
    try:  # column -> why it is NaN (e.g. too few volumes for FID-infinity); cheap, nothing computed
        why = metric.value_notes(g_state, metric.merge([ref[c] for c in sorted(ref)]) if ref else {}, ctx)
    except Exception:  # noqa: BLE001 - a note only
        why = {}
    g_groups = jackknife_groups(sorted(gen), cfg.jackknife_groups, cfg.seed)
    r_groups = jackknife_groups(sorted(ref), cfg.jackknife_groups, cfg.seed) if ref else []
    jackknife_rows(rows, m, vals, ev, g_groups, r_groups, len(gen), protocol, cfg,
                   [sample_note(metric.sample_info(g_state), len(gen)), no_floor], col_notes=why)


def halves_groups(a: tuple[str, ...], b: tuple[str, ...], max_groups: int, seed: int) -> list[tuple[str, ...]]:
    """Jackknife groups that never mix the two halves (a leave-out then changes one of the two cross terms)."""
    half = max(1, -(-int(max_groups) // 2))
    return [*(jackknife_groups(a, half, seed) if a else []), *(jackknife_groups(b, half, seed) if b else [])]


def _mean_of(x: dict[str, float], y: dict[str, float]) -> dict[str, float]:
    return {k: 0.5 * (float(x[k]) + float(y[k])) for k in x}


def half_rows(rows: Rows, metric: Any, m: str, gen: dict[str, Any], ref: dict[str, Any], protocol: str,
              cfg: RunConfig, ctx: Any) -> None:
    """``<column>_half``: the method's generated cases of half A against the reference's half B and of half B
    against half A, averaged (:func:`~trace_bench.results.stats.half_vs_half`): the GT/GT floor's sample sizes."""
    ref_a, ref_b, gen_a, gen_b = cross_halves(sorted(ref), sorted(gen), cfg.seed)
    if not gen_a or not gen_b:
        return  # all generated cases on one side: no like-with-like value (the full-sample row stands)
    ev = Evaluator(metric, gen, ref, ctx)
    sa, sb = set(ref_a), set(gen_a)

    def compute(gi: tuple[str, ...], ri: tuple[str, ...]) -> dict[str, float]:
        return _mean_of(ev(tuple(c for c in gi if c in sb), tuple(c for c in ri if c not in sa)),
                        ev(tuple(c for c in gi if c not in sb), tuple(c for c in ri if c in sa)))

    try:
        vals = compute(gen_a + gen_b, ref_a + ref_b)
        g_state = metric.merge([gen[c] for c in gen_a])
    except Exception as err:  # noqa: BLE001
        rows.errors.append((m, ALL_CASES, f"metric:{metric.name}", f"half vs half: {type(err).__name__}: {err}"))
        return
    note = (f"half vs half: generated cases of one half of the case ids against the reference cases of the other "
            f"({len(gen_a)} vs {len(ref_b)} and {len(gen_b)} vs {len(ref_a)} cases), both ways averaged: the sample "
            "sizes of the GT/GT floor")
    jackknife_rows(rows, m, vals, compute, halves_groups(gen_a, gen_b, cfg.jackknife_groups, cfg.seed),
                   halves_groups(ref_a, ref_b, cfg.jackknife_groups, cfg.seed), len(gen_a) + len(gen_b), protocol,
                   cfg, [note, sample_note(metric.sample_info(g_state), len(gen_a))], HALF_SUFFIX)


def floor_rows(rows: Rows, metric: Any, ref: dict[str, Any], protocol: str, cfg: RunConfig, ctx: Any) -> None:
    """The GT/GT floor in the ``<column>_half`` columns: the reference's half A against half B and B against A,
    averaged; its jackknife leaves out cases of A (the first sample) and of B (the second)."""
    ref_a, ref_b = split_half(sorted(ref), cfg.seed)
    ev = Evaluator(metric, ref, ref, ctx)

    def compute(gi: tuple[str, ...], ri: tuple[str, ...]) -> dict[str, float]:
        return _mean_of(ev(gi, ri), ev(ri, gi))

    try:
        vals = compute(ref_a, ref_b)
        a_state = metric.merge([ref[c] for c in ref_a])
    except Exception as err:  # noqa: BLE001
        rows.errors.append((GT, ALL_CASES, f"metric:{metric.name}", f"GT/GT floor: {type(err).__name__}: {err}"))
        return
    note = (f"GT/GT floor: the reference cases split in half by case ({len(ref_a)} vs {len(ref_b)}), each half "
            f"against the other, both ways averaged; compare with the methods' {HALF_SUFFIX} values (same sample "
            "sizes)")
    jackknife_rows(rows, GT, vals, compute, jackknife_groups(ref_a, cfg.jackknife_groups, cfg.seed),
                   jackknife_groups(ref_b, cfg.jackknife_groups, cfg.seed), len(ref_a) + len(ref_b), protocol, cfg,
                   [note, sample_note(metric.sample_info(a_state), len(ref_a))], HALF_SUFFIX)


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
            rows.summary.append((m, col, float(v), float("nan"), float("nan"), 1, "none", 0, "measured once", ""))
        if m not in methods:
            methods.append(m)


def unscored_methods(rows: Rows, man: dict[str, Any], methods: list[str]) -> list[str]:
    """Methods with no summary row. The reference (GT) counts only when some entry could give it a row:
    a run of reference-based per-case metrics (segmentation only) has no GT row by design."""
    scored = {r[0] for r in rows.summary}
    gt_entries = any(d["method"] == GT and (d["kind"] == "case" or (d["kind"] == "distribution"
                                                                    and d["metric"] not in rows.floorless))
                     for d in man["entries"])
    return [m for m in methods if m not in scored and m not in man["profiles"] and (m != GT or gt_entries)]


def drawable_plot_case(out: Path, man: dict[str, Any]) -> str | None:
    """The manifest's plot case when some volume of it has its plot arrays (a sound ``_plot`` record), else
    None: a plot case whose every volume failed to read is not drawn (its rows are in ``errors.csv``), and
    the report is still written."""
    pc = man.get("plot_case")
    arts = [Entry(**d) for d in man["entries"] if d["kind"] == "artifact" and d["case_id"] == pc]
    return pc if any(check_record(entry_path(out, e), e.key) == RECORD_OK for e in arts) else None


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
        elif col.endswith(HALF_SUFFIX) and col[:-len(HALF_SUFFIX)] in columns:  # half vs half: beside its column
            base = col[:-len(HALF_SUFFIX)]
            columns[col] = dict(columns[base], label=f"{columns[base].get('label') or base} (half vs half)",
                                rank=float(columns[base].get("rank", 100.0)) + 0.5)
    meta = {"methods": methods, "columns": columns, "skipped": man["skipped"],
            "plot_case": drawable_plot_case(out, man),
            "segmenter": cfg.segmenter, "classes": cfg.classes,
            "unscored_methods": unscored_methods(rows, man, methods)}
    atomic_write_json(out / "metrics.json", meta)
    return meta
