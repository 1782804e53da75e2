"""The demo: slice-interp baseline and a demo run on the shipped data (TRACE volumes disabled here)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from trace_bench import demo, launch
from trace_bench.volume import from_canonical


def test_slice_interp_keeps_every_4th_and_interpolates():
    a = np.random.default_rng(0).normal(size=(11, 4, 5)).astype(np.float32)
    v = from_canonical(a, (5.0, 1.0, 1.0))
    out = demo.slice_interp(v).array
    for z in (0, 4, 8, 10):  # kept (and the last slice)
        np.testing.assert_array_equal(out[z], a[z])
    np.testing.assert_allclose(out[2], 0.5 * a[0] + 0.5 * a[4], rtol=1e-6)
    np.testing.assert_allclose(out[9], 0.5 * a[8] + 0.5 * a[10], rtol=1e-6)
    np.testing.assert_allclose(out[5], 0.75 * a[4] + 0.25 * a[8], rtol=1e-6)
    assert out.shape == a.shape


def test_demo_run_on_shipped_data(tmp_path, monkeypatch):
    monkeypatch.setattr(demo, "trace_methods", lambda out, seed=0: ({}, "TRACE demo disabled in this test"))
    r = launch.run_demo(tmp_path / "demo", metrics=["temporal_flickering"], plots=False, progress=False,
                      bootstrap=100)
    s = pd.read_csv(r.out / "summary.csv")
    tf = s[s.metric == "temporal_flickering"].set_index("method").value
    assert set(tf.index) == {"GT", "slice-interp"}
    assert tf["slice-interp"] > tf["GT"]  # interpolation is smoother along z than the real scans
    assert s.n.max() == 2
    md = (r.out / "report.md").read_text(encoding="utf-8")
    assert "TRACE demo disabled in this test" in md and "slice-interp" in md
    from trace_bench.config import load_config

    eff = load_config(r.out / "config.toml")
    assert list(eff.methods) == ["slice-interp"] and eff.skip_unavailable and eff.reference.endswith("reference")


def test_the_whole_demo_output_stays_under_50_mb(tmp_path):
    """`trace-bench demo` as shipped (every metric the environment can run, plots, the TRACE demo checkpoint's
    volumes): its output folder, demo inputs included, stays under 50 MB (it was 326 MB before the per-case
    states were made lean: float32 feature rows, no d x d matrices per method). About a minute on 2 cores."""
    r = launch.run_demo(tmp_path / "demo", progress=False)
    files = [p for p in r.out.rglob("*") if p.is_file()]
    total = sum(p.stat().st_size for p in files)
    big = sorted(((p.stat().st_size, p.relative_to(r.out).as_posix()) for p in files), reverse=True)[:5]
    assert (r.out / "report.html").is_file() and (r.out / "summary.csv").is_file()
    assert total < 50 * 2**20, f"demo output {total / 2**20:.1f} MiB; largest files {big}"
