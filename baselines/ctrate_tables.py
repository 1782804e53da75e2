"""CT-RATE's CSV tables (metadata and reports): reading, indexing by volume name, and where to find them.

Both official CSVs (``ibrahimhamamci/CT-RATE``: ``dataset/metadata/{train,validation}_metadata.csv``,
``dataset/radiology_text_reports/{train,validation}_reports.csv``) hold one row per volume keyed by
``VolumeName``, the file name with ``.nii.gz`` (e.g. ``valid_1_a_1.nii.gz``); rows are matched here on
the name without its extension. The lookup rule (given paths > environment > conventional location
next to the data) is documented in :mod:`baselines.ctrate` and the README section "CT-RATE".
"""

from __future__ import annotations

import csv
import io
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from trace_bench.errors import ConfigError, VolumeError
from trace_bench.inputs import input_problem

from .base import strip_volume_suffix

METADATA_ENV = "TRACE_BENCH_CTRATE_METADATA"
REPORTS_ENV = "TRACE_BENCH_CTRATE_REPORTS"
#: how many folders above the volume's own folder are searched for the CSVs
SEARCH_LEVELS = 6
#: official CT-RATE split names: volume-name prefix -> CSV split word
SPLITS = {"train": "train", "valid": "validation"}
#: CT-RATE volume names: {split}_{patient}_{scan letter}_{reconstruction}
NAME_RE = re.compile(r"^(?P<split>train|valid)_\d+_[a-z]+_\d+$")
#: metadata columns this adapter needs (exact names of the official CSV)
REQUIRED_METADATA = ("VolumeName", "RescaleSlope", "RescaleIntercept", "XYSpacing", "ZSpacing")


@dataclass(frozen=True)
class Table:
    """One CSV indexed by volume name (without extension): ``rows[case_id] = {column: text}``."""

    path: Path
    columns: tuple[str, ...]
    rows: dict[str, dict[str, str]]


_CACHE: dict[tuple[str, int, int], Table] = {}


def read_table(path: str | Path, *, required: Sequence[str] = ("VolumeName",), kind: str = "CT-RATE") -> Table:
    """Read a CT-RATE CSV (metadata or reports) keyed by ``VolumeName`` without its extension.

    UTF-8 (a byte-order mark is accepted); cached per (path, size, mtime). Refuses (one-line
    :class:`~trace_bench.errors.ConfigError` naming the file) a missing file, missing ``required``
    columns, malformed CSV, or a ``VolumeName`` listed twice with different values.
    """
    p = Path(path)
    if not p.is_file():
        why = "does not exist" if not p.exists() and not p.is_symlink() else (input_problem(p) or "is not a regular file")
        raise ConfigError(f"{kind} CSV {p} {why}")
    reason = input_problem(p)
    if reason is not None:
        raise ConfigError(f"{kind} CSV {p}: {reason}")
    st = p.stat()
    key = (str(p.resolve()), st.st_size, st.st_mtime_ns)
    hit = _CACHE.get(key)
    if hit is None:
        hit = _parse_table(p)
        _CACHE[key] = hit
    missing = [c for c in required if c not in hit.columns]
    if missing:
        raise ConfigError(f"{p}: no column(s) {', '.join(missing)} (header: {','.join(hit.columns)}); expected the "
                          f"official CT-RATE {kind} CSV")
    return hit


def _parse_table(p: Path) -> Table:
    raw = p.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise ConfigError(f"{p}: not UTF-8 text (byte 0x{raw[e.start]:02x} at offset {e.start})") from None
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    try:
        header = [h.strip() for h in next(reader, [])]
        if "VolumeName" not in header:
            raise ConfigError(f"{p}: no VolumeName column (header: {','.join(header) or 'empty'}); expected an "
                              "official CT-RATE CSV")
        rows: dict[str, dict[str, str]] = {}
        for row in reader:
            if not row:
                continue
            if len(row) != len(header):
                raise ConfigError(f"{p}: line {reader.line_num}: {len(row)} field(s), the header has {len(header)}")
            rec = dict(zip(header, row))
            cid = strip_volume_suffix(rec["VolumeName"].strip())
            if not cid:
                continue
            if cid in rows and rows[cid] != rec:
                raise ConfigError(f"{p}: line {reader.line_num}: VolumeName {rec['VolumeName']!r} appears twice with "
                                  "different values")
            rows[cid] = rec
    except csv.Error as e:
        raise ConfigError(f"{p}: line {reader.line_num}: malformed CSV ({e})") from None
    return Table(p, tuple(header), rows)


def split_of(case_id: str) -> str | None:
    """``train`` or ``validation`` (the CSV split word) from a CT-RATE volume name, else None."""
    m = NAME_RE.match(case_id)
    return SPLITS[m.group("split")] if m else None


def _env_paths(env: str) -> list[Path]:
    text = os.environ.get(env, "").strip()
    return [Path(t) for t in text.split(os.pathsep) if t.strip()] if text else []


def find_tables(volume: str | Path, kind: str) -> list[Path]:
    """CSV files of ``kind`` (``metadata`` or ``reports``) for ``volume`` by the conventional-location
    rule of the module docstring (rule 3). Empty when none is found."""
    p = Path(volume)
    cid = strip_volume_suffix(p.name)
    own = split_of(cid)
    splits = [own] + [s for s in SPLITS.values() if s != own] if own else list(SPLITS.values())
    if kind == "metadata":
        names = ["metadata.csv"] + [n for s in splits for n in (f"{s}_metadata.csv", f"metadata/{s}_metadata.csv",
                                                                 f"dataset/metadata/{s}_metadata.csv")]
    elif kind == "reports":
        names = ["reports.csv"] + [n for s in splits for n in (f"{s}_reports.csv", f"radiology_text_reports/{s}_reports.csv",
                                                                f"dataset/radiology_text_reports/{s}_reports.csv")]
    else:
        raise ValueError(f"unknown CT-RATE table kind {kind!r}")
    folder = p.parent
    for _ in range(SEARCH_LEVELS + 1):
        found = [folder / n for n in names if (folder / n).is_file()]
        if found:
            return found
        if folder.parent == folder:
            break
        folder = folder.parent
    return []


def resolve_tables(volume: str | Path, kind: str, given: "Sequence[str | Path] | None" = None) -> tuple[list[Path], str]:
    """``(csv paths, how they were found)`` for ``volume``: ``given`` > environment > conventional location."""
    if given:
        return [Path(g) for g in given], "given"
    env = METADATA_ENV if kind == "metadata" else REPORTS_ENV
    paths = _env_paths(env)
    if paths:
        return paths, f"${env}"
    return find_tables(volume, kind), "found next to the data"


def lookup(volume: str | Path, tables: Sequence[Path], *, kind: str, required: Sequence[str]) -> tuple[dict[str, str], Path]:
    """The row of ``volume`` (matched on ``VolumeName`` without extension) and the CSV holding it.

    Raises :class:`~trace_bench.errors.VolumeError` naming the volume and the CSV(s) when no row exists.
    """
    p = Path(volume)
    cid = strip_volume_suffix(p.name)
    for t in tables:
        table = read_table(t, required=required, kind=kind)
        if cid in table.rows:
            return table.rows[cid], t
    where = ", ".join(str(t) for t in tables)
    raise VolumeError(p, f"no row with VolumeName {cid}.nii.gz in the CT-RATE {kind} CSV ({where})")


__all__ = ["METADATA_ENV", "NAME_RE", "REPORTS_ENV", "REQUIRED_METADATA", "SEARCH_LEVELS", "SPLITS", "Table",
           "find_tables", "lookup", "read_table", "resolve_tables", "split_of"]
