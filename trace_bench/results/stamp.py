"""The run stamp: ties every output file of a folder to the run that wrote it.

``OUT/.trace-bench/stamp.json`` holds the run's fingerprint (a hash of its manifest: inputs,
metrics, protocols, cache keys) and the sha256 and size of every table and report file the run
wrote. ``trace-bench report`` re-renders only from tables whose bytes match the stamp and whose
fingerprint matches ``manifest.json``: a truncated ``summary.csv``, a table left from an earlier
run, or a rerun interrupted after planning is refused with a message, never rendered silently.
When a run with a different fingerprint starts in a folder, the outputs of the earlier run are
removed first (:func:`clear_stale_outputs`); per-case records stay (they are keyed caches).

Only files named in the stamp are ever removed or replaced. :func:`check_out_folder` (the run's
preflight) refuses an ``--out`` that is inside or equal to an input folder, a non-empty folder that
trace-bench did not write (unless ``--force``; its files are left alone even then), and a folder where
a file the run writes exists but is not named in the stamp (the user's own ``report.md``, ``plots/``).
The fingerprint covers the settings :data:`trace_bench.config.SETTINGS` declares as changing values or
the run (the weights paths excepted: their sha256 is in the cache keys).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Iterable

from ..config import LOCAL, SETTINGS
from ..errors import ConfigError
from .files import atomic_write_json

STATE_DIR = ".trace-bench"
STAMP_FILE = "stamp.json"
#: 2: the stamp names every file the run wrote (an older one named its tables and reports only)
STAMP_VERSION = 2
#: files and folders a run derives from its per-case records (removed when a different run starts)
DERIVED_FILES = ("per_case.csv", "summary.csv", "errors.csv", "warnings.csv", "metrics.json", "provenance.json",
                 "report.md", "report.tex", "report.html", "table1.csv", "table1b.csv", "table2.csv",
                 "anatomy.csv", "anatomy_labels.csv", "anatomy_dist.csv", "results.json", "results.schema.json")
DERIVED_DIRS = ("stats", "plots", "tables", "audit")
#: the tables a report is rendered from (checked by :func:`check_stamp`)
TABLE_FILES = ("manifest.json", "per_case.csv", "summary.csv", "errors.csv", "warnings.csv", "metrics.json")
#: what a run writes besides those: its configuration and plan
RUN_FILES = ("config.toml", "manifest.json")
#: folders of the tool's own that hold no user file: keyed per-case records, the demo's inputs, the state,
#: the downstream-utility results (``trace-bench utility`` writes them with a lock of their own; a run removes
#: only the summary files it wrote and stamped there: trace_bench.utility.stage)
OWN_DIRS = ("cases", "demo-inputs", STATE_DIR, "utility")
#: settings left out of the fingerprint: local ones, and the weights paths (their sha256 is in every key)
UNSTAMPED = tuple(k for k, s in SETTINGS.items() if s.scope == LOCAL or s.route == "weights")


def stamp_path(out: str | Path) -> Path:
    return Path(out) / STATE_DIR / STAMP_FILE


def fingerprint(manifest: dict[str, Any]) -> str:
    """sha256 of what defines a run's numbers: entries (cache keys), methods, metrics, columns,
    pairing problems, profiles and the settings that change values."""
    cfg = {k: v for k, v in manifest.get("config", {}).items() if k not in UNSTAMPED}
    core = {k: manifest.get(k) for k in ("entries", "methods", "metrics", "problems", "profiles", "plot_case", "shard")}
    core["config"] = cfg
    return hashlib.sha256(json.dumps(core, sort_keys=True, separators=(",", ":")).encode("utf-8")).hexdigest()


def file_digest(path: Path) -> dict[str, Any]:
    """``{"sha256", "size"}`` of a file, as the run stamp records it."""
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


def written_files(out: str | Path) -> list[str]:
    """Every file a run writes that exists in ``out`` (names relative to it): :data:`RUN_FILES`,
    :data:`DERIVED_FILES` and the files under :data:`DERIVED_DIRS`."""
    o = Path(out)
    names = [n for n in RUN_FILES + DERIVED_FILES if (o / n).is_file()]
    for d in DERIVED_DIRS:
        if (o / d).is_dir() and not (o / d).is_symlink():
            names += sorted(p.relative_to(o).as_posix() for p in (o / d).rglob("*") if p.is_file())
    return names


def write_stamp(out: str | Path, fp: str, files: Iterable[str] | None = None) -> Path:
    """Record ``fp`` and the digest of each of ``files`` (names relative to ``out``, default: every
    file the run wrote, :func:`written_files`) that exists."""
    o = Path(out)
    names = written_files(o) if files is None else files
    digests = {name: file_digest(o / name) for name in sorted(set(names)) if (o / name).is_file()}
    return atomic_write_json(stamp_path(o), {"fingerprint": fp, "stamp_version": STAMP_VERSION, "files": digests})


def start_stamp(out: str | Path, fp: str) -> Path:
    """The stamp of a run that has just written its ``config.toml`` and ``manifest.json``: the same run
    resumed keeps the digests of the files it wrote before (so a file changed since is still caught)."""
    o = Path(out)
    st = read_stamp(o)
    kept = dict(st.get("files", {})) if st is not None and st.get("fingerprint") == fp else {}
    kept.update({n: file_digest(o / n) for n in RUN_FILES if (o / n).is_file()})
    return atomic_write_json(stamp_path(o), {"fingerprint": fp, "stamp_version": STAMP_VERSION, "files": kept})


def add_to_stamp(out: str | Path, names: Iterable[str]) -> None:
    """Name ``names`` (just written) in the folder's stamp, with their digests; no stamp: nothing to do."""
    o = Path(out)
    st = read_stamp(o)
    if st is None:
        return
    files = dict(st.get("files", {}))
    files.update({n: file_digest(o / n) for n in names if (o / n).is_file()})
    atomic_write_json(stamp_path(o), {"fingerprint": st.get("fingerprint"), "stamp_version": STAMP_VERSION,
                                      "files": files})


def stamp_outputs(out: str | Path) -> None:
    """Name in the stamp the files a re-render of the report wrote (``trace-bench report``), keeping the
    digests of the tables it was rendered from (so a table changed since is still caught)."""
    add_to_stamp(out, [n for n in written_files(out) if n not in TABLE_FILES and n not in RUN_FILES])


def stamped_names(out: str | Path) -> set[str] | None:
    """The files the stamp names (None: no stamp). A stamp of an older trace-bench named its tables
    only: the derived folders it wrote count as named."""
    st = read_stamp(out)
    if st is None:
        return None
    names = set(st.get("files", {}))
    if st.get("stamp_version") is None:  # an older trace-bench named its tables and reports only
        o = Path(out)
        names |= {n for n in RUN_FILES if (o / n).is_file()}
        for d in DERIVED_DIRS:
            if (o / d).is_dir():
                names |= {p.relative_to(o).as_posix() for p in (o / d).rglob("*") if p.is_file()}
    return names


def clear_stale_outputs(out: str | Path, fp: str) -> list[str]:
    """Remove the outputs of an earlier run whose fingerprint differs from ``fp``: only files its stamp
    names (and the folders that leaves empty). Returns what was removed (names relative to ``out``)."""
    o = Path(out)
    st = read_stamp(o)
    if st is None or st.get("fingerprint") == fp:
        return []
    removed = []
    for name in sorted(stamped_names(o) or ()):
        p = o / name
        if name not in RUN_FILES and (p.is_file() or p.is_symlink()):
            p.unlink()
            removed.append(name)
    for name in DERIVED_DIRS:
        p = o / name
        if p.is_dir() and not p.is_symlink():
            for d in sorted((q for q in p.rglob("*") if q.is_dir()), key=lambda q: -len(q.parts)) + [p]:
                if not any(d.iterdir()):
                    d.rmdir()
    stamp_path(o).unlink()
    return removed


def check_out_folder(out: str | Path, *, inputs: Iterable[str | Path] = (), force: bool = False) -> None:
    """Refuse an output folder the run must not write into (one line each; see the module doc)."""
    o = Path(out).expanduser()
    _refuse_inside_inputs(o, inputs)
    if not o.exists():
        return
    if not o.is_dir():
        raise ConfigError(f"--out {o} exists and is not a folder")
    named = stamped_names(o)
    if named is None and not force:
        foreign = sorted(p.name for p in o.iterdir() if p.name not in OWN_DIRS)
        if foreign:
            raise ConfigError(f"--out {o} is not empty and was not written by trace-bench ({_few(foreign)}); choose "
                              "an empty or new folder, or pass --force to write beside those files (they are left alone)")
    conflicts = foreign_outputs(o, named or set())
    if conflicts:
        raise ConfigError(f"--out {o}: {_few(conflicts)} not written by trace-bench where the run writes its own "
                          "outputs; they are never replaced: move them, or choose another --out")


def _refuse_inside_inputs(out: Path, inputs: Iterable[str | Path]) -> None:
    ro = out.resolve()
    for f in inputs:
        rf = Path(f).expanduser().resolve()
        if ro == rf or rf in ro.parents:
            raise ConfigError(f"--out {out} is {'the input folder' if ro == rf else 'inside the input folder'} {f}: "
                              "a run never writes among its inputs; choose another --out")


def foreign_outputs(out: Path, named: set[str]) -> list[str]:
    """Files at the places a run writes (its files, its derived folders) that the stamp does not name."""
    found = [n for n in RUN_FILES + DERIVED_FILES if (out / n).exists() and n not in named]
    for d in DERIVED_DIRS:
        if (out / d).exists():
            files = [p for p in (out / d).rglob("*") if not p.is_dir()] if (out / d).is_dir() else [out / d]
            found += [rel for rel in (p.relative_to(out).as_posix() for p in files) if rel not in named]
    return found


def _few(names: list[str]) -> str:
    return ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")


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
        got = file_digest(p)
        if got != want:
            raise ConfigError(f"{p}: changed or truncated since the run wrote it ({got['size']} bytes, the run wrote "
                              f"{want['size']}); {fix}")
    for name in ("summary.csv", "metrics.json"):
        if name not in st.get("files", {}):
            raise ConfigError(f"{o / name}: not written by the run that wrote this folder; {fix}")
