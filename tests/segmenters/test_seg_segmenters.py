"""Segmenters: threshold on the shipped chest CT, label collapse tables, provided maps, VISTA3D path."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from trace_bench.errors import ConfigError, WeightsError
from trace_bench.io import read_volume
from trace_bench.segmenters import SEGMENTERS, get_segmenter, save_overlay
from trace_bench.segmenters.labels import (VISTA3D_EVERYTHING_LABELS, VISTA3D_LABELS, check_classes,
                                           collapse_vista3d, vista3d_table)
from trace_bench.volume import from_canonical

from helpers.paths import DEMO_CTS


@pytest.fixture(scope="module")
def lung1():
    return read_volume(DEMO_CTS / "lung1.nii.gz")


@pytest.fixture(scope="module")
def lung1_labels(lung1):
    return get_segmenter("threshold").segment(lung1, "3")


def test_registry_lists_the_three_segmenters():
    assert {"provided", "threshold", "vista3d"} <= set(SEGMENTERS.names())
    with pytest.raises(ConfigError, match="threshold"):
        get_segmenter("treshold")
    with pytest.raises(ConfigError, match="full, 3, 2"):
        check_classes("4")


# ------------------------------------------------------------------------------------ threshold
def test_threshold_segments_chest_ct_plausibly(lung1, lung1_labels, tmp_path):
    lab = lung1_labels.labels
    assert lab.shape == lung1.shape and set(np.unique(lab)) == {0, 1, 2}
    voxel_ml = float(np.prod(lung1.spacing)) / 1000.0
    lungs_ml = (lab == 1).sum() * voxel_ml
    body_ml = (lab > 0).sum() * voxel_ml
    assert 1500 < lungs_ml < 7000, lungs_ml  # adult lungs in a 24 cm chest section
    assert 0.15 < lungs_ml / body_ml < 0.6
    hu = lung1.array
    assert np.median(hu[lab == 1]) < -700  # lungs are air-like
    assert np.median(hu[lab == 2]) > -200  # body is tissue-like
    assert lab[:, :3, :3].max() == 0 and lab[:, -3:, -3:].max() == 0  # corners are outside the body
    # lungs lie inside the body in every axial slice: no lung voxel touches the background
    lungs = lab == 1
    from scipy import ndimage as ndi

    assert not (ndi.binary_dilation(lungs, structure=np.ones((1, 3, 3), bool)) & (lab == 0)).any()
    # deterministic; 2-class = body vs background
    again = get_segmenter("threshold").segment(lung1, "3").labels
    assert np.array_equal(lab, again)
    two = get_segmenter("threshold").segment(lung1, "2")
    assert np.array_equal(two.labels, (lab > 0).astype(np.uint8)) and two.classes == "2"
    # overlay PNG (inspect it: TRACE_BENCH_TEST_ARTIFACTS=DIR keeps a copy)
    out_dir = Path(os.environ.get("TRACE_BENCH_TEST_ARTIFACTS", tmp_path))
    png = save_overlay(lung1, lab, out_dir / "threshold_overlay_lung1.png", names=lung1_labels.names,
                       title=f"lung1: {lung1_labels.segmenter}")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000


def test_threshold_on_empty_air_is_background():
    v = from_canonical(np.full((4, 16, 16), -1000, np.float32), (2.0, 1.0, 1.0))
    assert get_segmenter("threshold").segment(v).labels.max() == 0


# --------------------------------------------------------------------------------- label tables
def test_vista3d_collapse_tables():
    assert len(VISTA3D_LABELS) == 132 and len(VISTA3D_EVERYTHING_LABELS) == 117
    ids = np.array([0, 20, 23, 28, 29, 30, 31, 32, 1, 21, 57, 115, 132, 255], np.int32)
    assert collapse_vista3d(ids, "3").tolist() == [0, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 0]
    assert collapse_vista3d(ids, "2").tolist() == [0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0]
    assert collapse_vista3d(ids, "full").tolist() == [0, 20, 23, 28, 29, 30, 31, 32, 1, 21, 57, 115, 132, 0]
    lut = vista3d_table("3")
    assert set(lut[list(VISTA3D_EVERYTHING_LABELS)]) == {1, 2}


# ------------------------------------------------------------------------------------- provided
def test_provided_label_conventions():
    seg = get_segmenter("provided")
    three = from_canonical(np.array([[[0, 1, 2]]], np.float32), (1, 1, 1))
    assert seg.from_mask(three, "3").labels.tolist() == [[[0, 1, 2]]]
    assert seg.from_mask(three, "2").labels.tolist() == [[[0, 1, 1]]]
    vista = from_canonical(np.array([[[0, 28, 115, 32]]], np.float32), (1, 1, 1))
    assert seg.from_mask(vista, "3").labels.tolist() == [[[0, 1, 2, 1]]]
    with pytest.raises(ConfigError, match="no label map|none was paired"):
        seg.from_mask(None, "3")
    with pytest.raises(ConfigError, match="does not segment"):
        seg.segment(three)
    with pytest.raises(ConfigError, match="cannot give --classes 3"):
        get_segmenter("provided", labels="2").from_mask(three, "3")
    # a binary mask (e.g. the demo's tumour masks) is one structure: refused at 3 classes, fine at 2
    tumour = from_canonical(np.array([[[0, 1, 1]]], np.float32), (1, 1, 1))
    with pytest.raises(ConfigError, match="only 0/1"):
        seg.from_mask(tumour, "3")
    assert seg.from_mask(tumour, "2").labels.tolist() == [[[0, 1, 1]]]
    blank = from_canonical(np.zeros((1, 1, 3), np.float32), (1, 1, 1))
    assert seg.from_mask(blank, "3").labels.max() == 0  # an empty map is a miss, not an error


# -------------------------------------------------------------------------------------- vista3d
def _tiny_bundle(root: Path) -> Path:
    """A vista3d bundle folder holding a small RANDOMLY INITIALISED vista3d132-shaped network
    (encoder width 8 instead of 48): it tests the plumbing (loading, MONAI preprocessing, sliding
    window, post-processing, inverse transform, label collapse), not segmentation quality."""
    import torch
    from monai.networks.nets import vista3d132

    torch.manual_seed(0)
    (root / "models").mkdir(parents=True)
    (root / "configs").mkdir()
    torch.save(vista3d132(encoder_embed_dim=8).state_dict(), root / "models" / "model.pt")
    # the real bundle says patch_size [128, 128, 128]; a small window keeps this CPU test fast
    (root / "configs" / "inference.json").write_text(json.dumps({
        "resample_spacing": [1.5, 1.5, 1.5], "patch_size": [32, 32, 32],
        "preprocessing_transforms": [{"_target_": "ScaleIntensityRanged", "a_min": -963.8247715525971,
                                      "a_max": 1053.678477684517, "b_min": 0, "b_max": 1, "clip": True}]}))
    return root


def test_vista3d_refuses_without_bundle(tmp_path, monkeypatch):
    monkeypatch.setenv("TRACE_BENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("TRACE_BENCH_WEIGHTS_VISTA3D", raising=False)
    with pytest.raises(WeightsError, match="vista3d"):
        get_segmenter("vista3d", device="cpu").load()
    (tmp_path / "empty_bundle").mkdir()
    with pytest.raises(WeightsError, match="model.pt|inference.json"):
        get_segmenter("vista3d", device="cpu", weights={"vista3d": str(tmp_path / "empty_bundle")}).load()
    bad = tmp_path / "bad_bundle" / "models"
    bad.mkdir(parents=True)
    (bad / "model.pt").write_bytes(b"not a checkpoint")
    (bad.parent / "configs").mkdir()
    (bad.parent / "configs" / "inference.json").write_text("{}")
    with pytest.raises(WeightsError, match="cannot load"):
        get_segmenter("vista3d", device="cpu", weights={"vista3d": str(bad.parent)}).load()


def test_vista3d_full_path_with_small_random_network(tmp_path):
    bundle = _tiny_bundle(tmp_path / "vista3d")
    rng = np.random.default_rng(0)
    a = np.full((10, 26, 30), -1000, np.float32)
    a[2:8, 4:22, 4:26] = 40 + rng.normal(0, 30, (6, 18, 22)).astype(np.float32)
    a[3:7, 8:16, 8:14] = -850  # an air pocket
    vol = from_canonical(a, (3.0, 1.3, 1.1))  # about 20 x 22 x 22 voxels at 1.5 mm: one 32^3 window
    seg = get_segmenter("vista3d", device="cpu", weights={"vista3d": str(bundle)})
    full = seg.segment(vol, "full")
    assert full.shape == vol.shape and full.segmenter.startswith("vista3d@") and full.segmenter.endswith("-w8")
    assert set(np.unique(full.labels)) <= set(VISTA3D_EVERYTHING_LABELS) | {0}
    three = seg.segment(vol, "3")
    assert np.array_equal(three.labels, collapse_vista3d(full.labels, "3"))
    assert three.meta["preprocessing"]["patch_size"] == [32, 32, 32]
    assert three.meta["preprocessing"]["a_min"] == pytest.approx(-963.8247715525971)
