"""The run's stderr console: progress bars on a terminal, plain periodic lines in a log file, and the
one-line warnings summary every run ends with (:func:`warnings_summary`).

Lines are never hard-wrapped (``soft_wrap``), so URLs and paths stay whole in logs; when stderr is
not a terminal, rich draws no live bars and :class:`PlainProgress` prints a line per interval instead.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Iterable

from ..results.problems import warnings_sentence


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


def warnings_summary(rows: Iterable[tuple[str, str]], out: str | Path) -> str | None:
    """One line for stderr after every run: how many ``warnings.csv`` rows of each kind
    (:func:`trace_bench.results.problems.warning_kind`) and where to read them; None without warnings.
    ``rows``: ``(stage, warning)``. ``trace-bench run`` prints it."""
    sentence = warnings_sentence(rows)
    return None if sentence is None else f"trace-bench: {sentence}; see {Path(out) / 'warnings.csv'}"
