"""Safe checks and content hashes of input entries (volume files, DICOM/PNG folders, sidecar files).

One bad entry in a folder of volumes must never abort or hang a run. :func:`check_input` inspects a
path with ``lstat``/``stat`` only, and opens nothing but regular files (opened ``O_NONBLOCK`` and
closed at once, to prove they are readable); a FIFO, device or socket is refused by its type and is
never opened (opening a FIFO blocks until a writer appears, i.e. forever).

Reasons (the text after ``path:`` in :class:`InputError`):

* ``no such file or folder``
* ``dangling symlink (target ... does not exist)``
* ``symlink loop``
* ``not a regular file (FIFO)`` / ``(character device)`` / ``(block device)`` / ``(socket)``
* ``permission denied``
* ``cannot read (<OS message>)``

A folder (DICOM series, PNG/TIFF stack, GenerateCT ``samples.*`` folder) is checked with every entry
below it (directory symlinks are not followed, as in :func:`input_hash`): readers scan whole folders
(GDCM opens every file in a DICOM folder), so one FIFO inside would hang the read.

:func:`input_hash` is the content hash the runner keys caches with; for good inputs it is
byte-for-byte the hash trace-bench always used (so existing caches stay valid):

* a file: ``sha256(file bytes)`` (:func:`trace_bench.weights.file_sha256`);
* a folder: ``sha256`` of the lines ``f"{relpath}\\0{sha256(file)}\\n"`` over its regular files,
  recursively, sorted by path, ``relpath`` in POSIX form.

Hash cache (warm reruns do not re-read every input): the sha256 of each regular file is remembered in
``$TRACE_BENCH_CACHE/hashes/`` (default ``~/.cache/trace-bench/hashes/``), one small JSON file per real
path, written atomically (temporary file + rename). An entry is used only when the file's current
``stat`` matches the stored one exactly: real path, size, ``mtime_ns``, ``ctime_ns``, inode and device.
Any write to a file changes its mtime and ctime (ctime cannot be set back by tools that restore mtime,
such as ``touch -d`` or ``rsync -t``), so a changed file misses. Against writes within one timestamp
tick, a hash is stored only if the file was not modified in the :data:`RACY_SECONDS` before it was
hashed, and only if its ``stat`` is the same before and after hashing. Folders use the cache per file.
``TRACE_BENCH_HASH_CACHE=0`` disables it (nothing is read or written); an unreadable or unwritable
cache is ignored (the file is hashed). Delete the folder to clear it.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import stat
import time
from pathlib import Path

from .errors import VolumeError

__all__ = ["HASH_CACHE_ENV", "RACY_SECONDS", "InputError", "check_input", "hash_cache_dir", "input_hash",
           "input_problem"]

HASH_CACHE_ENV = "TRACE_BENCH_HASH_CACHE"
#: a file modified less than this many seconds before it is hashed is not cached (timestamp granularity)
RACY_SECONDS = 2.0


class InputError(VolumeError):
    """An input entry cannot be used at all: it is missing, not a regular file or folder, a broken
    or looping symlink, or unreadable. The message is one line: ``path: reason``."""


_KINDS = ((stat.S_ISFIFO, "FIFO"), (stat.S_ISCHR, "character device"), (stat.S_ISBLK, "block device"),
          (stat.S_ISSOCK, "socket"))


def _kind(mode: int) -> str:
    for test, name in _KINDS:
        if test(mode):
            return name
    return "unknown file type"


def _stat(path: Path) -> os.stat_result:
    """``stat`` (following symlinks) with every failure turned into a one-line :class:`InputError`."""
    try:
        return os.stat(path)
    except FileNotFoundError:
        try:
            is_link = stat.S_ISLNK(os.lstat(path).st_mode)
        except OSError:
            is_link = False
        if is_link:
            try:
                target = os.readlink(path)
            except OSError:
                target = "?"
            raise InputError(path, f"dangling symlink (target {target} does not exist)") from None
        raise InputError(path, "no such file or folder") from None
    except OSError as e:
        raise _os_error(path, e) from None


def _os_error(path: Path, e: OSError) -> InputError:
    if e.errno == errno.ELOOP:
        return InputError(path, "symlink loop")
    if e.errno in (errno.EACCES, errno.EPERM):
        return InputError(path, "permission denied")
    return InputError(path, f"cannot read ({e.strerror or type(e).__name__})")


def _probe_file(path: Path) -> None:
    """Open a regular file read-only (non-blocking, so a FIFO swapped in after ``stat`` cannot hang us)."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    except OSError as e:
        raise _os_error(path, e) from None
    try:
        st = os.fstat(fd)
    finally:
        os.close(fd)
    if not stat.S_ISREG(st.st_mode):
        raise InputError(path, f"not a regular file ({_kind(st.st_mode)})")


def _check_entry(path: Path) -> bool:
    """Check one entry; return True when it is a folder (to descend into)."""
    st = _stat(path)
    if stat.S_ISDIR(st.st_mode):
        return True
    if not stat.S_ISREG(st.st_mode):
        raise InputError(path, f"not a regular file ({_kind(st.st_mode)})")
    _probe_file(path)
    return False


def _walk(folder: Path) -> list[Path]:
    """Every entry below ``folder`` (recursively; directory symlinks listed, not followed)."""
    out: list[Path] = []
    stack = [folder]
    while stack:
        d = stack.pop()
        try:
            with os.scandir(d) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as e:
            raise _os_error(d, e) from None
        for e in entries:
            p = Path(e.path)
            out.append(p)
            try:
                real_dir = e.is_dir(follow_symlinks=False)
            except OSError:
                real_dir = False
            if real_dir:
                stack.append(p)
    return out


def check_input(path: str | Path) -> None:
    """Raise :class:`InputError` (one line: path and reason) unless ``path`` is a readable regular
    file, or a readable folder whose entries are all readable regular files or folders.

    Never opens a FIFO, device or socket; regular files are opened non-blocking and closed at once.
    """
    p = Path(path)
    if _check_entry(p):
        try:
            os.scandir(p).close()
        except OSError as e:
            raise _os_error(p, e) from None
        for q in _walk(p):  # symlinks to folders are checked (target exists) but not followed, like rglob
            _check_entry(q)


def input_problem(path: str | Path) -> str | None:
    """The reason :func:`check_input` would give for ``path``, or ``None`` if it is usable."""
    try:
        check_input(path)
    except InputError as e:
        return e.reason
    return None


def hash_cache_dir() -> Path | None:
    """The folder of the input-hash cache, or ``None`` when ``TRACE_BENCH_HASH_CACHE=0`` (or off/false/no)."""
    if os.environ.get(HASH_CACHE_ENV, "").strip().lower() in ("0", "off", "false", "no"):
        return None
    root = os.environ.get("TRACE_BENCH_CACHE")
    return (Path(root).expanduser() if root else Path.home() / ".cache" / "trace-bench") / "hashes"


def _stat_key(real: str, st: os.stat_result) -> dict:
    return {"path": real, "size": st.st_size, "mtime_ns": st.st_mtime_ns, "ctime_ns": st.st_ctime_ns,
            "ino": st.st_ino, "dev": st.st_dev}


def _entry_file(folder: Path, real: str) -> Path:
    k = hashlib.sha256(real.encode("utf-8", "surrogateescape")).hexdigest()
    return folder / k[:2] / f"{k}.json"


def _cached_hash(folder: Path, key: dict) -> str | None:
    """The stored digest for ``key`` (path + stat) or None; any mismatch or unreadable entry is a miss."""
    try:
        with open(_entry_file(folder, key["path"]), "rb") as fh:
            rec = json.loads(fh.read())
    except (OSError, ValueError):
        return None
    if not isinstance(rec, dict) or any(rec.get(k) != v for k, v in key.items()):
        return None
    digest = rec.get("sha256")
    return digest if isinstance(digest, str) and len(digest) == 64 else None


def _store_hash(folder: Path, key: dict, digest: str) -> None:
    """Write one entry atomically (temporary file + rename, :func:`trace_bench.atomic.atomic_path`). Not
    fsync'ed: after a crash an entry is at worst missing or unreadable, i.e. a miss, and one fsync per file
    would make the cold run of a DICOM folder (thousands of small files) several times slower."""
    from .atomic import atomic_path

    try:
        with atomic_path(_entry_file(folder, key["path"])) as tmp:
            tmp.write_bytes(json.dumps({**key, "sha256": digest}).encode())
    except OSError:
        pass  # a read-only or full cache never fails a run


def _sha256(path: Path) -> str:
    from .weights import file_sha256

    try:
        return file_sha256(path)
    except OSError as e:
        raise _os_error(path, e) from None


def _file_hash(path: Path) -> str:
    """sha256 of a regular file, through the hash cache (module docstring) unless it is disabled."""
    folder = hash_cache_dir()
    if folder is None:
        return _sha256(path)
    try:
        real = os.path.realpath(path)
        st = os.stat(real)
    except OSError as e:
        raise _os_error(path, e) from None
    if not stat.S_ISREG(st.st_mode):
        return _sha256(path)
    key = _stat_key(real, st)
    hit = _cached_hash(folder, key)
    if hit is not None:
        return hit
    now = time.time_ns()
    digest = _sha256(path)
    try:
        after = os.stat(real)
    except OSError:
        return digest
    settled = now - max(st.st_mtime_ns, st.st_ctime_ns) >= RACY_SECONDS * 1e9
    if settled and _stat_key(real, after) == key:
        _store_hash(folder, key, digest)
    return digest


def input_hash(path: str | Path) -> str:
    """sha256 of a file, or of the sorted ``(relpath, sha256)`` lines of a folder's regular files.

    Same value as trace-bench always computed for good inputs (see the module docstring); raises
    :class:`InputError` (never ``OSError``, never hangs) for entries :func:`check_input` refuses.
    """
    p = Path(path)
    check_input(p)
    if p.is_dir():
        h = hashlib.sha256()
        for f in sorted(q for q in p.rglob("*") if q.is_file()):
            h.update(f"{f.relative_to(p).as_posix()}\0{_file_hash(f)}\n".encode())
        return h.hexdigest()
    return _file_hash(p)
