"""Generator-formats corpus (issues 26, 27): the ways generators really write volumes, built from a crop of the
shipped chest CT. Each kind is either read equal (array and affine) to the correctly read volume once the
documented reading option is given, or refused in one line naming that option; nothing is mirrored silently.
The builders live in ``tests/helpers/generator_corpus.py``; the run-level check (per-case values equal with
``assert_frame_equal`` through ``python -m trace_bench run``) is ``tests/run/test_run_generator_formats.py``.
"""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from PIL import Image

from baselines import get_adapter
from trace_bench.errors import ConventionError, GeometryError, SpacingError
from trace_bench.geometry import check_geometry
from trace_bench.io import read_volume, write_nifti
from trace_bench.volume import Volume

from helpers.generator_corpus import save_nifti, set_scaling


@pytest.fixture()
def ref(tmp_path: Path, small_volume: Volume) -> Volume:
    """The reference case as `run` reads it: the CT crop written with its real LPS affine, read back."""
    path = write_nifti(small_volume, tmp_path / "ref" / "case.nii.gz")
    return get_adapter("nifti").read(path)


def _one_line(e: pytest.ExceptionInfo) -> str:
    msg = str(e.value)
    assert "\n" not in msg
    return msg


def test_reference_reads_as_the_crop(ref: Volume, small_volume: Volume) -> None:
    np.testing.assert_array_equal(ref.array, small_volume.array)
    np.testing.assert_allclose(ref.affine, small_volume.affine, atol=1e-4)
    assert ref.meta["geometry"] == "header" and not ref.meta.get("warnings")


@pytest.mark.parametrize("kind,spec,encode", [
    ("unit", "unit", lambda hu: (hu + 1000) / 2000),
    ("symmetric", "symmetric", lambda hu: hu / 1000),
])
def test_normalised_floats_refused_then_read_with_convention(tmp_path, ref, kind, spec, encode) -> None:
    hu = np.clip(ref.array, -1000, 1000)
    p = save_nifti(tmp_path / "gen" / "case.nii.gz", encode(hu).T.astype(np.float32), ref.affine)
    with pytest.raises(ConventionError) as e:
        get_adapter("nifti").read(p)
    assert f"--read NAME.convention={spec}" in _one_line(e) and str(p) in str(e.value)
    vol = get_adapter("nifti").read(p, convention=spec)
    np.testing.assert_allclose(vol.array, hu, atol=0.05)
    np.testing.assert_allclose(vol.affine, ref.affine, atol=1e-6)


def test_int16_hu_with_and_without_slope_intercept(tmp_path, ref) -> None:
    hu = ref.array.astype(np.int16)
    plain = save_nifti(tmp_path / "gen" / "plain.nii.gz", hu.T.copy(), ref.affine)
    np.testing.assert_array_equal(get_adapter("nifti").read(plain).array, ref.array)
    stored = ((hu.astype(np.int32) + 1024) * 2).astype(np.int16)  # HU = 0.5 * stored - 1024
    scaled = save_nifti(tmp_path / "gen" / "scaled.nii", stored.T.copy(), ref.affine)
    set_scaling(scaled, 0.5, -1024.0)  # scl_slope, scl_inter
    vol = get_adapter("nifti").read(scaled)
    assert vol.meta["rescale_in_header"] is True
    np.testing.assert_array_equal(vol.array, ref.array)


def test_hu_plus_offset_without_rescale_refused_then_read(tmp_path, ref) -> None:
    shifted = (ref.array + 1024).astype(np.int16)
    shifted[:, :6, :] = -2000  # padding far below -1024, as scanners write outside the scan circle
    p = save_nifti(tmp_path / "gen" / "case.nii.gz", shifted.T.copy(), ref.affine)
    with pytest.raises(ConventionError) as e:
        get_adapter("nifti").read(p)
    msg = _one_line(e)
    assert "HU + 1024" in msg and "--read NAME.convention=hu+1024" in msg and str(p) in msg
    vol = get_adapter("nifti").read(p, convention="hu+1024")
    np.testing.assert_array_equal(vol.array[:, 6:, :], ref.array[:, 6:, :])


def test_npy_without_spacing_refused_then_reference_grid(tmp_path, ref) -> None:
    p = tmp_path / "gen" / "case.npy"
    p.parent.mkdir()
    np.save(p, ref.array)  # (z, y, x), as trace-bench and most numpy pipelines hold it
    with pytest.raises(SpacingError) as e:
        get_adapter("npy").read(p)
    assert "--read NAME.spacing=z,y,x" in _one_line(e) and "spacing=reference" in str(e.value)
    for opts in ({"spacing": "reference"}, {"layout": "reference"}):
        vol = get_adapter("npy").read(p, reference=ref, **opts)
        np.testing.assert_array_equal(vol.array, ref.array)
        np.testing.assert_allclose(vol.affine[:3, :3], ref.affine[:3, :3], atol=1e-6)
    np.testing.assert_allclose(get_adapter("npy").read(p, layout="reference", reference=ref).affine, ref.affine)
    with pytest.raises(Exception, match="needs the paired reference case"):
        get_adapter("npy").read(p, spacing="reference")


def test_png_stack_refused_then_read(tmp_path, ref) -> None:
    folder = tmp_path / "gen" / "case"
    folder.mkdir(parents=True)
    for k, sl in enumerate(ref.array):
        Image.fromarray((sl + 1024).astype(np.uint16)).save(folder / f"slice_{k}.png")
    with pytest.raises(SpacingError) as e:
        get_adapter("png-stack").read(folder)
    assert "--read NAME.spacing=" in _one_line(e)
    vol = get_adapter("png-stack").read(folder, spacing="reference", convention="hu+1024", reference=ref)
    np.testing.assert_array_equal(vol.array, ref.array)
    np.testing.assert_allclose(vol.affine[:3, :3], ref.affine[:3, :3], atol=1e-6)


def test_identity_affine_zyx_refused_then_read_with_layout(tmp_path, ref) -> None:
    p = save_nifti(tmp_path / "gen" / "case.nii.gz", ref.array.copy(), np.eye(4))  # nib.Nifti1Image(arr_zyx, eye)
    vol = get_adapter("nifti").read(p)
    assert vol.meta["geometry"] == "trivial" and len(vol.meta["warnings"]) == 1
    with pytest.raises(GeometryError) as e:
        check_geometry(vol, ref)
    msg = _one_line(e)
    assert "identity affine" in msg and "--read NAME.layout=SPL" in msg
    assert "layout=header" in msg and "(layout RAS)" in msg
    assert len(check_geometry(vol, ref, "warn")) >= 1  # --geometry warn: scored as read, with a warning
    good = get_adapter("nifti").read(p, layout="SPL", spacing="reference", reference=ref)
    np.testing.assert_array_equal(good.array, ref.array)
    np.testing.assert_allclose(good.affine[:3, :3], ref.affine[:3, :3], atol=1e-6)
    assert check_geometry(good, ref) == []
    same = get_adapter("nifti").read(p, layout="reference", reference=ref)
    np.testing.assert_array_equal(same.array, ref.array)
    np.testing.assert_allclose(same.affine, ref.affine, atol=1e-6)


def test_identity_affine_xyz_refused_then_read_with_layout(tmp_path, ref) -> None:
    p = save_nifti(tmp_path / "gen" / "case.nii.gz", ref.array.T.copy(), np.eye(4))  # (x, y, z) of an LPS volume
    vol = get_adapter("nifti").read(p)
    np.testing.assert_array_equal(vol.array, ref.array[:, ::-1, ::-1])  # read as written: mirrored in x and y
    with pytest.raises(GeometryError, match="identity affine"):
        check_geometry(vol, ref)
    good = get_adapter("nifti").read(p, layout="LPS", spacing="reference", reference=ref)
    np.testing.assert_array_equal(good.array, ref.array)
    np.testing.assert_allclose(good.affine[:3, :3], ref.affine[:3, :3], atol=1e-6)
    same = get_adapter("nifti").read(p, layout="reference", reference=ref)  # the reference file's own index order
    np.testing.assert_array_equal(same.array, ref.array)
    np.testing.assert_allclose(same.affine, ref.affine, atol=1e-6)


def test_no_orientation_codes_refused(tmp_path, ref) -> None:
    p = save_nifti(tmp_path / "gen" / "case.nii.gz", ref.array.T.copy(), None)  # affine=None: qform/sform codes 0
    vol = get_adapter("nifti").read(p)
    assert vol.meta["geometry"] == "trivial"
    assert any("qform_code and sform_code are both 0" in w for w in vol.meta["warnings"])
    with pytest.raises(GeometryError, match="both 0"):
        check_geometry(vol, ref)
    good = get_adapter("nifti").read(p, layout="reference", reference=ref)
    np.testing.assert_array_equal(good.array, ref.array)


def test_las_header_against_ras_reference_is_a_warning_then_read(tmp_path, small_volume) -> None:
    """Real headers of other orientations are read through their headers and warned (the coordinator's
    orientation policy: truthful RAS / LPS headers must not be refused); the warning names the one case
    the tool cannot tell apart (a copied array under another header) and the option that reads it right."""
    ras = small_volume.affine.copy()
    ras[:, :2] *= -1  # the same grid indexed toward R and A: a RAS file
    data_ras = small_volume.array.T[::-1, ::-1, :].copy()
    ref_path = save_nifti(tmp_path / "ref" / "case.nii.gz", data_ras, ras)
    ref = get_adapter("nifti").read(ref_path)
    np.testing.assert_array_equal(ref.array, small_volume.array)
    las = ras.copy()
    las[:, 0] *= -1  # a generator that copied the reference's array but wrote an LAS header
    p = save_nifti(tmp_path / "gen" / "case.nii.gz", data_ras, las)
    vol = get_adapter("nifti").read(p)
    np.testing.assert_array_equal(vol.array, small_volume.array[:, :, ::-1])  # as written: mirrored in x
    (w,) = check_geometry(vol, ref, names=("gen", "reference"))
    assert "\n" not in w
    assert w.startswith("orientation: header orientation LAS differs from the reference's RAS along R/L")
    assert "--read gen.layout=reference" in w and "--read gen.layout=header" in w
    with pytest.raises(GeometryError) as e:  # --geometry strict still refuses it
        check_geometry(vol, ref, "strict", names=("gen", "reference"))
    assert "LAS differs from the reference's RAS" in _one_line(e) and "--geometry refuse" in str(e.value)
    for opts in ({"layout": "reference"}, {"layout": "RAS", "spacing": "reference"}):
        good = get_adapter("nifti").read(p, reference=ref, **opts)
        np.testing.assert_array_equal(good.array, ref.array)
        assert check_geometry(good, ref) == []
    trusted = get_adapter("nifti").read(p, layout="header")  # the user vouches for the LAS header: read as written
    np.testing.assert_array_equal(trusted.array, vol.array)
    assert check_geometry(trusted, ref) == []


def test_truthful_ras_header_against_lps_reference_is_scored_with_a_warning(tmp_path, ref) -> None:
    """MAISI writes RAS, CT-RATE references may be LPS: both headers are true, the volumes align once read."""
    ras = ref.affine.copy()
    ras[:3, 3] = ref.affine[:3, :3] @ np.array([ref.shape[2] - 1.0, ref.shape[1] - 1.0, 0.0]) + ref.affine[:3, 3]
    ras[:3, :2] *= -1
    p = save_nifti(tmp_path / "gen" / "case.nii.gz", ref.array.T[::-1, ::-1, :].copy(), ras)
    vol = get_adapter("nifti").read(p)
    np.testing.assert_array_equal(vol.array, ref.array)
    np.testing.assert_allclose(vol.affine, ref.affine, atol=1e-4)
    (w,) = check_geometry(vol, ref)
    assert "header orientation RAS differs from the reference's LPS along R/L, A/P" in w


def test_other_z_spacing_refused_then_read_with_reference_spacing(tmp_path, ref) -> None:
    aff = ref.affine.copy()
    aff[:3, 2] /= 2  # header says half the slice spacing: half the z field of view
    p = save_nifti(tmp_path / "gen" / "case.nii.gz", ref.array.T.copy(), aff)
    vol = get_adapter("nifti").read(p)
    with pytest.raises(GeometryError) as e:
        check_geometry(vol, ref)
    assert "field of view differs" in _one_line(e) and "--read NAME.spacing=z,y,x" in str(e.value)
    good = get_adapter("nifti").read(p, spacing="reference", reference=ref)
    np.testing.assert_array_equal(good.array, ref.array)
    np.testing.assert_allclose(good.affine[:3, :3], ref.affine[:3, :3], atol=1e-6)
    assert check_geometry(good, ref) == []


def test_qform_sform_disagreement_refused(tmp_path, ref) -> None:
    p = save_nifti(tmp_path / "gen" / "case.nii.gz", ref.array.T.copy(), ref.affine)
    img = nib.load(str(p))
    q = ref.affine.copy()
    q[:, 0] *= -1
    img.set_qform(q, code=1)
    img.set_sform(ref.affine, code=1)
    nib.save(img, str(p))
    vol = get_adapter("nifti").read(p)
    assert any("qform (RPS) and sform (LPS) disagree" in w for w in vol.meta["warnings"])
    with pytest.raises(GeometryError, match="disagree"):
        check_geometry(vol, ref)
    np.testing.assert_array_equal(get_adapter("nifti").read(p, layout="LPS").array, ref.array)


def test_zero_and_negative_voxel_sizes_are_said(tmp_path, ref) -> None:
    import struct

    p = save_nifti(tmp_path / "gen" / "case.nii", ref.array.T.copy(), ref.affine)
    raw = bytearray(p.read_bytes())
    struct.pack_into("<hh", raw, 252, 1, 0)  # qform only
    struct.pack_into("<f", raw, 76 + 12, 0.0)  # pixdim[3] = 0: nibabel would read 1 mm
    zero = tmp_path / "gen" / "zero.nii"
    zero.write_bytes(bytes(raw))
    vol = get_adapter("nifti").read(zero)
    assert any("voxel size along k is 0" in w and "spacing=reference" in w for w in vol.meta["warnings"])
    notes = dict((k, t) for k, t in vol.meta["geometry_notes"])
    assert "zero_spacing" in notes and "1 mm" in notes["zero_spacing"] and vol.meta["geometry"] == "trivial"
    assert read_volume(zero, spacing="reference", reference=ref).spacing == pytest.approx(ref.spacing)
    struct.pack_into("<f", raw, 76 + 12, -float(ref.spacing[0]))  # negative: nibabel takes abs()
    neg = tmp_path / "gen" / "neg.nii"
    neg.write_bytes(bytes(raw))
    vol = get_adapter("nifti").read(neg)
    assert any("negative voxel size" in w for w in vol.meta["warnings"])
    with pytest.raises(GeometryError, match="negative voxel size"):
        check_geometry(vol, ref)


def test_inspect_prints_the_run_warning(tmp_path, ref) -> None:
    import subprocess
    import sys

    p = save_nifti(tmp_path / "gen" / "case.nii.gz", ref.array.copy(), np.eye(4))
    vol = get_adapter("nifti").read(p)
    r = subprocess.run([sys.executable, "-m", "trace_bench", "inspect", str(p)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert f"  warning            {vol.meta['warnings'][0]}" in r.stdout


def test_peer_adapters_keep_their_layout_and_take_the_reference_spacing(tmp_path, ref) -> None:
    from helpers.peer_writers import generatect_tensor, write_generatect_lowres

    from trace_bench.errors import ConfigError

    p = write_generatect_lowres(tmp_path, "case", 0, generatect_tensor(ref.array, overshoot=False), "prompt")
    ad = get_adapter("generatect-lowres")
    with pytest.raises(ConfigError, match="defines the layout of its files itself"):
        ad.read(p, layout="SPL")
    vol = ad.read(p, spacing="reference", reference=ref)
    assert vol.spacing == pytest.approx(ref.spacing) and vol.meta["geometry"] == "user"
    np.testing.assert_allclose(vol.array, np.clip(ref.array, -1000, 1000), atol=0.1)
    assert check_geometry(vol, ref) == []
    default = ad.read(p)
    assert default.meta["geometry"] == "adapter" and "geometry_notes" not in default.meta
    assert len(check_geometry(default, ref)) == 1  # the documented layout: resampled by extent, with a warning
