"""Grid policy (trace_bench.geometry) and adapters that never mirror silently (baselines.medsyn / base)."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from baselines import get_adapter
from trace_bench.errors import ConfigError, GeometryError, InvalidVolumeError, VolumeError
from trace_bench.geometry import (
    DEFAULT_POLICY,
    GEOMETRY_POLICIES,
    check_geometry,
    compare_grids,
    geometry_source,
)
from trace_bench.volume import Volume, from_canonical

from helpers.peer_writers import demo_masks, write_generatect_lowres, generatect_tensor, write_medsyn_highres

REF_PATH = "/data/ref/case1.nii.gz"
GEN_PATH = "/data/gen/case1.nii.gz"


@pytest.fixture()
def ref(small_volume: Volume) -> Volume:
    """The 12 x 64 x 48 real CT crop on an axis-aligned LPS grid, geometry from its header."""
    return from_canonical(small_volume.array, small_volume.spacing,
                          {"path": REF_PATH, "spacing_source": "file header"})


def gen_like(ref: Volume, array: np.ndarray, spacing, **meta) -> Volume:
    return from_canonical(array, spacing, {"path": GEN_PATH, "spacing_source": "file header", **meta})


def test_policies_documented() -> None:
    assert tuple(GEOMETRY_POLICIES) == ("strict", "refuse", "warn") and DEFAULT_POLICY == "refuse"
    with pytest.raises(ConfigError, match="strict, refuse, warn"):
        check_geometry(Volume(np.zeros((2, 8, 8)), (1, 1, 1), np.eye(4)), Volume(np.zeros((2, 8, 8)), (1, 1, 1), np.eye(4)),
                       "lenient")


@pytest.mark.parametrize("policy", list(GEOMETRY_POLICIES))
def test_identical_grids_no_warning(ref: Volume, policy: str) -> None:
    gen = gen_like(ref, ref.array + 5.0, ref.spacing)
    d = compare_grids(gen, ref)
    assert d.identical and d.geometry_known and not d.needs_resampling and not d.degenerate
    assert d.description == "grids match"
    assert check_geometry(gen, ref, policy) == []


def test_same_fov_more_slices_warns_by_default(ref: Volume) -> None:
    sz, sy, sx = ref.spacing
    gen = gen_like(ref, np.repeat(ref.array, 2, axis=0), (sz / 2, sy, sx))  # 24 slices of half thickness
    d = compare_grids(gen, ref)
    assert not d.shape_matches and not d.spacing_matches and d.fov_matches and d.orientation_matches
    assert d.description == f"slices 24 vs 12; z spacing {sz / 2:.4g} vs {sz:.4g} mm; FOV matches"
    w = check_geometry(gen, ref)  # default policy
    assert len(w) == 1 and "\n" not in w[0]
    assert "slices 24 vs 12" in w[0] and "resampled onto the reference grid 12x64x48" in w[0]
    assert check_geometry(gen, ref, "warn") == [w[0].replace("--geometry refuse", "--geometry warn")]
    with pytest.raises(GeometryError) as e:
        check_geometry(gen, ref, "strict")
    assert "--geometry refuse" in str(e.value) and "different grid" in str(e.value)


def test_spacing_mismatch_same_shape_refused_by_default(ref: Volume) -> None:
    sz, sy, sx = ref.spacing
    gen = gen_like(ref, ref.array.copy(), (sz / 2, sy, sx))  # same voxels, header says half the z extent
    d = compare_grids(gen, ref)
    assert d.shape_matches and not d.spacing_matches and not d.fov_matches and d.geometry_known
    with pytest.raises(GeometryError) as e:
        check_geometry(gen, ref)
    err = e.value
    msg = str(err)
    assert isinstance(err, VolumeError) and "\n" not in msg
    assert msg.startswith(f"{GEN_PATH}: ") and REF_PATH in msg and err.reference == REF_PATH
    assert "field of view differs" in msg and f"z FOV {12 * sz / 2:.4g} vs {12 * sz:.4g} mm (-50%)" in msg
    assert "--geometry warn" in msg and "--spacing" in msg
    assert err.diff is not None and not err.diff.fov_matches
    with pytest.raises(GeometryError):
        check_geometry(gen, ref, "strict")
    w = check_geometry(gen, ref, "warn")
    assert len(w) == 1 and "field of view differs" in w[0] and "scored on the reference grid as is" in w[0]


def test_small_spacing_difference_within_tolerance(ref: Volume) -> None:
    sz, sy, sx = ref.spacing
    gen = gen_like(ref, ref.array.copy(), (sz * 1.005, sy, sx))  # 0.5 %: same grid
    assert compare_grids(gen, ref).identical and check_geometry(gen, ref, "strict") == []
    gen = gen_like(ref, ref.array.copy(), (sz * 1.03, sy, sx))  # 3 %: other spacing, same FOV within 5 %
    d = compare_grids(gen, ref)
    assert not d.spacing_matches and d.fov_matches
    assert len(check_geometry(gen, ref)) == 1


@pytest.mark.parametrize("crop", [np.s_[:1], np.s_[:, :4, :]], ids=["one-slice", "thin-in-plane"])
def test_degenerate_volume_refused(ref: Volume, crop) -> None:
    arr = ref.array[crop]
    gen = gen_like(ref, arr, ref.spacing, spacing_source="adapter default: test")  # unknown geometry: FOV not compared
    d = compare_grids(gen, ref)
    assert set(d.degenerate) == {"generated"}
    for policy in ("refuse", "strict"):
        with pytest.raises(GeometryError, match="degenerate volume") as e:
            check_geometry(gen, ref, policy)
        assert "--geometry warn" in str(e.value)
    w = check_geometry(gen, ref, "warn")
    assert len(w) == 1 and "degenerate" in w[0]
    with pytest.raises(GeometryError, match="reference degenerate"):  # a degenerate reference is refused too
        check_geometry(ref, gen)


def test_orientation_flip_refused(ref: Volume) -> None:
    aff = ref.affine.copy()
    aff[:3, 0] *= -1  # x index runs towards the right: RPS
    gen = Volume(ref.array[:, :, ::-1], ref.spacing, aff, {"path": GEN_PATH, "spacing_source": "file header"})
    d = compare_grids(gen, ref)
    assert not d.orientation_matches and "orientation RPS vs LPS" in d.description
    for policy in ("refuse", "strict"):
        with pytest.raises(GeometryError, match="orientation disagrees"):
            check_geometry(gen, ref, policy)
    assert "orientation RPS vs LPS" in check_geometry(gen, ref, "warn")[0]


def test_oblique_rotation_refused_only_with_known_geometry(ref: Volume) -> None:
    t = np.radians(10.0)
    rot = np.array([[np.cos(t), -np.sin(t), 0], [np.sin(t), np.cos(t), 0], [0, 0, 1]])
    aff = ref.affine.copy()
    aff[:3, :3] = rot @ aff[:3, :3]
    gen = Volume(ref.array, ref.spacing, aff, {"path": GEN_PATH, "spacing_source": "file header"})
    d = compare_grids(gen, ref)
    assert d.max_angle_deg == pytest.approx(10.0) and not d.orientation_matches
    with pytest.raises(GeometryError, match="rotated by 10.0 deg"):
        check_geometry(gen, ref)
    gen.meta["spacing_source"] = "adapter default: invented"  # no geometry in the file: rotation is not evidence
    assert compare_grids(gen, ref).orientation_matches
    assert len(check_geometry(gen, ref)) == 1


def test_unknown_geometry_resampled_by_extent_with_warning(ref: Volume) -> None:
    gen = gen_like(ref, np.zeros((30, 40, 40), np.float32), (10.0, 9.0, 9.0),
                   spacing_source="adapter default: peer FOV / shape")  # FOV far from the reference's
    assert geometry_source(gen) == "none"
    d = compare_grids(gen, ref)
    assert not d.geometry_known and "generated geometry not in the file (FOV not compared)" in d.description
    w = check_geometry(gen, ref)
    assert len(w) == 1 and "geometry not in the file" in w[0] and "by extent" in w[0] and "same FOV" not in w[0]
    with pytest.raises(GeometryError, match="--geometry refuse"):
        check_geometry(gen, ref, "strict")
    # the same volume with geometry the user stated is compared: its FOV differs, so it is refused
    gen.meta["spacing_source"] = "user"
    assert geometry_source(gen) == "user"
    with pytest.raises(GeometryError, match="field of view differs"):
        check_geometry(gen, ref)


def test_generatect_output_warns_not_refused(tmp_path: Path, ref: Volume) -> None:
    path = write_generatect_lowres(tmp_path, "case1", 0, generatect_tensor(ref.array[:, :, :40]), "prompt")
    gen = get_adapter("generatect-lowres").read(path)
    assert gen.meta["geometry_in_file"] is False and not gen.meta.get("warnings")
    w = check_geometry(gen, ref)
    assert len(w) == 1 and "columns 40 vs 48" in w[0] and "geometry not in the file" in w[0]


# ----------------------------------------------------------------------------------------------
# adapters: a header that contradicts the peer's writer is never mirrored silently


def _resave(src: Path, dst: Path, affine: np.ndarray) -> Path:
    img = nib.load(str(src))
    nib.save(nib.Nifti1Image(np.asarray(img.dataobj), affine), str(dst))
    return dst


def test_medsyn_identity_affine_warns_and_keeps_medsyn_layout(tmp_path: Path, small_volume: Volume) -> None:
    raw = write_medsyn_highres(tmp_path / "raw", "case_sample_0", small_volume.array)
    ad = get_adapter("medsyn")
    good = ad.read(raw)
    assert not good.meta.get("warnings") and geometry_source(good) == "none"
    ident = _resave(raw, tmp_path / "case_sample_0.nii.gz", np.eye(4))
    vol = ad.read(ident)
    ws = vol.meta["warnings"]
    assert len(ws) == 1 and "\n" not in ws[0] and ws[0].startswith("case_sample_0.nii.gz: identity affine")
    assert "--format nifti" in ws[0]
    np.testing.assert_array_equal(vol.array, good.array)  # not mirrored
    # trusting the identity header (what --format medsyn did before) mirrors x and y
    trusting = get_adapter("nifti").read(ident)
    np.testing.assert_array_equal(trusting.array, good.array[:, ::-1, ::-1])
    assert "identity affine (np.eye(4)): the header carries no real geometry" in trusting.meta["warnings"][0]
    assert "--read NAME.layout=SPL" in trusting.meta["warnings"][0] and "layout=header" in trusting.meta["warnings"][0]
    assert geometry_source(trusting) == "none" and geometry_source(vol) == "none"


def test_medsyn_identity_affine_mask_not_mirrored(tmp_path: Path, small_volume: Volume) -> None:
    raw = write_medsyn_highres(tmp_path / "raw", "case_sample_0", small_volume.array)
    ad = get_adapter("medsyn")
    lobe = ad.masks(raw)["lobe"]
    ident = _resave(lobe, tmp_path / "case_sample_0_lobe.nii.gz", np.eye(4))
    m = ad.read_mask(ident, name="lobe")
    np.testing.assert_array_equal(m.array.astype(bool), demo_masks(small_volume.array)["lobe"])
    assert len(m.meta["warnings"]) == 1 and "identity affine" in m.meta["warnings"][0]
    assert not ad.read_mask(lobe, name="lobe").meta.get("warnings")


def test_medsyn_real_affine_warns_geometry_from_header(tmp_path: Path, small_volume: Volume) -> None:
    raw = write_medsyn_highres(tmp_path / "raw", "case_sample_0", small_volume.array, with_masks=False)
    aff = np.diag([-0.8, -0.8, 2.0, 1.0])
    real = _resave(raw, tmp_path / "resaved.nii.gz", aff)
    vol = get_adapter("medsyn").read(real)
    assert vol.spacing == pytest.approx((2.0, 0.8, 0.8)) and geometry_source(vol) == "file"
    ws = vol.meta["warnings"]
    assert len(ws) == 1 and "real affine (LPS, voxel 0.8 x 0.8 x 2 mm x,y,z)" in ws[0]


def test_generic_nifti_identity_warns_unless_layout_given(tmp_path: Path, small_volume: Volume) -> None:
    p = tmp_path / "plain.nii.gz"
    nib.save(nib.Nifti1Image(small_volume.array.T.copy(), np.eye(4)), str(p))  # (x, y, z) array of an LPS volume
    v = get_adapter("nifti").read(p)
    assert v.meta["geometry_in_file"] is False and v.meta["geometry"] == "trivial" and len(v.meta["warnings"]) == 1
    assert v.meta["implied_layout"] == "RAS"
    v2 = get_adapter("nifti").read(p, spacing="2,1,1")  # a spacing does not say the orientation: still trivial
    assert v2.meta["geometry"] == "trivial" and len(v2.meta["warnings"]) == 1 and v2.spacing == (2.0, 1.0, 1.0)
    v3 = get_adapter("nifti").read(p, layout="LPS", spacing=small_volume.spacing)  # what the writer meant
    assert not v3.meta.get("warnings") and geometry_source(v3) == "user" and v3.meta["geometry"] == "user"
    np.testing.assert_array_equal(v3.array, small_volume.array)
    assert v3.spacing == pytest.approx(small_volume.spacing) and v3.orientation == "LPS"
    real = tmp_path / "real.nii.gz"
    nib.save(nib.Nifti1Image(small_volume.array.T.copy(), small_volume.affine), str(real))
    v4 = get_adapter("nifti").read(real)
    assert v4.meta["geometry_in_file"] is True and not v4.meta.get("warnings") and geometry_source(v4) == "file"


def test_generatect_refuses_simpleitk_default_affine(tmp_path: Path, small_volume: Volume) -> None:
    p = tmp_path / "case_0.nii.gz"
    nib.save(nib.Nifti1Image(small_volume.array.T.copy(), np.diag([-1.0, -1.0, 1.0, 1.0])), str(p))
    with pytest.raises(InvalidVolumeError, match="SimpleITK's default affine.*--format nifti"):
        get_adapter("generatect-lowres").read(p)


# ------------------------------------------------------------------------------ real headers of other orientations
@pytest.mark.parametrize("gen_code,ref_code,axes", [("RAS", "LPS", "R/L, A/P"), ("LAS", "RAS", "R/L"),
                                                     ("LPI", "LPS", "S/I")])
def test_real_headers_of_other_orientations_are_warned_not_refused(ref: Volume, gen_code, ref_code, axes) -> None:
    """The coordinator's policy: both headers real (``geometry == "header"``) and their orientations differ ->
    a warning under refuse / warn naming the folder's options, a refusal under strict only."""
    from trace_bench.geometry import orientation_warning

    gen = gen_like(ref, ref.array + 5.0, ref.spacing, geometry="header", source_orientation=gen_code)
    r = from_canonical(ref.array, ref.spacing, {"path": REF_PATH, "spacing_source": "file header",
                                                "geometry": "header", "source_orientation": ref_code})
    text = orientation_warning(gen, r, "my gen")
    assert text and f"header orientation {gen_code} differs from the reference's {ref_code} along {axes}" in text
    assert "--read 'my gen.layout=reference'" in text and "--read 'my gen.layout=header'" in text
    for policy in ("refuse", "warn"):
        (w,) = check_geometry(gen, r, policy, names=("my gen", "reference"))
        assert w == f"orientation: {text} [--geometry {policy}]"
    with pytest.raises(GeometryError, match=f"--geometry strict.*{gen_code} differs"):
        check_geometry(gen, r, "strict")
    same = gen_like(ref, ref.array, ref.spacing, geometry="header", source_orientation=ref_code)
    assert orientation_warning(same, r) is None and check_geometry(same, r) == []
    confirmed = gen_like(ref, ref.array, ref.spacing, geometry="user", source_orientation=gen_code)  # layout=header
    assert orientation_warning(confirmed, r) is None and check_geometry(confirmed, r) == []


def test_trivial_headers_stay_refused_unless_the_user_says_how_to_read(tmp_path: Path, small_volume: Volume) -> None:
    p = tmp_path / "eye.nii.gz"
    nib.save(nib.Nifti1Image(small_volume.array.copy(), np.eye(4)), str(p))
    ref = get_adapter("nifti").read(nib.save(nib.Nifti1Image(small_volume.array.T.copy(), small_volume.affine),
                                             str(tmp_path / "ref.nii.gz")) or tmp_path / "ref.nii.gz")
    vol = get_adapter("nifti").read(p)
    with pytest.raises(GeometryError, match=r"identity affine.*--read gen\.layout=SPL"):
        check_geometry(vol, ref, names=("gen", "reference"))
    assert check_geometry(get_adapter("nifti").read(p, layout="reference", reference=ref), ref) == []
