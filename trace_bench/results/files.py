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
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from ..atomic import atomic_path, atomic_write_bytes, current_umask  # noqa: F401  (the one mechanism)


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


