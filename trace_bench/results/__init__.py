"""Results of a run: the output folder's layout and records, the tidy tables, statistics, the run
stamp and regression checks. ``reports/`` and ``compare`` read runs through this package only.

* :mod:`.files`: atomic, deterministic writers (umask-respecting permissions);
* :mod:`.layout`: ``OUT/`` paths and per-case record formats;
* :mod:`.tables`: table columns, per-column display info, :func:`load_results`;
* :mod:`.stats`: means and seeded bootstrap intervals;
* :mod:`.stamp`: the run stamp that ties each output file to its run;
* :mod:`.compare`: direction-aware comparison with tolerances;
* :mod:`.comparability`: same protocols and weights, shared (or mapped) methods, before comparing;
* :mod:`.paired`: paired bootstrap-t interval, sign-flip and Wilcoxon tests of per-case differences
  between two runs.
"""

from ..errors import TraceBenchError  # re-exported: reports' errors derive from it (reports reads results only)
from .comparability import ProtocolChanged, comparable_runs, parse_method_map, unmatched_methods
from .compare import (DEFAULT_TOLERANCES, NOT_SIGNIFICANT, SIGNIFICANCE_TEST, Comparison, compare_results,
                      load_tolerances, tolerance_for)
from .files import (atomic_write_bytes, atomic_write_json, atomic_write_npz, atomic_write_text, fmt_float,
                    stable_seed, write_csv)
from .paired import PAIRED_COLUMNS, PAIRED_SEED, PairedStat, min_nonzero_pairs, paired_case_stats, paired_stat
from .stats import (HEAVY_TAILED, MIN_HALF_CASES, JackknifeInterval, bootstrap_ci, cross_halves, half_vs_half,
                    jackknife_groups, jackknife_variance, mean_finite_or_inf, split_half, two_sample_jackknife,
                    two_sample_jackknife_ci)
from .tables import (ALL_CASES, ERROR_COLUMNS, GT, HALF_SUFFIX, PER_CASE_COLUMNS, PROFILE_CASE, PROFILE_METRICS,
                     SUMMARY_COLUMNS, WARNING_COLUMNS, MetricInfo, Results, base_metric, column_info, direction,
                     half_base, load_results)

__all__ = [
    "ALL_CASES", "ERROR_COLUMNS", "GT", "HALF_SUFFIX", "half_base", "PER_CASE_COLUMNS", "PROFILE_CASE",
    "PROFILE_METRICS", "SUMMARY_COLUMNS", "WARNING_COLUMNS",
    "DEFAULT_TOLERANCES", "NOT_SIGNIFICANT", "PAIRED_COLUMNS", "PAIRED_SEED", "PairedStat", "paired_case_stats",
    "paired_stat", "SIGNIFICANCE_TEST", "min_nonzero_pairs", "ProtocolChanged", "comparable_runs", "parse_method_map",
    "unmatched_methods", "Comparison", "MetricInfo", "Results", "atomic_write_bytes", "atomic_write_json",
    "atomic_write_npz", "atomic_write_text", "base_metric", "bootstrap_ci", "jackknife_groups", "jackknife_variance",
    "split_half", "two_sample_jackknife_ci", "MIN_HALF_CASES", "cross_halves", "half_vs_half",
    "HEAVY_TAILED", "JackknifeInterval", "two_sample_jackknife",
    "column_info", "compare_results", "direction", "fmt_float", "load_results", "load_tolerances",
    "mean_finite_or_inf", "stable_seed", "tolerance_for", "write_csv",
]
