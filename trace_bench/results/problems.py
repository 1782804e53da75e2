"""The run's warning rows counted by kind: one wording for the stderr line after a run and the report's top.

A ``warnings.csv`` row is counted under its stage, and a ``geometry`` row under what the geometry check said
(``geometry orientation``, ``geometry grid``, ``geometry header``), so that "3 warning row(s) (geometry
orientation 2, read 1)" tells at a glance what to look at.
"""

from __future__ import annotations

from typing import Iterable


def warning_kind(stage: str, text: str) -> str:
    """The kind a ``warnings.csv`` row is counted under (see the module doc)."""
    stage = str(stage or "warning")
    if stage == "geometry":
        head = str(text).split(":", 1)[0].split(" (", 1)[0].strip()
        return f"geometry {head}" if head and " " not in head else stage
    return stage


def warning_counts(rows: Iterable[tuple[str, str]]) -> dict[str, int]:
    """``(stage, warning)`` rows -> count per :func:`warning_kind`, most frequent first (ties by name)."""
    counts: dict[str, int] = {}
    for stage, text in rows:
        k = warning_kind(stage, text)
        counts[k] = counts.get(k, 0) + 1
    return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


def warnings_sentence(rows: Iterable[tuple[str, str]]) -> str | None:
    """``"N warning row(s) (kind n, ...)"``; None without warnings."""
    counts = warning_counts(rows)
    if not counts:
        return None
    kinds = ", ".join(f"{k} {n}" for k, n in counts.items())
    return f"{sum(counts.values())} warning row(s) ({kinds})"


__all__ = ["warning_counts", "warning_kind", "warnings_sentence"]
