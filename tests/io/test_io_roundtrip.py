"""Round trips through every reader/writer on the shipped real chest CT (known spacing/orientation)."""

from __future__ import annotations

import numpy as np
import nibabel as nib
import pytest
import SimpleITK as sitk
from PIL import Image

from trace_bench.io import read_label_map, read_volume, write_nifti
from trace_bench.volume import from_xyz


def test_shipped_ct_true_geometry(demo_volume):
    v = demo_volume
    assert v.shape == (48, 256, 256)
    assert v.spacing == pytest.approx((5.0, 0.5703125 * 2, 0.5703125 * 2))
    assert v.orientation == "LPS"
    assert v.array.dtype == np.float32
    assert v.array.min() == -1024 and v.array.max() == 3071
    assert v.meta["convention"] == "hu"


def test_nifti_roundtrip_exact(tmp_path, small_volume):
    out = write_nifti(small_volume, tmp_path / "a.nii.gz")
    back = read_volume(out)
    np.testing.assert_array_equal(back.array, small_volume.array)
    np.testing.assert_allclose(back.affine, small_volume.affine, atol=1e-4)
    assert back.spacing == pytest.approx(small_volume.spacing, abs=1e-5)
    assert back.orientation == "LPS"


@pytest.mark.parametrize("codes", [("R", "A", "S"), ("L", "A", "I"), ("P", "S", "R")])
def test_any_orientation_is_canonicalised(tmp_path, small_volume, codes):
    """Write the same anatomy with other axis orders/flips: the reader returns identical voxels."""
    from nibabel import orientations as nio

    data_xyz = small_volume.array.transpose(2, 1, 0)
    src = nio.axcodes2ornt(("L", "P", "S"))
    dst = nio.axcodes2ornt(codes)
    xf = nio.ornt_transform(src, dst)
    data = nio.apply_orientation(data_xyz, xf)
    aff = small_volume.affine @ nio.inv_ornt_aff(xf, data_xyz.shape)
    assert "".join(nib.aff2axcodes(aff)) == "".join(codes)
    nib.save(nib.Nifti1Image(data.astype(np.int16), aff), tmp_path / "o.nii.gz")
    back = read_volume(tmp_path / "o.nii.gz")
    np.testing.assert_array_equal(back.array, small_volume.array)
    np.testing.assert_allclose(back.affine, small_volume.affine, atol=1e-4)
    assert back.meta["source_orientation"] == "".join(codes)


def _sitk_image(vol):
    img = sitk.GetImageFromArray(vol.array.astype(np.int16))  # (z, y, x) -> ITK (x, y, z)
    img.SetSpacing(tuple(reversed(vol.spacing)))
    lps = np.diag([-1.0, -1.0, 1.0]) @ vol.affine[:3, :3]
    img.SetDirection(tuple((lps / np.array(list(reversed(vol.spacing)))).ravel()))
    img.SetOrigin(tuple(np.diag([-1.0, -1.0, 1.0]) @ vol.affine[:3, 3]))
    return img


@pytest.mark.parametrize("suffix", [".nrrd", ".mha", ".mhd"])
def test_itk_formats_roundtrip(tmp_path, small_volume, suffix):
    path = tmp_path / f"v{suffix}"
    sitk.WriteImage(_sitk_image(small_volume), str(path))
    back = read_volume(path)
    np.testing.assert_array_equal(back.array, small_volume.array)
    np.testing.assert_allclose(back.affine, small_volume.affine, atol=1e-4)
    assert back.meta["format"] in ("nrrd", "mha")


def test_nrrd_and_nifti_agree_on_world_coordinates(tmp_path, small_volume):
    sitk.WriteImage(_sitk_image(small_volume), str(tmp_path / "v.nrrd"))
    write_nifti(small_volume, tmp_path / "v.nii.gz")
    a, b = read_volume(tmp_path / "v.nrrd"), read_volume(tmp_path / "v.nii.gz")
    np.testing.assert_allclose(a.affine, b.affine, atol=1e-4)
    # and nibabel's own reading of our NIfTI puts voxel (0,0,0) where ITK puts it
    itk = sitk.ReadImage(str(tmp_path / "v.nrrd"))
    lps0 = np.array(itk.TransformIndexToPhysicalPoint((0, 0, 0)))
    ras0 = nib.load(str(tmp_path / "v.nii.gz")).affine @ np.array([0, 0, 0, 1.0])
    np.testing.assert_allclose(ras0[:3], lps0 * np.array([-1, -1, 1]), atol=1e-3)


def test_numpy_needs_spacing_and_convention(tmp_path, small_volume):
    from trace_bench.errors import ConventionError, SpacingError

    np.save(tmp_path / "v.npy", small_volume.array)
    with pytest.raises(SpacingError, match="--spacing"):
        read_volume(tmp_path / "v.npy")
    back = read_volume(tmp_path / "v.npy", spacing="5,1.140625,1.140625")
    np.testing.assert_array_equal(back.array, small_volume.array)
    assert back.spacing == (5.0, 1.140625, 1.140625)
    assert back.meta["spacing_source"] == "user"
    # [0, 1] data is ambiguous: refused, then accepted with an explicit convention
    unit = (np.clip(small_volume.array, -1000, 1000) + 1000) / 2000
    np.savez(tmp_path / "u.npz", image=unit.astype(np.float32))
    with pytest.raises(ConventionError, match="--convention"):
        read_volume(tmp_path / "u.npz", spacing=(5, 1, 1))
    back = read_volume(tmp_path / "u.npz", spacing=(5, 1, 1), convention="unit:-1000:1000")
    np.testing.assert_allclose(back.array, np.clip(small_volume.array, -1000, 1000), atol=0.05)
    assert back.meta["convention"] == "unit"


def test_png_stack_roundtrip(tmp_path, small_volume):
    hu = small_volume.array
    folder = tmp_path / "stack"
    folder.mkdir()
    for k, sl in enumerate(hu):  # 16-bit PNG slices storing HU + 1024; natural sort 2 < 10
        Image.fromarray((sl + 1024).astype(np.uint16)).save(folder / f"slice_{k}.png")
    back = read_volume(folder, spacing=small_volume.spacing, convention="hu+1024")
    np.testing.assert_array_equal(back.array, hu)
    assert back.meta["format"] == "png"
    # multi-page TIFF, 8-bit window
    u8 = np.floor((np.clip(hu, -1000, 1000) + 1000) / 2000 * 255 + 0.5).astype(np.uint8)
    pages = [Image.fromarray(s) for s in u8]
    pages[0].save(tmp_path / "v.tif", save_all=True, append_images=pages[1:])
    back = read_volume(tmp_path / "v.tif", spacing=small_volume.spacing, convention="byte:-1000:1000")
    np.testing.assert_allclose(back.array, np.clip(hu, -1000, 1000), atol=2000 / 255 / 2 + 1e-3)


def test_dicom_series_roundtrip(tmp_path, small_volume):
    vol = small_volume
    folder = tmp_path / "dcm"
    folder.mkdir()
    img = _sitk_image(vol)
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    direction = img.GetDirection()
    common = [("0008|0060", "CT"), ("0020|000d", "1.2.826.0.1.3680043.2.1125.1"),
              ("0020|000e", "1.2.826.0.1.3680043.2.1125.1.2"), ("0008|0008", "ORIGINAL\\PRIMARY\\AXIAL"),
              ("0020|0037", "\\".join(f"{d:.6f}" for d in direction[:6]))]
    order = list(range(img.GetDepth()))[::-1]  # write in reverse: the reader must sort by position
    for i in order:
        sl = img[:, :, i]  # int16 HU
        for k, v in common:
            sl.SetMetaData(k, v)
        pos = img.TransformIndexToPhysicalPoint((0, 0, i))
        sl.SetMetaData("0020|0032", "\\".join(f"{p:.6f}" for p in pos))
        sl.SetMetaData("0020|0013", str(i))
        sl.SetMetaData("0018|0050", str(vol.spacing[0]))
        sl.SetMetaData("0008|0018", f"1.2.826.0.1.3680043.2.1125.1.3.{i}")
        writer.SetFileName(str(folder / f"IM{i:04d}.dcm"))
        writer.Execute(sl)
    back = read_volume(folder)
    np.testing.assert_array_equal(back.array, vol.array)
    assert back.spacing == pytest.approx(vol.spacing, abs=1e-3)
    np.testing.assert_allclose(back.affine, vol.affine, atol=1e-3)
    assert back.meta["format"] == "dicom"


def test_label_map_reader(tmp_path, small_volume):
    lab = (small_volume.array > -400).astype(np.uint8) + (small_volume.array > 300).astype(np.uint8)
    nib.save(nib.Nifti1Image(lab.transpose(2, 1, 0), small_volume.affine), tmp_path / "l.nii.gz")
    back = read_label_map(tmp_path / "l.nii.gz")
    np.testing.assert_array_equal(back.array.astype(np.int32), lab)
    soft = (lab > 0).astype(np.float32) * 0.8
    nib.save(nib.Nifti1Image(soft.transpose(2, 1, 0), small_volume.affine), tmp_path / "s.nii.gz")
    from trace_bench.errors import InvalidVolumeError

    with pytest.raises(InvalidVolumeError, match="threshold"):
        read_label_map(tmp_path / "s.nii.gz")
    np.testing.assert_array_equal(read_label_map(tmp_path / "s.nii.gz", threshold=0.5).array, (lab > 0))


def test_from_xyz_reports_source_orientation(small_volume):
    v = from_xyz(small_volume.array.transpose(2, 1, 0), small_volume.affine, {"path": "x"})
    assert v.meta["source_orientation"] == "LPS"
