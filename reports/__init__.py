"""Reports of a ``trace-bench run`` output folder, rendered from saved results only.

:func:`render_report` (:mod:`reports.report`) writes, from the CSV / JSON files of ``OUT`` (nothing
is recomputed):

* ``tables/table1.tex``, ``tables/table1b.tex``, ``tables/table2.tex`` (and ``*_published.tex`` when
  asked): booktabs tabulars to ``\\input`` into a paper's own ``table`` float, each in the layout that
  fits the chosen template's width at 8 pt or more (:mod:`reports.tex_fit`; ``tex_layout`` /
  ``tex_width``), never scaled;
* ``report.tex``: a complete document on the template's page that includes them with ``\\input``;
* ``report.md``; ``report.html`` (one self-contained file: sortable tables with GT kept on top, a
  ranking view, per-case distributions as inline SVG, per-case table, slice viewer, protocol legend,
  each message once); ``table1.csv`` / ``table1b.csv`` / ``table2.csv`` and the anatomy tables'
  ``anatomy*.csv`` (raw numbers); the downstream-utility section when ``OUT/utility/`` exists
  (:mod:`reports.utility`);
* ``results.json`` (schema ``trace-bench/results/v1``, see :mod:`reports.leaderboard`) and ``plots/``.

:func:`console_summary` (:mod:`reports.console`) is what a finished run prints on the terminal;
:func:`write_board` (:mod:`reports.board`) one leaderboard page across runs.

Every table is a :class:`trace_bench.results.table_model.Table`; every user string is escaped by
:mod:`trace_bench.results.escape` (one function per output format); every printed value and interval passes
:func:`reports.intervals.shown` (declared ranges, n too small, heavy-tailed intervals).

``viewer_stacks`` (from :func:`trace_bench.report_inputs.viewer_stacks`) adds arrays read again from
the input volumes: a scrollable stack for the viewer and the per-case figures of cases other than
the run's plot case. ``trace-bench report OUT [--plot-case ID]`` and the run pipeline call it.
"""

from __future__ import annotations

from .board import write_board
from .console import console_summary, results_summary, skipped_summary
from .report import FILES, PlotCaseError, render_report, report_tex, tex_fits
from .tables import build_tables, published_tables

__all__ = ["FILES", "PlotCaseError", "build_tables", "console_summary", "published_tables", "render_report",
           "report_tex", "results_summary", "skipped_summary", "tex_fits", "write_board"]
