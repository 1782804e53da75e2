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
