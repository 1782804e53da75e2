"""temporal_flickering: analytic cases, parity with the vbench package, real run on the shipped CT."""

from __future__ import annotations

import numpy as np
import pytest

from trace_bench.io import read_volume
from trace_bench.metrics import METRICS, RunContext, CaseData, TemporalFlickering, temporal_flickering
from trace_bench.protocol import DEFAULT_PROTOCOL, to_rgb

from helpers.paths import DEMO_CTS


@pytest.fixture(scope="module")
def ct_frames() -> np.ndarray:
    return DEFAULT_PROTOCOL.frames(read_volume(DEMO_CTS / "lung1.nii.gz"))


def test_analytic_values():
    f = np.zeros((3, 4, 4), np.uint8)
    f[1] = 255  # MAE 255 then 255 -> score 0
    assert temporal_flickering(f) == 0.0
    assert temporal_flickering(np.full((5, 3, 3), 7, np.uint8)) == 1.0
    g = np.zeros((2, 2, 2), np.uint8)
    g[1, 0, 0] = 4  # MAE = 1
    assert temporal_flickering(g) == pytest.approx(254 / 255, abs=1e-12)
    assert temporal_flickering(to_rgb(g)) == temporal_flickering(g)  # grey == RGB replication


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="uint8"):
        temporal_flickering(np.zeros((3, 4, 4), np.float32))
    with pytest.raises(ValueError, match="at least 2"):
        temporal_flickering(np.zeros((1, 4, 4), np.uint8))
    with pytest.raises(ValueError, match="shape"):
        temporal_flickering(np.zeros((3, 4), np.uint8))


def test_parity_with_vbench_package(ct_frames, monkeypatch):
    vtf = pytest.importorskip("vbench.temporal_flickering")
    rng = np.random.default_rng(0)
    videos = {"ct.mp4": ct_frames, "noise.mp4": rng.integers(0, 256, (9, 33, 47), dtype=np.uint8)}
    # VBench reads BGR frames with OpenCV; grey replicated to 3 channels is the same in any channel order
    monkeypatch.setattr(vtf, "get_frames", lambda path: list(to_rgb(videos[path])))
    avg, per_video = vtf.temporal_flickering(list(videos))
    ours = {k: temporal_flickering(v) for k, v in videos.items()}
    for r in per_video:
        assert ours[r["video_path"]] == pytest.approx(r["video_results"], abs=1e-6)
    m = TemporalFlickering()
    for v in videos.values():
        d = CaseData(method="m", case_id="c", volume=read_volume(DEMO_CTS / "lung1.nii.gz"))
        d.__dict__["frames"] = v  # the frames view of the case
        m.update(d)
    assert m.compute_result()["temporal_flickering"] == pytest.approx(float(avg), abs=1e-6)


def test_runs_on_shipped_ct_via_registry(ct_frames):
    spec = METRICS.get("temporal_flickering")()
    assert spec.weight_free and spec.columns == {"temporal_flickering": True}
    vol = read_volume(DEMO_CTS / "lung1.nii.gz")
    out = spec.case_values(CaseData(method="GT", case_id="lung1", volume=vol), RunContext())
    assert 0.5 < out["temporal_flickering"] < 1.0
    assert out["temporal_flickering"] == temporal_flickering(ct_frames)
