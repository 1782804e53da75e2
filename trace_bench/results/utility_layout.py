"""Where ``trace-bench utility`` (and a run with a ``[utility]`` section) writes, inside the run's output folder:
``OUT/utility/``. Here, with the other layouts of a run's outputs, so that readers of a finished run (the report,
:mod:`reports.utility`) find the files without importing the utility package (standard library only).
"""

from __future__ import annotations

from pathlib import Path

FOLDER = "utility"
#: everything a reader needs for the tables: protocols (ids, declarations, legends), settings, summaries
SUMMARY_JSON = "utility.json"
SEG_PER_CASE = "seg_per_case.csv"
SEG_SUMMARY = "seg_summary.csv"
SEG_PAIRED = "seg_paired.csv"
PROBE_AUROC = "probe_auroc.csv"
PROBLEMS = "problems.csv"
PLOT = "utility.png"
#: one folder per seg-tstr training job (checkpoint, result): trace_bench.utility.resume
JOBS = "seg"
SCHEMA = "trace-bench-utility-v1"
#: the summary files a run stamps when it wrote them (trace_bench.results.stamp): removed with the run's other
#: derived outputs when a different run starts; the training jobs (JOBS: checkpoints, keyed) are kept
SUMMARY_FILES = (SUMMARY_JSON, SEG_PER_CASE, SEG_SUMMARY, SEG_PAIRED, PROBE_AUROC, PROBLEMS, PLOT)


def utility_dir(out: str | Path) -> Path:
    """``OUT/utility`` (``out`` may already be it)."""
    p = Path(out)
    return p if p.name == FOLDER and (p / SUMMARY_JSON).is_file() else p / FOLDER
