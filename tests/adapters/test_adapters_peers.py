"""Peer adapters round-trip the shipped real chest CT written exactly as each peer's code writes it.

The writers (tests/helpers/peer_writers.py) re-implement the peers' saving code from the facts in PEERS.md
and the peers' sources (cited per writer): shapes, axis swaps, flips, scaling, casts, quirky names, identity
affines.
Each test starts from a small crop of ``trace_bench/data/demo/reference/lung1.nii.gz`` (12 x 64 x 48,
y != x so any axis swap is caught), writes it in the peer's format, reads it back with the adapter and
checks the canonical LPS HU volume to the precision the format allows.
"""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from baselines import get_adapter
from trace_bench.volume import Volume

from helpers.peer_writers import (HU_HI, HU_LO, demo_masks, generatect_tensor, read_lowres_for_superres,
                                  write_generatect_lowres, write_generatect_sr, write_maisi, write_medsyn_highres,
                                  write_medsyn_lowres)


def test_generatect_lowres_roundtrip(tmp_path: Path, small_volume: Volume) -> None:
    ref = small_volume.array
    t = generatect_tensor(ref)
    path = write_generatect_lowres(tmp_path, "valid_1_a_1", 3, t, "52 years old male: Fusiform dilatation.")
    raw = nib.load(str(path))
    assert raw.shape == (ref.shape[1], ref.shape[2], ref.shape[0]) and np.allclose(raw.affine, np.eye(4))  # (W, H, D)
    ad = get_adapter("generatect-lowres")
    vol = ad.read(path)
    expected = np.clip(ref, -1000, 1000)
    expected[0, 0, 0], expected[1, 3, 2] = 1250.0, -1100.0  # overshoot kept, not clipped
    assert vol.shape == ref.shape and vol.orientation == "LPS"
    np.testing.assert_allclose(vol.array, expected, atol=1e-3)
    assert vol.array.max() == pytest.approx(1250.0) and vol.array.min() == pytest.approx(-1100.0)
    assert vol.meta["adapter"] == "generatect-lowres" and vol.meta["convention"] == "hu/1000"
    assert "adapter default" in vol.meta["spacing_source"]
    # FOV rule: 301.5 x 384 x 384 mm (z, y, x) / stored shape
    assert vol.spacing == pytest.approx((301.5 / 12, 384 / 64, 384 / 48))
    assert ad.case_id(path) == "valid_1_a_1"
    assert ad.prompt(path) == "52 years old male: Fusiform dilatation."
    assert ad.list_files(tmp_path / "transformer_inference") == [path]
    # at the real size the default is the CT-RATE grid: 1.5 mm slices, 3 mm in-plane at 128 px
    sp, _ = ad.resolve_spacing(path, (201, 128, 128))
    assert sp == pytest.approx((1.5, 3.0, 3.0))
    # user spacing overrides and is recorded
    v2 = ad.read(path, spacing=(2.0, 1.0, 1.0))
    assert v2.spacing == (2.0, 1.0, 1.0) and v2.meta["spacing_source"] == "user"


def test_generatect_orientation_matches_authors_challenge_writer(tmp_path: Path, small_volume: Volume) -> None:
    """The adapter's geometry equals what the authors' own challenge container writes (SimpleITK, LPS)."""
    import SimpleITK as sitk

    t = generatect_tensor(small_volume.array, overshoot=False)
    low = write_generatect_lowres(tmp_path, "case", 0, t, "p")
    # process.py: high_res_volume (C, D, H, W) ... permute(1, 0, 3, 2) of the (D, C, H, W) stack -> (C, D, W, H)
    stack = t[0][:, None]  # (D, C, H, W) -- identity "super-resolution" keeps the grid
    arr = stack.transpose(1, 0, 3, 2)[0]  # (D, W, H)
    arr = np.clip(np.clip((arr + 1) / 2, 0, 1) * 2000 - 1000, -1000, 1000)
    img = sitk.GetImageFromArray(arr.astype(np.float32))
    img.SetSpacing((1.0, 1.0, 1.0))
    img.SetOrigin((0, 0, 0))
    sitk.WriteImage(img, str(tmp_path / "challenge.nii.gz"))
    from trace_bench.io import read_volume

    authors = read_volume(tmp_path / "challenge.nii.gz", convention="hu")
    ours = get_adapter("generatect-lowres").read(low, spacing=(1, 1, 1))
    assert authors.orientation == ours.orientation == "LPS"
    np.testing.assert_allclose(ours.array, authors.array, atol=1e-2)
    np.testing.assert_allclose(ours.affine, authors.affine, atol=1e-6)


def test_generatect_sr_roundtrip_and_quirky_name(tmp_path: Path, small_volume: Volume) -> None:
    ref = small_volume.array
    # high-res network output per slice in [0, 1]: ((clip(HU) / 1000) + 1) / 2, (D, C, H, W)
    x = ((np.clip(ref, -1000, 1000) / 1000.0 + 1) / 2).transpose(0, 2, 1)[:, None].astype(np.float32)
    path = write_generatect_sr(tmp_path, "valid_1_a_1_0.txt", x)
    assert path.name == "sample-['valid'].nii.gz"
    raw = nib.load(str(path))
    assert raw.shape == (ref.shape[2], ref.shape[1], ref.shape[0], 1)  # (H, W, D, 1)
    ad = get_adapter("generatect-sr")
    vol = ad.read(path)
    np.testing.assert_allclose(vol.array, np.clip(ref, -1000, 1000), atol=2e-3)
    assert vol.orientation == "LPS" and vol.meta["convention"] == "unit"
    assert ad.case_id(path) == "valid"  # cut at the first '_', list brackets removed
    assert ad.list_files(tmp_path) == [path]
    sp, _ = ad.resolve_spacing(path, (201, 512, 512))
    assert sp == pytest.approx((1.5, 0.75, 0.75))


def test_generatect_sr_from_lowres_keeps_orientation(tmp_path: Path, small_volume: Volume) -> None:
    """Low-res file -> the SR script's reader -> x2 nearest upsampling per slice (stand-in for the diffusion
    model, which maps each (H, W) slice to (4H, 4W)) -> SR writer: both adapters agree on anatomy."""
    t = generatect_tensor(small_volume.array, overshoot=False)
    low = write_generatect_lowres(tmp_path, "abc_x", 0, t, "prompt")
    inp = read_lowres_for_superres(low)[0][:, None]  # images_ref_input.permute(1, 0, 2, 3): (D, 1, H, W)
    up = inp.repeat(2, axis=2).repeat(2, axis=3)  # (D, C, 2H, 2W)
    sr = write_generatect_sr(tmp_path / "superres", "abc_x_0.txt", up)
    v_low = get_adapter("generatect-lowres").read(low)
    v_sr = get_adapter("generatect-sr").read(sr)
    assert v_sr.shape == (v_low.shape[0], 2 * v_low.shape[1], 2 * v_low.shape[2])
    np.testing.assert_allclose(v_sr.array[:, ::2, ::2], v_low.array, atol=2e-3)
    # same physical field of view
    assert np.allclose(np.array(v_sr.spacing) * v_sr.shape, np.array(v_low.spacing) * v_low.shape)


def test_medsyn_highres_roundtrip_with_masks(tmp_path: Path, small_volume: Volume) -> None:
    ref = small_volume.array
    path = write_medsyn_highres(tmp_path, "normal_sample_0", ref)
    h = nib.load(str(path))
    assert h.get_data_dtype() == np.int16 and np.allclose(h.affine, np.diag([-1, -1, 1, 1]))
    ad = get_adapter("medsyn")
    vol = ad.read(path)
    assert vol.orientation == "LPS" and vol.shape == ref.shape
    # int16 truncation towards zero: |error| < 1 HU, values clipped to MedSyn's [-1024, 600]
    err = np.abs(vol.array - np.clip(ref, HU_LO, HU_HI))
    assert err.max() < 1.0 + 1e-3
    assert vol.meta["convention"] == "hu" and vol.meta["adapter"] == "medsyn"
    assert vol.spacing == pytest.approx((292 / 12, 316 / 64, 316 / 48))
    sp, _ = ad.resolve_spacing(path, (256, 256, 256))
    assert sp == pytest.approx((1.140625, 1.234375, 1.234375))
    assert ad.case_id(path) == "normal"
    assert ad.list_files(tmp_path) == [path]  # masks are not volumes
    masks = ad.masks(path)
    assert set(masks) == {"lobe", "airway", "vessel"}
    for name, canon in demo_masks(ref).items():
        m = ad.read_mask(masks[name], name=name)
        assert m.shape == ref.shape, name
        np.testing.assert_array_equal(m.array.astype(bool), canon, err_msg=name)
        np.testing.assert_allclose(m.affine, vol.affine)


def test_medsyn_lowres_roundtrip(tmp_path: Path, small_volume: Volume) -> None:
    ref = small_volume.array
    path = write_medsyn_lowres(tmp_path, "normal", 1, ref)
    for name in ("medsyn-lowres", "medsyn"):
        ad = get_adapter(name)
        vol = ad.read(path)
        np.testing.assert_allclose(vol.array, np.clip(ref, HU_LO, HU_HI), atol=1e-3)
        assert vol.orientation == "LPS" and vol.meta["convention"] == "unit:-1024:600"
        sp, _ = ad.resolve_spacing(path, (64, 64, 64))
        assert sp == pytest.approx((4.5625, 4.9375, 4.9375))
        assert ad.case_id(path) == "normal_sample_1"  # only sample 0 is shortened to the text stem
        masks = ad.masks(path)
        assert set(masks) == {"lobe", "airway", "vessel"}
        for mname, canon in demo_masks(ref).items():
            np.testing.assert_array_equal(ad.read_mask(masks[mname], name=mname).array.astype(bool), canon)


def test_maisi_roundtrip_with_label(tmp_path: Path, small_volume: Volume) -> None:
    ref = small_volume
    label = (ref.array < -400).astype(np.int32) + (ref.array > 200).astype(np.int32) * 2  # values 1..N
    path = write_maisi(tmp_path, ref, label)
    assert path.is_file() and (tmp_path / "sample_20240101_120000_000001_label.nii.gz").is_file()
    assert "".join(nib.aff2axcodes(nib.load(str(path)).affine)) == "RAS"
    ad = get_adapter("maisi")
    vol = ad.read(path)
    assert vol.orientation == "LPS" and vol.meta["spacing_source"] == "file header"
    np.testing.assert_allclose(vol.array, np.clip(ref.array, -1000, 1000), atol=1e-3)
    np.testing.assert_allclose(vol.affine, ref.affine, atol=1e-4)
    assert vol.spacing == pytest.approx(ref.spacing)
    assert ad.case_id(path) == "sample_20240101_120000_000001"
    assert ad.list_files(tmp_path) == [path]
    masks = ad.masks(path)
    assert list(masks) == ["label"]
    m = ad.read_mask(masks["label"], name="label")
    np.testing.assert_array_equal(m.array.astype(np.int32), label)
