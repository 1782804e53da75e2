"""Lean outputs (issue 30, item 4): a Frechet metric's per-case state is the case's feature rows in float32
(as the networks emit them: lossless) instead of a float64 copy, its merged state keeps the rows with their
volume ids, and ``stats/{method}_{metric}.npz`` keeps the rows (n <= d) or the mean and covariance (n > d)
instead of mean + covariance + sum + outer product (four d x d float64 matrices: 67 MB per method for 2
cases of the demo). Merges stay exact and every value is the one the float64 moment sums gave (==, not
approx), in any merge grouping (shards)."""

from __future__ import annotations


import numpy as np
import pandas as pd
import pytest

from trace_bench.metrics import METRICS, RunContext, frechet



def _cases(rng: np.random.Generator, n_cases: int, rows: int, d: int) -> list[np.ndarray]:
    return [rng.normal(size=(rows, d)).astype(np.float32) for _ in range(n_cases)]


def _old_value(gen: list[np.ndarray], ref: list[np.ndarray], ddof: int = 1) -> float:
    """The value as computed before: float64 per-case states merged into moment sums (or rows while n <= d)."""
    g = frechet.merge_states([{"features": f.astype(np.float64)} for f in gen])
    r = frechet.merge_states([{"features": f.astype(np.float64)} for f in ref])
    return frechet.frechet_distance_from_states(g, r, ddof)


@pytest.mark.parametrize("rows, d", [(6, 64), (40, 32)])  # n <= d (low-rank formula) and n > d (moment sums)
def test_values_identical_to_float64_moment_sums(rows, d):
    rng = np.random.default_rng(rows)
    gen, ref = _cases(rng, 5, rows, d), _cases(rng, 4, rows, d)
    fid = METRICS.get("fid")()
    states_g = [fid.statistic.case_state(f, f"c{i}") for i, f in enumerate(gen)]  # what a run stores per case
    st = states_g[0]
    assert st["features"].dtype == np.float32 and st["features"].nbytes == gen[0].astype(np.float64).nbytes // 2
    ctx = RunContext()
    got = fid.compute(fid.merge(states_g), fid.merge([{"features": f} for f in ref]), ctx)["fid"]
    assert got == _old_value(gen, ref)
    # shards: merging merged states gives the same rows, volume ids and value
    two = fid.merge([fid.merge(states_g[:2]), fid.merge(states_g[2:])])
    one = fid.merge(states_g)
    assert np.array_equal(two["features"], one["features"]) and np.array_equal(two["volume"], one["volume"])
    assert fid.compute(two, fid.merge([{"features": f} for f in ref]), ctx)["fid"] == got


def test_stats_files_are_small_and_give_back_mean_and_covariance():
    rng = np.random.default_rng(1)
    fid = METRICS.get("fid")()
    few = fid.merge([{"features": f} for f in _cases(rng, 2, 50, 2048)])  # 100 rows of 2048: the demo's shape
    st = fid.export_stats(few)
    assert sum(np.asarray(v).nbytes for v in st.values()) < 1 << 20  # < 1 MiB (was 4 x 32 MiB)
    mu, sigma, n, _ = frechet.load_stats(st)
    rows = np.asarray(few["features"], np.float64)
    assert n == 100 and np.array_equal(mu, rows.mean(0))
    np.testing.assert_allclose(sigma, np.cov(rows, rowvar=False), rtol=1e-10, atol=1e-13)
    many = fid.merge([{"features": f} for f in _cases(rng, 3, 30, 64)])  # 90 rows > 64: mean + covariance
    st = fid.export_stats(many)
    assert set(st) == {"mu", "sigma", "n", "ddof"} and st["sigma"].shape == (64, 64)


def test_a_run_writes_lean_fid_stats(tmp_path):
    """End to end with the real Inception (CPU, 64 px frames, 4 slices per volume): stats per method are the
    rows (a few KiB), and the run's value equals the one recomputed from them."""
    from typer.testing import CliRunner

    from helpers.fake_metrics import make_small_dataset
    from trace_bench.cli import app

    data = make_small_dataset(tmp_path / "data")
    out = tmp_path / "out"
    r = CliRunner().invoke(app, ["run", "--no-progress", "--no-plots", "--no-published", "--frame-size", "64",
                                 "--reference", str(data / "reference"), "--method", f"noisy={data / 'noisy'}",
                                 "--metrics", "fid", "--option", "fid.slices=4", "--out", str(out)])
    assert r.exit_code == 0, r.output
    stats = {p.name: p.stat().st_size for p in (out / "stats").glob("*.npz")}
    assert set(stats) == {"GT_fid.npz", "noisy_fid.npz"} and max(stats.values()) < 100_000, stats
    with np.load(out / "stats" / "noisy_fid.npz") as z:
        g = dict(z)
    with np.load(out / "stats" / "GT_fid.npz") as z:
        ref = dict(z)
    want = frechet.frechet_distance_from_states(frechet.load_stats(g)[3], frechet.load_stats(ref)[3])
    s = pd.read_csv(out / "summary.csv")
    assert float(s[(s.method == "noisy") & (s.metric == "fid")].value.iloc[0]) == pytest.approx(want, rel=1e-9)
    for rec in (out / "cases" / "noisy").glob("*/fid.npz"):
        with np.load(rec) as z:
            assert z["features"].dtype == np.float32
