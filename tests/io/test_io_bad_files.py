"""Bad files of every reader kind (issue 27): one line naming the file and what is true, never a hang, never a
silently wrong volume. Compressed streams verified to the end, NRRD / MetaImage data files owned by their
header (inside its folder, regular files, hashed with it), hidden files and invalid case ids listed, outputs
that would overwrite an input refused. FIFO tests carry a timeout: opening a FIFO would block forever."""

from __future__ import annotations

import gzip
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from trace_bench.cases import case_file_stem, case_id_problem, pair_cases
from trace_bench.errors import ConfigError, ConventionError, CorruptFileError, VolumeError
from trace_bench.inputs import InputError, input_hash
from trace_bench.io import read_volume, write_nifti


def _cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "trace_bench", *args], capture_output=True, text=True, timeout=120,
                          env={**os.environ, **(env or {})})


def _one_error(r: subprocess.CompletedProcess) -> str:
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("trace-bench: error: ") and "Traceback" not in r.stderr, r.stderr
    return lines[0]


@pytest.fixture()
def ct(tmp_path: Path, small_volume) -> Path:
    return write_nifti(small_volume, tmp_path / "ct.nii.gz")


# ------------------------------------------------------------------------------ gzip streams
@pytest.mark.parametrize("damage,reason", [
    ("flip", "corrupt gzip stream"),  # a flipped bit in the deflate data or its CRC
    ("crc", "checksum mismatch"),
    ("length", "length field mismatch"),
    ("trailing", "trailing data after the end of the gzip stream"),
    ("zeros", "trailing data after the end of the gzip stream"),
])
def test_nifti_gzip_verified_to_the_end(tmp_path, ct, small_volume, damage, reason):
    raw = bytearray(ct.read_bytes())
    if damage == "flip":
        raw[len(raw) // 2] ^= 0x10
    elif damage == "crc":
        raw[-8] ^= 0x01
    elif damage == "length":
        raw[-1] ^= 0x01
    elif damage == "trailing":
        raw += b"garbage"
    else:
        raw += b"\x00" * 16
    bad = tmp_path / f"{damage}.nii.gz"
    bad.write_bytes(bytes(raw))
    with pytest.raises(CorruptFileError) as e:
        read_volume(bad)
    msg = str(e.value)
    assert msg.startswith(f"{bad}: ") and "\n" not in msg and ("corrupt gzip stream" in msg or reason in msg), msg
    assert "convention" not in msg  # corrupt data is never reported as an intensity problem
    np.testing.assert_array_equal(read_volume(ct).array, small_volume.array)


def test_concatenated_gzip_members_are_one_valid_stream(tmp_path, ct, small_volume):
    data = gzip.decompress(ct.read_bytes())
    two = tmp_path / "two.nii.gz"
    two.write_bytes(gzip.compress(data[:1000]) + gzip.compress(data[1000:]))  # RFC 1952 allows several members
    np.testing.assert_array_equal(read_volume(two).array, small_volume.array)


# ------------------------------------------------------------------------------ NRRD / MetaImage data files
def _detached(folder: Path, small_volume, suffix: str, compress: bool = False) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    img = sitk.GetImageFromArray(small_volume.array.astype(np.int16))
    img.SetSpacing(tuple(float(s) for s in small_volume.spacing[::-1]))
    img.SetOrigin((10.0, 20.0, 30.0))
    path = folder / f"case{suffix}"
    sitk.WriteImage(img, str(path), compress)
    return path


def _data_name(header: Path) -> str:
    for line in header.read_text("latin-1").splitlines():
        if line.lower().startswith(("data file:", "elementdatafile")):
            return line.split(":" if ":" in line else "=", 1)[1].strip()
    raise AssertionError(header)


def _repoint(header: Path, new: str) -> None:
    text = header.read_text("latin-1")
    header.write_text(text.replace(_data_name(header), new), "latin-1")


@pytest.mark.timeout(30)
@pytest.mark.parametrize("suffix", [".nhdr", ".mhd"])
def test_detached_data_file_must_be_a_regular_file_beside_its_header(tmp_path, small_volume, suffix, monkeypatch):
    h = _detached(tmp_path / "gen", small_volume, suffix)
    np.testing.assert_array_equal(read_volume(h).array, small_volume.array)
    secret = tmp_path / "secret.raw"
    shutil.copyfile(tmp_path / "gen" / _data_name(h), secret)
    # a FIFO as the data file: refused by its type, never opened (ITK would block forever)
    os.mkfifo(tmp_path / "gen" / "pipe.raw")
    _repoint(h, "pipe.raw")
    with pytest.raises(VolumeError, match=r"data file 'pipe.raw' named by the header: not a regular file \(FIFO\)"):
        read_volume(h)
    with pytest.raises(InputError, match="FIFO"):
        input_hash(h)
    r = _cli("inspect", str(h))
    assert r.returncode == 1 and "FIFO" in _one_error(r)
    # outside the header's folder: refused, unless the user allowed that folder
    _repoint(h, "../secret.raw")
    with pytest.raises(VolumeError, match=r"resolves to .*secret.raw, outside the header's folder.*DATA_DIRS"):
        read_volume(h)
    r = _cli("convert", str(h), str(tmp_path / "out.nii.gz"), "--format", "nifti", "--convention", "hu")
    assert r.returncode == 2 and "outside the header's folder" in _one_error(r)
    assert not (tmp_path / "out.nii.gz").exists()
    monkeypatch.setenv("TRACE_BENCH_DATA_DIRS", str(tmp_path))  # the user allows that folder
    np.testing.assert_array_equal(read_volume(h).array, small_volume.array)
    monkeypatch.delenv("TRACE_BENCH_DATA_DIRS")
    # a missing data file: said as such, not as an ITK source line
    _repoint(h, "nothere.raw")
    with pytest.raises(VolumeError) as e:
        read_volume(h)
    assert "data file 'nothere.raw' named by the header: does not exist" in str(e.value)
    assert ".cxx" not in str(e.value) and "\n" not in str(e.value)


@pytest.mark.parametrize("suffix", [".nhdr", ".mhd"])
def test_detached_data_file_is_hashed_with_its_header(tmp_path, small_volume, suffix):
    h = _detached(tmp_path / "gen", small_volume, suffix)
    before = input_hash(h)
    data = tmp_path / "gen" / _data_name(h)
    raw = bytearray(data.read_bytes())
    raw[100] ^= 0xFF
    data.write_bytes(bytes(raw))  # the header is unchanged
    assert input_hash(h) != before


@pytest.mark.parametrize("suffix", [".nhdr", ".mha"])
def test_compressed_nrrd_and_metaimage_verified(tmp_path, small_volume, suffix):
    h = _detached(tmp_path / "gen", small_volume, suffix, compress=True)
    np.testing.assert_array_equal(read_volume(h).array, small_volume.array)
    target = tmp_path / "gen" / _data_name(h) if suffix == ".nhdr" else h
    raw = bytearray(target.read_bytes())
    raw[-3] ^= 0x04  # inside the stream's checksum: ITK's MetaImage reader would log and go on
    target.write_bytes(bytes(raw))
    with pytest.raises(CorruptFileError) as e:
        read_volume(h)
    assert "stream" in str(e.value) and str(h) in str(e.value) and "\n" not in str(e.value)


# ------------------------------------------------------------------------------ intensity
def _dicom_series(folder: Path, small_volume, tags: list[tuple[str, str]]) -> Path:
    folder.mkdir(parents=True)
    img = sitk.GetImageFromArray(small_volume.array.astype(np.int16))  # GDCM stores (HU - intercept) / slope
    img.SetSpacing(tuple(float(s) for s in small_volume.spacing[::-1]))
    w = sitk.ImageFileWriter()
    w.KeepOriginalImageUIDOn()
    for i in range(img.GetDepth()):
        sl = img[:, :, i]
        for k, v in [("0008|0060", "CT"), ("0020|000d", "1.2.826.0.1.3680043.2.1125.1"),
                     ("0020|000e", "1.2.826.0.1.3680043.2.1125.1.2"), ("0020|0037", "1\\0\\0\\0\\1\\0"), *tags]:
            sl.SetMetaData(k, v)
        sl.SetMetaData("0020|0032", f"0\\0\\{i * small_volume.spacing[0]:.6f}")
        sl.SetMetaData("0020|0013", str(i))
        sl.SetMetaData("0008|0018", f"1.2.826.0.1.3680043.2.1125.1.3.{i}")
        w.SetFileName(str(folder / f"IM{i:04d}.dcm"))
        w.Execute(sl)
    return folder


def test_dicom_slope_without_intercept_refused_then_read_with_warning(tmp_path, small_volume):
    import pydicom

    good = _dicom_series(tmp_path / "good", small_volume, [("0028|1053", "2"), ("0028|1052", "-1024")])
    np.testing.assert_allclose(read_volume(good).array, small_volume.array, atol=1)
    bad = tmp_path / "slope_only"
    shutil.copytree(good, bad)
    for f in bad.iterdir():
        ds = pydicom.dcmread(f)
        del ds[0x00281052]  # RescaleIntercept
        ds.save_as(f)
    with pytest.raises(ConventionError) as e:
        read_volume(bad)
    msg = str(e.value)
    assert "RescaleSlope but no RescaleIntercept" in msg and "--read NAME.convention=hu+1024" in msg and "\n" not in msg
    vol = read_volume(bad, convention="hu+1024")  # the user said how: read, with a named warning
    np.testing.assert_allclose(vol.array, small_volume.array, atol=1)
    assert any("RescaleSlope / RescaleIntercept" in w for w in vol.meta["warnings"])


# ------------------------------------------------------------------------------ folders and case ids
def test_hidden_volume_files_are_listed_not_dropped(tmp_path, small_volume):
    for d in ("ref", "m"):
        write_nifti(small_volume, tmp_path / d / "a.nii.gz")
    write_nifti(small_volume, tmp_path / "m" / ".lung3.nii.gz")
    (tmp_path / "m" / ".DS_Store").write_bytes(b"\x00")
    p = pair_cases(tmp_path / "ref", {"m": (tmp_path / "m", "nifti")})
    hidden = [pr for pr in p.problems if pr.path.endswith(".lung3.nii.gz")]
    assert len(hidden) == 1 and "hidden file" in hidden[0].reason and "rename" in hidden[0].reason
    assert not any(".DS_Store" in pr.path for pr in p.problems)
    assert [c.case_id for c in p.cases] == ["a"]


@pytest.mark.parametrize("cid,why", [("", "empty"), ("..", "path component"), (".", "path component"),
                                     ("a/b", "path separator"), ("a\\b", "path separator"),
                                     ("a\nb", "control character"), ("a\x00b", "control character"),
                                     ("x\u202ey", "bidirectional override")])
def test_case_id_rules(cid, why):
    assert why in case_id_problem(cid)
    with pytest.raises(ConfigError):
        case_file_stem(cid)


def test_invalid_case_ids_from_file_names_are_problems(tmp_path, small_volume):
    for d in ("ref", "m"):
        write_nifti(small_volume, tmp_path / d / "a.nii.gz")
    write_nifti(small_volume, tmp_path / "m" / "sample-['..'].nii.gz")  # GenerateCT's wrapper around ".."
    write_nifti(small_volume, tmp_path / "m" / "two\nlines.nii.gz")
    p = pair_cases(tmp_path / "ref", {"m": (tmp_path / "m", "nifti")})
    assert [c.case_id for c in p.cases] == ["a"] and "m" in p.case("a").generated
    bad = {pr.path: pr.reason for pr in p.problems if "case ids are data" in pr.reason}
    assert len(bad) == 2 and all("\n" not in r for r in bad.values())


def test_case_file_stem_shortens_long_ids_with_a_hash():
    assert case_file_stem("lung1") == "lung1"
    long_cjk = "肺" * 80  # 240 UTF-8 bytes: "File name too long" with record suffixes
    stem = case_file_stem(long_cjk)
    assert len(stem.encode()) <= 100 and stem.startswith("肺") and "~" in stem
    assert case_file_stem(long_cjk + "x") != stem  # distinct ids, distinct stems
    assert case_file_stem("a" * 245) != case_file_stem("a" * 246) and len(case_file_stem("a" * 245)) < 100
    assert not case_file_stem("...x").startswith(".")


# ------------------------------------------------------------------------------ commands
def test_convert_and_segment_never_overwrite_their_input(tmp_path, ct):
    before = ct.read_bytes()
    for cmd in (["convert", str(ct), str(ct)], ["segment", str(ct), str(ct)]):
        r = _cli(*cmd)
        assert r.returncode == 2 and "refusing to overwrite an input" in _one_error(r)
    assert ct.read_bytes() == before
    out = tmp_path / "out.nii.gz"
    out.write_bytes(b"user's file")
    for cmd in (["convert", str(ct), str(out)], ["segment", str(ct), str(out)]):
        r = _cli(*cmd)
        assert r.returncode == 2 and "already exists; pass --force" in _one_error(r)
    assert out.read_bytes() == b"user's file"
    r = _cli("convert", str(ct), str(out), "--force")
    assert r.returncode == 0, r.stderr
    assert out.read_bytes() != b"user's file"


@pytest.mark.timeout(60)
def test_fifo_given_to_commands_is_named_as_a_fifo(tmp_path):
    fifo = tmp_path / "pipe.nii.gz"
    os.mkfifo(fifo)
    for cmd in (["inspect", str(fifo)], ["convert", str(fifo), str(tmp_path / "o.nii.gz")],
                ["segment", str(fifo), str(tmp_path / "s.nii.gz")]):
        r = _cli(*cmd)
        line = _one_error(r)
        assert "not a regular file (FIFO)" in line and "Empty file" not in line and "empty file" not in line


def test_bad_memory_budget_variable_is_one_line(ct):
    r = _cli("inspect", str(ct), env={"TRACE_BENCH_MAX_VOLUME_BYTES": "garbage"})
    line = _one_error(r)
    assert r.returncode == 2 and "TRACE_BENCH_MAX_VOLUME_BYTES='garbage'" in line and "internal error" not in line


def test_segment_on_a_missing_gpu_is_one_line(tmp_path, ct):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is visible here")
    r = _cli("segment", str(ct), str(tmp_path / "s.nii.gz"), "--device", "cuda")
    line = _one_error(r)
    assert r.returncode == 2 and "no CUDA GPU is visible" in line and "internal error" not in line


def test_npz_with_a_flipped_bit_is_corrupt_not_an_internal_error(tmp_path, small_volume):
    p = tmp_path / "v.npz"
    np.savez_compressed(p, image=small_volume.array)
    raw = bytearray(p.read_bytes())
    raw[len(raw) // 2] ^= 0x20
    p.write_bytes(bytes(raw))
    with pytest.raises(CorruptFileError) as e:
        read_volume(p, spacing=(1, 1, 1))
    assert str(e.value).startswith(f"{p}: ") and "\n" not in str(e.value)
