"""On-disk caches keyed by content: network features (:class:`FeatureCache`) and segmenter label
maps (:class:`LabelMapCache`) (STYLE.md principle 5).

Key = sha256 of ``volume content hash | protocol id | extractor id | weights sha256 | variant``.
The volume content hash covers the float32 HU array bytes, its shape and the voxel spacing, so a
renamed file hits the cache and a changed volume misses it. Entries are ``.npy`` files written to a
temporary file in the same folder and renamed (atomic on POSIX): a crash never leaves a half
written entry, and concurrent writers of the same key write identical bytes.

Location: ``RunContext.cache_dir`` when set, else ``$TRACE_BENCH_CACHE/features`` (default
``~/.cache/trace-bench/features``). Delete the folder to clear it.

Label maps (:class:`LabelMapCache`): key = sha256 of ``labelmap-v1 | volume content hash | affine |
segmenter id | classes``; one compressed ``.npz`` per entry (``labels``, and ``info``: a JSON string
with the key, the segmenter id, the classes, the label names and meta, and the sha256 of the label
array), written atomically (:mod:`trace_bench.atomic`) and verified on read (zip CRC, the key and
the array's sha256): a missing, unreadable or corrupt entry is recomputed and overwritten. The
segmenter id names the algorithm version and weights (``threshold-v1``, ``vista3d@<sha256[:12]>``):
it must change whenever a segmenter's output can change, which is what makes the entries safe to
share between processes, methods, runs and the report stage. Location: ``RunContext.cache_dir/labels``
when set, else ``$TRACE_BENCH_CACHE/labels`` (default ``~/.cache/trace-bench/labels``);
``TRACE_BENCH_LABEL_CACHE=0`` (or off/false/no) turns it off.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tempfile
import threading
import zipfile
from pathlib import Path
from typing import Any, Callable

import numpy as np

from .atomic import atomic_path, current_umask
from .volume import Volume

LABEL_CACHE_ENV = "TRACE_BENCH_LABEL_CACHE"
LABEL_CACHE_FORMAT = "labelmap-v1"


def cache_home() -> Path:
    """``$TRACE_BENCH_CACHE``, default ``~/.cache/trace-bench``: the root of every on-disk cache."""
    root = os.environ.get("TRACE_BENCH_CACHE")
    return Path(root).expanduser() if root else Path.home() / ".cache" / "trace-bench"


def default_cache_root() -> Path:
    return cache_home() / "features"


def label_cache_root(cache_dir: str | Path | None = None) -> Path:
    """Folder of the label-map cache: ``cache_dir/labels`` when given (``RunContext.cache_dir``), else
    ``$TRACE_BENCH_CACHE/labels``."""
    return (Path(cache_dir).expanduser() if cache_dir else cache_home()) / "labels"


def label_cache_enabled() -> bool:
    """False when ``TRACE_BENCH_LABEL_CACHE`` is 0, off, false or no."""
    return os.environ.get(LABEL_CACHE_ENV, "").strip().lower() not in ("0", "off", "false", "no")


def volume_hash(volume: Volume) -> str:
    """sha256 of the canonical array (float32 C order), its shape and spacing. Memoised on the object."""
    cached = getattr(volume, "_trace_bench_content_hash", None)
    if cached is not None:
        return cached
    a = np.ascontiguousarray(volume.array, dtype=np.float32)
    h = hashlib.sha256()
    h.update(repr((a.shape, tuple(float(s) for s in volume.spacing))).encode())
    h.update(memoryview(a).cast("B"))
    digest = h.hexdigest()
    try:
        object.__setattr__(volume, "_trace_bench_content_hash", digest)
    except (AttributeError, TypeError):
        pass
    return digest


def array_hash(a: np.ndarray) -> str:
    a = np.ascontiguousarray(a)
    h = hashlib.sha256(repr((a.shape, a.dtype.str)).encode())
    h.update(memoryview(a).cast("B"))
    return h.hexdigest()


class FeatureCache:
    """``get_or_compute(key_parts, fn)``: load the cached array or compute, store atomically, return."""

    def __init__(self, root: str | Path | None = None, enabled: bool = True) -> None:
        self.root = Path(root).expanduser() if root is not None else default_cache_root()
        self.enabled = enabled
        self.hits = 0
        self.misses = 0

    @staticmethod
    def key(*parts: str) -> str:
        return hashlib.sha256("|".join(str(p) for p in parts).encode()).hexdigest()

    def path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.npy"

    def load(self, key: str) -> np.ndarray | None:
        p = self.path(key)
        if not self.enabled or not p.is_file():
            return None
        try:
            return np.load(p, allow_pickle=False)
        except (OSError, ValueError):  # unreadable entry: recompute and overwrite
            return None

    def store(self, key: str, value: np.ndarray) -> None:
        if not self.enabled:
            return
        p = self.path(key)
        p.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{key[:16]}.", suffix=".tmp", dir=p.parent)
        try:
            with os.fdopen(fd, "wb") as fh:
                np.save(fh, np.ascontiguousarray(value), allow_pickle=False)
            os.chmod(tmp, 0o666 & ~current_umask())
            os.replace(tmp, p)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)

    def get_or_compute(self, parts: tuple[str, ...], fn: Callable[[], np.ndarray]) -> np.ndarray:
        key = self.key(*parts)
        value = self.load(key)
        if value is not None:
            self.hits += 1
            return value
        self.misses += 1
        value = np.asarray(fn())
        self.store(key, value)
        return value


class LabelMapCache:
    """Label maps on disk, keyed by volume content + segmenter id + classes (see the module docstring).

    ``get_or_compute(volume, segmenter_id, classes, fn)`` returns ``(labels, info)``: the stored array
    and its info dict (``names``, ``meta``) on a hit, else ``fn()``'s ``(labels, info)`` after storing it.
    Counters ``hits``, ``misses`` and ``corrupt`` (entries found but refused) are for tests and benchmarks.
    Thread-safe; processes share entries through atomic renames (two writers of a key write equal arrays).
    """

    def __init__(self, root: str | Path | None = None, enabled: bool | None = None, compresslevel: int = 1) -> None:
        self.root = Path(root).expanduser() if root is not None else label_cache_root()
        self.enabled = label_cache_enabled() if enabled is None else bool(enabled)
        self.compresslevel = int(compresslevel)
        self.hits = self.misses = self.corrupt = 0
        self._lock = threading.Lock()

    @staticmethod
    def key(volume: Volume, segmenter_id: str, classes: str) -> str:
        affine = np.ascontiguousarray(volume.affine, dtype=np.float64)
        parts = (LABEL_CACHE_FORMAT, volume_hash(volume), hashlib.sha256(affine.tobytes()).hexdigest(),
                 str(segmenter_id), str(classes))
        return hashlib.sha256("|".join(parts).encode()).hexdigest()

    def path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.npz"

    def load(self, key: str) -> tuple[np.ndarray, dict[str, Any]] | None:
        """The verified entry ``key``, or None (absent, unreadable, or failing a check: counted in ``corrupt``)."""
        p = self.path(key)
        if not self.enabled or not p.is_file():
            return None
        try:
            with np.load(p, allow_pickle=False) as z:
                labels = z["labels"]
                info = json.loads(str(z["info"][()]))
            if (info.get("key") != key or info.get("shape") != list(labels.shape)
                    or info.get("sha256") != array_hash(labels)):
                raise ValueError("entry does not match its key or checksum")
            return labels, info
        except Exception:  # noqa: BLE001 - any damage (truncated zip, CRC, JSON, checksum) means recompute
            with self._lock:
                self.corrupt += 1
            return None

    def store(self, key: str, labels: np.ndarray, info: dict[str, Any]) -> None:
        """Write the entry atomically (temporary file in the same folder, then rename)."""
        if not self.enabled:
            return
        a = np.ascontiguousarray(labels)
        rec = {**info, "key": key, "shape": list(a.shape), "sha256": array_hash(a)}
        with atomic_path(self.path(key), suffix=".npz") as tmp:
            with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=self.compresslevel) as zf:
                for name, arr in (("labels", a), ("info", np.array(json.dumps(rec, default=str)))):
                    buf = io.BytesIO()
                    np.lib.format.write_array(buf, arr, allow_pickle=False)
                    zf.writestr(f"{name}.npy", buf.getvalue())

    def get_or_compute(self, volume: Volume, segmenter_id: str, classes: str,
                       fn: Callable[[], tuple[np.ndarray, dict[str, Any]]]) -> tuple[np.ndarray, dict[str, Any]]:
        if not self.enabled:
            return fn()
        key = self.key(volume, segmenter_id, classes)
        hit = self.load(key)
        if hit is not None:
            with self._lock:
                self.hits += 1
            return hit
        with self._lock:
            self.misses += 1
        labels, info = fn()
        try:
            self.store(key, labels, info)
        except OSError:  # a read-only or full cache folder never fails the run
            pass
        return labels, info
