"""`trace-bench compare`: paired analysis of two runs (bootstrap interval + Wilcoxon test of the
per-case differences, delete-one jackknife of the set-level metrics) and ``--significance``."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.stats
from typer.testing import CliRunner

from trace_bench.cli import app
from trace_bench.config import RunConfig
from trace_bench.results import (NOT_SIGNIFICANT, PAIRED_COLUMNS, PAIRED_SEED, PER_CASE_COLUMNS,
                                 SUMMARY_COLUMNS, compare_results, paired_case_stats, paired_stat, write_csv)
from trace_bench.results.layout import load_state
from trace_bench.results.paired import (N_RESAMPLES, min_nonzero_pairs, signflip_p,
                                        wilcoxon_p)
from trace_bench.run import run
from trace_bench.run.paired_distribution import jackknife_interval, paired_distribution_stats

from helpers.shard_metrics import NAME, make_cases, register, unregister

COLUMNS = {"dice": {"higher_is_better": True, "table": "table1", "kind": "case", "protocol": "p", "spec": "seg",
                    "tolerance": {"abs": 0.01}}}
DIFFS = np.array([0.12, -0.03, 0.05, 0.08, 0.0, 0.11, -0.02, 0.07, 0.04, 0.09])


def per_case(values: dict[str, float], method: str = "TRACE", metric: str = "dice") -> pd.DataFrame:
    return pd.DataFrame([(method, c, metric, v, "p") for c, v in values.items()], columns=PER_CASE_COLUMNS)


def make_out(path: Path, cases: dict[str, float]) -> Path:
    """An output folder with per-case dice values and their mean as the summary."""
    path.mkdir(parents=True)
    vals = np.array([v for v in cases.values() if np.isfinite(v)])
    write_csv(path / "summary.csv", SUMMARY_COLUMNS, [("TRACE", "dice", float(vals.mean()), float("nan"),
                                                       float("nan"), len(vals))])
    write_csv(path / "per_case.csv", PER_CASE_COLUMNS, [("TRACE", c, "dice", v, "p") for c, v in cases.items()])
    (path / "metrics.json").write_text(json.dumps({"methods": ["TRACE"], "columns": COLUMNS, "skipped": {}}))
    return path


def test_equals_scipy_on_the_differences():
    base = {f"c{i:02d}": 0.5 + 0.01 * i for i in range(len(DIFFS))}
    cand = {c: v + d for (c, v), d in zip(base.items(), DIFFS)}
    row = paired_case_stats(per_case(base), per_case(cand)).iloc[0]
    d = np.array([cand[c] - base[c] for c in sorted(base)])
    assert list(row.index) == ["method", "metric", *PAIRED_COLUMNS]
    assert row.n_pairs == len(DIFFS) and row.paired_delta == pytest.approx(d.mean())
    assert row.n_nonzero == np.count_nonzero(d) == 9
    p = scipy.stats.wilcoxon(d, zero_method="wilcox", alternative="two-sided").pvalue
    assert row.p_wilcoxon == pytest.approx(p, rel=1e-12)
    # the gate: scipy's exact sign-flip test of the mean (2^10 sign patterns)
    flip = scipy.stats.permutation_test((d,), np.mean, permutation_type="samples", n_resamples=np.inf,
                                        alternative="two-sided")
    assert row.p_signflip == pytest.approx(flip.pvalue, rel=1e-12)
    # the interval: bootstrap-t, t* = (mean(d*) - mean(d)) / se(d*) over scipy's resamples of d, its
    # percentile quantiles (scipy), then mean(d) - q * se(d)
    n, se = d.size, d.std(ddof=1) / np.sqrt(d.size)

    def t_star(x, axis=-1):
        return (x.mean(axis=axis) - d.mean()) / (x.std(ddof=1, axis=axis) / np.sqrt(n))

    q = scipy.stats.bootstrap((d,), t_star, n_resamples=N_RESAMPLES, method="percentile", confidence_level=0.95,
                              rng=np.random.default_rng(PAIRED_SEED)).confidence_interval
    assert (row.paired_ci_low, row.paired_ci_high) == pytest.approx((d.mean() - q.high * se, d.mean() - q.low * se),
                                                                    rel=1e-12)
    # --confidence reaches the interval: a 99% interval is wider
    wide = paired_case_stats(per_case(base), per_case(cand), confidence=0.99).iloc[0]
    assert wide.paired_ci_low < row.paired_ci_low and wide.paired_ci_high > row.paired_ci_high


def test_bootstrap_t_approaches_the_t_interval_at_large_n():
    """Normal differences, n = 400: the bootstrap-t interval and Student's t interval agree to a few
    per cent of their width (both are exact-ish here; the bootstrap only adds resampling noise)."""
    d = np.random.default_rng(7).normal(0.1, 1.0, 400)
    s = paired_stat(d)
    t = scipy.stats.ttest_1samp(d, 0.0).confidence_interval(0.95)
    width = t.high - t.low
    assert abs(s.ci_low - t.low) < 0.05 * width and abs(s.ci_high - t.high) < 0.05 * width
    assert s.p_signflip == pytest.approx(scipy.stats.permutation_test(
        (d,), np.mean, permutation_type="samples", n_resamples=9999, rng=np.random.default_rng(PAIRED_SEED)).pvalue)


def test_min_nonzero_pairs_is_where_the_exact_tests_can_reach_alpha():
    for alpha in (0.5, 0.1, 0.0625, 0.05, 0.01, 0.001):
        need = min_nonzero_pairs(alpha)
        for m in (need - 1, need):
            # the most extreme data for m non-zero differences: all of one sign (plus zeros, which change nothing)
            d = np.concatenate([np.arange(1.0, m + 1), np.zeros(3)])
            p_flip, p_wil = signflip_p(d), wilcoxon_p(d[d != 0])  # (scipy approximates Wilcoxon with zeros)
            assert p_flip == pytest.approx(2.0 ** (1 - m)) and p_wil == pytest.approx(2.0 ** (1 - m))
            assert (p_flip < alpha) == (m == need), (alpha, m)
    assert min_nonzero_pairs(0.05) == 6


def test_pairing_ignores_cases_missing_or_not_finite_in_one_run():
    base = {"a": 0.5, "b": 0.6, "c": 0.7, "only_base": 0.1, "nan_cand": 0.4}
    cand = {"a": 0.55, "b": 0.62, "c": 0.71, "only_cand": 0.9, "nan_cand": float("nan")}
    row = paired_case_stats(per_case(base), per_case(cand)).iloc[0]
    assert row.n_pairs == 3
    assert row.paired_delta == pytest.approx(np.mean([0.05, 0.02, 0.01]))
    # "(all)" and "(profile)" rows are not cases
    extra = pd.DataFrame([("TRACE", "(all)", "dice", 9.0, "p"), ("TRACE", "(profile)", "dice", 9.0, "p")],
                         columns=PER_CASE_COLUMNS)
    row2 = paired_case_stats(pd.concat([per_case(base), extra]), pd.concat([per_case(cand), extra])).iloc[0]
    assert row2.n_pairs == 3 and row2.paired_delta == pytest.approx(row.paired_delta)


def test_constant_shift():
    rng = np.random.default_rng(3)
    base = {f"c{i}": float(x) for i, x in enumerate(rng.uniform(0.3, 0.9, 12))}
    delta = 0.037
    row = paired_case_stats(per_case(base), per_case({c: v + delta for c, v in base.items()})).iloc[0]
    assert row.n_pairs == 12 and row.paired_delta == pytest.approx(delta, abs=1e-12)
    assert row.paired_ci_low - 1e-12 <= delta <= row.paired_ci_high + 1e-12
    assert row.p_wilcoxon < 0.001


def test_degenerate_cases():
    zero = paired_stat(np.zeros(5))
    assert zero.p_wilcoxon == zero.p_signflip == 1.0 and zero.delta == 0.0 and (zero.ci_low, zero.ci_high) == (0.0, 0.0)
    assert zero.n_nonzero == 0
    one = paired_stat(np.array([0.2]))
    assert one.n_pairs == 1 and one.delta == 0.2 and np.isnan(one.p_wilcoxon) and np.isnan(one.ci_low) and one.note
    assert np.isnan(one.p_signflip)
    none = paired_stat(np.array([]))
    assert none.n_pairs == 0 and np.isnan(none.delta) and none.note
    # below 5 pairs: tests, but no interval (bootstrap-t is undefined or unusably wide there)
    four = paired_stat(np.array([0.1, 0.3, -0.05, 0.2]))
    assert np.isnan(four.ci_low) and np.isnan(four.ci_high) and "too small" in four.note
    assert np.isfinite(four.p_signflip) and np.isfinite(four.p_wilcoxon)


def test_runs_without_per_case_values_get_nan_columns(tmp_path):
    a, b = make_out(tmp_path / "a", {"x": 0.7, "y": 0.7}), make_out(tmp_path / "b", {"x": 0.7, "y": 0.7})
    (a / "per_case.csv").unlink()
    cmp = compare_results(a, b)
    row = cmp.rows.iloc[0]
    assert row.status == "ok" and row.n_pairs == 0 and np.isnan(row.paired_delta) and np.isnan(row.p_wilcoxon)


def invoke(*args: str):
    return CliRunner().invoke(app, ["compare", *args])


def test_significance_gate(tmp_path):
    base = {f"c{i}": 0.70 for i in range(8)}
    # mean -0.02 (beyond the 0.01 tolerance) but half the cases better, half worse: not significant
    noisy = {c: 0.70 + d for c, d in zip(base, [-0.20, 0.15, -0.18, 0.14, -0.16, 0.12, -0.10, 0.07])}
    a, b = make_out(tmp_path / "a", base), make_out(tmp_path / "b", noisy)
    r = invoke(str(a), str(b))
    assert r.exit_code == 1 and "REGRESSED" in r.output and "p=" in r.output and "n=8" in r.output
    r = invoke(str(a), str(b), "--significance", "0.05", "--csv", str(tmp_path / "cmp.csv"))
    assert r.exit_code == 0, r.output
    assert NOT_SIGNIFICANT in r.output and "REGRESSED" not in r.output
    df = pd.read_csv(tmp_path / "cmp.csv")
    assert list(df.columns) == ["method", "metric", "higher_is_better", "baseline", "candidate", "delta", "tolerance",
                                "status", *PAIRED_COLUMNS]
    assert df.status.tolist() == [NOT_SIGNIFICANT] and df.p_wilcoxon.iloc[0] > 0.05
    # the same mean change on every case is significant: still a regression
    shifted = make_out(tmp_path / "c", {c: v - 0.02 for c, v in base.items()})
    cmp = compare_results(a, shifted, significance=0.05)
    assert cmp.rows.status.tolist() == ["REGRESSED"] and not cmp.ok and cmp.rows.p_wilcoxon.iloc[0] < 0.05
    assert invoke(str(a), str(shifted), "--significance", "0.05").exit_code == 1


# ----------------------------------------------------------------------------- distribution metrics
@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    """Baseline: 6 crops scored as method "m" from the interpolated copies; candidate: the noisy
    copies with one case removed, so 5 cases are common."""
    data = make_cases(tmp_path_factory.mktemp("paired-data"))
    cand_dir = data / "noisy-partial"
    shutil.copytree(data / "noisy", cand_dir)
    dropped = min(cand_dir.iterdir())
    dropped.unlink()
    register()
    try:
        outs = []
        for name, folder in (("base", data / "interp"), ("cand", cand_dir)):
            out = tmp_path_factory.mktemp(name)
            run(RunConfig(out=str(out), reference=str(data / "reference"), methods={"m": str(folder)},
                          metrics=[NAME, "temporal_flickering"], frame_size=64, bootstrap=50, bootstrap_distribution=5,
                          plots=False, published=False, progress=False))
            outs.append(out)
    finally:
        unregister()
    return outs[0], outs[1], dropped.name.removesuffix(".nii.gz")


@pytest.fixture
def registered():
    register()
    yield
    unregister()


def _states(out: Path, method: str) -> dict[str, dict[str, np.ndarray]]:
    root = out / "cases" / method
    return {d.name: load_state(d / f"{NAME}.npz") for d in sorted(root.iterdir()) if (d / f"{NAME}.npz").is_file()}


def _mean_diff(gen: list[dict], ref: list[dict]) -> float:
    """shard_fake_mean by hand: |mean frame grey level of the generated - of the reference set|."""
    def mean(states: list[dict]) -> float:
        return sum(float(s["s"]) for s in states) / sum(float(s["n"]) for s in states)
    return abs(mean(gen) - mean(ref))


def test_distribution_jackknife_on_two_runs(two_runs, registered):
    base, cand, dropped = two_runs
    df = paired_distribution_stats(base, cand)
    assert df.metric.tolist() == [NAME] and df.method.tolist() == ["m"]
    row = df.iloc[0]
    bs, cs = _states(base, "m"), _states(cand, "m")
    common = sorted(set(bs) & set(cs))
    assert dropped not in common and len(common) == 5 and row.n_pairs == len(common)
    ref_b, ref_c = list(_states(base, "GT").values()), list(_states(cand, "GT").values())
    full = _mean_diff([cs[c] for c in common], ref_c) - _mean_diff([bs[c] for c in common], ref_b)
    assert row.paired_delta == pytest.approx(full, rel=1e-12)
    loo = np.array([_mean_diff([cs[c] for c in common if c != i], ref_c)
                    - _mean_diff([bs[c] for c in common if c != i], ref_b) for i in common])
    n = len(common)
    se = np.sqrt((n - 1) / n * np.sum((loo - loo.mean()) ** 2))
    q = scipy.stats.t.ppf(0.975, n - 1)
    assert se > 0
    assert (row.paired_ci_low, row.paired_ci_high) == pytest.approx((full - q * se, full + q * se), rel=1e-9)
    assert row.paired_ci_low < row.paired_delta < row.paired_ci_high
    assert np.isnan(row.p_wilcoxon) and "left out" in row.paired_note
    assert jackknife_interval(full, loo, 0.95)[0] == pytest.approx(se)


def test_compare_cli_merges_both_kinds(two_runs, registered, tmp_path):
    base, cand, _ = two_runs
    csv = tmp_path / "cmp.csv"
    r = invoke(str(base), str(cand), "--csv", str(csv), "--confidence", "0.9")
    assert r.exit_code in (0, 1), r.output
    df = pd.read_csv(csv).set_index(["method", "metric"])
    dist = df.loc[("m", NAME)]
    assert dist.n_pairs == 5 and dist.paired_ci_low < dist.paired_delta < dist.paired_ci_high
    assert np.isnan(dist.p_wilcoxon) and " jk n=5" in r.output
    case = df.loc[("m", "temporal_flickering")]
    assert case.n_pairs == 5 and np.isfinite(case.p_wilcoxon) and case.paired_ci_low <= case.paired_ci_high
    # --no-jackknife leaves the set-level row without paired values
    r2 = invoke(str(base), str(cand), "--csv", str(csv), "--no-jackknife")
    assert r2.exit_code == r.exit_code
    assert pd.read_csv(csv).set_index(["method", "metric"]).loc[("m", NAME)].n_pairs == 0


def test_jackknife_skips_with_a_note(two_runs, registered, tmp_path):
    base, cand, _ = two_runs
    broken = tmp_path / "broken"
    shutil.copytree(cand, broken)
    victim = min((broken / "cases" / "m").iterdir()) / f"{NAME}.npz"
    victim.unlink()
    row = paired_distribution_stats(base, broken).iloc[0]
    assert np.isnan(row.paired_delta) and "missing" in row.paired_note and str(victim) in row.paired_note
    # fewer than 3 common cases
    small = tmp_path / "small"
    shutil.copytree(cand, small)
    man = json.loads((small / "manifest.json").read_text())
    keep = sorted({e["case_id"] for e in man["entries"] if e["method"] == "m"})[:2]
    man["entries"] = [e for e in man["entries"] if e["method"] != "m" or e["case_id"] in keep]
    (small / "manifest.json").write_text(json.dumps(man))
    row = paired_distribution_stats(base, small).iloc[0]
    assert row.n_pairs == 2 and np.isnan(row.paired_ci_low) and "needs 3" in row.paired_note


def test_small_n_regression_is_not_waved_through(tmp_path):
    """Issue 28 item 6: HD95-like values, 5 of 8 cases worse, none better. No exact test can give
    p < 0.05 with 5 non-zero differences (p >= 2^-4 = 0.0625), so the gate cannot judge them: the
    tolerance alone decides (REGRESSED, exit 1) and the output says why and from which n the test works."""
    base = {f"c{i}": 0.70 for i in range(8)}
    worse = make_out(tmp_path / "b", {c: v - (0.05 + 0.01 * i if i < 5 else 0.0)
                                      for i, (c, v) in enumerate(base.items())})
    a = make_out(tmp_path / "a", base)
    cmp = compare_results(a, worse, significance=0.05)
    row = cmp.rows.iloc[0]
    assert row.status == "REGRESSED" and not cmp.ok
    assert row.n_nonzero == 5 and row.p_signflip == pytest.approx(0.0625) and row.p_wilcoxon == pytest.approx(0.0625)
    assert row.paired_ci_high < 0  # the interval alone would call it significant
    assert "needs 6" in row.paired_note and "tolerance gate alone" in row.paired_note
    r = invoke(str(a), str(worse), "--significance", "0.05")
    assert r.exit_code == 1 and "REGRESSED" in r.output and ">= 6 non-zero paired differences" in r.output
    # one more worse case: the exact test reaches p = 2^-5 < 0.05 and the regression is significant
    six = make_out(tmp_path / "c", {c: v - (0.05 + 0.01 * i if i < 6 else 0.0) for i, (c, v) in enumerate(base.items())})
    row6 = compare_results(a, six, significance=0.05).rows.iloc[0]
    assert row6.status == "REGRESSED" and row6.p_signflip == pytest.approx(1 / 32) and "alone" not in row6.paired_note
    # without --significance the note is not added (the gate is off)
    assert "alone" not in compare_results(a, worse).rows.iloc[0].paired_note


def test_signflip_gate_holds_its_level_under_the_null():
    """Size of the gate: differences symmetric about 0 (normal and t3), n = 8 and 20, 300 seeded
    replications each: the rejection rate at alpha = 0.05 stays at or below alpha (+ 2.6 binomial SE)."""
    rng = np.random.default_rng(2024)
    for draw in (lambda n: rng.normal(size=n), lambda n: rng.standard_t(3, size=n)):
        for n in (8, 20):
            rejections = sum(paired_stat(draw(n), n_resamples=99).p_signflip < 0.05 for _ in range(300))
            assert rejections / 300 <= 0.05 + 2.6 * np.sqrt(0.05 * 0.95 / 300), (n, rejections)


def _rename_run(src: Path, dst: Path, old: str, new: str) -> Path:
    """A copy of a run folder with method ``old`` renamed to ``new`` everywhere compare reads it."""
    shutil.copytree(src, dst)
    (dst / "cases" / old).rename(dst / "cases" / new)
    man = json.loads((dst / "manifest.json").read_text())
    man["entries"] = [dict(e, method=new if e["method"] == old else e["method"]) for e in man["entries"]]
    man["methods"] = [new if m == old else m for m in man["methods"]]
    (dst / "manifest.json").write_text(json.dumps(man))
    meta = json.loads((dst / "metrics.json").read_text())
    meta["methods"] = [new if m == old else m for m in meta["methods"]]
    (dst / "metrics.json").write_text(json.dumps(meta))
    for name in ("summary.csv", "per_case.csv"):
        df = pd.read_csv(dst / name, keep_default_na=False)
        df["method"] = df["method"].replace(old, new)
        df.to_csv(dst / name, index=False)
    return dst


def test_map_pairs_renamed_methods_in_both_paired_analyses(two_runs, registered, tmp_path):
    base, cand, _ = two_runs
    moved = _rename_run(cand, tmp_path / "moved", "m", "m-v2")
    assert invoke(str(base), str(cand), "--csv", str(tmp_path / "x.csv")).exit_code in (0, 1)
    plain = pd.read_csv(tmp_path / "x.csv")
    r = invoke(str(base), str(moved), "--csv", str(tmp_path / "y.csv"))
    assert r.exit_code == 2 and "share no method" in r.output
    r = invoke(str(base), str(moved), "--map", "m=m-v2", "--csv", str(tmp_path / "y.csv"))
    assert r.exit_code in (0, 1), r.output
    mapped = pd.read_csv(tmp_path / "y.csv")
    assert set(mapped.method) - {"GT"} == {"m-v2"}
    mapped["method"] = mapped["method"].replace("m-v2", "m")
    pd.testing.assert_frame_equal(mapped, plain)


def test_real_runs_with_another_frame_size_are_refused(two_runs, tmp_path):
    """Issue 27: two real runs scored at frame size 64 and 32 (and another HU window) printed "no
    regression"; now compare refuses and names the parts of the frame protocol that differ."""
    base, _, _ = two_runs
    data = make_cases(tmp_path / "data")
    other = tmp_path / "other"
    run(RunConfig(out=str(other), reference=str(data / "reference"), methods={"m": str(data / "interp")},
                  metrics=["temporal_flickering"], frame_size=32, hu_window=(-1024.0, 600.0), bootstrap=10,
                  plots=False, published=False, progress=False))
    r = invoke(str(base), str(other))
    assert r.exit_code == 2 and len(r.output.strip().splitlines()) == 1, r.output
    assert "64px vs 32px" in r.output and "hu[-1000,1000] vs hu[-1024,600]" in r.output
    assert "(temporal_flickering)" in r.output
    r = invoke(str(base), str(other), "--allow-protocol-change", "--no-jackknife")
    assert r.exit_code in (0, 1) and "PROTOCOL CHANGED" in r.output
