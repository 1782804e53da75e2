"""Whether a finished run's outputs are current, so a warm rerun that computed nothing rewrites nothing.

After :func:`~.pipeline.finish` completes, ``OUT/.trace-bench/finish.json`` records a key of everything the
tables and reports are made from (:func:`finish_key`) and the sha256 of the run stamp written with them. A
rerun that computed no entry finds its outputs current (:func:`outputs_current`) when

* its key is the recorded one: the manifest (every entry's cache key, the input hashes, the whole
  configuration, local settings included, the records that failed their checksum), the size and
  modification time of every record of the plan (a record written since, by any process, changes it),
  the trace-bench version and the size and modification time of every source file of ``trace_bench``,
  ``reports``, ``baselines`` and the run's plug-ins, the versions of the packages ``provenance.json``
  lists, the command line and working directory ``provenance.json`` records, and whether a report is
  rendered;
* the stamp is the one written with that key, for this fingerprint, and every file it names still has
  the sha256 and size it records (a report edited, truncated or deleted since is caught).

Then nothing is aggregated, rendered or written again: ``provenance.json`` keeps the timings of the run
that computed the outputs. The records themselves were verified (checksum and key) by the per-case stage
as always. Runs with a memorization audit (its training folder is not in the keys) always finish.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import sys
from pathlib import Path
from typing import Any, Iterable

from .. import __version__
from ..results.files import atomic_write_json
from ..results.layout import Entry, entry_path, error_path
from ..results.stamp import STATE_DIR, file_digest, read_stamp, stamp_path

FINISH_FILE = "finish.json"
#: the packages whose source files are part of the key (a code change re-renders the reports)
SOURCE_PACKAGES = ("trace_bench", "reports", "baselines")


def finish_path(out: str | Path) -> Path:
    return Path(out) / STATE_DIR / FINISH_FILE


def _stat(path: Path) -> list[int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return [st.st_size, st.st_mtime_ns]


def source_files(plugins: Iterable[str] = ()) -> list[tuple[str, list[int] | None]]:
    """Size and modification time of every ``.py`` file of :data:`SOURCE_PACKAGES` and of the plug-in
    modules (found without importing them)."""
    out: list[tuple[str, list[int] | None]] = []
    for pkg in SOURCE_PACKAGES:
        spec = importlib.util.find_spec(pkg)
        for d in (spec.submodule_search_locations or []) if spec is not None else []:
            for root, dirs, files in os.walk(d):
                dirs[:] = sorted(x for x in dirs if x != "__pycache__")
                out += [(os.path.join(root, f), _stat(Path(root) / f)) for f in sorted(files) if f.endswith(".py")]
    for name in plugins:
        mod = sys.modules.get(name)
        f = getattr(mod, "__file__", None)
        out.append((name, _stat(Path(f)) if f else None))
    return out


def finish_key(out: str | Path, manifest: dict[str, Any], entries: Iterable[Entry], *, report: bool,
               plugins: Iterable[str] = ()) -> str:
    """sha256 of what a finish makes its outputs from (see the module docstring)."""
    from .provenance import package_versions

    o = Path(out)
    records = [[e.method, e.case_id, e.metric, _stat(entry_path(o, e)), _stat(error_path(o, e))] for e in entries]
    data = {"manifest": manifest, "records": records, "report": bool(report), "version": __version__,
            "sources": source_files(plugins), "packages": package_versions(), "argv": list(sys.argv),
            "cwd": os.getcwd()}
    text = json.dumps(data, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def outputs_current(out: str | Path, key: str, fingerprint: str) -> bool:
    """Whether the outputs in ``out`` were made by a finish with ``key`` and are intact (module docstring)."""
    o = Path(out)
    try:
        rec = json.loads(finish_path(o).read_text(encoding="utf-8"))
        if rec.get("key") != key or rec.get("stamp") != file_digest(stamp_path(o)):
            return False
    except (OSError, ValueError, AttributeError):
        return False
    st = read_stamp(o)
    if st is None or st.get("fingerprint") != fingerprint or not st.get("files"):
        return False
    for name, want in st["files"].items():
        p = o / name
        try:
            if not p.is_file() or file_digest(p) != want:
                return False
        except OSError:
            return False
    return True


def record_finish(out: str | Path, key: str) -> None:
    """Record that the outputs in ``out`` (as its stamp names them now) were made with ``key``."""
    atomic_write_json(finish_path(out), {"key": key, "stamp": file_digest(stamp_path(out))})


def forget_finish(out: str | Path) -> None:
    """Drop the record before a finish rewrites the outputs (a finish cut short leaves none)."""
    try:
        finish_path(out).unlink()
    except FileNotFoundError:
        pass
