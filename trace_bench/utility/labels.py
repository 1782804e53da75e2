"""The probe's labels CSV: one row per case, a case-id column and one 0/1 column per label.

The case id column is ``case_id``, or CT-RATE's ``VolumeName`` (``train_1_a_1.nii.gz``: the volume
extension is removed, as case ids are). Every other column is a label (or the ``label_columns``
chosen); a cell is ``1`` / ``0`` (also ``1.0``, ``true``, ``false``, ``yes``, ``no``) or empty for
"unknown" (the case is left out for that label). CT-RATE's ``multi_abnormality_labels.csv`` (18
abnormalities) reads as it is.

A generated volume takes the labels of its case id: it was generated from that case's prompt (and
masks), so the labels describe what the generator was asked to show ("prompt-derived labels").
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import ConfigError
from ..inputs import input_problem

ID_COLUMNS = ("case_id", "VolumeName")
_TRUE = {"1", "1.0", "true", "yes"}
_FALSE = {"0", "0.0", "false", "no"}


@dataclass(frozen=True)
class LabelTable:
    """``values[case_id]``: float array over ``columns`` (1, 0 or NaN for unknown)."""

    path: Path
    columns: tuple[str, ...]
    values: dict[str, np.ndarray]

    def matrix(self, case_ids: list[str]) -> np.ndarray:
        """(n, L) labels of ``case_ids`` (rows of unknown case ids are NaN)."""
        nan = np.full(len(self.columns), np.nan)
        return np.stack([self.values.get(c, nan) for c in case_ids]) if case_ids else np.zeros((0, len(self.columns)))


def read_labels(path: str | Path, columns: list[str] | None = None) -> LabelTable:
    """Parse the labels CSV (module docstring); one-line :class:`ConfigError` naming the file and line."""
    from baselines.base import strip_volume_suffix

    p = Path(path)
    if not p.is_file():
        why = "does not exist" if not p.exists() else (input_problem(p) or "is not a regular file")
        raise ConfigError(f"labels CSV {p} {why}")
    raw = p.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise ConfigError(f"{p}: not UTF-8 text (byte 0x{raw[e.start]:02x} at offset {e.start})") from None
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    try:
        header = [h.strip() for h in next(reader, [])]
        id_col = next((c for c in ID_COLUMNS if c in header), None)
        if id_col is None:
            raise ConfigError(f"{p}: no case id column (expected one of {', '.join(ID_COLUMNS)}; header: "
                              f"{','.join(header) or 'empty'})")
        labels = [h for h in header if h != id_col and h]
        if columns:
            missing = [c for c in columns if c not in labels]
            if missing:
                raise ConfigError(f"{p}: no label column(s) {', '.join(map(repr, missing))} (columns: "
                                  f"{', '.join(labels)})")
            labels = list(columns)
        if not labels:
            raise ConfigError(f"{p}: no label column besides {id_col}")
        idx = {h: i for i, h in enumerate(header)}
        values: dict[str, np.ndarray] = {}
        for row in reader:
            if not row:
                continue
            if len(row) != len(header):
                raise ConfigError(f"{p}: line {reader.line_num}: {len(row)} field(s), the header has {len(header)}")
            cid = strip_volume_suffix(row[idx[id_col]].strip())
            if not cid:
                raise ConfigError(f"{p}: line {reader.line_num}: empty {id_col}")
            if cid in values:
                raise ConfigError(f"{p}: line {reader.line_num}: case {cid!r} appears twice")
            vals = np.empty(len(labels))
            for j, c in enumerate(labels):
                cell = row[idx[c]].strip().lower()
                if cell in _TRUE:
                    vals[j] = 1.0
                elif cell in _FALSE:
                    vals[j] = 0.0
                elif cell == "":
                    vals[j] = np.nan
                else:
                    raise ConfigError(f"{p}: line {reader.line_num}: column {c!r} holds {row[idx[c]]!r}; expected "
                                      "1 / 0 (or true / false, empty for unknown)")
            values[cid] = vals
    except csv.Error as e:
        raise ConfigError(f"{p}: line {reader.line_num}: malformed CSV ({e})") from None
    if not values:
        raise ConfigError(f"{p}: no case rows")
    return LabelTable(p, tuple(labels), values)
