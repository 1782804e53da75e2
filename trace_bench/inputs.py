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
"""

from __future__ import annotations

import errno
import hashlib
import os
import stat
from pathlib import Path

from .errors import VolumeError

__all__ = ["InputError", "check_input", "input_hash", "input_problem"]


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


def _file_hash(path: Path) -> str:
    from .weights import file_sha256

    try:
        return file_sha256(path)
    except OSError as e:
        raise _os_error(path, e) from None


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
