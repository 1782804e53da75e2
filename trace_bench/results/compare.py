"""Regression checks between two runs: direction-aware comparison with tolerances."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .tables import MetricInfo, Results, base_metric, column_info, direction, load_results

# ----------------------------------------------------------------------------- regression checks
#: the tolerance of a column whose metric declares none: a change counts as a regression when it is
#: worse than max(abs, rel * |baseline|). Metrics declare their own (``Output.tolerance``, carried in
#: metrics.json); a ``--tolerance`` file overrides both.
DEFAULT_TOLERANCES: dict[str, dict[str, float]] = {"default": {"abs": 1e-6, "rel": 0.02}}


def load_tolerances(path: str | Path | None) -> dict[str, dict[str, float]]:
    """Defaults overlaid with a TOML/JSON file: ``metric = number`` (absolute) or
    ``[metric] abs = .. rel = ..``; the key ``default`` applies to metrics not listed."""
    from ..errors import ConfigError

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


def tolerance_for(metric: str, baseline: float, tol: dict[str, dict[str, float]],
                  infos: dict[str, MetricInfo] | None = None) -> float:
    """Precedence: the ``--tolerance`` file's entry, the metric's declared tolerance, the default."""
    info = column_info(metric, infos or {})
    t = (tol.get(metric) or tol.get(base_metric(metric)) or (info.tolerance if info is not None else None)
         or tol["default"])
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
        t = tolerance_for(metric, x, tol, infos)
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

