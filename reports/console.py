"""What a finished run prints on the terminal: pure functions from a run's saved results to lines no
wider than the terminal (the caller prints them; nothing here writes).

* :func:`skipped_summary` -- the metrics not computed as one grouped sentence (printed before the
  per-case progress, and again in the summary);
* :func:`results_summary` -- per table a compact results table (each column's declared decimals, units
  in the headers, intervals where the width allows and n is large enough), the per-label tables named (they
  are in the report), the errors / warnings counts with the file to read, the skipped-metrics sentence and
  "open OUT/report.html".

``trace-bench run`` and ``trace-bench report`` print :func:`console_summary` of the output folder.
"""

from __future__ import annotations

import json
import shutil
import textwrap
from pathlib import Path

from trace_bench.results import Results, load_results
from trace_bench.results.escape import terminal_text
from trace_bench.results.table_model import Table, to_text

from .intervals import MARK_NOTES, MIN_INTERVAL_N, N_TOO_SMALL
from .skipped import HINT, skipped_line
from .tables import PER_LABEL_TABLES, build_tables

__all__ = ["console_summary", "results_summary", "skipped_summary", "table_lines", "terminal_width"]


def terminal_width(default: int = 80) -> int:
    """The terminal's width (``COLUMNS`` or the tty), at least 60 columns."""
    return max(60, shutil.get_terminal_size((default, 24)).columns)


def skipped_summary(skipped: dict[str, str], *, width: int = 80, hint: str = HINT) -> list[str]:
    """The not-computed metrics as one grouped sentence (:func:`reports.skipped.skipped_line`)."""
    return [terminal_text(x) for x in skipped_line(skipped, width=width, hint=hint)]


def table_lines(t: Table, width: int = 80) -> list[str]:
    """A table's title and its text rendering; intervals are left out (and the line says so) when they
    would need more column blocks than the values alone."""
    without = to_text(t, width, ci=False)
    cells = [c for r in t.rows for c in r.cells.values()]
    if not any(c.interval for c in cells):
        small = any(c.ci for c in cells)
        return _wrap(t.title + (f" (no intervals: {N_TOO_SMALL})" if small else ""), width) + without
    with_ci = to_text(t, width, ci=True)
    if len(with_ci) <= len(without):
        return _wrap(t.title, width) + with_ci
    return _wrap(t.title + " (intervals: report.html)", width) + without


def _wrap(text: str, width: int) -> list[str]:
    return textwrap.wrap(text, width=width, break_on_hyphens=False, break_long_words=False) or [""]


def results_summary(res: Results, *, width: int = 80, report: str | Path | None = None) -> list[str]:
    """The summary lines of a finished run (see the module docstring). ``report``: the path of
    ``report.html`` to point at (default ``OUT/report.html`` when it exists). The warnings are counted
    here; ``trace-bench run`` also prints them by kind on stderr
    (:func:`trace_bench.run.console.warnings_summary`)."""
    o = res.out
    lines: list[str] = []
    tables = build_tables(res)
    per_label = [t for t in tables if t.key in PER_LABEL_TABLES]
    for t in tables:
        if t.key not in PER_LABEL_TABLES:
            lines += table_lines(t, width) + [""]
    if per_label:
        lines += _wrap("In report.html: " + "; ".join(t.title.split(":")[0] for t in per_label) + ".", width)
    shown = [t for t in tables if t.key not in PER_LABEL_TABLES]
    cells = [c for t in shown for r in t.rows for c in r.cells.values()]
    if any(c.best for c in cells):
        lines += _wrap("* best non-GT value of a column (FPS / memory only among GPU measurements); notes and "
                       "protocols under each table in the report.", width)
    marks = {m for c in cells for m in c.mark}
    for m, text in MARK_NOTES.items():
        if m in marks:
            lines += _wrap(text, width)
    if any(c.ci and not c.interval for c in cells):
        lines += _wrap(f"Intervals need at least {MIN_INTERVAL_N} cases (per set for two-sample intervals).", width)
    n_err, n_warn = len(res.errors), len(res.warnings)
    problems = [f"{n_err} error row{'s' if n_err != 1 else ''}" + (f" (read {o / 'errors.csv'})" if n_err else "")]
    problems.append(f"{n_warn} warning{'s' if n_warn != 1 else ''}" + (f" (read {o / 'warnings.csv'})" if n_warn else ""))
    lines += _wrap("; ".join(problems) + ".", width)
    unscored = unscored_methods(res)
    if unscored:
        lines += _wrap("no scored case for " + ", ".join(unscored) + f": every case failed or was unpaired "
                       f"(read {o / 'errors.csv'}).", width)
    lines += skipped_summary(res.skipped, width=width)
    page = Path(report) if report is not None else o / "report.html"
    if report is not None or page.is_file():
        lines.append(f"open {page}")
    return [terminal_text(x) for x in lines]


def unscored_methods(res: Results) -> list[str]:
    """The methods with no scored case, as the run recorded them (``metrics.json``: GT is not "unscored" in a
    run whose metrics give it no row, e.g. segmentation only); without that record, the methods without a
    summary row."""
    try:
        meta = json.loads((res.out / "metrics.json").read_text(encoding="utf-8"))
        return [str(m) for m in meta["unscored_methods"]]
    except (OSError, ValueError, KeyError, TypeError):
        return [m for m in res.methods if m not in set(res.summary.method)]


def console_summary(out: str | Path, *, width: int | None = None) -> str:
    """:func:`results_summary` of the output folder ``out`` as one string."""
    return "\n".join(results_summary(load_results(out), width=width or terminal_width())) + "\n"
