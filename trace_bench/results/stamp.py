"""The run stamp: ties every output file of a folder to the run that wrote it.

``OUT/.trace-bench/stamp.json`` holds the run's fingerprint (a hash of its manifest: inputs,
metrics, protocols, cache keys) and the sha256 and size of every table and report file the run
wrote. ``trace-bench report`` re-renders only from tables whose bytes match the stamp and whose
fingerprint matches ``manifest.json``: a truncated ``summary.csv``, a table left from an earlier
run, or a rerun interrupted after planning is refused with a message, never rendered silently.
When a run with a different fingerprint starts in a folder, the derived outputs of the earlier run
are removed first (:func:`clear_stale_outputs`); per-case records stay (they are keyed caches).
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any, Iterable

from ..errors import ConfigError
from .files import atomic_write_json

STATE_DIR = ".trace-bench"
STAMP_FILE = "stamp.json"
#: files and folders a run derives from its per-case records (removed when a different run starts)
DERIVED_FILES = ("per_case.csv", "summary.csv", "errors.csv", "warnings.csv", "metrics.json", "provenance.json",
                 "report.md", "report.tex", "report.html", "table1.csv", "table1b.csv", "table2.csv",
                 "results.json", "results.schema.json")
DERIVED_DIRS = ("stats", "plots", "tables", "audit")
#: the tables a report is rendered from (checked by :func:`check_stamp`)
TABLE_FILES = ("manifest.json", "per_case.csv", "summary.csv", "errors.csv", "warnings.csv", "metrics.json")
#: manifest fields that do not change any number (excluded from the fingerprint)
_LOCAL = ("out", "workers", "progress", "prefetch", "device", "weights", "shard", "strict", "relative_paths")


def stamp_path(out: str | Path) -> Path:
    return Path(out) / STATE_DIR / STAMP_FILE


def fingerprint(manifest: dict[str, Any]) -> str:
    """sha256 of what defines a run's numbers: entries (cache keys), methods, metrics, columns,
    pairing problems, profiles and the settings that change values."""
    cfg = {k: v for k, v in manifest.get("config", {}).items() if k not in _LOCAL}
    core = {k: manifest.get(k) for k in ("entries", "methods", "metrics", "problems", "profiles", "plot_case", "shard")}
    core["config"] = cfg
    return hashlib.sha256(json.dumps(core, sort_keys=True, separators=(",", ":")).encode("utf-8")).hexdigest()


def _file_digest(path: Path) -> dict[str, Any]:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return {"sha256": h.hexdigest(), "size": path.stat().st_size}


def read_stamp(out: str | Path) -> dict[str, Any] | None:
    p = stamp_path(out)
    try:
        return json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def write_stamp(out: str | Path, fp: str, files: Iterable[str]) -> Path:
    """Record ``fp`` and the digest of each of ``files`` (names relative to ``out``) that exists."""
    o = Path(out)
    digests = {name: _file_digest(o / name) for name in sorted(set(files)) if (o / name).is_file()}
    return atomic_write_json(stamp_path(o), {"fingerprint": fp, "files": digests})


def clear_stale_outputs(out: str | Path, fp: str) -> list[str]:
    """Remove the derived outputs of an earlier run whose fingerprint differs from ``fp`` (or of an
    unstamped run). Returns what was removed (names relative to ``out``)."""
    o = Path(out)
    st = read_stamp(o)
    if st is not None and st.get("fingerprint") == fp:
        return []
    removed = []
    for name in DERIVED_FILES:
        p = o / name
        if p.is_file() or p.is_symlink():
            p.unlink()
            removed.append(name)
    for name in DERIVED_DIRS:
        p = o / name
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p)
            removed.append(name + "/")
    if stamp_path(o).exists():
        stamp_path(o).unlink()
    return removed


def check_stamp(out: str | Path) -> None:
    """Refuse (ConfigError) unless the tables in ``out`` are exactly those its last run wrote."""
    o = Path(out)
    fix = f"rerun `trace-bench run --config {o / 'config.toml'}` to rebuild them"
    st = read_stamp(o)
    if st is None:
        raise ConfigError(f"{o}: no run stamp ({stamp_path(o)}): the run that wrote this folder did not finish, or an "
                          f"older trace-bench wrote it; {fix}")
    try:
        man = json.loads((o / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        raise ConfigError(f"{o / 'manifest.json'}: missing or unreadable; {fix}") from None
    if fingerprint(man) != st.get("fingerprint"):
        raise ConfigError(f"{o}: manifest.json belongs to a newer run than the tables (an interrupted rerun with "
                          f"changed inputs or settings); {fix}")
    for name, want in sorted(st.get("files", {}).items()):
        if name not in TABLE_FILES or name == "manifest.json":
            continue
        p = o / name
        if not p.is_file():
            raise ConfigError(f"{p}: missing (the run wrote it); {fix}")
        got = _file_digest(p)
        if got != want:
            raise ConfigError(f"{p}: changed or truncated since the run wrote it ({got['size']} bytes, the run wrote "
                              f"{want['size']}); {fix}")
    for name in ("summary.csv", "metrics.json"):
        if name not in st.get("files", {}):
            raise ConfigError(f"{o / name}: not written by the run that wrote this folder; {fix}")
