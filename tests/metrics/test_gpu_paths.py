"""The torch paths of the per-case stage (HD95, ct-frames-v1) equal the CPU paths.

Every equality is run with torch on the CPU (so it runs in CI) and again on CUDA when there is one.
HD95: the same set of float64 distances -> the same quantile, so values are compared with ``==``.
Frames: uint8, compared bitwise.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import ndimage as ndi
from scipy.spatial import cKDTree

from trace_bench.metrics.hausdorff import hd95, hd95_torch, image_diagonal, surface
from trace_bench.metrics.hausdorff_torch import nearest_sq_distances, surface_torch
from trace_bench.protocol import (
    DEFAULT_PROTOCOL,
    FrameProtocol,
    hu_to_frames,
    hu_to_frames_torch,
)

from helpers.paths import DEMO_CTS

CUDA = torch.cuda.is_available()
needs_cuda = pytest.mark.skipif(not CUDA, reason="no CUDA device")
DEVICES = ["cpu", pytest.param("cuda", marks=needs_cuda)]


def _blobs(shape, seed: int, n_labels: int = 3, sigma: float = 3.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    f = ndi.gaussian_filter(rng.normal(size=shape), sigma)
    q = np.quantile(f, np.linspace(0, 1, n_labels + 2)[1:-1])
    return np.digitize(f, q).astype(np.uint8)


def _same(a: dict, b: dict) -> None:
    assert list(a) == list(b)
    for k, v in a.items():
        assert (math.isnan(v) and math.isnan(b[k])) or v == b[k], (k, v, b[k])


# ------------------------------------------------------------------------------------- surfaces
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("shape", [(1, 5, 5), (2, 6, 7), (3, 4, 5), (17, 23, 19), (9, 11)])
def test_surface_torch_equals_numpy(device, shape):
    rng = np.random.default_rng(len(shape) * 100 + shape[0])
    for m in (rng.random(shape) > 0.3, _blobs(shape, 1, 1, 1.0) == 1, np.ones(shape, bool)):
        got = surface_torch(torch.from_numpy(m).to(device)).cpu().numpy()
        assert np.array_equal(got, surface(m))


# ---------------------------------------------------------------------------- nearest distances
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("scale", [(1.0, 1.0, 1.0), (5.0, 0.7, 0.7), (2.5, 1.1399999856948853, 0.6)])
def test_nearest_distances_bitwise_equal_to_kdtree(device, scale):
    """The float64 distances themselves (not just the quantile) equal cKDTree's, bit for bit, also
    with small chunks so the slice window grows and the column blocks split."""
    lab = _blobs((18, 30, 26), 7)
    a, b = np.argwhere(surface(lab == 1)), np.argwhere(surface(lab == 2))
    sc = np.asarray(scale)
    want = cKDTree(b * sc).query(a * sc, k=1)[0]
    dev = torch.device(device)
    ta, tb = torch.from_numpy(a).to(dev), torch.from_numpy(b).to(dev)
    st = torch.as_tensor(sc, device=dev)
    for rows, block in ((1024, 1 << 22), (37, 500)):
        got = np.sqrt(nearest_sq_distances(ta.double() * st, tb.double() * st, ta[:, 0].contiguous(),
                                           tb[:, 0].contiguous(), float(sc[0]), rows, block).cpu().numpy())
        assert np.array_equal(got, want)


# -------------------------------------------------------------------------------------- HD95
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("seed,spacing", [(0, None), (1, (5.0, 0.7, 0.7)), (2, (2.5, 1.25, 0.6)), (3, 0.9)])
def test_hd95_torch_equals_numpy_random_blobs(device, seed, spacing):
    shape = (20, 34, 30)
    pred, ref = _blobs(shape, seed), _blobs(shape, seed + 100)
    for pct in (95.0, 100.0, 50.0):
        _same(hd95_torch(pred, ref, spacing, percentile=pct, device=device), hd95(pred, ref, spacing, percentile=pct))


@pytest.mark.parametrize("device", DEVICES)
def test_hd95_torch_equals_numpy_spheres_and_planes(device):
    zz, yy, xx = np.mgrid[:41, :41, :41] - 20
    r = np.sqrt(zz ** 2 + yy ** 2 + xx ** 2)
    big, small = (r <= 15).astype(np.uint8), (r <= 10).astype(np.uint8)
    for sp in ((0.8, 0.8, 0.8), (3.0, 0.7, 1.1)):
        got = hd95_torch(big, small, sp, device=device)
        _same(got, hd95(big, small, sp))
    assert abs(hd95_torch(big, small, (0.8,) * 3, device=device)[1] - 4.0) <= 0.8  # analytic gap 5 voxels
    a, b = np.zeros((14, 9, 11), np.uint8), np.zeros((14, 9, 11), np.uint8)
    a[5], b[9] = 1, 1
    assert hd95_torch(a, b, (3.0, 0.7, 1.1), device=device)[1] == pytest.approx(12.0, rel=1e-6)
    assert hd95_torch(a, a, (3.0, 0.7, 1.1), device=device)[1] == 0.0


@pytest.mark.parametrize("device", DEVICES)
def test_hd95_torch_empty_classes_and_2d(device):
    ref = np.zeros((8, 10, 12), np.uint8)
    pred = ref.copy()
    ref[2:5, 2:6, 3:8] = 1
    pred[3:6, 2:6, 3:8] = 1
    pred[1:3, 1:3, 1:3] = 2  # only in pred: miss
    sp = (2.0, 1.0, 0.5)
    got = hd95_torch(pred, ref, sp, labels=[1, 2, 3], device=device)
    _same(got, hd95(pred, ref, sp, labels=[1, 2, 3]))
    assert got[2] == image_diagonal(ref.shape, sp) and math.isnan(got[3])
    assert hd95_torch(ref * 0, ref * 0, sp, device=device) == {}
    p2, r2 = _blobs((40, 44), 4, 2, 2.0), _blobs((40, 44), 5, 2, 2.0)
    _same(hd95_torch(p2, r2, (1.5, 0.5), device=device), hd95(p2, r2, (1.5, 0.5)))


@pytest.mark.parametrize("device", DEVICES)
def test_hd95_torch_equals_numpy_on_chest_ct_labels(device):
    from trace_bench.io import read_volume
    from trace_bench.segmenters import threshold_segment

    v = read_volume(DEMO_CTS / "lung1.nii.gz")
    ref = threshold_segment(v.array, v.spacing)
    ref = ref[::2, ::3, ::3] if device == "cpu" else ref  # CPU: a coarser grid keeps CI fast
    pred = np.roll(ref, (2, 3), axis=(0, 1))
    pred[(pred == 1) & ~ndi.binary_erosion(pred == 1, iterations=2)] = 2
    _same(hd95_torch(pred, ref, v.spacing, device=device), hd95(pred, ref, v.spacing))


def test_hd95_device_argument_dispatch(monkeypatch):
    """``device=None`` / ``"cpu"`` keeps the numpy path; any other device goes to the torch path."""
    import trace_bench.metrics.hausdorff as HT

    calls = []
    monkeypatch.setattr(HT, "hd95_torch", lambda *a, **k: calls.append(k["device"]) or {})
    pred, ref = _blobs((10, 12, 14), 1), _blobs((10, 12, 14), 2)
    assert hd95(pred, ref, 1.0, device="cpu") == hd95(pred, ref, 1.0) != {}
    assert calls == []
    assert hd95(pred, ref, 1.0, device="cuda:0") == {} and calls == ["cuda:0"]


def test_segmentation_metric_passes_cuda_device_to_hd95(monkeypatch):
    import trace_bench.metrics.segmentation as S
    from trace_bench.metrics import CaseData, RunContext, Segmentation
    from trace_bench.volume import from_canonical

    seen = []
    real = S.hd95
    monkeypatch.setattr(S, "hd95", lambda *a, device=None, **k: seen.append(device) or real(*a, **k))
    sp = (2.0, 1.0, 1.0)
    p, r = _blobs((12, 14, 16), 1, 2), _blobs((12, 14, 16), 2, 2)
    vol = from_canonical(np.zeros(p.shape, np.float32), sp)
    for dev, want in (("cpu", None), ("cuda", "cuda"), ("cuda:1", "cuda:1")):
        data = CaseData("m", "c", vol, reference=vol, mask=from_canonical(p, sp), reference_mask=from_canonical(r, sp),
                        device=dev)
        Segmentation().case_values(data, RunContext(segmenter="provided", device=dev))
        assert seen[-1] == want


# ------------------------------------------------------------------------------------- frames
@pytest.mark.parametrize("device", DEVICES)
def test_frames_torch_bitwise_equal_on_chest_ct(device):
    from trace_bench.io import read_volume

    v = read_volume(DEMO_CTS / "lung1.nii.gz")
    for size, window in ((256, (-1000.0, 1000.0)), (128, (-1000.0, 1000.0)), (100, (-160.0, 240.0)), (300, (-1350.0, 150.0))):
        want = hu_to_frames(v.array, size, window)
        got = hu_to_frames_torch(v.array, size, window, device=device)
        assert got.dtype == np.uint8 and np.array_equal(got, want), (size, window)
    assert np.array_equal(DEFAULT_PROTOCOL.frames(v, device=device), DEFAULT_PROTOCOL.frames(v))


@pytest.mark.parametrize("device", DEVICES)
def test_frames_torch_bitwise_equal_on_random_hu(device):
    rng = np.random.default_rng(0)
    arr = rng.uniform(-1500, 2500, size=(5, 64, 80)).astype(np.float32)
    arr[0, :8, :8] = np.arange(-1000, 1000, 2000 / 64, dtype=np.float32).reshape(8, 8)  # rounding ties
    for size in (64, 40, 97):
        for window in ((-1000.0, 1000.0), (-160.0, 240.0), (-0.3, 0.7)):
            assert np.array_equal(hu_to_frames_torch(arr, size, window, device=device), hu_to_frames(arr, size, window))
    assert np.array_equal(FrameProtocol(size=64).frames(type("V", (), {"array": arr})(), device=device),
                          hu_to_frames(arr, 64))


def test_case_data_frames_use_its_device(monkeypatch):
    import trace_bench.protocol as P
    from trace_bench.metrics import CaseData
    from trace_bench.volume import from_canonical

    seen = []
    real = P.hu_to_frames
    monkeypatch.setattr(P, "hu_to_frames", lambda *a, device=None, **k: seen.append(device) or real(*a, **k))
    vol = from_canonical(np.zeros((3, 8, 8), np.float32), (1.0, 1.0, 1.0))
    _ = CaseData("m", "c", vol, device="cuda:0").frames
    assert seen == ["cuda:0"]
