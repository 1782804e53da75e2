"""``ms_ssim_diversity`` and ``mmd`` (trace_bench/metrics/diversity.py) against MONAI called directly, as MONAI's
realism / diversity tutorial calls it (``MultiScaleSSIMMetric`` on every pair of synthetic images, ``MMDMetric`` on
two stacks), and the behaviour a diversity metric must have: identical volumes score 1, varied ones less."""

from __future__ import annotations

from itertools import combinations

import numpy as np
import pytest
import torch

from trace_bench.errors import ConfigError
from trace_bench.metrics.base import CaseData, RunContext
from trace_bench.metrics.diversity import (MMD, MSSSIMDiversity, choose_pairs, grid_volume, mmd_from_volumes,
                                           ms_ssim_diversity, volume_key)
from trace_bench.volume import from_canonical

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _ct(seed: int, radius: float = 8.0, size=(14, 40, 36)):
    """A CT-like volume: air, an elliptic body with texture, a lung-like air blob of ``radius`` voxels."""
    rng = np.random.default_rng(seed)
    z, y, x = np.mgrid[:size[0], :size[1], :size[2]]
    a = np.full(size, -1000.0, np.float32)
    body = (y - size[1] / 2) ** 2 / 17 ** 2 + (x - size[2] / 2) ** 2 / 15 ** 2 < 1
    a[body] = 40.0
    a += rng.normal(0, 25, size).astype(np.float32)
    blob = (z - size[0] / 2) ** 2 / 4 + (y - size[1] / 2 + 3) ** 2 + (x - size[2] / 2 - 4) ** 2 < radius ** 2
    a[blob & body] = -850.0 + rng.normal(0, 20, int((blob & body).sum()))
    return from_canonical(a, (5.0, 1.5, 1.5))


@pytest.fixture(scope="module")
def volumes():
    return [_ct(i, radius=5.0 + 1.5 * i) for i in range(5)]


def test_grid_is_monai_resize_of_the_window(volumes):
    g = grid_volume(volumes[0], 64)
    assert g.shape == (64, 64, 64) and g.dtype == np.float32
    assert 0.0 <= g.min() and g.max() <= 1.0
    assert grid_volume(volumes[0], 64).tobytes() == g.tobytes()  # deterministic


def test_diversity_equals_monai_over_all_pairs(volumes):
    """The metric's value is the tutorial's loop: MultiScaleSSIMMetric on each pair, averaged."""
    from monai.metrics import MultiScaleSSIMMetric

    ctx = RunContext()
    m = MSSSIMDiversity()
    for i, v in enumerate(volumes):
        m.update(CaseData("gen", f"c{i}", v), ctx)
    res = m.compute_result(ctx)
    grids = torch.from_numpy(np.stack([grid_volume(v, 64) for v in volumes]))[:, None]
    ms_ssim = MultiScaleSSIMMetric(spatial_dims=3, data_range=1.0, kernel_size=4)
    scores = [float(ms_ssim(grids[[a]], grids[[b]])) for a, b in combinations(range(len(volumes)), 2)]
    assert res["ms_ssim_diversity_pairs"] == 10
    assert res["ms_ssim_diversity"] == pytest.approx(np.mean(scores), rel=1e-6)


def test_identical_vs_varied_sets(volumes):
    same = np.stack([grid_volume(volumes[0], 64)] * 3)
    varied = np.stack([grid_volume(v, 64) for v in volumes])
    d_same, n_same = ms_ssim_diversity(same, 4)
    d_var, _ = ms_ssim_diversity(varied, 4)
    assert n_same == 3 and d_same == pytest.approx(1.0, abs=1e-6)  # no diversity at all
    assert d_var < d_same - 0.01  # more diverse = lower
    noisy = np.clip(varied + np.random.default_rng(1).normal(0, 0.2, varied.shape).astype(np.float32), 0, 1)
    assert ms_ssim_diversity(noisy, 4)[0] < d_var  # noise decorrelates further
    with pytest.raises(ValueError, match="at least 2 volumes"):
        ms_ssim_diversity(varied[:1], 4)


def test_pair_subset_is_seeded_and_order_free():
    keys = [f"{i:040x}" for i in range(30)]
    pairs = choose_pairs(keys, 50, seed=0)
    assert len(pairs) == 50 and len(set(pairs)) == 50
    rev = keys[::-1]
    back = {tuple(sorted((rev[a], rev[b]))) for a, b in choose_pairs(rev, 50, seed=0)}
    assert back == {tuple(sorted((keys[a], keys[b]))) for a, b in pairs}  # the same pairs whatever the order
    assert choose_pairs(keys, 50, seed=1) != pairs
    assert len(choose_pairs(keys, None, 0)) == 435


def test_pair_values_are_memoised(volumes):
    grids = np.stack([grid_volume(v, 64) for v in volumes[:4]])
    memo: dict = {}
    full, _ = ms_ssim_diversity(grids, 4, memo=memo)
    assert len(memo) == 6
    ms_ssim_diversity(grids[:3], 4, memo=memo)  # a leave-out set: no new pair
    assert len(memo) == 6 and volume_key(grids[0]) == volume_key(grids[0].copy())


def test_size_and_kernel_are_checked():
    with pytest.raises(ConfigError, match="too small"):
        MSSSIMDiversity({"size": 32, "kernel_size": 4})  # 32 // 16 = 2 <= 3
    MSSSIMDiversity({"size": 128, "kernel_size": 7})  # WDM-3D's setting


def test_mmd_equals_monai(volumes):
    """Equal set sizes (MONAI's requirement), float64 inputs so MONAI's sums are exact enough to compare at 1e-9."""
    from monai.metrics import MMDMetric

    ctx = RunContext()
    gen, ref = volumes[:2] + [_ct(9, 11.0)], [_ct(20 + i, 6.0) for i in range(3)]
    g, r = MMD(), MMD()
    for i, v in enumerate(gen):
        g.update(CaseData("gen", f"c{i}", v), ctx)
    for i, v in enumerate(ref):
        r.update(CaseData("GT", f"c{i}", v), ctx)
    ours = g.compute_result(ctx, reference=r)["mmd"]
    y = torch.from_numpy(np.stack([grid_volume(v, 64) for v in ref]).astype(np.float64))[:, None]
    p = torch.from_numpy(np.stack([grid_volume(v, 64) for v in gen]).astype(np.float64))[:, None]
    want = float(MMDMetric()(y, p))
    assert ours == pytest.approx(want, rel=1e-9, abs=1e-9)
    assert mmd_from_volumes(p[:, 0].numpy(), y[:, 0].numpy()) == pytest.approx(want, rel=1e-9, abs=1e-9)
    # merged in any order and grouping: the same sums
    g2 = MMD()
    for i, v in list(enumerate(gen))[::-1]:
        g2.update(CaseData("gen", f"c{i}", v), ctx)
    assert g2.compute_result(ctx, reference=r)["mmd"] == pytest.approx(ours, rel=1e-12)
    # unequal sizes (MONAI refuses them; the formula does not need equal sizes)
    r.update(CaseData("GT", "c9", _ct(30, 6.0)), ctx)
    assert np.isfinite(g.compute_result(ctx, reference=r)["mmd"])


def test_mmd_near_zero_for_the_same_distribution_and_larger_for_a_shift():
    same_a = np.stack([grid_volume(_ct(40 + i, 7.0), 32) for i in range(4)])
    same_b = np.stack([grid_volume(_ct(50 + i, 7.0), 32) for i in range(4)])
    shifted = np.stack([grid_volume(_ct(60 + i, 12.0), 32) for i in range(4)])
    near = mmd_from_volumes(same_a, same_b)
    far = mmd_from_volumes(shifted, same_b)
    assert far > 10 * abs(near)
