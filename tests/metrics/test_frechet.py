"""Frechet distance and mergeable states: parity with pytorch-fid and torchmetrics, invariances."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from trace_bench.metrics import frechet


def _feats(seed: int, n: int = 120, d: int = 24, shift: float = 0.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    a = rng.normal(size=(d, d)) / np.sqrt(d)
    return rng.normal(size=(n, d)) @ a + shift


def test_parity_with_pytorch_fid_on_same_statistics():
    from pytorch_fid.fid_score import calculate_frechet_distance

    x, y = _feats(0), _feats(1, shift=0.3)
    mu1, s1 = x.mean(0), np.cov(x, rowvar=False)
    mu2, s2 = y.mean(0), np.cov(y, rowvar=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # pytorch-fid passes scipy's deprecated disp=
        ref = calculate_frechet_distance(mu1, s1, mu2, s2)
    for method in ("eigh", "sqrtm"):
        assert frechet.frechet_distance(mu1, s1, mu2, s2, method=method) == pytest.approx(ref, rel=1e-6)
    # rank-deficient covariances (fewer samples than dimensions, as with few CT slices)
    xs, ys = _feats(10, n=12), _feats(11, n=15, shift=0.5)
    a = (xs.mean(0), np.cov(xs, rowvar=False)); b = (ys.mean(0), np.cov(ys, rowvar=False))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref_lr = calculate_frechet_distance(*a, *b)
    assert frechet.frechet_distance(*a, *b) == pytest.approx(ref_lr, rel=1e-6)
    # the exact low-rank formula on feature states (no d x d matrix)
    assert frechet.frechet_distance_low_rank(xs, ys) == pytest.approx(ref_lr, rel=1e-6)
    assert frechet.frechet_distance_from_states(frechet.features_state(xs), frechet.features_state(ys)) == \
        pytest.approx(ref_lr, rel=1e-6)
    # the streaming path (float64 sums, n - 1 covariance) gives the same statistics
    got = frechet.frechet_distance_from_states(frechet.features_state(x), frechet.features_state(y), ddof=1)
    assert got == pytest.approx(ref, rel=1e-6)


def test_parity_with_torchmetrics_fid_formula():
    from torchmetrics.image.fid import _compute_fid

    x, y = _feats(2), _feats(3, shift=-0.2)
    mu1, s1, _ = frechet.mean_cov(frechet.features_state(x))
    mu2, s2, _ = frechet.mean_cov(frechet.features_state(y))
    tm = float(_compute_fid(*(torch.from_numpy(a) for a in (mu1, s1, mu2, s2))))
    assert frechet.frechet_distance(mu1, s1, mu2, s2) == pytest.approx(tm, rel=1e-6)


def test_identical_sets_give_zero_and_distance_grows_with_shift():
    x = _feats(4)
    s = frechet.features_state(x)
    assert abs(frechet.frechet_distance_from_states(s, s)) < 1e-8
    d1 = frechet.frechet_distance_from_states(s, frechet.features_state(x + 0.1))
    d2 = frechet.frechet_distance_from_states(s, frechet.features_state(x + 0.2))
    assert d1 == pytest.approx(0.1**2 * x.shape[1], rel=1e-6)  # pure mean shift: ||dmu||^2
    assert d2 > d1


def test_batch_size_and_order_independence():
    x, y = _feats(5, n=97), _feats(6)
    ref = frechet.frechet_distance_from_states(frechet.features_state(x), frechet.features_state(y))
    for chunk in (1, 7, 50):  # running moment sums, as a stream of batches
        state = frechet.merge_states([frechet.features_state(x[i:i + chunk]) for i in range(0, len(x), chunk)])
        assert frechet.frechet_distance_from_states(state, frechet.features_state(y)) == pytest.approx(ref, rel=1e-10)
    parts = [frechet.features_state(x[i:i + 10]) for i in range(0, len(x), 10)]
    rng = np.random.default_rng(0)
    for _ in range(3):
        order = rng.permutation(len(parts))
        merged = frechet.merge_states([parts[i] for i in order])
        assert merged["n"] == len(x)  # 97 rows > d = 24: a moment state
        assert frechet.frechet_distance_from_states(merged, frechet.features_state(y)) == pytest.approx(ref, rel=1e-10)
    # merged states merge again like states
    a = frechet.merge_states([frechet.features_state(x[:40])])
    b = frechet.merge_states([frechet.features_state(x[40:])])
    assert frechet.frechet_distance_from_states(frechet.merge_states([a, b]), frechet.features_state(y)) == \
        pytest.approx(ref, rel=1e-10)


def test_export_stats_roundtrip_and_errors():
    x = _feats(7, n=30, d=5)
    st = frechet.export_stats(frechet.features_state(x))
    np.testing.assert_allclose(st["mu"], x.mean(0), rtol=1e-12)
    np.testing.assert_allclose(st["sigma"], np.cov(x, rowvar=False), rtol=1e-10, atol=1e-12)
    assert int(st["n"]) == 30
    # saved stats can be merged again (30 rows > d = 5: mean and covariance are stored, the sums derived)
    assert set(st) == {"mu", "sigma", "n", "ddof"}
    mu, sigma, n, state = frechet.load_stats(st)
    assert n == 30 and frechet.merge_states([state])["n"] == 30
    np.testing.assert_allclose(state["outer"], x.T.astype(np.float64) @ x, rtol=1e-12)
    # n <= d: the rows themselves (float32 as given), the covariance exact
    x32 = x[:4].astype(np.float32)
    few = frechet.export_stats(frechet.features_state(x32))
    assert set(few) == {"features", "mu", "n", "ddof"} and few["features"].dtype == np.float32
    np.testing.assert_allclose(frechet.load_stats(few)[1], np.cov(x32.astype(np.float64), rowvar=False), rtol=1e-12)
    # rows that float32 cannot hold stay float64 (nothing rounded)
    assert frechet.features_state(x[:4])["features"].dtype == np.float64
    with pytest.raises(ValueError, match="more than 1"):
        frechet.mean_cov(frechet.features_state(x[:1]))
    with pytest.raises(ValueError, match="dimension"):
        frechet.merge_states([frechet.features_state(x), frechet.features_state(_feats(8, n=4, d=6))])
    with pytest.raises(ValueError, match="NaN"):
        frechet.features_state(np.full((2, 3), np.nan))


def test_small_merges_stay_feature_states_and_agree_with_moments():
    x, y = _feats(12, n=10), _feats(13, n=9, shift=0.1)
    m = frechet.merge_states([frechet.features_state(x[:4]), frechet.features_state(x[4:])])
    assert set(m) == {"features"} and m["features"].shape == (10, 24)
    low = frechet.frechet_distance_from_states(m, frechet.features_state(y))
    mom = frechet.frechet_distance_from_states({k: v for k, v in zip(("sum", "outer", "n"), frechet.moments(m))},
                                               frechet.features_state(y))
    assert low == pytest.approx(mom, rel=1e-6)


def test_parity_with_torchmetrics_fid_class_streaming_sums():
    """torchmetrics' FrechetInceptionDistance class end to end (its own float64 running sums, n - 1
    covariance, eigenvalue distance) against our streaming states on the same features. The
    "backbone" is a fixed slicing module (no weights): it reads 24 pixels of each uint8 image as
    the feature vector, so both sides see identical features."""
    from torchmetrics.image.fid import FrechetInceptionDistance

    class PixelFeatures(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x[:, :, 0, :8].reshape(x.shape[0], -1).to(torch.float64)

    rng = np.random.default_rng(7)
    real = torch.from_numpy(rng.integers(0, 256, (90, 3, 4, 8), dtype=np.uint8))
    fake = torch.from_numpy(np.clip(rng.normal(150, 40, (70, 3, 4, 8)), 0, 255).astype(np.uint8))
    tm = FrechetInceptionDistance(feature=PixelFeatures(), reset_real_features=False)
    for chunk in torch.split(real, 32):
        tm.update(chunk, real=True)
    for chunk in torch.split(fake, 25):
        tm.update(chunk, real=False)
    expected = float(tm.compute())
    feats = lambda t: t[:, :, 0, :8].reshape(t.shape[0], -1).numpy().astype(np.float64)  # noqa: E731
    ours_real = frechet.merge_states([frechet.features_state(feats(c)) for c in torch.split(real, 17)])
    ours_fake = frechet.merge_states([frechet.features_state(feats(c)) for c in torch.split(fake, 9)])
    got = frechet.frechet_distance_from_states(ours_fake, ours_real, ddof=1)
    assert got == pytest.approx(expected, rel=1e-6)


def test_fid_and_fvd_functional_twins_match_pytorch_fid():
    """``fid_from_features`` (covariance n - 1, pytorch-fid's np.cov) and ``fvd_from_features`` (covariance n,
    StyleGAN-V's FeatureStats.get_mean_cov: raw second moment / n - mu mu^T) against pytorch-fid's
    calculate_frechet_distance on those statistics; full-rank and fewer-samples-than-dimensions sets."""
    from pytorch_fid.fid_score import calculate_frechet_distance

    from trace_bench.metrics import fid_from_features, fvd_from_features

    for n, m in ((120, 90), (12, 15)):
        x, y = _feats(20 + n, n=n), _feats(21 + n, n=m, shift=0.4)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # pytorch-fid's scipy disp= note; near-singular sqrtm
            fid = calculate_frechet_distance(x.mean(0), np.cov(x, rowvar=False), y.mean(0), np.cov(y, rowvar=False))
            fvd = calculate_frechet_distance(x.mean(0), x.T @ x / n - np.outer(x.mean(0), x.mean(0)),
                                             y.mean(0), y.T @ y / m - np.outer(y.mean(0), y.mean(0)))
        assert fid_from_features(x, y) == pytest.approx(fid, rel=1e-6)
        assert fvd_from_features(x, y) == pytest.approx(fvd, rel=1e-6)
        assert fvd_from_features(x, y) != pytest.approx(fid, rel=1e-3)  # the two covariances differ
    with pytest.raises(ValueError, match="NaN or inf"):
        fid_from_features(np.full((3, 2), np.nan), np.zeros((3, 2)))
