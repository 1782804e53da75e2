"""Reports of a ``trace-bench run`` output folder, rendered from saved results only.

:func:`render_report` (:mod:`reports.report`) writes, from the CSV / JSON files of ``OUT`` (nothing
is recomputed):

* ``tables/table1.tex``, ``tables/table1b.tex``, ``tables/table2.tex`` (and ``*_published.tex``): one
  booktabs ``tabular`` each, to ``\\input`` into a paper's own ``table`` float;
* ``report.tex``: a complete document that ``\\input``s them (``pdflatex report.tex`` in ``OUT``);
* ``report.md``; ``report.html`` (one self-contained file: sortable tables, per-case table, slice
  viewer, protocol legend, plots as embedded PNG); ``table1.csv`` / ``table1b.csv`` / ``table2.csv``;
* ``results.json`` (schema ``trace-bench/results/v1``, see :mod:`reports.leaderboard`) and ``plots/``.

Every table is a :class:`trace_bench.results.table_model.Table` and every user string is escaped by
:mod:`trace_bench.results.escape` (one function per output format).

``viewer_stacks`` (from :func:`trace_bench.report_inputs.viewer_stacks`) adds arrays read again from
the input volumes: a scrollable stack for the viewer and the per-case figures of cases other than
the run's plot case. ``trace-bench report OUT [--plot-case ID]`` and the run pipeline call it.
"""

from __future__ import annotations

from .report import FILES, PlotCaseError, render_report, report_tex
from .tables import build_tables, published_tables

__all__ = ["FILES", "PlotCaseError", "build_tables", "published_tables", "render_report", "report_tex"]
