"""Where ``trace-bench utility`` writes, inside the run's output folder: ``OUT/utility/``.

Standard library only, so that readers of a finished run (the report) can import it without torch.
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


def utility_dir(out: str | Path) -> Path:
    """``OUT/utility`` (``out`` may already be it)."""
    p = Path(out)
    return p if p.name == FOLDER and (p / SUMMARY_JSON).is_file() else p / FOLDER
