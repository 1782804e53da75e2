"""``auto`` detection, ``trace-bench convert`` / ``inspect --format`` / ``adapters``, and bad peer files."""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from typer.testing import CliRunner

from baselines import AmbiguousFormatError, detect_adapter, detect_folder_adapter, get_adapter
from trace_bench.cli import app
from trace_bench.errors import VolumeError
from trace_bench.volume import Volume

from helpers.peer_writers import (  # the peers' writers, re-implemented from their code
    generatect_tensor,
    write_generatect_lowres,
    write_generatect_sr,
    write_medsyn_highres,
    write_medsyn_lowres,
)



runner = CliRunner()


def _sr_file(root: Path, ref: np.ndarray, text_name: str = "case_0.txt") -> Path:
    x = ((np.clip(ref, -1000, 1000) / 1000.0 + 1) / 2).transpose(0, 2, 1)[:, None].astype(np.float32)
    return write_generatect_sr(root, text_name, x)


def _maisi_like(folder: Path, ref: Volume, stamp: str) -> Path:
    """Names and headers as MAISI writes them (the faithful MONAI writer is tested in test_adapters_peers.py)."""
    folder.mkdir(parents=True, exist_ok=True)
    img = folder / f"sample_{stamp}_image.nii.gz"
    nib.save(nib.Nifti1Image(np.clip(ref.array, -1000, 1000).T.astype(np.float32), ref.affine), str(img))
    nib.save(nib.Nifti1Image((ref.array < -400).T.astype(np.float32), ref.affine), str(folder / f"sample_{stamp}_label.nii.gz"))
    return img


@pytest.fixture()
def peer_folders(tmp_path: Path, small_volume: Volume) -> dict[str, Path]:
    ref = small_volume.array
    t = generatect_tensor(ref)
    write_generatect_lowres(tmp_path / "gct", "valid_1_a_1", 0, t, "prompt one")
    write_generatect_lowres(tmp_path / "gct", "valid_2_a_1", 1, t, "prompt two")
    _sr_file(tmp_path / "sr", ref, "valid_1_a_1_0.txt")
    _sr_file(tmp_path / "sr", ref, "train_5_a_1_0.txt")
    write_medsyn_highres(tmp_path / "medsyn", "normal_sample_0", ref)
    write_medsyn_highres(tmp_path / "medsyn", "effusion_sample_0", ref, with_masks=False)
    write_medsyn_lowres(tmp_path / "medsyn_low", "normal", 0, ref)
    _maisi_like(tmp_path / "maisi", small_volume, "20240101_120000_000001")
    _maisi_like(tmp_path / "maisi", small_volume, "20240101_120001_000002")
    return {"generatect-lowres": tmp_path / "gct" / "transformer_inference", "generatect-sr": tmp_path / "sr",
            "medsyn": tmp_path / "medsyn", "medsyn-lowres": tmp_path / "medsyn_low", "maisi": tmp_path / "maisi"}


def test_auto_proposes_each_peer_with_a_reason(peer_folders: dict[str, Path]) -> None:
    for expected, folder in peer_folders.items():
        ad, why = detect_folder_adapter(folder)
        assert ad.name == expected, (expected, why)
        assert expected in why and "score" in why
        for f in ad.list_files(folder):
            fad, fwhy = detect_adapter(f)
            assert fad.name == expected, (f, fwhy)


def test_auto_refuses_mixed_folder_with_candidates(tmp_path: Path, peer_folders: dict[str, Path]) -> None:
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    shutil.copy(next((peer_folders["generatect-sr"] / "images").iterdir()), mixed / "sample-['a'].nii.gz")
    shutil.copy(next(peer_folders["maisi"].glob("*_image.nii.gz")), mixed / "sample_1_image.nii.gz")
    with pytest.raises(AmbiguousFormatError) as e:
        detect_folder_adapter(mixed)
    msg = str(e.value)
    assert str(mixed) in msg and "generatect-sr" in msg and "maisi" in msg and "never guessed" in msg


def test_auto_refuses_ambiguous_file_listing_candidates(tmp_path: Path) -> None:
    # low-res shape (128, 128, 201) but the super-resolution stage's quirky name: both fit, so refuse
    p = tmp_path / "sample-['x'].nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((128, 128, 201), np.float32), np.eye(4)), str(p))
    with pytest.raises(AmbiguousFormatError) as e:
        detect_adapter(p)
    assert "generatect-lowres" in str(e.value) and "generatect-sr" in str(e.value) and "--format" in str(e.value)


def test_auto_generic_fallback_and_refusals(tmp_path: Path, demo_ct_path: Path) -> None:
    ad, why = detect_adapter(demo_ct_path)
    assert ad.name == "nifti" and "real affine" in why
    p = tmp_path / "plain.nii.gz"  # identity affine, no peer pattern: refused, not guessed
    nib.save(nib.Nifti1Image(np.zeros((8, 9, 10), np.int16), np.eye(4)), str(p))
    with pytest.raises(AmbiguousFormatError, match="--read NAME.layout=CODE"):
        detect_adapter(p)
    q = tmp_path / "vol.npy"
    np.save(q, np.zeros((4, 5, 6), np.float32))
    with pytest.raises(AmbiguousFormatError, match="format npy and spacing=z,y,x"):
        detect_adapter(q)


def test_auto_adapter_in_pairing(tmp_path: Path, peer_folders: dict[str, Path], small_volume: Volume) -> None:
    from trace_bench.cases import pair_cases
    from trace_bench.io import write_nifti

    ref = tmp_path / "ref"
    write_nifti(small_volume, ref / "valid_1_a_1.nii.gz")
    pairing = pair_cases(ref, {"gct": (peer_folders["generatect-lowres"], "auto"),
                               "medsyn": (peer_folders["medsyn"], "auto")})
    case = pairing.case("valid_1_a_1")
    assert case.generated["gct"].adapter == "auto" and case.prompt == "prompt one"
    assert {c.case_id for c in pairing.cases} == {"valid_1_a_1", "valid_2_a_1", "normal", "effusion"}
    auto = get_adapter("auto")
    files = auto.list_files(peer_folders["medsyn"])
    vol = auto.read(files[1])
    assert vol.meta["adapter"] == "medsyn" and vol.meta["adapter_reason"].startswith("auto: ")
    masks = auto.masks(files[1])
    assert auto.read_mask(masks["lobe"], name="lobe").shape == vol.shape


def test_convert_writes_nifti_other_tools_read(tmp_path: Path, peer_folders: dict[str, Path]) -> None:
    import SimpleITK as sitk

    src = next(peer_folders["generatect-lowres"].rglob("valid_1_a_1_0.nii.gz"))
    out = tmp_path / "out" / "valid_1_a_1.nii.gz"
    r = runner.invoke(app, ["convert", str(src), str(out)])
    assert r.exit_code == 0, r.output
    assert "generatect-lowres" in r.stdout and "hu/1000" in r.stdout
    vol = get_adapter("generatect-lowres").read(src)
    img = nib.load(str(out))
    assert "".join(nib.aff2axcodes(img.affine)) == "LPS"
    np.testing.assert_allclose(img.header.get_zooms(), vol.spacing[::-1], rtol=1e-6)
    np.testing.assert_allclose(np.asarray(img.dataobj).transpose(2, 1, 0), vol.array)
    s = sitk.ReadImage(str(out))  # ITK (LPS world): identity direction, spacing (x, y, z)
    np.testing.assert_allclose(s.GetDirection(), np.eye(3).ravel(), atol=1e-6)
    np.testing.assert_allclose(s.GetSpacing(), vol.spacing[::-1], rtol=1e-6)
    np.testing.assert_allclose(sitk.GetArrayFromImage(s), vol.array)
    # explicit format, spacing override, masks beside the output
    src2 = peer_folders["medsyn"] / "normal_sample_0.nii.gz"
    out2 = tmp_path / "out" / "normal.nii.gz"
    r = runner.invoke(app, ["convert", str(src2), str(out2), "--format", "medsyn", "--spacing", "2,1,1", "--masks", "--json"])
    assert r.exit_code == 0, r.output
    assert nib.load(str(out2)).header.get_zooms() == pytest.approx((1.0, 1.0, 2.0))
    for m in ("lobe", "airway", "vessel"):
        mimg = nib.load(str(tmp_path / "out" / f"normal_{m}.nii.gz"))
        np.testing.assert_allclose(mimg.affine, nib.load(str(out2)).affine)


def test_inspect_shows_adapter_and_convention(peer_folders: dict[str, Path]) -> None:
    src = next((peer_folders["generatect-sr"] / "images").iterdir())
    r = runner.invoke(app, ["inspect", str(src), "--format", "auto"])
    assert r.exit_code == 0, r.output
    assert "generatect-sr" in r.stdout and "unit" in r.stdout and "adapter default" in r.stdout
    r = runner.invoke(app, ["inspect", str(peer_folders["medsyn"] / "normal_sample_0.nii.gz"), "--format", "medsyn"])
    assert r.exit_code == 0 and "mask lobe" in r.stdout
    r = runner.invoke(app, ["adapters"])
    assert r.exit_code == 0
    for name in ("generatect-lowres", "generatect-sr", "medsyn", "medsyn-lowres", "maisi", "nifti", "auto"):
        assert f"\n{name}\n" in f"\n{r.stdout}"


def _one_line_error(args: list[str], path: Path) -> str:
    r = runner.invoke(app, args)
    assert r.exit_code != 0
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, r.stderr
    assert str(path) in lines[0] and "Traceback" not in r.output
    return lines[0]


def test_bad_peer_files_give_one_line_errors(tmp_path: Path, small_volume: Volume) -> None:
    corrupt = tmp_path / "broken_0.nii.gz"
    corrupt.write_bytes(gzip.compress(b"not a nifti header" * 10)[:40])
    _one_line_error(["convert", str(corrupt), str(tmp_path / "o.nii.gz"), "--format", "generatect-lowres"], corrupt)
    flat = tmp_path / "flat_0.nii.gz"  # 2-D: not a volume
    nib.save(nib.Nifti1Image(np.zeros((16, 16), np.float32), np.eye(4)), str(flat))
    _one_line_error(["inspect", str(flat), "--format", "generatect-lowres"], flat)
    real = tmp_path / "resaved_0.nii.gz"  # a real affine: not GenerateCT's raw output
    nib.save(nib.Nifti1Image(np.zeros((8, 8, 8), np.float32), np.diag([2.0, 2.0, 2.0, 1.0])), str(real))
    line = _one_line_error(["convert", str(real), str(tmp_path / "o.nii.gz"), "--format", "generatect-lowres"], real)
    assert "--format nifti" in line
    npy = tmp_path / "x_sample_0.npy"
    np.save(npy, np.zeros((4, 8, 8, 8), np.float32))
    line = _one_line_error(["convert", str(npy), str(tmp_path / "o.nii.gz"), "--format", "medsyn-lowres"], npy)
    assert "(1, 4, F, H, W)" in line
    nan = tmp_path / "nan_sample_0.npy"
    a = np.zeros((1, 4, 4, 4, 4), np.float32)
    a[0, 0, 1, 1, 1] = np.nan
    np.save(nan, a)
    _one_line_error(["convert", str(nan), str(tmp_path / "o.nii.gz"), "--format", "medsyn"], nan)
    missing = tmp_path / "nope.nii.gz"
    _one_line_error(["convert", str(missing), str(tmp_path / "o.nii.gz")], missing)
    with pytest.raises(VolumeError, match="broken_0"):
        get_adapter("generatect-lowres").read(corrupt)
