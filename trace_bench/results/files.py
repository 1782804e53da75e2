"""Atomic, deterministic file writing: every output of a run goes through these functions.

Files are written to a temporary file in the same folder and renamed (``os.replace``), so a reader
never sees half a file. Unlike a bare ``mkstemp``, the final file gets the permissions an ordinary
``open()`` would give it (``0666 & ~umask``: 0644 under umask 022), so a shared report folder or
cache stays readable by colleagues. CSVs use ``\n`` line ends and :func:`fmt_float` (12 significant
digits, ``nan`` / ``inf`` spelled out): two runs on the same inputs give byte-identical files; text
cells are formula-safe (:func:`trace_bench.results.escape.csv_cell`).
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
from .escape import csv_cell


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


def csv_field(x: Any) -> str:
    """One CSV cell: floats through :func:`fmt_float`, integers and booleans as text, ``None`` empty,
    any other value as text through :func:`~trace_bench.results.escape.csv_cell` (a leading ``= + - @``
    neutralised for spreadsheets; :func:`~trace_bench.results.escape.csv_value` reads it back)."""
    if x is None:
        return ""
    if isinstance(x, (bool, np.bool_)):
        return str(bool(x))
    if isinstance(x, (float, np.floating)):
        return fmt_float(x)
    if isinstance(x, (int, np.integer)):
        return str(int(x))
    return csv_cell(x)


def csv_text(columns: Sequence[Any], rows: Iterable[Sequence[Any]]) -> str:
    """A CSV document with ``\\n`` line ends, every cell through :func:`csv_field`."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow([csv_field(c) for c in columns])
    for r in rows:
        w.writerow([csv_field(x) for x in r])
    return buf.getvalue()


def write_csv(path: str | Path, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> Path:
    """:func:`csv_text` written atomically."""
    return atomic_write_text(path, csv_text(columns, rows))


def stable_seed(*parts: Any) -> int:
    """A 63-bit seed from the parts' text (same on every machine and process, unlike ``hash``)."""
    h = hashlib.sha256("\x1f".join(str(p) for p in parts).encode("utf-8")).digest()
    return int.from_bytes(h[:8], "little") >> 1


