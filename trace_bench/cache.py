"""On-disk feature cache keyed by content, protocol, extractor and weights (STYLE.md principle 5).

Key = sha256 of ``volume content hash | protocol id | extractor id | weights sha256 | variant``.
The volume content hash covers the float32 HU array bytes, its shape and the voxel spacing, so a
renamed file hits the cache and a changed volume misses it. Entries are ``.npy`` files written to a
temporary file in the same folder and renamed (atomic on POSIX): a crash never leaves a half
written entry, and concurrent writers of the same key write identical bytes.

Location: ``RunContext.cache_dir`` when set, else ``$TRACE_BENCH_CACHE/features`` (default
``~/.cache/trace-bench/features``). Delete the folder to clear it.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path
from typing import Callable

import numpy as np

from .atomic import current_umask
from .volume import Volume


def default_cache_root() -> Path:
    root = os.environ.get("TRACE_BENCH_CACHE")
    return (Path(root).expanduser() if root else Path.home() / ".cache" / "trace-bench") / "features"


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
