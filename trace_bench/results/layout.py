"""The layout of an output folder and the format of its per-case records.

::

    OUT/
      config.toml          effective configuration (``trace-bench run --config OUT/config.toml`` repeats it)
      manifest.json        the plan: methods, metrics, entries with their cache keys, input hashes
      cases/<method>/<case_id>/<metric>.json        per-case values {"key", "key_data", "metric", "values", ...,
                                                    "checksum"}
      cases/<method>/<case_id>/<metric>.npz         a distribution metric's mergeable state (+ ``__key__``,
                                                    ``__key_data__``, ``__checksum__``)
      cases/<method>/<case_id>/<metric>.error.json  a recorded failure {"key", "key_data", "stage", "error", "checksum"}
      per_case.csv, summary.csv, errors.csv, warnings.csv, metrics.json, stats/, provenance.json
      report.md, report.tex, report.html, plots/
      .trace-bench/        lock file and the run stamp (see :mod:`trace_bench.results.stamp`)

Method names and case ids become folder and file names through :func:`safe_name` (percent-encoding of
:func:`trace_bench.cases.case_file_stem`: an id of at most 100 UTF-8 bytes whose encoding fits in
:data:`MAX_NAME_BYTES` keeps its name; a longer one is shortened with a hash of the id), so no id makes a
name the file system refuses ("File name too long"). :func:`case_name` validates the id first.
A record carries the key of the entry that wrote it, the key data the key is the hash of, and a
checksum of its whole content (:func:`record_checksum`). A record whose key differs from the plan's is
ignored (recomputed), so a changed input or setting never reuses an old value; a record whose checksum
fails (edited by hand, truncated, corrupted) is recomputed too, and the run says so
(:func:`check_record`).
"""

from __future__ import annotations

import hashlib
import json
import urllib.parse
from dataclasses import dataclass, field
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
#: npz keys of the key data (JSON text) and of the checksum of every other array
KEY_DATA_FIELD = "__key_data__"
CHECKSUM_FIELD = "__checksum__"
BOOKKEEPING = (KEY_FIELD, WARNINGS_FIELD, SECONDS_FIELD, KEY_DATA_FIELD, CHECKSUM_FIELD)
#: the outcome of :func:`check_record`
RECORD_OK, RECORD_MISSING, RECORD_OTHER_KEY, RECORD_CORRUPT = "ok", "missing", "other key", "corrupt"


@dataclass(frozen=True)
class Entry:
    """One unit of per-case work: a metric (or the plot artifact) on one volume."""

    method: str
    case_id: str
    metric: str  # metric name, or PLOT_ARTIFACT
    kind: str  # "case" | "distribution" | "artifact"
    key: str
    #: what ``key`` is the sha256 of (plan only: records carry it, the manifest does not)
    key_data: dict[str, Any] | None = field(default=None, compare=False, hash=False, repr=False)

    @property
    def task(self) -> tuple[str, str]:
        return (self.method, self.case_id)

    def to_dict(self) -> dict[str, str]:
        return {"method": self.method, "case_id": self.case_id, "metric": self.metric, "kind": self.kind, "key": self.key}


def _canonical(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def record_checksum(rec: dict[str, Any]) -> str:
    """sha256 of a JSON record's content without its ``checksum`` field (canonical JSON)."""
    return hashlib.sha256(_canonical({k: v for k, v in rec.items() if k != "checksum"})).hexdigest()


def arrays_checksum(arrays: dict[str, np.ndarray]) -> str:
    """sha256 over every array but the checksum itself: name, dtype, shape and bytes, in name order."""
    h = hashlib.sha256()
    for k in sorted(arrays):
        if k == CHECKSUM_FIELD:
            continue
        a = np.ascontiguousarray(arrays[k])
        h.update(_canonical([k, a.dtype.str, list(a.shape)]))
        h.update(a.tobytes())
    return h.hexdigest()


def _key_data_text(e: Entry) -> str:
    return _canonical(e.key_data if e.key_data is not None else {}).decode("utf-8")


def _sealed(rec: dict[str, Any]) -> dict[str, Any]:
    rec = {k: v for k, v in rec.items() if k != "checksum"}
    rec["checksum"] = record_checksum(rec)
    return rec


#: the longest name (bytes) :func:`safe_name` makes: file systems allow 255 bytes per name, and plot files
#: add ``per_slice_`` / ``.png`` to a case's name; a shortened id encodes to at most 3 x 48 + 17 = 161 bytes
MAX_NAME_BYTES = 180


def _quote(name: str) -> str:
    q = urllib.parse.quote(name, safe="-_.[]")
    return q if q not in ("", ".", "..") else urllib.parse.quote(name, safe="")


def safe_name(name: str) -> str:
    """A file-system-safe name for a method or case id: its percent-encoding (reversible) when that is at
    most :data:`MAX_NAME_BYTES` bytes and the name at most 100 UTF-8 bytes, else the percent-encoding of
    its hashed short form (:func:`trace_bench.cases.case_file_stem`; distinct names stay distinct)."""
    from ..cases import MAX_STEM_BYTES, case_file_stem

    q = _quote(name)
    if len(q) <= MAX_NAME_BYTES and len(name.encode("utf-8")) <= MAX_STEM_BYTES:
        return q
    return _quote(case_file_stem(name, max_bytes=0))


def case_name(case_id: str) -> str:
    """The folder name of a case's records and the name part of its plot files: :func:`safe_name` of the
    id, validated (:func:`trace_bench.cases.case_file_stem` refuses ids that are paths or markup)."""
    from ..cases import case_file_stem

    case_file_stem(case_id)  # raises ConfigError for an id that is not data
    return safe_name(case_id)


def case_dir(out: str | Path, method: str, case_id: str) -> Path:
    return Path(out) / "cases" / safe_name(method) / case_name(case_id)


def entry_path(out: str | Path, e: Entry) -> Path:
    ext = ".json" if e.kind == "case" else ".npz"
    return case_dir(out, e.method, e.case_id) / f"{e.metric}{ext}"


def error_path(out: str | Path, e: Entry) -> Path:
    return case_dir(out, e.method, e.case_id) / f"{e.metric}.error.json"


def check_record(path: Path, key: str) -> str:
    """Whether the record at ``path`` is a sound record of the entry with ``key``: :data:`RECORD_OK`,
    :data:`RECORD_MISSING`, :data:`RECORD_OTHER_KEY` (an older setting or input: recomputed silently)
    or :data:`RECORD_CORRUPT` (its checksum or its key data do not match its content: edited by hand,
    truncated, or written by another tool; recomputed, and the run says so)."""
    if not path.is_file():
        return RECORD_MISSING
    try:
        if path.suffix == ".json":
            rec = json.loads(path.read_text(encoding="utf-8"))
            if not isinstance(rec, dict):
                return RECORD_CORRUPT
            if rec.get("key") != key:
                return RECORD_OTHER_KEY
            ok = rec.get("checksum") == record_checksum(rec) and _key_matches(rec.get("key_data"), key)
            return RECORD_OK if ok else RECORD_CORRUPT
        with np.load(path, allow_pickle=False) as z:
            if KEY_FIELD not in z.files:
                return RECORD_CORRUPT
            if str(z[KEY_FIELD]) != key:
                return RECORD_OTHER_KEY
            arrays = {k: z[k] for k in z.files}
    except Exception:  # noqa: BLE001 - unreadable, truncated, not JSON / npz: not a sound record
        return RECORD_CORRUPT
    if CHECKSUM_FIELD not in arrays or str(arrays[CHECKSUM_FIELD]) != arrays_checksum(arrays):
        return RECORD_CORRUPT
    try:
        data = json.loads(str(arrays[KEY_DATA_FIELD])) if KEY_DATA_FIELD in arrays else None
    except ValueError:
        return RECORD_CORRUPT
    return RECORD_OK if _key_matches(data, key) else RECORD_CORRUPT


def _key_matches(data: Any, key: str) -> bool:
    """A record's key data hashes to its key (records of entries planned without key data carry ``{}``)."""
    if data == {}:
        return True
    return isinstance(data, dict) and hashlib.sha256(
        json.dumps(data, sort_keys=True, separators=(",", ":")).encode()).hexdigest() == key


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
    """Whether a sound result with this entry's key exists (:func:`check_record`). Recorded failures
    are retried on the next run (a transient failure such as out-of-memory heals; a deterministic one
    gives the same row again)."""
    return check_record(entry_path(out, e), e.key) == RECORD_OK


def error_done(out: str | Path, e: Entry) -> bool:
    return check_record(error_path(out, e), e.key) == RECORD_OK


def corrupt_records(out: str | Path, entries: list[Entry]) -> list[tuple[Entry, Path]]:
    """The records (results or errors) of ``entries`` that carry the entry's key but fail their checksum."""
    bad = []
    for e in entries:
        for p in (entry_path(out, e), error_path(out, e)):
            if p.is_file() and check_record(p, e.key) == RECORD_CORRUPT:
                bad.append((e, p))
    return bad


def write_values(out: str | Path, e: Entry, values: dict[str, float], *, protocol: str, seconds: float,
                 warnings: list[str] | None = None, spacing: tuple[float, float, float] | None = None) -> Path:
    """A per-case metric's record (and the removal of an older error record of the entry); ``spacing``:
    the scored volume's voxel size (z, y, x) mm."""
    rec: dict[str, Any] = {"key": e.key, "key_data": e.key_data or {}, "metric": e.metric,
                           "values": {str(k): float(v) for k, v in values.items()},
                           "protocol": protocol, "seconds": round(seconds, 4)}
    if warnings:
        rec["warnings"] = list(warnings)
    if spacing is not None:
        rec["spacing"] = [float(x) for x in spacing]
    p = atomic_write_json(entry_path(out, e), _sealed(rec))
    clear_error(out, e)
    return p


def write_state(out: str | Path, e: Entry, state: dict[str, Any], warnings: list[str] | None = None,
                seconds: float | None = None) -> Path:
    """A distribution metric's per-case state, or plot arrays, as npz with the entry key."""
    arrays = {str(k): np.asarray(v) for k, v in state.items()}
    arrays[KEY_FIELD] = np.asarray(e.key)
    arrays[KEY_DATA_FIELD] = np.asarray(_key_data_text(e))
    if warnings:
        arrays[WARNINGS_FIELD] = np.asarray([str(w) for w in warnings])
    if seconds is not None:
        arrays[SECONDS_FIELD] = np.asarray(round(float(seconds), 4))
    arrays[CHECKSUM_FIELD] = np.asarray(arrays_checksum(arrays))
    p = atomic_write_npz(entry_path(out, e), arrays)
    clear_error(out, e)
    return p


def write_error(out: str | Path, e: Entry, stage: str, message: str) -> Path:
    """A recorded failure; removes a result of the entry so the two never disagree."""
    p = atomic_write_json(error_path(out, e), _sealed({"key": e.key, "key_data": e.key_data or {}, "stage": stage,
                                                      "error": " ".join(str(message).split())}))
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
            arrays = {k: z[k] for k in z.files}
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
        atomic_write_npz(entry_path(out, e), dict(rec["data"]))
    clear_error(out, e)
    return True
