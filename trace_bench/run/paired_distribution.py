"""Paired interval of a set-level (distribution) metric's difference between two runs: the
delete-one jackknife over the cases the two runs share.

For a distribution metric with the same protocol in both runs and a method scored by both, let
C = the n cases whose state files both runs hold, ``f_run(S) = compute(merge(run's states of S),
merge(run's reference states))`` (each run's own, complete GT set; the reference side is never
subsampled) and

* ``D = f_cand(C) - f_base(C)``                        (``paired_delta``, the full-sample difference)
* ``D_(i) = f_cand(C minus i) - f_base(C minus i)``    (case i dropped from both generated sets)
* ``SE = sqrt((n-1)/n * sum_i (D_(i) - mean(D_(.)))^2)``  (jackknife standard error)
* interval ``D -/+ t_{(1+c)/2, n-1} * SE``              (:func:`scipy.stats.t` quantile, n-1 dof)

(Quenouille 1956; Tukey 1958; Efron & Stein 1981; Efron & Tibshirani 1993, ch. 11). n < 3, a case
file listed in a manifest but absent (or stale, or unreadable), a protocol that differs, or a metric
that fails gives NaN values and a one-line ``paired_note``. ``p_wilcoxon`` and ``p_signflip`` are always
NaN here (no per-case values to pair). Renamed methods are paired through ``method_map`` (baseline
name -> candidate name, ``compare --map``); rows carry the candidate's name.

The metric is recomputed from the stored states, so its class must be registered (the built-in
metrics, the runs' ``plugins``, or a test's registration); this is why the module lives in the
run core and not in :mod:`trace_bench.results`.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..config import RunConfig
from ..errors import ConfigError
from ..metrics.base import METRICS, Metric, RunContext
from ..results.layout import Entry, entry_done, entry_path, error_done, load_state
from ..results.paired import PAIRED_COLUMNS
from ..results.stats import jackknife_variance
from ..results.tables import ALL_CASES, GT, load_results
from .plan import make_context
from .select import load_metric_registry

#: fewest common cases for a jackknife interval
MIN_CASES = 3
NAN = float("nan")


class _RunStates:
    """One run's manifest, metric instances, context and per-case states (loaded on demand)."""

    def __init__(self, out: Path):
        self.out = out
        path = out / "manifest.json"
        self.manifest: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
        try:
            self.config = RunConfig(**self.manifest["config"])
        except (KeyError, TypeError) as err:
            raise ConfigError(f"{path}: not a trace-bench manifest ({type(err).__name__}: {err})") from None
        load_metric_registry()  # never the plug-ins a run folder names: code runs only from what the user named
        self.ctx: RunContext = make_context(self.config, "cpu")

    def metric(self, name: str) -> Metric:
        return METRICS.get(name)(self.manifest["metrics"][name].get("options") or {})

    def states(self, method: str, name: str) -> tuple[dict[str, dict[str, np.ndarray]], list[Path]]:
        """(case id -> state) of the entries with a current state file, and the listed entries that
        have neither a current state nor a recorded error (missing files)."""
        found: dict[str, dict[str, np.ndarray]] = {}
        missing: list[Path] = []
        for d in self.manifest["entries"]:
            if d["kind"] != "distribution" or d["metric"] != name or d["method"] != method:
                continue
            e = Entry(**d)
            rp = entry_path(self.out, e)
            if entry_done(self.out, e):
                try:
                    found[e.case_id] = load_state(rp)
                except Exception as err:  # noqa: BLE001 - a truncated npz: named in the note
                    raise ValueError(f"{rp}: cannot read ({type(err).__name__}: {err})") from None
            elif not error_done(self.out, e):
                missing.append(rp)
        return found, missing

    def methods(self, name: str) -> set[str]:
        return {d["method"] for d in self.manifest["entries"] if d["kind"] == "distribution" and d["metric"] == name}


def _value(metric: Metric, states: dict[str, dict[str, np.ndarray]], ids: list[str],
           ref: dict[str, np.ndarray], ctx: RunContext) -> dict[str, float]:
    return {k: float(v) for k, v in metric.compute(metric.merge([states[c] for c in ids]), ref, ctx).items()}


def jackknife_interval(full: float, loo: np.ndarray, confidence: float) -> tuple[float, float, float]:
    """(SE, low, high): delete-one jackknife standard error of the leave-one-out values ``loo`` and
    the t-interval ``full -/+ t_{(1+c)/2, n-1} * SE`` around the full-sample value."""
    from scipy.stats import t

    a = np.asarray(loo, dtype=np.float64)
    n = a.size
    if n < 2 or not np.all(np.isfinite(a)) or not math.isfinite(full):
        return NAN, NAN, NAN
    var, _ = jackknife_variance(a)
    se = float(math.sqrt(var))
    q = float(t.ppf((1.0 + confidence) / 2.0, n - 1))
    return se, full - q * se, full + q * se


def _noted(method: str, columns: list[str], note: str, n: int = 0) -> list[tuple]:
    return [(method, col, n, NAN, NAN, NAN, NAN, NAN, 0, note) for col in columns]


def _method_rows(name: str, method: str, base: _RunStates, cand: _RunStates, confidence: float,
                 base_method: str | None = None) -> list[tuple]:
    """The rows of one (metric, method): one per output column of the metric (``base_method``: the
    method's name in the baseline when it was renamed)."""
    columns = sorted(set(base.manifest["metrics"][name].get("columns") or {})
                     & set(cand.manifest["metrics"][name].get("columns") or {})) or [name]
    try:
        b_gen, b_miss = base.states(base_method or method, name)
        c_gen, c_miss = cand.states(method, name)
        b_ref, b_ref_miss = base.states(GT, name)
        c_ref, c_ref_miss = cand.states(GT, name)
    except ValueError as err:
        return _noted(method, columns, f"jackknife skipped: {' '.join(str(err).split())}")
    missing = b_miss + c_miss + b_ref_miss + c_ref_miss
    if missing:
        return _noted(method, columns, f"jackknife skipped: {len(missing)} case file(s) missing, e.g. {missing[0]}")
    common = sorted(set(b_gen) & set(c_gen))
    n = len(common)
    if n < MIN_CASES:
        return _noted(method, columns, f"jackknife skipped: {n} common case(s), needs {MIN_CASES}", n)
    needs_ref = bool(cand.manifest["metrics"][name].get("needs_reference"))
    if needs_ref and not (b_ref and c_ref):
        return _noted(method, columns, "jackknife skipped: no reference states in one run", n)
    try:
        mb, mc = base.metric(name), cand.metric(name)
        rb = mb.merge([b_ref[c] for c in sorted(b_ref)]) if b_ref else {}
        rc = mc.merge([c_ref[c] for c in sorted(c_ref)]) if c_ref else {}
        full_b = _value(mb, b_gen, common, rb, base.ctx)
        full_c = _value(mc, c_gen, common, rc, cand.ctx)
        loo: list[dict[str, float]] = []
        for i in range(n):
            ids = common[:i] + common[i + 1:]
            vb, vc = _value(mb, b_gen, ids, rb, base.ctx), _value(mc, c_gen, ids, rc, cand.ctx)
            loo.append({k: vc[k] - vb[k] for k in vc if k in vb})
    except Exception as err:  # noqa: BLE001 - as in aggregate: a failing metric is a note, not an abort
        return _noted(method, columns, f"jackknife failed: {type(err).__name__}: {' '.join(str(err).split())}", n)
    left_out = (len(b_gen) - n) + (len(c_gen) - n)
    note = f"{left_out} case(s) not scored in both runs left out" if left_out else ""
    rows = []
    for col in sorted(set(full_c) & set(full_b)):
        full = full_c[col] - full_b[col]
        _, lo, hi = jackknife_interval(full, np.array([d.get(col, NAN) for d in loo]), confidence)
        rows.append((method, col, n, full, lo, hi, NAN, NAN, 0,
                     note if math.isfinite(lo) else (note or "jackknife: non-finite value")))
    return rows


def paired_distribution_stats(baseline: str | Path, candidate: str | Path, confidence: float = 0.95,
                              method_map: dict[str, str] | None = None) -> pd.DataFrame:
    """One row per (method, column) of every distribution metric present in both runs (methods paired
    by name, or by ``method_map`` baseline -> candidate):
    ``method, metric`` + :data:`~trace_bench.results.paired.PAIRED_COLUMNS` (see the module docstring).
    Runs without ``manifest.json`` give a note on their ``(all)`` rows instead."""
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must lie in (0, 1), got {confidence}")
    bo, co = Path(baseline), Path(candidate)
    no_manifest = [p / "manifest.json" for p in (bo, co) if not (p / "manifest.json").is_file()]
    if no_manifest:
        def all_rows(out: Path) -> set[tuple[str, str]]:
            pc = load_results(out).per_case
            return set(zip(pc[pc.case_id == ALL_CASES].method, pc[pc.case_id == ALL_CASES].metric))
        keys = sorted(all_rows(bo) & all_rows(co))
        return pd.DataFrame([(m, col, 0, NAN, NAN, NAN, NAN, NAN, 0, f"jackknife skipped: no {no_manifest[0]}")
                             for m, col in keys], columns=["method", "metric", *PAIRED_COLUMNS])
    base, cand = _RunStates(bo), _RunStates(co)
    to_new = dict(method_map or {})
    to_old = {new: old for old, new in to_new.items()}
    rows: list[tuple] = []
    for name in sorted(set(base.manifest["metrics"]) & set(cand.manifest["metrics"])):
        bm, cm = base.manifest["metrics"][name], cand.manifest["metrics"][name]
        if bm.get("kind") != "distribution" or cm.get("kind") != "distribution":
            continue
        methods = sorted({to_new.get(m, m) for m in base.methods(name)} & cand.methods(name))
        if bm.get("needs_reference") or cm.get("needs_reference"):
            methods = [m for m in methods if m != GT]
        for method in methods:
            if bm.get("protocol") != cm.get("protocol"):
                cols = sorted(set(bm.get("columns") or {}) & set(cm.get("columns") or {})) or [name]
                rows += _noted(method, cols, f"jackknife skipped: protocol differs ({bm.get('protocol')} vs {cm.get('protocol')})")
                continue
            rows += _method_rows(name, method, base, cand, confidence, to_old.get(method, method))
    return pd.DataFrame(rows, columns=["method", "metric", *PAIRED_COLUMNS])
