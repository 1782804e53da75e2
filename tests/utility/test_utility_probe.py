"""probe: AUROC on labels that are random (near 0.5, interval covering it) and on a label the features carry,
a missing backbone refused through the registry, and parity of the pieces with scikit-learn.

Features here come from a SMALL RANDOM NETWORK (a seeded 3D convolution + pooling, declared below as a
feature space of the catalogue's kind): the test checks the probe's plumbing and statistics, not a backbone.
Volumes: 16^3 crops of the shipped chest CTs (``trace_bench/data/demo``).
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest

from helpers.paths import DEMO_CTS

pytestmark = pytest.mark.usefixtures("one_torch_thread")

N_TRAIN, N_TEST = 60, 40


class RandomConvNet:
    """Test-only network: Conv3d(1, 8, 3) + ReLU + 2^3 average pooling, weights from torch.manual_seed(0)."""

    id = "test-random-conv3d-v1"
    weights_sha256 = "none:torch.manual_seed(0)"

    def __init__(self) -> None:
        import torch

        torch.manual_seed(0)
        self.net = torch.nn.Sequential(torch.nn.Conv3d(1, 8, 3, padding=1), torch.nn.ReLU(),
                                       torch.nn.AdaptiveAvgPool3d(2), torch.nn.Flatten()).eval()

    def features(self, hu: np.ndarray) -> np.ndarray:
        import torch

        x = torch.from_numpy(np.clip(hu, -1000, 1000).astype(np.float32) / 1000.0)[None, None]
        with torch.no_grad():
            return self.net(x).numpy()


def _space():
    from trace_bench.metrics.spaces import FeatureSpace, cache_option

    def features(net, data, ctx, opts):
        model = net.get("none", ctx)
        return net.cached_features(data, ctx, (model.id, model.weights_sha256, "crop16"),
                                   lambda: model.features(data.volume.array), opts["feature_cache"])

    return FeatureSpace("test-random-conv3d", "none", "random 3D convolution features (test only)",
                        (cache_option("test"),), lambda o: (),
                        lambda o, ctx: [("test-random-conv3d-v1", "a random 3D convolution (test only)")], features)


@pytest.fixture(scope="module")
def probe_data(tmp_path_factory) -> dict:
    from trace_bench.io import read_volume, write_nifti
    from trace_bench.volume import from_canonical

    root = tmp_path_factory.mktemp("probe-data")
    demo = DEMO_CTS
    cts = [read_volume(demo / f"{n}.nii.gz").array for n in ("lung1", "lung2")]
    rng = np.random.default_rng(7)
    rows = []
    means = []
    for i in range(N_TRAIN + N_TEST):
        a = cts[i % 2]
        z, y, x = (int(rng.integers(0, n - 16)) for n in a.shape)
        crop = a[z:z + 16, y:y + 16, x:x + 16].copy()
        folder = "ref" if i < N_TRAIN else "test"
        for f in ((folder, "copy") if folder == "ref" else (folder,)):
            (root / f).mkdir(exist_ok=True)
            write_nifti(from_canonical(crop.astype(np.float32), (1.0, 1.0, 1.0)), root / f / f"c{i:03d}.nii.gz")
        means.append(float(crop.mean()))
        rows.append([f"c{i:03d}", int(rng.random() < 0.5), int(rng.random() < 0.5)])
    med = float(np.median(means))
    with open(root / "labels.csv", "w", encoding="utf-8") as fh:
        fh.write("case_id,random_a,random_b,dense\n")
        for (cid, a, b), m in zip(rows, means):
            fh.write(f"{cid},{a},{b},{int(m > med)}\n")
    return {"root": root}


def _configs(probe_data: dict, out: Path, **kw):
    from trace_bench.config import RunConfig
    from trace_bench.utility.config import UtilityConfig

    r = probe_data["root"]
    hu = lambda d: {"path": str(r / d), "convention": "hu"}  # noqa: E731  (crops of air only look like no HU range)
    run = RunConfig(out=str(out), reference=hu("ref"), methods={"copy": hu("copy")}, device="cpu",
                    weights=kw.pop("weights", {}))
    base = dict(protocols=["probe"], variant="tiny", test_reference=hu("test"), labels=str(r / "labels.csv"),
                cache_dir=str(out.parent / "cache"))
    return run, UtilityConfig(**{**base, **kw})


def test_random_labels_give_auroc_near_half_and_a_carried_label_does_not(probe_data, tmp_path):
    from trace_bench.metrics.backbone import Backbone
    from trace_bench.utility.run import run_utility

    net = Backbone(lambda *a: None)
    net.set(RandomConvNet())
    run, cfg = _configs(probe_data, tmp_path / "out")
    res = run_utility(run, cfg, progress=False, log=lambda s: None, space=_space(), net=net)
    rows = res.probe["rows"]
    real = rows[rows.arm == "real"].set_index("label")
    for label in ("random_a", "random_b"):
        r = real.loc[label]
        assert r.n_test == N_TEST and r.n_train == N_TRAIN
        assert abs(r.auroc - 0.5) < 0.2, r.auroc
        assert r.ci_low <= 0.5 <= r.ci_high, (r.ci_low, r.ci_high)
    dense = real.loc["dense"]
    assert dense.auroc > 0.85 and dense.ci_low > 0.6, (dense.auroc, dense.ci_low)
    assert dense.ci_low <= dense.auroc <= dense.ci_high
    # the "generator" whose volumes are the real ones gives the same probe: difference 0
    copy = rows[(rows.arm == "method") & (rows.method == "copy")].set_index("label")
    for label in real.index:
        assert copy.loc[label].auroc == real.loc[label].auroc
        assert copy.loc[label].delta_vs_real == 0.0
    doc = json.loads((tmp_path / "out" / "utility" / "utility.json").read_text(encoding="utf-8"))
    assert doc["probe"]["protocol"] == "probe-tiny-v1"
    assert doc["probe"]["features"]["protocol"] == "test-random-conv3d-v1"
    assert [m["name"] for m in doc["probe"]["macro"]] == ["real", "copy", "real + copy"]


def test_a_missing_backbone_is_refused_before_any_volume_is_read(probe_data, tmp_path):
    from trace_bench.errors import WeightsError
    from trace_bench.utility.run import run_utility

    missing = tmp_path / "resnet_50_23dataset.pth"
    run, cfg = _configs(probe_data, tmp_path / "out", feature_space="medicalnet",
                        weights={"medicalnet-resnet50": str(missing)})
    with pytest.raises(WeightsError, match="medicalnet-resnet50.*does not exist"):
        run_utility(run, cfg, progress=False, log=lambda s: None)
    assert not (tmp_path / "out" / "utility" / "utility.json").exists()


def test_auroc_equals_sklearn_with_ties():
    from sklearn.metrics import roc_auc_score

    from trace_bench.utility.probe import auroc

    rng = np.random.default_rng(3)
    for _ in range(20):
        y = rng.random(37) < 0.4
        s = np.round(rng.normal(size=37) + y, 1)  # rounded: many ties
        assert auroc(y, s) == pytest.approx(roc_auc_score(y, s), abs=1e-12)
    assert np.isnan(auroc(np.ones(5, bool), np.arange(5.0)))


def test_c_path_selection_equals_logistic_regression_cv():
    """The probe's C (GridSearchCV over the fixed path, stratified folds, AUROC) is the one scikit-learn's own
    LogisticRegressionCV picks on the same folds, and the refitted decision values agree (lbfgs tolerance)."""
    from dataclasses import replace

    from sklearn.linear_model import LogisticRegressionCV
    from sklearn.model_selection import StratifiedKFold

    from trace_bench.utility.probe import fit_probe
    from trace_bench.utility.protocol import PROBE_FULL

    proto = replace(PROBE_FULL, standardize=False, tol=1e-8)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(120, 10))
    y = (x[:, 0] + 0.8 * rng.normal(size=120) > 0.3).astype(int)
    probe = fit_probe(x, y, proto)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = LogisticRegressionCV(Cs=list(proto.cs), cv=StratifiedKFold(proto.folds, shuffle=True, random_state=0),
                                   scoring="roc_auc", class_weight="balanced", max_iter=proto.max_iter, tol=1e-8,
                                   solver="lbfgs").fit(x, y)
    assert probe.c == float(np.ravel(ref.C_)[0])
    np.testing.assert_allclose(probe.model.decision_function(x), ref.decision_function(x), rtol=1e-4, atol=1e-4)
