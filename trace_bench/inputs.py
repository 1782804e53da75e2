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

:func:`input_hash` is the content hash the runner keys caches with; for good single-file inputs it
is byte-for-byte the hash trace-bench always used (so existing caches stay valid):

* a file: ``sha256(file bytes)``;
* a folder: ``sha256`` of the lines ``f"{relpath}\\0{sha256(file)}\\n"`` over its regular files,
  recursively, sorted by path, ``relpath`` in POSIX form;
* a NRRD / MetaImage header with detached data files (:func:`read_header`): ``sha256`` of
  ``"trace-bench detached v1\\n"`` then the line ``f"{name}\\0{sha256}\\n"`` of the header and of each
  data file in the header's order (so replacing the ``.raw`` beside an ``.nhdr`` changes the hash).

Detached data files (NRRD ``data file:``, MetaImage ``ElementDataFile =``; single names, ``LIST`` and
``%d`` patterns) belong to their header: each must resolve (symlinks followed) to a regular file inside
the header's own folder, or inside a folder listed in ``$TRACE_BENCH_DATA_DIRS`` (``os.pathsep``
separated: the user's allowance); anything else is refused naming the header, the data file and the
reason, and a data file that is not a regular file is never opened (a FIFO would block forever).

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
from dataclasses import dataclass
from pathlib import Path

from .errors import VolumeError

__all__ = ["DATA_DIRS_ENV", "HASH_CACHE_ENV", "RACY_SECONDS", "HeaderInfo", "InputError", "check_input",
           "detached_files", "hash_cache_dir", "input_files", "input_hash", "input_problem", "read_header"]

HASH_CACHE_ENV = "TRACE_BENCH_HASH_CACHE"
#: extra folders (``os.pathsep`` separated) from which NRRD / MetaImage headers may name their data files
DATA_DIRS_ENV = "TRACE_BENCH_DATA_DIRS"
#: suffixes of formats whose header may name detached data files
HEADER_SUFFIXES = (".nhdr", ".nrrd", ".mhd", ".mha")
#: the most header text read (a LIST of data files included)
MAX_HEADER_BYTES = 1 << 20
#: the most data files one header may name (``LIST`` / ``%d`` patterns)
MAX_DATA_FILES = 100_000
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
    else:
        detached_files(p)  # a NRRD / MetaImage header: its data files too


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


_MEMO: dict[tuple[str, int, int], str] = {}


def _sha256(path: Path) -> str:
    """sha256 of a file's bytes, memoised in this process per (real path, size, mtime)."""
    try:
        st = os.stat(path)
        key = (os.path.realpath(path), st.st_size, st.st_mtime_ns)
        if key not in _MEMO:
            h = hashlib.sha256()
            with open(path, "rb") as fh:
                for chunk in iter(lambda: fh.read(1 << 20), b""):
                    h.update(chunk)
            _MEMO[key] = h.hexdigest()
        return _MEMO[key]
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
    data = detached_files(p)
    if not data:
        return _file_hash(p)
    h = hashlib.sha256(b"trace-bench detached v1\n")
    for f in (p, *data):
        h.update(f"{os.fsdecode(f.name)}\0{_file_hash(f)}\n".encode("utf-8", "surrogateescape"))
    return h.hexdigest()


def input_files(path: str | Path) -> list[Path]:
    """Every file an input entry consists of: the file and its detached data files, or a folder's
    regular files (recursively). Checked like :func:`check_input`."""
    p = Path(path)
    check_input(p)
    if p.is_dir():
        return sorted(q for q in p.rglob("*") if q.is_file())
    return [p, *detached_files(p)]


# --------------------------------------------------------------------------- detached data files
@dataclass(frozen=True)
class HeaderInfo:
    """What a NRRD / MetaImage header says about where its voxels are (nothing is opened but the header).

    ``data_names``: the data file names as written (empty = the voxels follow the header inline);
    ``data_offset``: byte offset of inline data in the header file (None when detached or unknown);
    ``compression``: ``gzip`` / ``bzip2`` (NRRD ``encoding``), ``zlib`` (MetaImage ``CompressedData``) or None;
    ``fields``: the header's fields (keys lower-case, as written otherwise).
    """

    path: Path
    format: str  # "nrrd" | "mha"
    data_names: tuple[str, ...]
    data_offset: int | None
    compression: str | None
    fields: dict[str, str]


def _expand_pattern(value: str, header: Path) -> list[str] | None:
    """NRRD / MetaImage ``<format with %d> <min> <max> <step> [<dim>]`` -> file names; None if not a pattern."""
    tokens = value.split()
    if len(tokens) < 4 or "%" not in tokens[0]:
        return None
    try:
        lo, hi, step = int(tokens[1]), int(tokens[2]), int(tokens[3])
    except ValueError:
        return None
    if step == 0 or (hi - lo) // step + 1 > MAX_DATA_FILES:
        raise InputError(header, f"data file pattern {value!r}: step 0 or more than {MAX_DATA_FILES} files")
    stop = hi + (1 if step > 0 else -1)
    try:
        return [tokens[0] % i for i in range(lo, stop, step)]
    except (TypeError, ValueError):
        raise InputError(header, f"data file pattern {value!r} is not a printf pattern of one integer") from None


def read_header(path: str | Path) -> HeaderInfo | None:
    """Parse the text header of a NRRD (``.nrrd``/``.nhdr``) or MetaImage (``.mha``/``.mhd``) file; None
    for other files. Raises :class:`InputError` for a header that cannot be parsed (one line)."""
    p = Path(path)
    low = p.name.lower()
    if not low.endswith(HEADER_SUFFIXES):
        return None
    try:
        with open(p, "rb") as fh:
            raw = fh.read(MAX_HEADER_BYTES)
    except OSError as e:
        raise _os_error(p, e) from None
    if low.endswith((".nrrd", ".nhdr")):
        return _nrrd_header(p, raw)
    return _meta_header(p, raw)


def _nrrd_header(p: Path, raw: bytes) -> HeaderInfo:
    if not raw.startswith(b"NRRD"):
        raise InputError(p, "not a NRRD file (no NRRD000x magic line)")
    fields: dict[str, str] = {}
    names: list[str] = []
    offset: int | None = None
    pos = 0
    lines = raw.split(b"\n")
    listing = False
    for i, line in enumerate(lines):
        pos_next = pos + len(line) + 1
        text = line.decode("latin-1").rstrip("\r")
        if i == 0:
            pos = pos_next
            continue
        if listing:
            if text.strip():
                names.append(text.strip())
            pos = pos_next
            continue
        if text == "":
            offset = pos_next
            break
        if text.startswith("#") or ":=" in text:
            pos = pos_next
            continue
        key, sep, value = text.partition(":")
        if sep:
            fields[key.strip().lower()] = value.strip()
            if key.strip().lower() in ("data file", "datafile"):
                v = value.strip()
                if v.split()[:1] == ["LIST"]:
                    listing = True
                else:
                    names = _expand_pattern(v, p) or [v]
        pos = pos_next
    enc = fields.get("encoding", "raw").lower()
    comp = "gzip" if enc in ("gzip", "gz") else "bzip2" if enc in ("bzip2", "bz2") else None
    if names:
        offset = None
    return HeaderInfo(p, "nrrd", tuple(names), offset, comp, fields)


def _meta_header(p: Path, raw: bytes) -> HeaderInfo:
    fields: dict[str, str] = {}
    names: list[str] = []
    offset: int | None = None
    pos = 0
    lines = raw.split(b"\n")
    for i, line in enumerate(lines):
        pos_next = pos + len(line) + 1
        text = line.decode("latin-1").rstrip("\r")
        key, sep, value = text.partition("=")
        if not sep:
            if i == 0:
                raise InputError(p, "not a MetaImage header (no 'Key = Value' lines)")
            pos = pos_next
            continue
        k = key.strip().lower()
        fields[k] = value.strip()
        if k == "elementdatafile":
            v = value.strip()
            if v.upper() == "LOCAL":
                offset = pos_next
            elif v.split()[:1] == ["LIST"]:
                names = [t.decode("latin-1").strip() for t in lines[i + 1:] if t.strip()]
            else:
                names = _expand_pattern(v, p) or [v]
            break
        pos = pos_next
    comp = "zlib" if fields.get("compresseddata", "false").lower() == "true" else None
    return HeaderInfo(p, "mha", tuple(names), offset, comp, fields)


def _allowed_roots(header: Path) -> list[str]:
    roots = [os.path.realpath(header.parent)]
    for d in os.environ.get(DATA_DIRS_ENV, "").split(os.pathsep):
        if d.strip():
            roots.append(os.path.realpath(os.path.expanduser(d.strip())))
    return roots


def detached_files(path: str | Path) -> list[Path]:
    """The data files a NRRD / MetaImage header names (``[]`` for inline data and other formats).

    Each is checked before anything opens it: it must resolve inside the header's folder (or a folder in
    ``$TRACE_BENCH_DATA_DIRS``), exist, and be a readable regular file; otherwise :class:`InputError`
    names the header, the data file and the reason.
    """
    p = Path(path)
    info = read_header(p)
    if info is None or not info.data_names:
        return []
    roots = _allowed_roots(p)
    out: list[Path] = []
    for name in info.data_names:
        f = Path(name) if os.path.isabs(name) else p.parent / name
        real = os.path.realpath(f)
        if not any(real == r or real.startswith(r.rstrip(os.sep) + os.sep) for r in roots):
            raise InputError(p, f"data file {name!r} named by the header resolves to {real}, outside the header's "
                                f"folder {p.parent}: readers only open data files beside their header (move it there, "
                                f"or allow its folder with {DATA_DIRS_ENV}=DIR)")
        try:
            _check_entry(f)
        except InputError as e:
            reason = "does not exist" if e.reason == "no such file or folder" else e.reason
            raise InputError(p, f"data file {name!r} named by the header: {reason}") from None
        if f.is_dir():
            raise InputError(p, f"data file {name!r} named by the header is a folder")
        out.append(f)
    return out
