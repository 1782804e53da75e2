"""The ``segmentation`` runner plug-in: columns, grid alignment, reference cache, provided masks."""

from __future__ import annotations

import math

import numpy as np
import pytest

from trace_bench.errors import ConfigError
from trace_bench.io import read_volume
from trace_bench.metrics import METRICS, CaseData, RunContext
from trace_bench.metrics.segmentation import Segmentation, resample_labels
from trace_bench.volume import Volume, from_canonical, lps_affine

from helpers.paths import DEMO_CTS


@pytest.fixture(scope="module")
def lung1():
    return read_volume(DEMO_CTS / "lung1.nii.gz")


def _every_other_slice(v: Volume) -> Volume:
    """A 'generated' volume on another grid: half the slices, an identity-like affine at 10 mm."""
    return from_canonical(v.array[::2].copy(), (v.spacing[0] * 2, v.spacing[1], v.spacing[2]), {"path": None})


def test_spec_is_registered_with_its_columns():
    spec = METRICS.get("segmentation")()
    assert spec.kind == "case" and spec.needs_reference and spec.weight_free
    assert spec.columns["dice"] and spec.columns["jaccard"] and not spec.columns["hd95"]
    assert not spec.columns["hd95[lungs]"] and spec.columns["dice[other]"]
    assert spec.required_weights(RunContext(segmenter="vista3d")) == ("vista3d",)
    assert set(spec.output_columns(RunContext(classes="2"))) == {"dice", "jaccard", "hd95", "seg_n_classes", "dice[body]",
                                          "jaccard[body]", "hd95[body]"}


def test_identical_volume_scores_perfectly_and_reference_is_cached(lung1):
    spec = Segmentation()
    ctx = RunContext()  # threshold, 3 classes
    spec.setup(ctx)
    assert spec.protocol_id(ctx) == "seg-v1:threshold-v1:classes=3:grid=extent"
    vals = spec.case_values(CaseData("gt", "lung1", lung1, reference=lung1), ctx)
    assert vals["dice"] == 1.0 and vals["jaccard"] == 1.0 and vals["hd95"] == 0.0
    assert vals["seg_n_classes"] == 2.0 and vals["dice[lungs]"] == 1.0 and vals["hd95[other]"] == 0.0
    assert set(vals) <= set(spec.columns)
    # a second method on another grid: the reference is segmented once only
    data = CaseData("half", "lung1", _every_other_slice(lung1), reference=lung1)
    vals2 = spec.case_values(data, ctx)
    assert spec.reference_segmentations == 1
    assert 0.9 < vals2["dice[lungs]"] < 1.0 and 0 < vals2["hd95[lungs]"] < 15.0
    sh = data.shared["segmentation"]
    assert sh["generated_on_reference"].shape == lung1.shape and sh["segmenter"] == "threshold-v1"


def test_two_class_and_air_volume_is_a_counted_miss(lung1):
    spec = Segmentation()
    air = from_canonical(np.full((10, 64, 64), -1000, np.float32), (5.0, 2.0, 2.0))
    vals = spec.case_values(CaseData("blank", "lung1", air, reference=lung1), RunContext(classes="2"))
    diag = math.sqrt(sum(((n - 1) * s) ** 2 for n, s in zip(lung1.shape, lung1.spacing)))
    assert vals["dice"] == 0.0 and vals["seg_n_classes"] == 1.0 and vals["hd95[body]"] == pytest.approx(diag)


def test_resample_rules():
    lab = np.arange(4, dtype=np.uint8).reshape(4, 1, 1).repeat(2, 1).repeat(2, 2)
    out = resample_labels(lab, (8, 2, 2), "extent")
    assert out[:, 0, 0].tolist() == [0, 0, 1, 1, 2, 2, 3, 3]
    # floor((i + 0.5) * 4 / 2): centres of the 2 target voxels fall on source voxels 1 and 3
    assert resample_labels(lab, (2, 2, 2), "extent")[:, 0, 0].tolist() == [1, 3]
    # world: a source at 2 mm slices onto a target at 1 mm slices, same origin
    # (target origin 0.2 mm higher, so no target centre falls on a source voxel boundary)
    src_aff, tgt_aff = lps_affine((2.0, 1.0, 1.0)), lps_affine((1.0, 1.0, 1.0), (0.0, 0.0, 0.2))
    w = resample_labels(lab, (8, 2, 2), "world", src_aff, tgt_aff)
    # target slice k sits at z = k + 0.2 mm = source index (k + 0.2) / 2, nearest
    assert w[:, 0, 0].tolist() == [0, 1, 1, 2, 2, 3, 3, 0]  # the last one lies beyond the source: background
    with pytest.raises(ConfigError, match="extent, world"):
        resample_labels(lab, (8, 2, 2), "cubic")


def test_provided_masks(lung1):
    from trace_bench.segmenters import threshold_segment

    ref_lab = threshold_segment(lung1.array, lung1.spacing)
    ref_mask = lung1.with_array(ref_lab.astype(np.float32))
    gen_lab = ref_lab.copy()
    gen_lab[gen_lab == 1] = 30  # VISTA3D ids: lungs as the right upper lobe, body as heart
    gen_lab[gen_lab == 2] = 115
    gen_mask = lung1.with_array(gen_lab.astype(np.float32))
    spec = Segmentation()
    ctx = RunContext(segmenter="provided")
    vals = spec.case_values(CaseData("m", "lung1", lung1, reference=lung1, mask=gen_mask, reference_mask=ref_mask), ctx)
    assert vals["dice"] == 1.0 and vals["hd95"] == 0.0 and spec.protocol_id(ctx).startswith("seg-v1:provided-auto")
    with pytest.raises(ConfigError, match="none was paired"):
        spec.case_values(CaseData("m", "lung1", lung1, reference=lung1, reference_mask=ref_mask), ctx)


def test_vista3d_setup_refuses_without_bundle(tmp_path, monkeypatch):
    from trace_bench.errors import WeightsError

    monkeypatch.setenv("TRACE_BENCH_CACHE", str(tmp_path))
    monkeypatch.delenv("TRACE_BENCH_WEIGHTS_VISTA3D", raising=False)
    with pytest.raises(WeightsError):
        Segmentation().setup(RunContext(segmenter="vista3d"))


def test_vista3d_setup_with_a_bundle_names_its_weights(tmp_path):
    """Small RANDOMLY INITIALISED vista3d132-shaped network (encoder width 8) in a temporary bundle:
    checks that setup loads it and that the protocol id carries the checkpoint's hash."""
    import json

    import torch
    from monai.networks.nets import vista3d132

    torch.manual_seed(0)
    (tmp_path / "models").mkdir()
    (tmp_path / "configs").mkdir()
    torch.save(vista3d132(encoder_embed_dim=8).state_dict(), tmp_path / "models" / "model.pt")
    (tmp_path / "configs" / "inference.json").write_text(json.dumps({"patch_size": [32, 32, 32]}))
    spec = Segmentation()
    ctx = RunContext(segmenter="vista3d", weights={"vista3d": str(tmp_path)})
    spec.setup(ctx)
    assert spec.protocol_id(ctx).startswith("seg-v1:vista3d@") and spec.protocol_id(ctx).endswith(":classes=3:grid=extent")
