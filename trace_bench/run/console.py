"""The run's stderr console: progress bars on a terminal, plain periodic lines in a log file, and the
one-line warnings summary every run ends with (:func:`warnings_summary`).

Lines are never hard-wrapped (``soft_wrap``), so URLs and paths stay whole in logs; when stderr is
not a terminal, rich draws no live bars and :class:`PlainProgress` prints a line per interval instead.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Iterable


def stderr_console():
    from rich.console import Console

    return Console(stderr=True, soft_wrap=True)


def fmt_seconds(s: float) -> str:
    s = max(0, int(round(s)))
    h, rem = divmod(s, 3600)
    m, sec = divmod(rem, 60)
    return f"{h}h{m:02d}m{sec:02d}s" if h else (f"{m}m{sec:02d}s" if m else f"{sec}s")


class PlainProgress:
    """``tick(done, total, what)``: one line on the console every ``interval`` seconds (and at the end)
    with done / total, elapsed time and an ETA from the mean time per item so far."""

    def __init__(self, console, label: str, interval: float = 30.0) -> None:
        self.console, self.label, self.interval = console, label, float(interval)
        self.t0 = self.last = time.perf_counter()

    def tick(self, done: int, total: int, what: str = "", force: bool = False) -> None:
        now = time.perf_counter()
        if not force and now - self.last < self.interval and done < total:
            return
        self.last = now
        el = now - self.t0
        eta = el / done * (total - done) if done else float("nan")
        eta_txt = fmt_seconds(eta) if done else "?"
        self.console.print(f"{self.label}: {done}/{total} {what}, elapsed {fmt_seconds(el)}, ETA {eta_txt}",
                           highlight=False)


def warning_kind(stage: str, text: str) -> str:
    """The kind a ``warnings.csv`` row is counted under: its stage, and for ``geometry`` rows what the
    geometry check said (``geometry orientation``, ``geometry grid``, ``geometry header``)."""
    stage = str(stage or "warning")
    if stage == "geometry":
        head = str(text).split(":", 1)[0].split(" (", 1)[0].strip()
        return f"geometry {head}" if head and " " not in head else stage
    return stage


def warnings_summary(rows: Iterable[tuple[str, str]], out: str | Path) -> str | None:
    """One line for stderr after every run: how many ``warnings.csv`` rows of each kind
    (:func:`warning_kind`) and where to read them; None without warnings. ``rows``: ``(stage, warning)``.
    The console renderer of the final output calls this; ``trace-bench run`` prints it."""
    counts: dict[str, int] = {}
    for stage, text in rows:
        k = warning_kind(stage, text)
        counts[k] = counts.get(k, 0) + 1
    if not counts:
        return None
    kinds = ", ".join(f"{k} {n}" for k, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))
    total = sum(counts.values())
    return f"trace-bench: {total} warning row(s) ({kinds}); see {Path(out) / 'warnings.csv'}"
