"""Tidy result tables, seeded bootstrap confidence intervals and deterministic CSV output.

Files (stable names and columns; other tools and CI read them):

* ``per_case.csv``: ``method, case_id, metric, value, protocol`` (long format). Distribution
  metrics have one row per method with ``case_id = "(all)"``; profile rows use ``"(profile)"``.
* ``summary.csv``: ``method, metric, value, ci_low, ci_high, n``.
* ``errors.csv``: ``method, case_id, stage, error``.
* ``metrics.json``: for every metric column, the direction of "better", its table, kind and protocol id,
  so reports and ``compare`` work without importing the metric plug-ins.

Determinism: rows sorted by (method order, case id, metric), floats written with
:func:`fmt_float` (12 significant digits, ``nan`` / ``inf`` spelled out), no timestamps. Two runs on
the same inputs give byte-identical files.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np
import pandas as pd

PER_CASE_COLUMNS = ["method", "case_id", "metric", "value", "protocol"]
SUMMARY_COLUMNS = ["method", "metric", "value", "ci_low", "ci_high", "n"]
ERROR_COLUMNS = ["method", "case_id", "stage", "error"]
ALL_CASES = "(all)"
PROFILE_CASE = "(profile)"
GT = "GT"


# ----------------------------------------------------------------------------- atomic files
def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` via a temporary file in the same folder + ``os.replace``."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=p.parent, prefix=".tmp-", suffix=p.suffix)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, p)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return p


def atomic_write_text(path: str | Path, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | Path, obj: Any) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=1, sort_keys=True, allow_nan=True) + "\n")


def atomic_write_npz(path: str | Path, arrays: dict[str, np.ndarray]) -> Path:
    buf = io.BytesIO()
    np.savez(buf, **{k: np.asarray(v) for k, v in arrays.items()})
    return atomic_write_bytes(path, buf.getvalue())


# ----------------------------------------------------------------------------- formatting
def fmt_float(v: Any) -> str:
    """Deterministic text of a number: 12 significant digits; ``nan``, ``inf``, ``-inf``; '' for None."""
    if v is None:
        return ""
    f = float(v)
    if math.isnan(f):
        return "nan"
    if math.isinf(f):
        return "inf" if f > 0 else "-inf"
    s = format(f, ".12g")
    return "0" if s == "-0" else s


def write_csv(path: str | Path, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> Path:
    """CSV with ``\\n`` line ends, floats through :func:`fmt_float`, atomically."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(columns)
    for r in rows:
        w.writerow([fmt_float(x) if isinstance(x, (float, np.floating)) else x for x in r])
    return atomic_write_text(path, buf.getvalue())


def stable_seed(*parts: Any) -> int:
    """A 63-bit seed from the parts' text (same on every machine and process, unlike ``hash``)."""
    h = hashlib.sha256("\x1f".join(str(p) for p in parts).encode("utf-8")).digest()
    return int.from_bytes(h[:8], "little") >> 1


# ----------------------------------------------------------------------------- statistics
def mean_finite_or_inf(values: Sequence[float]) -> tuple[float, int]:
    """Mean over non-NaN values (inf propagates) and how many values counted."""
    a = np.asarray(values, dtype=np.float64)
    a = a[~np.isnan(a)]
    if a.size == 0:
        return float("nan"), 0
    return float(a.mean()), int(a.size)


def bootstrap_ci(values: Sequence[float], *, n_boot: int = 1000, confidence: float = 0.95,
                 seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap CI of the mean: resample the n values with replacement ``n_boot`` times
    (``numpy.random.default_rng(seed)``), take the ``(1-c)/2`` and ``(1+c)/2`` quantiles of the
    resampled means (Efron & Tibshirani 1993, ch. 13). NaN values are dropped first; fewer than 2
    values, or ``n_boot = 0``, give (nan, nan)."""
    a = np.asarray(values, dtype=np.float64)
    a = a[~np.isnan(a)]
    if a.size < 2 or n_boot <= 0:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, a.size, size=(n_boot, a.size))
    with np.errstate(invalid="ignore"):
        means = a[idx].mean(axis=1)
    alpha = (1.0 - confidence) / 2.0
    lo, hi = np.quantile(means, [alpha, 1.0 - alpha])
    return float(lo), float(hi)


def bootstrap_distribution_ci(gen_ids: Sequence[str], ref_ids: Sequence[str],
                              compute: Callable[[tuple[str, ...], tuple[str, ...]], float], *,
                              n_boot: int = 100, confidence: float = 0.95, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap CI of a set-level metric: resample the generated cases and the reference
    cases (independently, with replacement), recompute the metric from the merged states of each
    resample. Results are memoised per multiset of cases, so small sets cost little."""
    g, r = sorted(gen_ids), sorted(ref_ids)
    if len(g) < 2 or n_boot <= 0:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    memo: dict[tuple[tuple[str, ...], tuple[str, ...]], float] = {}
    vals = []
    for _ in range(n_boot):
        gi = tuple(sorted(g[i] for i in rng.integers(0, len(g), size=len(g))))
        ri = tuple(sorted(r[i] for i in rng.integers(0, len(r), size=len(r)))) if r else ()
        key = (gi, ri)
        if key not in memo:
            try:
                memo[key] = float(compute(gi, ri))
            except Exception:
                memo[key] = float("nan")
        vals.append(memo[key])
    a = np.asarray(vals, dtype=np.float64)
    a = a[np.isfinite(a)]
    if a.size < 2:
        return float("nan"), float("nan")
    alpha = (1.0 - confidence) / 2.0
    lo, hi = np.quantile(a, [alpha, 1.0 - alpha])
    return float(lo), float(hi)


# ----------------------------------------------------------------------------- metric info
def base_metric(column: str) -> str:
    """``dice[lungs]`` -> ``dice``."""
    return column.split("[", 1)[0]


@dataclass
class MetricInfo:
    higher_is_better: bool
    table: str = "table1"
    kind: str = "case"
    protocol: str = ""
    spec: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"higher_is_better": self.higher_is_better, "table": self.table, "kind": self.kind,
                "protocol": self.protocol, "spec": self.spec}


#: columns every run may carry that no metric plug-in declares
PROFILE_METRICS: dict[str, MetricInfo] = {
    "fps": MetricInfo(True, "table1", "profile", "trace-bench profile: slices per second at volume level", "profile"),
    "vram": MetricInfo(False, "table1", "profile", "trace-bench profile: peak inference memory, bytes", "profile"),
    "vram_train": MetricInfo(False, "table1", "profile", "trace-bench profile: peak training memory, bytes", "profile"),
}


def direction(metric: str, infos: dict[str, MetricInfo]) -> bool | None:
    """higher_is_better for a column (per-class columns inherit their family's direction)."""
    for key in (metric, base_metric(metric)):
        if key in infos:
            return infos[key].higher_is_better
    if base_metric(metric) in PROFILE_METRICS:
        return PROFILE_METRICS[base_metric(metric)].higher_is_better
    return None


# ----------------------------------------------------------------------------- loading
@dataclass
class Results:
    """The tables of one output directory."""

    out: Path
    per_case: pd.DataFrame
    summary: pd.DataFrame
    errors: pd.DataFrame
    metrics: dict[str, MetricInfo] = field(default_factory=dict)
    provenance: dict[str, Any] = field(default_factory=dict)
    methods: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)

    def value(self, method: str, metric: str) -> float:
        s = self.summary[(self.summary.method == method) & (self.summary.metric == metric)]
        return float(s.value.iloc[0]) if len(s) else float("nan")


def _read_csv(path: Path, columns: list[str]) -> pd.DataFrame:
    if not path.is_file():
        return pd.DataFrame(columns=columns)
    df = pd.read_csv(path, dtype={"method": str, "case_id": str, "metric": str, "stage": str, "error": str,
                                  "protocol": str}, keep_default_na=False, na_values={"value": ["nan"],
                                  "ci_low": ["nan"], "ci_high": ["nan"]})
    for c in ("value", "ci_low", "ci_high"):
        if c in df:
            df[c] = pd.to_numeric(df[c].replace("", np.nan), errors="coerce")
    return df


def load_results(out: str | Path) -> Results:
    """Read ``per_case.csv``, ``summary.csv``, ``errors.csv``, ``metrics.json`` and ``provenance.json``."""
    from .errors import ConfigError

    o = Path(out)
    if not (o / "summary.csv").is_file():
        raise ConfigError(f"{o}: no summary.csv here; is this the --out folder of a finished `trace-bench run`?")
    infos: dict[str, MetricInfo] = {}
    if (o / "metrics.json").is_file():
        for k, v in json.loads((o / "metrics.json").read_text(encoding="utf-8")).get("columns", {}).items():
            infos[k] = MetricInfo(**v)
    prov = json.loads((o / "provenance.json").read_text(encoding="utf-8")) if (o / "provenance.json").is_file() else {}
    meta = json.loads((o / "metrics.json").read_text(encoding="utf-8")) if (o / "metrics.json").is_file() else {}
    summary = _read_csv(o / "summary.csv", SUMMARY_COLUMNS)
    methods = meta.get("methods") or list(dict.fromkeys(summary.method.tolist()))
    return Results(o, _read_csv(o / "per_case.csv", PER_CASE_COLUMNS), summary,
                   _read_csv(o / "errors.csv", ERROR_COLUMNS), infos, prov, methods, meta.get("skipped", {}))


# ----------------------------------------------------------------------------- regression checks
#: default tolerances: a change counts as a regression when it is worse than max(abs, rel * |baseline|)
DEFAULT_TOLERANCES: dict[str, dict[str, float]] = {
    "subject_consistency": {"abs": 0.01}, "background_consistency": {"abs": 0.01},
    "temporal_flickering": {"abs": 0.01}, "motion_smoothness": {"abs": 0.01},
    "imaging_quality": {"abs": 0.01}, "overall_consistency": {"abs": 0.01},
    "dice": {"abs": 0.01}, "jaccard": {"abs": 0.01}, "hd95": {"abs": 1.0, "rel": 0.05},
    "fid": {"abs": 0.5, "rel": 0.05}, "fvd": {"abs": 5.0, "rel": 0.05}, "fid_2p5d": {"abs": 0.5, "rel": 0.05},
    "clip_score": {"abs": 0.5}, "fps": {"rel": 0.10}, "vram": {"rel": 0.10}, "vram_train": {"rel": 0.10},
    "default": {"abs": 1e-6, "rel": 0.02},
}


def load_tolerances(path: str | Path | None) -> dict[str, dict[str, float]]:
    """Defaults overlaid with a TOML/JSON file: ``metric = number`` (absolute) or
    ``[metric] abs = .. rel = ..``; the key ``default`` applies to metrics not listed."""
    from .errors import ConfigError

    tol = {k: dict(v) for k, v in DEFAULT_TOLERANCES.items()}
    if path is None:
        return tol
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"--tolerance {p}: file does not exist")
    try:
        if p.suffix.lower() == ".json":
            data = json.loads(p.read_text(encoding="utf-8"))
        else:
            import tomllib

            data = tomllib.loads(p.read_text(encoding="utf-8"))
    except Exception as e:  # noqa: BLE001
        raise ConfigError(f"--tolerance {p}: cannot parse ({e})") from None
    for k, v in data.items():
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            tol[k] = {"abs": float(v)}
        elif isinstance(v, dict) and set(v) <= {"abs", "rel"}:
            tol[k] = {kk: float(vv) for kk, vv in v.items()}
        else:
            raise ConfigError(f"--tolerance {p}: {k!r} must be a number or a table with 'abs' and/or 'rel', got {v!r}")
    return tol


def tolerance_for(metric: str, baseline: float, tol: dict[str, dict[str, float]]) -> float:
    t = tol.get(metric) or tol.get(base_metric(metric)) or tol["default"]
    b = abs(baseline) if np.isfinite(baseline) else 0.0
    return max(float(t.get("abs", 0.0)), float(t.get("rel", 0.0)) * b)


@dataclass
class Comparison:
    rows: pd.DataFrame  # method, metric, higher_is_better, baseline, candidate, delta, tolerance, status
    regressions: int

    @property
    def ok(self) -> bool:
        return self.regressions == 0


def compare_results(baseline: str | Path | Results, candidate: str | Path | Results,
                    tolerances: dict[str, dict[str, float]] | None = None) -> Comparison:
    """Compare two runs' summaries, direction-aware. status: ``ok``, ``improved``, ``REGRESSED``
    (worse by more than the tolerance), ``MISSING`` (in the baseline, not in the candidate; counts as a
    regression), ``new`` (only in the candidate), ``skip`` (no direction known)."""
    b = baseline if isinstance(baseline, Results) else load_results(baseline)
    c = candidate if isinstance(candidate, Results) else load_results(candidate)
    tol = tolerances or load_tolerances(None)
    infos = {**c.metrics, **b.metrics}
    bv = {(r.method, r.metric): float(r.value) for r in b.summary.itertuples(index=False)}
    cv = {(r.method, r.metric): float(r.value) for r in c.summary.itertuples(index=False)}
    order = {m: i for i, m in enumerate(list(dict.fromkeys(b.methods + c.methods)))}
    rows = []
    for key in sorted(set(bv) | set(cv), key=lambda k: (order.get(k[0], 1 << 30), k[0], k[1])):
        m, metric = key
        hib = direction(metric, infos)
        x, y = bv.get(key, float("nan")), cv.get(key, float("nan"))
        t = tolerance_for(metric, x, tol)
        if key not in cv:
            status, delta = "MISSING", float("nan")
        elif key not in bv:
            status, delta = "new", float("nan")
        elif hib is None:
            status, delta = "skip", y - x
        else:
            delta = y - x
            if np.isnan(x) and np.isnan(y):
                status = "ok"
            elif np.isnan(y) and not np.isnan(x):
                status = "REGRESSED"
            elif np.isnan(x):
                status = "improved"
            else:
                gain = delta if hib else -delta
                if np.isinf(x) or np.isinf(y):
                    gain = 0.0 if x == y else (1.0 if (y > x) == hib else -1.0) * float("inf")
                status = "REGRESSED" if gain < -t else ("improved" if gain > t else "ok")
        rows.append((m, metric, hib, x, y, delta, t, status))
    df = pd.DataFrame(rows, columns=["method", "metric", "higher_is_better", "baseline", "candidate", "delta",
                                     "tolerance", "status"])
    return Comparison(df, int(df.status.isin(["REGRESSED", "MISSING"]).sum()))
