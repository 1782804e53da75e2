"""KID and PRDC on the three feature spaces (Inception slices, I3D clips, CLIP image features).

Parity: KID against torchmetrics' ``KernelInceptionDistance`` (identity feature module fed with the
features) and a by-hand unbiased MMD^2; PRDC against the ``prdc`` package (clovaai, a dev dependency).
End to end: the real offline Inception TorchScript on the shipped CT (4 slices per volume: CPU), and for
I3D and CLIP the SMALL RANDOMLY INITIALISED networks of ``tests/helpers/small_video_nets.py`` (the published
weights cannot be downloaded here), so those test loading, sampling, caching and formulas, not the
published numbers.
"""

from __future__ import annotations

import itertools
import warnings

import numpy as np
import pytest
import torch

from trace_bench.errors import ConfigError
from trace_bench.metrics import METRICS, CaseData, RunContext
from trace_bench.metrics.kid import kid_from_features, mmd2_unbiased, poly_kernel
from trace_bench.metrics.prdc import euclidean_distances, knn_radii, prdc_from_features
from trace_bench.volume import Volume

from helpers.paths import DEMO_CTS
from helpers.small_video_nets import SMALL, clip_file, ct_crop_volume, i3d_file, i3d_script  # noqa: F401  (fixtures)


def _feats(seed: int, n: int, d: int, shift: float = 0.0) -> np.ndarray:
    return (np.random.default_rng(seed).normal(size=(n, d)) + shift).astype(np.float32)


# ============================================================================= KID formulas
def test_kid_matches_torchmetrics_all_samples():
    from torchmetrics.image.kid import KernelInceptionDistance

    class Identity(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x

    for n, d, shift in ((50, 64, 0.3), (120, 2048, 0.05), (30, 16, 0.0)):
        gen, ref = _feats(1, n, d, shift), _feats(2, n, d)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "will save all extracted features in buffer"
            tm = KernelInceptionDistance(feature=Identity(), subsets=3, subset_size=n)
        tm.update(torch.from_numpy(ref).double(), real=True)
        tm.update(torch.from_numpy(gen).double(), real=False)
        tm_mean, tm_std = (float(v) for v in tm.compute())
        ours, ours_std = kid_from_features(gen, ref, subsets=3, subset_size=n, seed=0)
        assert ours == pytest.approx(tm_mean, rel=1e-6, abs=1e-12), (n, d, ours, tm_mean)
        assert ours_std == 0.0 and tm_std == pytest.approx(0.0, abs=1e-9)


def test_kid_unbiased_mmd_by_hand():
    x = np.array([[1.0, 0.0], [0.0, 2.0], [1.0, 1.0]])
    y = np.array([[0.0, 0.0], [2.0, 1.0]])

    def k(a, b):
        return (float(a @ b) / 2 + 1) ** 3

    m, n = len(x), len(y)
    xx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    yy = sum(k(y[i], y[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    xy = sum(k(a, b) for a in x for b in y) / (m * n)
    expected = xx + yy - 2 * xy
    assert mmd2_unbiased(poly_kernel(x, x), poly_kernel(y, y), poly_kernel(x, y)) == pytest.approx(expected, rel=1e-12)
    mean, std = kid_from_features(x, y, subsets=10, subset_size=1000)
    assert mean == pytest.approx(expected, rel=1e-12) and std == 0.0  # fewer rows than subset_size: all rows, once
    # symmetric in the two sets; unbiased: a set against itself is 0 in expectation (not exactly)
    assert kid_from_features(y, x)[0] == pytest.approx(expected, rel=1e-12)
    with pytest.raises(ValueError, match="at least 2 samples"):
        kid_from_features(x[:1], y)


def test_kid_subsets_seeded_and_independent_of_row_order():
    gen, ref = _feats(3, 60, 32, 0.2), _feats(4, 45, 32)
    a = kid_from_features(gen, ref, subsets=7, subset_size=20, seed=5)
    rng = np.random.default_rng(0)
    b = kid_from_features(gen[rng.permutation(60)], ref[rng.permutation(45)], subsets=7, subset_size=20, seed=5)
    assert a == b and a[1] > 0
    assert kid_from_features(gen, ref, subsets=7, subset_size=20, seed=6) != a
    # the subset mean estimates the all-rows value
    full = kid_from_features(gen, ref, subset_size=1000)[0]
    assert abs(a[0] - full) < 4 * a[1] + 1e-9


# ============================================================================= PRDC formulas
def test_prdc_matches_prdc_package(capsys):
    from prdc import compute_prdc

    cases = [(_feats(5, 80, 16), _feats(6, 70, 16, 0.4), 5), (_feats(7, 50, 64), _feats(8, 90, 64, 0.1), 3),
             (_feats(9, 40, 2048), _feats(10, 40, 2048, 0.02), 5), (_feats(11, 30, 8), _feats(11, 30, 8), 5)]
    for real, fake, k in cases:
        want = compute_prdc(real_features=real, fake_features=fake, nearest_k=k)
        got = prdc_from_features(real, fake, k)
        for c in ("precision", "recall", "density", "coverage"):
            assert got[c] == pytest.approx(float(want[c]), abs=1e-9), (c, got, want)
    capsys.readouterr()  # compute_prdc prints the set sizes


def test_prdc_equals_prdc_package_on_duplicated_rows(capsys):
    """A memorising generator: its set holds exact copies of reference vectors (each of 12 reference vectors
    six times), so the k-NN radii are distances between identical rows and the comparisons are ties decided
    by float rounding. The distances are computed as the package computes them (sklearn, float32, for radii
    and comparisons alike), so the four values are the package's exactly. The earlier exact-distance code
    differed on such sets (measured on 20 random ones in both roles: 25 of 40 comparisons, by up to 0.37, e.g.
    recall 0 instead of 0.37 at d = 2048)."""
    from prdc import compute_prdc

    for seed in range(8):
        rng = np.random.default_rng(seed)
        d = (64, 512, 2048)[seed % 3]
        real = (np.abs(rng.normal(size=(30, d))) * rng.uniform(0.2, 2) + rng.uniform(0, 5)).astype(np.float32)
        fake = np.repeat(real[:12], 6, axis=0)
        for r, f in ((real, fake), (fake, real), (real, np.concatenate([real, fake[:7]]))):
            want = compute_prdc(real_features=r, fake_features=f, nearest_k=5)
            got = prdc_from_features(r, f, 5)
            assert got == {c: float(want[c]) for c in ("precision", "recall", "density", "coverage")}, (seed, d)
    capsys.readouterr()


def test_prdc_definitions_on_tiny_data():
    real = np.array([[0.0], [1.0], [2.0], [10.0]])
    fake = np.array([[0.5], [20.0], [9.0]])
    r_real = knn_radii(real, 1)
    np.testing.assert_array_equal(r_real, [1.0, 1.0, 1.0, 8.0])
    res = prdc_from_features(real, fake, 1)
    # fake 0.5 lies in the balls of 0 and 1, 9.0 in the ball of 10, 20 in none
    assert res["precision"] == pytest.approx(2 / 3) and res["density"] == pytest.approx(3 / 3)
    # fake radii: 0.5 -> 8.5, 20 -> 11, 9 -> 8.5; every real point is inside one of them
    assert res["recall"] == 1.0
    # nearest fake of 0 (0.5 < 1), of 1 (0.5 < 1), of 2 (1.5 >= 1: no), of 10 (1 < 8)
    assert res["coverage"] == pytest.approx(3 / 4)
    d = euclidean_distances(real)
    assert np.all(np.diag(d) == 0.0) and d[0, 3] == 10.0
    with pytest.raises(ValueError, match="more than 5 samples"):
        prdc_from_features(real, fake, 5)


# ============================================================================= declarations
def test_declarations_and_options():
    names = {"kid": ("kid", "kid_std"), "kid_i3d": ("kid_i3d", "kid_i3d_std"), "kid_clip": ("kid_clip", "kid_clip_std")}
    for n, cols in names.items():
        m = METRICS.get(n)()
        assert m.kind == "distribution" and m.table == "table2" and tuple(m.columns) == cols
        assert m.columns[n] is False and m.opts["subsets"] == 100 and m.opts["subset_size"] == 1000
    for n in ("prdc", "prdc_i3d", "prdc_clip"):
        m = METRICS.get(n)()
        assert m.columns == {f"{n}_{c}": True for c in ("precision", "recall", "density", "coverage")}
        assert m.opts["nearest_k"] == 5 and all(o.tolerance == {"abs": 0.02} for o in m.outputs.values())
    assert METRICS.get("kid")().required_weights() == ("inception-fid",)
    assert METRICS.get("prdc_i3d")({"weights": "i3d-tats"}).required_weights() == ("i3d-tats",)
    assert METRICS.get("kid_clip")().required_weights() == ("clip-vit-b32",)
    with pytest.raises(ConfigError, match="expected >= 1"):
        METRICS.get("prdc")({"nearest_k": 0})
    with pytest.raises(ConfigError, match="expected >= 2"):
        METRICS.get("kid")({"subset_size": 1})
    ctx = RunContext(seed=3)
    fid_id = METRICS.get("fid")({"slices": 4}).protocol_id(ctx)
    kid_id = METRICS.get("kid")({"slices": 4, "subsets": 10}).protocol_id(ctx)
    assert kid_id.startswith(fid_id.rsplit("|ddof", 1)[0]) and "subsets=10" in kid_id and "seed3" in kid_id
    assert "clips16:nonoverlap:offset-seed3" in METRICS.get("prdc_i3d")().protocol_id(ctx)
    assert "prdc-v2:k=5" in METRICS.get("prdc_clip")().protocol_id(ctx)
    # slice / clip spaces: same-volume pairs left out by default, the all-pairs form under its own id
    assert METRICS.get("kid")().opts["pairs"] == "cross-volume" and "pairs" not in METRICS.get("kid_astra")().opts
    assert "|kid-v2:poly3-cross-volume:" in kid_id
    assert "|kid:poly3-all-pairs:" in METRICS.get("kid")({"pairs": "all"}).protocol_id(ctx)
    assert "|kid:poly3-unbiased:" in METRICS.get("kid_astra")().protocol_id(ctx)


# ============================================================================= end to end: Inception
@pytest.fixture(scope="module")
def volumes():
    from trace_bench.io import read_volume

    return [read_volume(DEMO_CTS / f"lung{i}.nii.gz") for i in (1, 2)]


def test_kid_prdc_inception_share_fid_features(volumes, tmp_path):
    ctx = RunContext(cache_dir=str(tmp_path / "features"), batch_size=8)
    fid = METRICS.get("fid")({"slices": 4})
    kid = METRICS.get("kid")({"slices": 4, "pairs": "all"})
    prdc = METRICS.get("prdc")({"slices": 4, "nearest_k": 2})
    f1 = fid.case_state(CaseData("ref", "lung1", volumes[0]), ctx)["features"]
    f2 = fid.case_state(CaseData("gen", "lung2", volumes[1]), ctx)["features"]
    # a new CaseData (nothing shared in memory): kid reads fid's cache entries, no Inception run
    s1 = kid.case_state(CaseData("ref", "lung1", volumes[0]), ctx)
    s2 = kid.case_state(CaseData("gen", "lung2", volumes[1]), ctx)
    assert kid.net.cache.misses == 0 and kid.net.cache.hits == 2 and kid.net.loaded is not None
    assert s1["features"].dtype == np.float32 and s1["features"].shape == (4, 2048)
    np.testing.assert_array_equal(s1["features"], f1.astype(np.float32))
    # within one case the features are computed once for every metric (CaseData.shared)
    data = CaseData("gen", "lung2", volumes[1])
    p2 = prdc.case_state(data, ctx)
    hits = prdc.net.cache.hits
    assert np.array_equal(prdc.case_state(data, ctx)["features"], p2["features"]) and prdc.net.cache.hits == hits
    np.testing.assert_array_equal(p2["features"], f2.astype(np.float32))
    p1 = prdc.case_state(CaseData("ref", "lung1", volumes[0]), ctx)

    # KID: a set against itself ~0: for X = Y the unbiased estimate is exactly
    # (2 / m) (mean off-diagonal kernel - mean diagonal kernel), O(1/m) and slightly negative
    assert kid.sample_info(kid.merge([s1, s2])) == {"samples": 8, "volumes": 2}
    both = kid.merge([s1, s2])
    self_kid = kid.compute(both, both, ctx)
    kxx = poly_kernel(both["features"], both["features"])
    m = len(kxx)
    off = (kxx.sum() - np.trace(kxx)) / (m * (m - 1))
    assert self_kid["kid"] == pytest.approx(2 / m * (off - np.trace(kxx) / m), rel=1e-9) and self_kid["kid_std"] == 0.0
    assert self_kid["kid"] <= 0  # mean diagonal >= mean off-diagonal (Cauchy-Schwarz, convex cubic)
    # a clearly different set (random-noise "CT") is far: KID >> |self KID|
    noise = Volume(np.random.default_rng(0).normal(-300, 400, size=volumes[0].array.shape).astype(np.float32),
                   volumes[0].spacing, volumes[0].affine, {})
    sn = kid.case_state(CaseData("gen", "noise", noise), ctx)
    far = kid.compute(kid.merge([sn]), both, ctx)["kid"]
    assert far > 0.1 and abs(self_kid["kid"]) < 0.15 * far
    for order in itertools.permutations([s1, s2]):
        assert kid.compute(kid.merge(list(order)), kid.merge([s1]), ctx) == kid.compute(both, kid.merge([s1]), ctx)
    assert kid.compute(both, kid.merge([s1]), ctx)["kid"] == pytest.approx(
        kid_from_features(both["features"], s1["features"], 100, 1000, 0)[0], rel=1e-12)

    # PRDC: identical sets -> precision = recall = coverage = 1
    pb = prdc.merge([p1, p2])
    same = prdc.compute(pb, prdc.merge([p2, p1]), ctx)
    assert same["prdc_precision"] == same["prdc_recall"] == same["prdc_coverage"] == 1.0
    assert same["prdc_density"] >= 1.0
    r = prdc.compute(prdc.merge([p2, p1]), prdc.merge([p1, p1]), ctx)
    assert r == prdc.compute(pb, prdc.merge([p1, p1]), ctx)
    assert all(0.0 <= r[f"prdc_{c}"] <= 1.0 for c in ("precision", "recall", "coverage"))
    assert set(prdc.export_stats(pb)) == {"n", "dim", "volumes"} and int(prdc.export_stats(pb)["n"]) == 8


def test_streaming_api(volumes, tmp_path):
    ctx = RunContext(cache_dir=str(tmp_path), batch_size=8)
    gen, ref = METRICS.get("kid")({"slices": 4}), METRICS.get("kid")({"slices": 4})
    gen.update(CaseData("m", "lung2", volumes[1]), ctx)
    ref.update(CaseData("gt", "lung1", volumes[0]), ctx)
    other = METRICS.get("kid")({"slices": 4})
    other.update(CaseData("m", "lung1", volumes[0]), ctx)
    # one reference volume: no cross-volume pair to estimate its within-set mean from -> NaN, with the reason
    res = gen.merge_state(other).compute_result(ctx, reference=ref)
    assert gen.n_cases == 2 and np.isnan(res["kid"]) and np.isnan(res["kid_std"])
    assert "at least 2 volumes per set" in gen.value_notes(gen.state(), ref.state(), ctx)["kid"]
    ref.update(CaseData("gt", "lung2", volumes[1]), ctx)
    res = gen.compute_result(ctx, reference=ref)
    assert np.isfinite(res["kid"]) and gen.value_notes(gen.state(), ref.state(), ctx) == {}


# ============================================================================= end to end: I3D, CLIP
def test_kid_prdc_i3d_share_fvd_features(i3d_script, tmp_path):
    ctx = RunContext(weights={"i3d-torchscript": str(i3d_script)}, cache_dir=str(tmp_path), seed=3)
    fvd, kid = METRICS.get("fvd")(), METRICS.get("kid_i3d")({"pairs": "all"})
    prdc = METRICS.get("prdc_i3d")({"nearest_k": 3})
    vols = {c: ct_crop_volume(s, z=70) for c, s in (("a", 0), ("b", 1), ("c", 2), ("d", 3))}  # 70 slices -> 4 clips
    fv = {c: fvd.case_state(CaseData("m", c, v, protocol=SMALL), ctx)["features"] for c, v in vols.items()}
    ks = {c: kid.case_state(CaseData("m", c, v, protocol=SMALL), ctx) for c, v in vols.items()}
    ps = {c: prdc.case_state(CaseData("m", c, v, protocol=SMALL), ctx) for c, v in vols.items()}
    assert kid.net.cache.misses == 0 and prdc.net.cache.misses == 0  # fvd's cache entries
    for c in vols:
        assert ks[c]["features"].shape == (4, 400)
        np.testing.assert_array_equal(ks[c]["features"], fv[c].astype(np.float32))
    g, r = kid.merge([ks["a"], ks["b"]]), kid.merge([ks["c"], ks["d"]])
    v = kid.compute(g, r, ctx)
    assert np.isfinite(v["kid_i3d"]) and v["kid_i3d_std"] == 0.0
    assert kid.compute(kid.merge([ks["b"], ks["a"]]), kid.merge([ks["d"], ks["c"]]), ctx) == v
    # X = Y: (2 / m)(mean off-diagonal - mean diagonal kernel) <= 0 (Cauchy-Schwarz, convex cubic)
    assert kid.compute(g, g, ctx)["kid_i3d"] <= 1e-12
    pg = prdc.merge([ps["a"], ps["b"]])
    same = prdc.compute(pg, prdc.merge([ps["b"], ps["a"]]), ctx)
    assert same["prdc_i3d_precision"] == same["prdc_i3d_recall"] == same["prdc_i3d_coverage"] == 1.0
    res = prdc.compute(pg, prdc.merge([ps["c"], ps["d"]]), ctx)
    want = prdc_from_features(np.concatenate([fv["c"], fv["d"]]), np.concatenate([fv["a"], fv["b"]]), 3)
    assert res == {f"prdc_i3d_{k}": pytest.approx(x, abs=1e-12) for k, x in want.items()}
    with pytest.raises(Exception, match="at least 16 slices"):
        kid.case_state(CaseData("m", "short", ct_crop_volume(4, z=10), protocol=SMALL), ctx)


def test_kid_prdc_clip_image_features(clip_file, tmp_path):
    clip_file = clip_file[1]  # (model, tensors-only file) of helpers.small_video_nets
    from trace_bench.networks.clip import load_clip_model

    ctx = RunContext(weights={"clip-vit-b32": str(clip_file)}, cache_dir=str(tmp_path), batch_size=3)
    with pytest.warns(UserWarning, match="user-supplied"):
        kid = METRICS.get("kid_clip")({"slices": 4})
        prdc = METRICS.get("prdc_clip")({"slices": 4, "nearest_k": 2})
        kid.setup(ctx)
        prdc.setup(ctx)
        cm = load_clip_model(path=clip_file)
    vols = [ct_crop_volume(s, z=12) for s in range(3)]
    ks = [kid.case_state(CaseData("m", str(i), v, protocol=SMALL), ctx) for i, v in enumerate(vols)]
    ps = [prdc.case_state(CaseData("m", str(i), v, protocol=SMALL), ctx) for i, v in enumerate(vols)]
    assert prdc.net.cache.misses == 0  # same cache entries as kid_clip
    # by hand: encode_image(preprocess_frames(4 evenly spaced frames))
    frames = SMALL.frames(vols[0])
    idx = np.round(np.linspace(0, 11, 4)).astype(int)
    want = cm.encode_image(cm.preprocess_frames(frames[idx])).numpy()
    assert ks[0]["features"].shape == (4, 32)
    np.testing.assert_allclose(ks[0]["features"], want, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(ps[0]["features"], ks[0]["features"])
    g, r = kid.merge(ks[:2]), kid.merge(ks[1:])
    v = kid.compute(g, r, ctx)["kid_clip"]
    assert np.isfinite(v) and kid.compute(kid.merge(ks[1::-1]), kid.merge(ks[:0:-1]), ctx)["kid_clip"] == v
    same = prdc.compute(prdc.merge(ps), prdc.merge(ps[::-1]), ctx)
    assert same["prdc_clip_precision"] == same["prdc_clip_recall"] == same["prdc_clip_coverage"] == 1.0
