"""The layout of an output folder and the format of its per-case records.

::

    OUT/
      config.toml          effective configuration (``trace-bench run --config OUT/config.toml`` repeats it)
      manifest.json        the plan: methods, metrics, entries with their cache keys, input hashes
      cases/<method>/<case_id>/<metric>.json        per-case values  {"key", "metric", "values", ...}
      cases/<method>/<case_id>/<metric>.npz         a distribution metric's mergeable state (+ ``__key__``)
      cases/<method>/<case_id>/<metric>.error.json  a recorded failure {"key", "stage", "error"}
      per_case.csv, summary.csv, errors.csv, warnings.csv, metrics.json, stats/, provenance.json
      report.md, report.tex, report.html, plots/
      .trace-bench/        lock file and the run stamp (see :mod:`trace_bench.results.stamp`)

Method and case names become folder names through :func:`safe_name` (reversible percent-encoding).
A record carries the key of the entry that wrote it; a record whose key differs from the plan's is
ignored (recomputed), so a changed input or setting never reuses an old value.
"""

from __future__ import annotations

import json
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .files import atomic_write_json, atomic_write_npz

#: the per-case "metric" name of the plot inputs of the chosen case
PLOT_ARTIFACT = "_plot"
#: npz keys of the entry key, the warnings recorded while computing a state, and its compute time
KEY_FIELD = "__key__"
WARNINGS_FIELD = "__warnings__"
SECONDS_FIELD = "__seconds__"
BOOKKEEPING = (KEY_FIELD, WARNINGS_FIELD, SECONDS_FIELD)


@dataclass(frozen=True)
class Entry:
    """One unit of per-case work: a metric (or the plot artifact) on one volume."""

    method: str
    case_id: str
    metric: str  # metric name, or PLOT_ARTIFACT
    kind: str  # "case" | "distribution" | "artifact"
    key: str

    @property
    def task(self) -> tuple[str, str]:
        return (self.method, self.case_id)

    def to_dict(self) -> dict[str, str]:
        return {"method": self.method, "case_id": self.case_id, "metric": self.metric, "kind": self.kind, "key": self.key}


def safe_name(name: str) -> str:
    """A file-system-safe folder name for a method or case id (reversible percent-encoding)."""
    q = urllib.parse.quote(name, safe="-_.[]")
    return q if q not in ("", ".", "..") else urllib.parse.quote(name, safe="")


def case_dir(out: str | Path, method: str, case_id: str) -> Path:
    return Path(out) / "cases" / safe_name(method) / safe_name(case_id)


def entry_path(out: str | Path, e: Entry) -> Path:
    ext = ".json" if e.kind == "case" else ".npz"
    return case_dir(out, e.method, e.case_id) / f"{e.metric}{ext}"


def error_path(out: str | Path, e: Entry) -> Path:
    return case_dir(out, e.method, e.case_id) / f"{e.metric}.error.json"


def stored_key(path: Path) -> str | None:
    """The entry key recorded in a result or error file (None when unreadable or absent)."""
    try:
        if path.suffix == ".json":
            return json.loads(path.read_text(encoding="utf-8")).get("key")
        with np.load(path, allow_pickle=False) as z:
            return str(z[KEY_FIELD]) if KEY_FIELD in z.files else None
    except Exception:  # noqa: BLE001 - a truncated or foreign file is simply not a result
        return None


def load_state(path: Path) -> dict[str, np.ndarray]:
    """A distribution metric's per-case state (the arrays of the npz without the bookkeeping fields)."""
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files if k not in BOOKKEEPING}


def load_warnings(path: Path) -> list[str]:
    """The warnings stored with a result record (JSON ``warnings`` list or npz ``__warnings__``)."""
    try:
        if path.suffix == ".json":
            return [str(w) for w in json.loads(path.read_text(encoding="utf-8")).get("warnings", [])]
        with np.load(path, allow_pickle=False) as z:
            return [str(w) for w in z[WARNINGS_FIELD]] if WARNINGS_FIELD in z.files else []
    except Exception:  # noqa: BLE001
        return []


def record_seconds(path: Path) -> float:
    """The compute time stored with a result record (0 when unknown)."""
    try:
        if path.suffix == ".json":
            return float(json.loads(path.read_text(encoding="utf-8")).get("seconds", 0.0))
        with np.load(path, allow_pickle=False) as z:
            return float(z[SECONDS_FIELD]) if SECONDS_FIELD in z.files else 0.0
    except Exception:  # noqa: BLE001
        return 0.0


def entry_done(out: str | Path, e: Entry) -> bool:
    """Whether a result with this entry's key exists. Recorded failures are retried on the next run
    (a transient failure such as out-of-memory heals; a deterministic one gives the same row again)."""
    p = entry_path(out, e)
    return p.is_file() and stored_key(p) == e.key


def error_done(out: str | Path, e: Entry) -> bool:
    ep = error_path(out, e)
    return ep.is_file() and stored_key(ep) == e.key


def write_values(out: str | Path, e: Entry, values: dict[str, float], *, protocol: str, seconds: float,
                 warnings: list[str] | None = None) -> Path:
    """A per-case metric's record (and the removal of an older error record of the entry)."""
    rec: dict[str, Any] = {"key": e.key, "metric": e.metric, "values": {str(k): float(v) for k, v in values.items()},
                           "protocol": protocol, "seconds": round(seconds, 4)}
    if warnings:
        rec["warnings"] = list(warnings)
    p = atomic_write_json(entry_path(out, e), rec)
    clear_error(out, e)
    return p


def write_state(out: str | Path, e: Entry, state: dict[str, Any], warnings: list[str] | None = None,
                seconds: float | None = None) -> Path:
    """A distribution metric's per-case state, or plot arrays, as npz with the entry key."""
    arrays = {str(k): np.asarray(v) for k, v in state.items()}
    arrays[KEY_FIELD] = np.asarray(e.key)
    if warnings:
        arrays[WARNINGS_FIELD] = np.asarray([str(w) for w in warnings])
    if seconds is not None:
        arrays[SECONDS_FIELD] = np.asarray(round(float(seconds), 4))
    p = atomic_write_npz(entry_path(out, e), arrays)
    clear_error(out, e)
    return p


def write_error(out: str | Path, e: Entry, stage: str, message: str) -> Path:
    """A recorded failure; removes a result of the entry so the two never disagree."""
    p = atomic_write_json(error_path(out, e), {"key": e.key, "stage": stage, "error": " ".join(str(message).split())})
    r = entry_path(out, e)
    if r.exists():
        r.unlink()
    return p


def clear_error(out: str | Path, e: Entry) -> None:
    ep = error_path(out, e)
    if ep.exists():
        ep.unlink()


# ----------------------------------------------------------------------------- records in transit
def read_record(out: str | Path, e: Entry) -> dict[str, Any] | None:
    """One entry's result as a picklable record (per-case values, a state, or a recorded error);
    None when the entry has no result with its key. Used to gather torchrun ranks' results."""
    if entry_done(out, e):
        p = entry_path(out, e)
        if e.kind == "case":
            return {"entry": e.to_dict(), "type": "json", "data": json.loads(p.read_text(encoding="utf-8"))}
        with np.load(p, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files if k != KEY_FIELD}
        return {"entry": e.to_dict(), "type": "npz", "data": arrays}
    if error_done(out, e):
        return {"entry": e.to_dict(), "type": "error", "data": json.loads(error_path(out, e).read_text(encoding="utf-8"))}
    return None


def write_record(out: str | Path, rec: dict[str, Any]) -> bool:
    """Write a gathered record into ``out`` unless a result with its key is there. True if written."""
    e = Entry(**rec["entry"])
    if rec["type"] == "error":
        if entry_done(out, e) or error_done(out, e):
            return False
        atomic_write_json(error_path(out, e), rec["data"])
        return True
    if entry_done(out, e):
        return False
    if rec["type"] == "json":
        atomic_write_json(entry_path(out, e), rec["data"])
    else:
        arrays = dict(rec["data"])
        arrays[KEY_FIELD] = np.asarray(e.key)
        atomic_write_npz(entry_path(out, e), arrays)
    clear_error(out, e)
    return True
