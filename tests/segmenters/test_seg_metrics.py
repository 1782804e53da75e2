"""Dice / Jaccard / HD95: analytic phantoms, parity with MONAI itself, empty-structure policy."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
from scipy import ndimage as ndi

import trace_bench.metrics as M
from trace_bench.metrics.hausdorff import EMPTY_POLICY, image_diagonal, surface

from helpers.paths import DEMO_CTS


# ------------------------------------------------------------------------------------ helpers
def _onehot(lab: np.ndarray, labels) -> torch.Tensor:
    return torch.from_numpy(np.stack([lab == l for l in labels])[None].astype(np.float32))


def _monai(pred: np.ndarray, ref: np.ndarray, spacing, labels):
    from monai.metrics import DiceMetric, HausdorffDistanceMetric, MeanIoU

    p, r = _onehot(pred, labels), _onehot(ref, labels)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        d = DiceMetric(include_background=True, reduction="none")(p, r)[0].numpy()
        j = MeanIoU(include_background=True, reduction="none")(p, r)[0].numpy()
        h = HausdorffDistanceMetric(include_background=True, percentile=95, reduction="none")(
            p, r, spacing=list(spacing))[0].numpy()
    return d, j, h


def _blobs(shape, seed: int, n_labels: int = 3, sigma: float = 3.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    f = ndi.gaussian_filter(rng.normal(size=shape), sigma)
    q = np.quantile(f, np.linspace(0, 1, n_labels + 2)[1:-1])
    return np.digitize(f, q).astype(np.uint8)  # 0..n_labels


# ----------------------------------------------------------------------------- analytic phantoms
def test_boxes_dice_jaccard_by_hand():
    a = np.zeros((10, 12, 14), np.uint8)
    b = np.zeros_like(a)
    a[2:6, 2:8, 2:9] = 1  # 4*6*7 = 168 voxels
    b[3:7, 2:8, 2:9] = 1  # shifted one slice: overlap 3*6*7 = 126
    assert M.dice(a, b) == {1: pytest.approx(2 * 126 / (168 + 168), abs=1e-12)}
    assert M.jaccard(a, b) == {1: pytest.approx(126 / (168 + 168 - 126), abs=1e-12)}
    assert M.dice(a, a) == {1: 1.0} and M.jaccard(a, a) == {1: 1.0}


def test_single_voxels_hd_is_their_distance_anisotropic():
    a = np.zeros((6, 6, 6), np.uint8)
    b = np.zeros_like(a)
    a[0, 0, 0] = 1
    b[2, 3, 4] = 1
    sp = (2.0, 1.0, 0.5)
    assert M.hd95(a, b, sp)[1] == pytest.approx(math.sqrt(4.0 ** 2 + 3.0 ** 2 + 2.0 ** 2), rel=1e-6)


def test_parallel_planes_hd_is_plane_gap():
    # one-voxel-thick planes are all surface; every point is exactly 4 slices from the other plane
    a = np.zeros((14, 9, 11), np.uint8)
    b = np.zeros_like(a)
    a[5] = 1
    b[9] = 1
    assert M.hd95(a, b, (3.0, 0.7, 1.1))[1] == pytest.approx(12.0, rel=1e-6)
    assert M.hd95(a, a, (3.0, 0.7, 1.1))[1] == 0.0


def test_concentric_spheres_hd_close_to_radius_gap():
    zz, yy, xx = np.mgrid[:41, :41, :41] - 20
    r = np.sqrt(zz ** 2 + yy ** 2 + xx ** 2)
    big, small = (r <= 15).astype(np.uint8), (r <= 10).astype(np.uint8)
    h = M.hd95(big, small, (0.8, 0.8, 0.8))[1]
    assert abs(h - 5 * 0.8) <= 0.8  # within one voxel of the analytic gap
    d = M.dice(big, small)[1]
    assert d == pytest.approx(2 * small.sum() / (big.sum() + small.sum()))
    assert d == pytest.approx(2 * 10 ** 3 / (15 ** 3 + 10 ** 3), abs=0.02)  # continuum answer


def test_surface_equals_scipy_erosion_xor():
    lab = _blobs((17, 23, 19), seed=3)
    for l in (1, 2, 3):
        m = lab == l
        assert np.array_equal(surface(m), m ^ ndi.binary_erosion(m))


# ------------------------------------------------------------------------------------- parity
@pytest.mark.parametrize("seed,spacing", [(0, (1.0, 1.0, 1.0)), (1, (5.0, 0.7, 0.7)), (2, (2.5, 1.25, 0.6))])
def test_parity_with_monai(seed, spacing):
    shape = (20, 34, 30)
    pred, ref = _blobs(shape, seed), _blobs(shape, seed + 100)
    labels = [1, 2, 3]
    d, j, h = _monai(pred, ref, spacing, labels)
    md, mj, mh = M.dice(pred, ref), M.jaccard(pred, ref), M.hd95(pred, ref, spacing)
    assert sorted(md) == labels
    np.testing.assert_allclose([md[l] for l in labels], d, atol=1e-6, rtol=0)
    np.testing.assert_allclose([mj[l] for l in labels], j, atol=1e-6, rtol=0)
    np.testing.assert_allclose([mh[l] for l in labels], h, atol=1e-3, rtol=0)


def test_parity_with_monai_on_chest_ct_labels():
    from trace_bench.io import read_volume
    from trace_bench.segmenters import threshold_segment

    v = read_volume(DEMO_CTS / "lung1.nii.gz")
    ref = threshold_segment(v.array, v.spacing)
    # a "generated" map: the reference shifted by 2 slices and 3 rows, one structure eroded
    pred = np.roll(ref, (2, 3), axis=(0, 1))
    pred[(pred == 1) & ~ndi.binary_erosion(pred == 1, iterations=2)] = 2
    d, j, h = _monai(pred, ref, v.spacing, [1, 2])
    mh = M.hd95(pred, ref, v.spacing)
    np.testing.assert_allclose([mh[1], mh[2]], h, atol=1e-3, rtol=0)
    np.testing.assert_allclose(list(M.dice(pred, ref).values()), d, atol=1e-6, rtol=0)
    np.testing.assert_allclose(list(M.jaccard(pred, ref).values()), j, atol=1e-6, rtol=0)


def test_threads_do_not_change_values():
    pred, ref = _blobs((16, 20, 24), 5), _blobs((16, 20, 24), 6)
    assert M.hd95(pred, ref, (2, 1, 1), threads=1) == M.hd95(pred, ref, (2, 1, 1), threads=4)


# ------------------------------------------------------------------------------ empty structures
def test_empty_structure_policy():
    ref = np.zeros((8, 10, 12), np.uint8)
    ref[2:5, 2:6, 2:7] = 1
    ref[5:7, 6:9, 6:10] = 2
    pred = ref.copy()
    pred[pred == 2] = 0  # label 2 missed by the prediction
    sp = (2.0, 1.0, 0.5)
    diag = image_diagonal(ref.shape, sp)
    assert diag == pytest.approx(math.sqrt((7 * 2.0) ** 2 + 9 ** 2 + (11 * 0.5) ** 2))
    assert M.dice(pred, ref) == {1: 1.0, 2: 0.0}
    assert M.jaccard(pred, ref) == {1: 1.0, 2: 0.0}
    assert M.hd95(pred, ref, sp) == {1: 0.0, 2: diag}
    # hallucinated structure (absent from the reference) is a miss too
    assert M.hd95(ref, pred, sp)[2] == diag and M.dice(ref, pred)[2] == 0.0
    # absent from both: NaN, and not counted by the summary
    h = M.hd95(pred, ref, sp, labels=[1, 2, 3])
    assert math.isnan(h[3])
    from trace_bench.metrics.segmentation import segmentation_scores, summarize

    means, n = summarize(segmentation_scores(pred, ref, sp, labels=[1, 2, 3]))
    assert n == 2 and means["dice"] == pytest.approx(0.5) and means["hd95"] == pytest.approx(diag / 2)
    assert "miss" in EMPTY_POLICY


def test_bad_inputs_are_refused():
    a = np.zeros((4, 5, 6), np.uint8)
    with pytest.raises(ValueError, match="equal shape"):
        M.dice(a, np.zeros((4, 5, 7), np.uint8))
    with pytest.raises(ValueError, match="integer"):
        M.jaccard(a.astype(float) + 0.5, a)
    with pytest.raises(ValueError, match="spacing"):
        M.hd95(a, a, (1.0, -1.0, 1.0))
    assert M.dice(a, a) == {} and M.hd95(a, a, 1.0) == {}


def test_streaming_metric_matches_functions():
    """The Segmentation metric's streaming form (update per case, merge_state, compute_result) on
    provided label maps equals the functional twins averaged by hand."""
    from trace_bench.metrics import CaseData, RunContext, Segmentation
    from trace_bench.volume import from_canonical

    sp = (2.0, 1.0, 1.0)
    cases = [(_blobs((12, 14, 16), s, 2), _blobs((12, 14, 16), s + 50, 2)) for s in range(3)]
    ctx = RunContext(segmenter="provided")

    def data(p, r, i):
        vol = from_canonical(np.zeros(p.shape, np.float32), sp)
        return CaseData("m", f"c{i}", vol, reference=vol, mask=from_canonical(p, sp), reference_mask=from_canonical(r, sp))

    m = Segmentation()
    for i, (p, r) in enumerate(cases):
        m.update(data(p, r, i), ctx)
    out = m.compute_result(ctx)
    want = np.mean([np.mean([M.dice(p, r)[l] for l in (1, 2)]) for p, r in cases])
    assert out["dice"] == pytest.approx(want) and m.n_cases == 3
    assert out["hd95"] == pytest.approx(np.mean([np.mean(list(M.hd95(p, r, sp).values())) for p, r in cases]))
    half, rest = Segmentation(), Segmentation()
    half.update(data(*cases[0], 0), ctx)
    for i, (p, r) in enumerate(cases[1:], 1):
        rest.update(data(p, r, i), ctx)
    assert half.merge_state(rest).compute_result(ctx)["hd95"] == pytest.approx(out["hd95"])


# ------------------------------------------------------------------------ one counting pass
def _frozen_dice_jaccard(pred, ref, labels):
    """Dice and Jaccard as computed before the one-pass counting (main at 0a3977d): a joint
    ``np.bincount`` of ``p * top + r`` in int64 per metric call. Kept here as the reference."""
    p, r = np.asarray(pred).astype(np.int64), np.asarray(ref).astype(np.int64)
    top = int(max(p.max(initial=0), r.max(initial=0), max(labels, default=0))) + 1
    joint = np.bincount((p * top + r).ravel(), minlength=top * top).reshape(top, top)
    d, j = {}, {}
    for l in labels:
        i, a, b = int(joint[l, l]), int(joint[l].sum()), int(joint[:, l].sum())
        d[l] = float("nan") if a + b == 0 else 2.0 * i / (a + b)
        j[l] = float("nan") if a + b - i == 0 else i / (a + b - i)
    return d, j


@pytest.mark.parametrize("dtype,n_labels", [(np.uint8, 2), (np.uint8, 255), (np.int16, 300), (np.int64, 5),
                                            (np.uint16, 3), (bool, 1)])
def test_one_pass_overlap_equals_separate_counts(dtype, n_labels, monkeypatch):
    from trace_bench.metrics import overlap as O
    from trace_bench.metrics.segmentation import segmentation_scores

    monkeypatch.setattr(O, "CHUNK", 1000)  # many chunks, one ending mid-volume
    rng = np.random.default_rng(n_labels)
    shape = (7, 23, 29)
    pred = rng.integers(0, n_labels + 1, shape).astype(dtype)
    ref = np.where(rng.random(shape) < 0.8, pred, rng.integers(0, n_labels + 1, shape)).astype(dtype)
    labs = sorted(({int(v) for v in np.unique(pred)} | {int(v) for v in np.unique(ref)}) - {0})
    d, j = _frozen_dice_jaccard(pred, ref, labs)
    both = O.overlap_scores(pred, ref)
    assert list(both["dice"]) == labs
    for l in labs:  # identical floats, not approximately equal
        assert both["dice"][l] == d[l] == M.dice(pred, ref)[l]
        assert both["jaccard"][l] == j[l] == M.jaccard(pred, ref)[l]
    conf = O.confusion(pred, ref)
    for l, c in conf.items():
        assert c.tp + c.fp + c.fn + c.tn == pred.size
        assert c.tp == np.count_nonzero((pred == l) & (ref == l)) and c.fp == np.count_nonzero((pred == l) & (ref != l))
        assert c.fn == np.count_nonzero((pred != l) & (ref == l)) and c.tn == np.count_nonzero((pred != l) & (ref != l))
    s = segmentation_scores(pred, ref, (1.0, 1.0, 1.0), labels=labs[:2])
    assert s["dice"] == {l: d[l] for l in labs[:2]} and s["jaccard"] == {l: j[l] for l in labs[:2]}


def test_one_pass_overlap_on_chest_ct_and_absent_labels():
    from trace_bench.io import read_volume
    from trace_bench.metrics.overlap import confusion, overlap_scores
    from trace_bench.segmenters import threshold_segment

    v = read_volume(DEMO_CTS / "lung2.nii.gz")
    ref = threshold_segment(v.array, v.spacing)
    pred = np.roll(ref, (1, 4, -2), axis=(0, 1, 2))
    d, j = _frozen_dice_jaccard(pred, ref, [1, 2, 3, 7])
    got = overlap_scores(pred, ref, labels=[1, 2, 3, 7])
    for l in (1, 2):
        assert got["dice"][l] == d[l] and got["jaccard"][l] == j[l] and 0.5 < d[l] < 1.0
    assert all(math.isnan(got[m][l]) for m in ("dice", "jaccard") for l in (3, 7))
    assert confusion(pred, ref, [7])[7].tn == ref.size


# ------------------------------------------------------------ HD95 shortcut: percentile among zeros
def test_quantile_is_zero_only_when_monai_quantile_is_zero():
    from trace_bench.metrics.hausdorff import quantile_is_zero, quantile_monai

    rng = np.random.default_rng(3)
    ns = list(range(1, 60)) + [99, 100, 101, 1000, 20_001, 123_457]
    for n in ns:
        zeros = sorted({0, 1, n, *rng.integers(0, n + 1, 6).tolist(), int(0.95 * n), int(0.95 * n) + 3})
        for nz in zeros:
            if nz > n:
                continue
            d = np.concatenate([np.zeros(nz), rng.uniform(0.5, 30.0, n - nz)])
            for pct in (95.0, 50.0, 100.0, 0.0):
                if quantile_is_zero(nz, n, pct):
                    assert quantile_monai(d, pct) == 0.0, (n, nz, pct)
    assert not quantile_is_zero(0, 0, 95.0) and quantile_is_zero(5, 5, 100.0) and not quantile_is_zero(4, 5, 100.0)
    assert quantile_is_zero(990, 1000, 95.0) and not quantile_is_zero(900, 1000, 95.0)


@pytest.mark.parametrize("changed", [0, 3, 30, 120, 250, 400, 2000])
def test_hd95_shortcut_equals_the_full_computation(changed, monkeypatch):
    """Maps that agree but for ``changed`` random voxels: from every surface shared (HD95 0 both ways)
    to enough differences that the percentile leaves the zeros; with the shortcut and without it."""
    from trace_bench.metrics import hausdorff as H

    rng = np.random.default_rng(changed)
    ref = _blobs((14, 40, 44), 7, n_labels=2, sigma=2.5)
    pred = ref.copy()
    idx = rng.choice(pred.size, changed, replace=False)
    pred.ravel()[idx] = rng.integers(0, 3, changed)
    sp = (3.0, 0.8, 0.7)
    fast = M.hd95(pred, ref, sp)
    monkeypatch.setattr(H, "quantile_is_zero", lambda *a: False)
    full = M.hd95(pred, ref, sp)
    assert fast == full  # the same floats
    if changed == 0:
        assert fast == {1: 0.0, 2: 0.0}
    if changed == 2000:
        assert all(v > 0 for v in fast.values())
