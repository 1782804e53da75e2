"""seg-tstr statistics: per-case table, arm means with intervals, spread over seeds, paired differences.

From the jobs' results (one per arm x method x seed, :func:`trace_bench.utility.seg.run_job`):

* per-case rows (:func:`case_rows`): Dice and HD95 of every (arm, method, seed, test case, label), plus
  label ``mean`` = the mean over the labels counted for that case (a label absent from both maps is
  NaN and not counted, :func:`trace_bench.metrics.segmentation.summarize`'s rule);
* a case's value for an arm = its mean over the seeds run (:func:`case_means`);
* arm rows (:func:`arm_summary`): the mean over test cases of those values, how many cases counted,
  a percentile bootstrap interval over cases (:func:`trace_bench.results.stats.bootstrap_ci`), and over
  seeds the SD (ddof 1), min and max of the arm's per-seed mean (NaN SD with one seed);
* paired rows (:func:`paired_rows`): per test case ``d_i = value(arm) - value(real)``, summarised by
  :func:`trace_bench.results.paired.paired_stat` (mean, studentised bootstrap interval, exact sign-flip
  and Wilcoxon p-values, how many pairs). The pairs are the test cases both arms scored.
"""

from __future__ import annotations

import math
from typing import Any, Iterable

import numpy as np
import pandas as pd

from ..results.files import stable_seed
from ..results.paired import paired_stat
from ..results.stats import bootstrap_ci
from .protocol import SegProtocol

METRICS = ("dice", "hd95")
CASE_COLUMNS = ["protocol", "arm", "method", "seed", "case_id", "label", "dice", "hd95"]
SUMMARY_COLUMNS = ["protocol", "arm", "method", "label", "metric", "n_cases", "n_seeds", "mean", "ci_low", "ci_high",
                   "seed_sd", "seed_min", "seed_max"]
PAIRED_COLUMNS = ["protocol", "arm", "method", "label", "metric", "n_pairs", "delta", "ci_low", "ci_high",
                  "p_signflip", "p_wilcoxon", "n_nonzero", "note"]


def arm_name(arm: str, method: str) -> str:
    """Display name of an arm: ``real``, ``METHOD``, ``real + METHOD``."""
    return "real" if arm == "real" else (method if arm == "method" else f"real + {method}")


def _nanmean(values: Iterable[float]) -> float:
    a = np.asarray([v for v in values if v is not None and math.isfinite(v)], dtype=np.float64)
    return float(a.mean()) if a.size else float("nan")


def case_rows(results: Iterable[dict[str, Any]]) -> pd.DataFrame:
    """Long per-case table (:data:`CASE_COLUMNS`), label ``mean`` included."""
    rows = []
    for r in results:
        method = r["method"] or ""
        for cid, per in sorted(r["per_case"].items()):
            for label in sorted(per, key=int):
                rows.append((r["protocol"], r["arm"], method, int(r["seed"]), cid, label,
                             float(per[label]["dice"]), float(per[label]["hd95"])))
            rows.append((r["protocol"], r["arm"], method, int(r["seed"]), cid, "mean",
                         _nanmean(v["dice"] for v in per.values()), _nanmean(v["hd95"] for v in per.values())))
    return pd.DataFrame(rows, columns=CASE_COLUMNS)


def case_means(df: pd.DataFrame, arm: str, method: str, label: str, metric: str) -> pd.Series:
    """Per test case, the mean over seeds of ``metric`` (NaN-aware), indexed by case id."""
    sub = df[(df.arm == arm) & (df.method == method) & (df.label == label)]
    return sub.groupby("case_id")[metric].mean().astype(np.float64)


def arms_of(df: pd.DataFrame) -> list[tuple[str, str]]:
    """(arm, method) pairs in display order: real, then per method its arm and real+method."""
    keys = set(zip(df.arm, df.method))
    methods = sorted({m for a, m in keys if m})
    out = [("real", "")] if ("real", "") in keys else []
    for m in methods:
        out += [(a, m) for a in ("method", "real+method") if (a, m) in keys]
    return out


def labels_of(df: pd.DataFrame) -> list[str]:
    labs = sorted({x for x in df.label if x != "mean"}, key=int)
    return ["mean", *labs]


def arm_summary(df: pd.DataFrame, proto: SegProtocol) -> pd.DataFrame:
    """One row per (arm, method, label, metric): :data:`SUMMARY_COLUMNS` (module docstring)."""
    rows = []
    for arm, method in arms_of(df):
        for label in labels_of(df):
            sub = df[(df.arm == arm) & (df.method == method) & (df.label == label)]
            seeds = sorted(set(sub.seed))
            for metric in METRICS:
                vals = case_means(df, arm, method, label, metric).to_numpy()
                fin = vals[np.isfinite(vals)]
                mean = float(fin.mean()) if fin.size else float("nan")
                lo, hi = bootstrap_ci(fin, n_boot=proto.n_resamples, confidence=proto.confidence,
                                      seed=stable_seed(proto.id, arm, method, label, metric))
                per_seed = np.array([_nanmean(sub[sub.seed == s][metric]) for s in seeds])
                per_seed = per_seed[np.isfinite(per_seed)]
                sd = float(per_seed.std(ddof=1)) if per_seed.size >= 2 else float("nan")
                rows.append((proto.id, arm, method, label, metric, int(fin.size), len(seeds), mean, lo, hi, sd,
                             float(per_seed.min()) if per_seed.size else float("nan"),
                             float(per_seed.max()) if per_seed.size else float("nan")))
    return pd.DataFrame(rows, columns=SUMMARY_COLUMNS)


def paired_rows(df: pd.DataFrame, proto: SegProtocol) -> pd.DataFrame:
    """Every non-real arm against the real arm, per label and metric: :data:`PAIRED_COLUMNS`."""
    rows = []
    for arm, method in arms_of(df):
        if arm == "real":
            continue
        for label in labels_of(df):
            for metric in METRICS:
                base = case_means(df, "real", "", label, metric)
                cand = case_means(df, arm, method, label, metric)
                common = sorted(set(base.index[np.isfinite(base.to_numpy())])
                                & set(cand.index[np.isfinite(cand.to_numpy())]))
                d = cand.loc[common].to_numpy() - base.loc[common].to_numpy()
                seed = stable_seed(proto.id, "paired", arm, method, label, metric) % 2**32
                st = paired_stat(d, proto.confidence, seed, proto.n_resamples)
                rows.append((proto.id, arm, method, label, metric, st.n_pairs, st.delta, st.ci_low, st.ci_high,
                             st.p_signflip, st.p_wilcoxon, st.n_nonzero, st.note))
    return pd.DataFrame(rows, columns=PAIRED_COLUMNS)
