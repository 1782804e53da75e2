"""Write ``OUT/utility/``: CSV tables and ``utility.json`` (every file atomically, numbers deterministic).

* ``seg_per_case.csv``: protocol, arm, method, seed, case_id, label (a label value or ``mean``), dice, hd95;
* ``seg_summary.csv``: per (arm, method, label, metric) the mean over test cases, its interval, n, and the
  spread over seeds (:mod:`.summary`);
* ``seg_paired.csv``: per non-real arm the paired difference to the real arm over test cases;
* ``probe_auroc.csv``: per (arm, method, label) the probe's C, CV AUROC, test AUROC with its interval and
  the paired difference to the real-trained probe (:mod:`.probe`);
* ``problems.csv``: inputs skipped (set, case id, path, reason) and cases held out of training;
* ``utility.json``: schema, protocol ids, declarations (with sha256) and legends, the settings, the
  test-set rule, per-arm training sizes, the summaries above as records, device and timings: all a
  report needs (:mod:`reports.utility` reads only this file).

CSV cells go through :func:`trace_bench.results.files.write_csv` (formula-safe text, 12-digit numbers).
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any, Sequence

import pandas as pd

from ..cases import Problem
from ..results.files import atomic_write_json, write_csv
from ..results import utility_layout as layout


def _clean(v: Any) -> Any:
    """JSON-safe value: NaN / inf become None (strict JSON), numpy scalars plain numbers."""
    if hasattr(v, "item") and not isinstance(v, (list, dict, str)):
        v = v.item()
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, dict):
        return {str(k): _clean(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_clean(x) for x in v]
    return v


def records(df: pd.DataFrame) -> list[dict[str, Any]]:
    return [_clean(r) for r in df.to_dict(orient="records")]


def write_frame(path: Path, df: pd.DataFrame) -> Path:
    return write_csv(path, list(df.columns), df.itertuples(index=False, name=None))


def write_problems(folder: Path, problems: Sequence[Problem], excluded: Sequence[tuple[str, str, str]]) -> Path:
    rows = [(p.method, p.case_id, p.path, p.reason) for p in problems]
    rows += [(s, c, "", why) for s, c, why in excluded]
    return write_csv(folder / layout.PROBLEMS, ["set", "case_id", "path", "reason"], rows)


def write_results(folder: Path, *, config: dict[str, Any], seg: dict[str, Any] | None, probe: dict[str, Any] | None,
                  problems: Sequence[Problem], excluded: Sequence[tuple[str, str, str]],
                  extra: dict[str, Any] | None = None) -> list[Path]:
    """Write every file of ``OUT/utility/`` for the protocols that ran; the paths written.

    ``seg``: ``{"per_case", "summary", "paired"}`` data frames plus ``"info"`` (JSON-able); ``probe``:
    ``{"rows"}`` data frame, ``"macro"`` records and ``"info"``."""
    from .. import __version__

    folder.mkdir(parents=True, exist_ok=True)
    written = [write_problems(folder, problems, excluded)]
    doc: dict[str, Any] = {"schema": layout.SCHEMA, "trace_bench_version": __version__,
                           "written_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                           "config": _clean(config), "n_problems": len(problems), "n_excluded": len(excluded),
                           **_clean(extra or {})}
    if seg is not None:
        written.append(write_frame(folder / layout.SEG_PER_CASE, seg["per_case"]))
        written.append(write_frame(folder / layout.SEG_SUMMARY, seg["summary"]))
        written.append(write_frame(folder / layout.SEG_PAIRED, seg["paired"]))
        doc["seg"] = {**_clean(seg["info"]), "summary": records(seg["summary"]), "paired": records(seg["paired"])}
    if probe is not None:
        written.append(write_frame(folder / layout.PROBE_AUROC, probe["rows"]))
        doc["probe"] = {**_clean(probe["info"]), "rows": records(probe["rows"]), "macro": _clean(probe["macro"])}
    written.append(atomic_write_json(folder / layout.SUMMARY_JSON, doc))
    return written
