"""Atomic, deterministic file writing: every output of a run goes through these functions.

Files are written to a temporary file in the same folder and renamed (``os.replace``), so a reader
never sees half a file. Unlike a bare ``mkstemp``, the final file gets the permissions an ordinary
``open()`` would give it (``0666 & ~umask``: 0644 under umask 022), so a shared report folder or
cache stays readable by colleagues. CSVs use ``\n`` line ends and :func:`fmt_float` (12 significant
digits, ``nan`` / ``inf`` spelled out): two runs on the same inputs give byte-identical files.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np


def current_umask() -> int:
    """The process umask (read without changing it where /proc allows, else set-and-restore)."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    old = os.umask(0o022)
    os.umask(old)
    return old


# ----------------------------------------------------------------------------- atomic files
def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` via a temporary file in the same folder + ``os.replace``."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=p.parent, prefix=".tmp-", suffix=p.suffix)
    try:
        os.fchmod(fd, 0o666 & ~current_umask())  # mkstemp creates 0600; give what open() would
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, p)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return p


def atomic_write_text(path: str | Path, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | Path, obj: Any) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=1, sort_keys=True, allow_nan=True) + "\n")


def atomic_write_npz(path: str | Path, arrays: dict[str, np.ndarray]) -> Path:
    buf = io.BytesIO()
    np.savez(buf, **{k: np.asarray(v) for k, v in arrays.items()})
    return atomic_write_bytes(path, buf.getvalue())


# ----------------------------------------------------------------------------- formatting
def fmt_float(v: Any) -> str:
    """Deterministic text of a number: 12 significant digits; ``nan``, ``inf``, ``-inf``; '' for None."""
    if v is None:
        return ""
    f = float(v)
    if math.isnan(f):
        return "nan"
    if math.isinf(f):
        return "inf" if f > 0 else "-inf"
    s = format(f, ".12g")
    return "0" if s == "-0" else s


def write_csv(path: str | Path, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> Path:
    """CSV with ``\\n`` line ends, floats through :func:`fmt_float`, atomically."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(columns)
    for r in rows:
        w.writerow([fmt_float(x) if isinstance(x, (float, np.floating)) else x for x in r])
    return atomic_write_text(path, buf.getvalue())


def stable_seed(*parts: Any) -> int:
    """A 63-bit seed from the parts' text (same on every machine and process, unlike ``hash``)."""
    h = hashlib.sha256("\x1f".join(str(p) for p in parts).encode("utf-8")).digest()
    return int.from_bytes(h[:8], "little") >> 1


