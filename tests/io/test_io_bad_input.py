"""Every kind of bad input gets a one-line error naming the file and the reason (never a traceback)."""

from __future__ import annotations

import gzip
import subprocess
import sys

import nibabel as nib
import numpy as np
import pytest

from trace_bench.errors import (ConventionError, CorruptFileError, InvalidVolumeError, UnknownFormatError,
                                VolumeError)
from trace_bench.io import read_volume


def _nifti(path, data, aff=None):
    nib.save(nib.Nifti1Image(data, np.eye(4) if aff is None else aff), path)
    return path


@pytest.fixture()
def bad_files(tmp_path, demo_ct_path):
    raw = demo_ct_path.read_bytes()
    files = {}
    files["truncated"] = tmp_path / "truncated.nii.gz"
    files["truncated"].write_bytes(raw[: len(raw) // 3])
    files["garbage"] = tmp_path / "garbage.nii.gz"
    files["garbage"].write_bytes(b"this is not a volume" * 10)
    files["empty"] = tmp_path / "empty.nii"
    files["empty"].write_bytes(b"")
    files["nan"] = _nifti(tmp_path / "nan.nii.gz", np.full((8, 8, 4), np.nan, np.float32))
    inf = np.zeros((8, 8, 4), np.float32) - 1000
    inf[0, 0, 0] = np.inf
    files["inf"] = _nifti(tmp_path / "inf.nii.gz", inf)
    files["2d"] = _nifti(tmp_path / "flat.nii.gz", np.zeros((16, 16), np.int16))
    files["4d"] = _nifti(tmp_path / "multi.nii.gz", np.zeros((8, 8, 4, 3), np.int16))
    files["zero"] = tmp_path / "zero.npy"
    np.save(files["zero"], np.zeros((0, 8, 8), np.float32))
    files["unknown"] = tmp_path / "volume.xyz"
    files["unknown"].write_bytes(b"\x00" * 100)
    files["ambiguous"] = _nifti(tmp_path / "ambiguous.nii.gz", np.random.default_rng(0).random((8, 8, 4)).astype(np.float32))
    # gzip of a valid header but truncated payload
    hdr_only = tmp_path / "hdr_only.nii.gz"
    full = gzip.decompress(raw)
    hdr_only.write_bytes(gzip.compress(full[:400]))
    files["hdr_only"] = hdr_only
    return files


@pytest.mark.parametrize("kind,exc,reason", [
    ("truncated", CorruptFileError, "truncated"),
    ("garbage", CorruptFileError, "cannot decode"),
    ("empty", CorruptFileError, "empty file"),
    ("nan", InvalidVolumeError, "NaN or Inf"),
    ("inf", InvalidVolumeError, "NaN or Inf"),
    ("2d", InvalidVolumeError, "3-D"),
    ("4d", InvalidVolumeError, "3-D"),
    ("unknown", UnknownFormatError, "unknown volume format"),
    ("ambiguous", ConventionError, "--convention"),
    ("hdr_only", VolumeError, ""),
])
def test_bad_input_is_refused_with_file_and_reason(bad_files, kind, exc, reason):
    path = bad_files[kind]
    with pytest.raises(exc) as info:
        read_volume(path, spacing=(1, 1, 1) if kind == "zero" else None)
    msg = str(info.value)
    assert str(path) in msg and reason in msg
    assert "\n" not in msg


def test_zero_sized_numpy(bad_files):
    with pytest.raises(InvalidVolumeError, match="empty volume"):
        read_volume(bad_files["zero"], spacing=(1, 1, 1))


def test_cli_inspect_one_line_errors_and_exit_code(bad_files, demo_ct_path):
    paths = [str(bad_files[k]) for k in ("truncated", "nan", "2d", "unknown")] + [str(demo_ct_path)]
    r = subprocess.run([sys.executable, "-m", "trace_bench", "inspect", *paths], capture_output=True, text=True)
    assert r.returncode == 1
    err = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(err) == 4, r.stderr
    assert all(line.startswith("trace-bench: error: ") for line in err)
    assert "Traceback" not in r.stderr
    for k in ("truncated", "nan", "2d", "unknown"):
        assert any(str(bad_files[k]) in line for line in err)
    # the good file is still inspected, with its true geometry and HU range
    assert "48 x 256 x 256" in r.stdout and "-1024.0 / 3071.0" in r.stdout and "LPS" in r.stdout


def test_cli_inspect_json(demo_ct_path):
    import json

    r = subprocess.run([sys.executable, "-m", "trace_bench", "inspect", "--json", str(demo_ct_path)],
                       capture_output=True, text=True, check=True)
    s = json.loads(r.stdout.splitlines()[0])
    assert s["shape_zyx"] == [48, 256, 256]
    assert s["spacing_zyx_mm"] == pytest.approx([5.0, 1.140625, 1.140625])
    assert s["orientation"] == "LPS" and s["convention"] == "hu"
    assert s["hu_min"] == -1024.0 and s["hu_max"] == 3071.0
