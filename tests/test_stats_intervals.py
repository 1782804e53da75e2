"""Honest intervals (issue "Honest statistics"): the jackknife of distribution metrics, the GT/GT
split-half floor, small-sample notes, closest-to-GT ranking."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from test_runner_fakes import make_small_dataset  # noqa: E402

from trace_bench.metrics import frechet  # noqa: E402
from trace_bench.results.stats import (jackknife_groups, jackknife_variance, split_half,  # noqa: E402
                                       two_sample_jackknife_ci)


def test_jackknife_of_a_mean_is_the_textbook_variance():
    """For the mean, the delete-one jackknife variance equals s^2 / n exactly (Efron & Tibshirani 11.5)."""
    x = np.random.default_rng(0).normal(size=17)
    n = x.size
    loo = [(x.sum() - xi) / (n - 1) for xi in x]
    v, k = jackknife_variance(loo)
    assert k == n and v == pytest.approx(x.var(ddof=1) / n, rel=1e-12)
    v, k = jackknife_variance([1.0, float("nan")])
    assert np.isnan(v) and k == 1  # failed evaluations are counted, never silently averaged


def test_groups_and_split_half_are_deterministic_partitions():
    ids = [f"c{i:02d}" for i in range(23)]
    g = jackknife_groups(ids, 5, seed=3)
    assert len(g) == 5 and sorted(c for grp in g for c in grp) == ids
    assert jackknife_groups(ids[:4], 20) == [(c,) for c in jackknife_groups(ids[:4], 20) for c in [c[0]]]
    a, b = split_half(ids, seed=1)
    assert set(a) | set(b) == set(ids) and not set(a) & set(b) and len(a) - len(b) == 1
    assert split_half(ids, seed=1) == (a, b) and split_half(ids, seed=2) != (a, b)


def test_fid_jackknife_interval_covers_the_true_value():
    """Simulated Gaussian features (d = 3): generated N(mu, I) against reference N(0, I), true FID =
    |mu|^2 = 0.25. 20 cases of 30 vectors per set; the interval is centred on the full-sample estimate
    and covers the truth at about the nominal 95% (loose bound for 150 seeded replications)."""
    rng = np.random.default_rng(12345)
    mu = np.array([0.5, 0.0, 0.0])
    hits, reps = 0, 150
    for _ in range(reps):
        gen = {f"g{i}": frechet.features_state(rng.normal(size=(30, 3)) + mu) for i in range(20)}
        ref = {f"r{i}": frechet.features_state(rng.normal(size=(30, 3))) for i in range(20)}

        def fid(gi, ri):
            return frechet.frechet_distance_from_states(frechet.merge_states([gen[c] for c in gi]),
                                                        frechet.merge_states([ref[c] for c in ri]))

        est = fid(tuple(sorted(gen)), tuple(sorted(ref)))
        lo, hi, ok, tried = two_sample_jackknife_ci(est, jackknife_groups(gen, 20), jackknife_groups(ref, 20), fid)
        assert ok == tried == 40
        assert lo < est < hi  # never on the boundary
        hits += lo <= 0.25 <= hi
    assert 0.85 <= hits / reps <= 1.0, hits / reps


def test_too_few_cases_give_no_interval():
    st = {"a": frechet.features_state(np.eye(3))}
    lo, hi, ok, tried = two_sample_jackknife_ci(1.0, [("a",)], [("b",), ("c",)], lambda g, r: 1.0)
    assert np.isnan(lo) and np.isnan(hi) and st


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_small_dataset(tmp_path_factory.mktemp("stats-data"))


def test_run_floor_notes_and_columns(data, tmp_path):
    """FID on the real CT crops: the GT row is the split-half floor (> 0, not the reference against
    itself), every distribution row says how its interval was made, and small samples are flagged."""
    from trace_bench.config import RunConfig
    from trace_bench.run import run

    cfg = RunConfig(out=str(tmp_path / "o"), reference=str(data / "reference"),
                    methods={"copy": str(data / "reference"), "noisy": str(data / "noisy")},
                    metrics=["fid", "temporal_flickering"], options={"fid": {"slices": 4}}, frame_size=64,
                    bootstrap=100, plots=False, progress=False)
    r = run(cfg)
    s = pd.read_csv(r.out / "summary.csv", keep_default_na=False, na_values={"value": ["nan"], "ci_low": ["nan"],
                                                                             "ci_high": ["nan"]})
    fid = s[s.metric == "fid"].set_index("method")
    assert fid.loc["GT", "value"] > 1.0  # lung1 half vs lung2 half: a real, positive floor
    assert "GT/GT floor" in fid.loc["GT", "note"]
    assert fid.loc["copy", "value"] == pytest.approx(0.0, abs=1e-6)  # a copy of the reference set
    for m in ("copy", "noisy"):
        row = fid.loc[m]
        assert row["ci_method"].startswith("jackknife-2sample-t:") and row["n_resamples_ok"] == 4
        assert row["ci_low"] <= row["value"] <= row["ci_high"]
        assert "only 2 cases" in row["note"] and "feature dimensions" in row["note"]
    tf = s[s.metric == "temporal_flickering"]
    assert tf.ci_method.str.startswith("bootstrap-percentile").all() and (tf.n_resamples_ok == 100).all()
    md = (r.out / "report.md").read_text(encoding="utf-8")
    assert "| GT/GT |" in md and "two-sample jackknife" in md and "Read with care" in md
    # temporal flickering ranks by closeness to GT: the exact copy is best, whatever its sign
    assert "closest to GT" in md
    t1 = next(line for line in md.splitlines() if line.startswith("| copy |"))
    assert "**" in t1
