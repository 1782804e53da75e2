"""One bad input entry never aborts or hangs a run: it becomes a one-line Problem / typed error.

Covers :mod:`trace_bench.inputs` (check_input, input_hash), :func:`trace_bench.cases.pair_cases`
with bad folder entries and sidecar prompts, prompt files, and the header-size and DICOM-spacing
guards of :mod:`trace_bench.io`. FIFO tests carry a timeout: opening a FIFO would block forever.
"""

from __future__ import annotations

import errno
import gzip
import hashlib
import os
import socket
import stat
import time
import tracemalloc
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk

import trace_bench.inputs as inputs_mod
from trace_bench.cases import load_prompts, pair_cases
from trace_bench.errors import ConfigError, CorruptFileError, InvalidVolumeError, VolumeError
from trace_bench.inputs import InputError, check_input, input_hash
from trace_bench.io import read_volume, write_nifti
from trace_bench.weights import file_sha256

BAD_KINDS = ["dangling", "loop", "fifo", "socket", "chardev", "unreadable"]
REASONS = {"dangling": "dangling symlink", "loop": "symlink loop", "fifo": "not a regular file (FIFO)",
           "socket": "not a regular file (socket)", "chardev": "not a regular file (character device)",
           "unreadable": "permission denied"}


def _make_bad(path: Path, kind: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Create a bad entry of ``kind`` at ``path`` (unreadability is simulated: tests run as root)."""
    if kind == "dangling":
        path.symlink_to(path.parent / "does-not-exist.nii.gz")
    elif kind == "loop":
        path.symlink_to(path.name)  # points at itself
    elif kind == "fifo":
        os.mkfifo(path)
    elif kind == "socket":
        monkeypatch.chdir(path.parent)  # AF_UNIX paths are limited to ~108 bytes: bind a relative name
        s = socket.socket(socket.AF_UNIX)
        s.bind(path.name)
        s.close()
    elif kind == "chardev":
        try:
            os.mknod(path, 0o600 | stat.S_IFCHR, os.makedev(1, 3))  # like /dev/null
        except PermissionError:
            pytest.skip("creating a device node needs privileges")
    elif kind == "unreadable":
        path.write_bytes(b"\x00" * 64)
        path.chmod(0)
        _deny(monkeypatch, path)


def _deny(monkeypatch: pytest.MonkeyPatch, target: Path) -> None:
    """Make ``os.open(target)`` fail with EACCES, as it does for a non-root user on a chmod 000 file."""
    real_open = os.open

    def fake_open(p, flags, *args, **kwargs):
        if Path(os.fsdecode(p)).resolve() == target.resolve():
            raise PermissionError(errno.EACCES, "Permission denied", str(p))
        return real_open(p, flags, *args, **kwargs)

    monkeypatch.setattr(inputs_mod.os, "open", fake_open)


def _legacy_hash(p: Path) -> str:
    """The hash trace-bench's runner always computed (cache keys must not change)."""
    if p.is_dir():
        h = hashlib.sha256()
        for f in sorted(q for q in p.rglob("*") if q.is_file()):
            h.update(f"{f.relative_to(p).as_posix()}\0{file_sha256(f)}\n".encode())
        return h.hexdigest()
    return file_sha256(p)


@pytest.fixture()
def folders(tmp_path, small_volume):
    """ref/ and m/ each holding real small volumes a and b."""
    vol = small_volume
    for d in ("ref", "m"):
        for cid in ("a", "b"):
            write_nifti(vol, tmp_path / d / f"{cid}.nii.gz")
    return tmp_path / "ref", tmp_path / "m"


# ------------------------------------------------------------------------------ folder entries
@pytest.mark.timeout(20)
@pytest.mark.parametrize("kind", BAD_KINDS)
@pytest.mark.parametrize("adapter", ["nifti", "auto"])
def test_bad_entry_becomes_a_problem(folders, kind, adapter, monkeypatch):
    ref, m = folders
    _make_bad(m / "c.nii.gz", kind, monkeypatch)
    p = pair_cases(ref, {"m": (m, adapter)})
    assert [c.case_id for c in p.cases] == ["a", "b"]
    assert all(c.reference is not None and "m" in c.generated for c in p.cases)
    bad = [pr for pr in p.problems if pr.path.endswith("c.nii.gz")]
    assert len(bad) == 1, p.problems
    assert bad[0].method == "m" and bad[0].case_id == "c" and REASONS[kind] in bad[0].reason
    assert "\n" not in bad[0].reason


@pytest.mark.timeout(20)
@pytest.mark.parametrize("kind", BAD_KINDS)
def test_input_hash_raises_typed_error(tmp_path, kind, monkeypatch):
    path = tmp_path / "x.nii.gz"
    _make_bad(path, kind, monkeypatch)
    for fn in (check_input, input_hash):
        with pytest.raises(InputError) as info:
            fn(path)
        assert isinstance(info.value, VolumeError)
        msg = str(info.value)
        assert msg == f"{path}: {info.value.reason}" and REASONS[kind] in msg and "\n" not in msg


@pytest.mark.timeout(20)
def test_fifo_inside_a_series_folder_is_refused(tmp_path, folders):
    ref, _ = folders
    series = tmp_path / "series"
    series.mkdir()
    (series / "IM1.dcm").write_bytes(b"x")
    os.mkfifo(series / "IM2.dcm")
    with pytest.raises(InputError, match="IM2.dcm: not a regular file"):
        input_hash(series)
    # as an entry of a dicom method folder: a problem, the other cases still pair
    case = ref / "c"
    case.mkdir()
    os.mkfifo(case / "IM0.dcm")
    p = pair_cases(ref, {})
    assert {c.case_id for c in p.cases} == {"a", "b"}
    assert any("IM0.dcm" in pr.path and "FIFO" in pr.reason for pr in p.problems), p.problems


def test_real_chmod_000_when_not_root(tmp_path):
    path = tmp_path / "x.nii.gz"
    path.write_bytes(b"\x00" * 64)
    path.chmod(0)
    try:
        if os.access(path, os.R_OK):
            pytest.skip("running as root: chmod 000 does not stop reads (simulated in the other tests)")
        with pytest.raises(InputError, match="permission denied"):
            input_hash(path)
    finally:
        path.chmod(0o600)


def test_input_hash_matches_the_legacy_hash(tmp_path, folders):
    ref, _ = folders
    assert input_hash(ref / "a.nii.gz") == _legacy_hash(ref / "a.nii.gz") == file_sha256(ref / "a.nii.gz")
    series = tmp_path / "series"
    (series / "sub").mkdir(parents=True)
    for i in range(3):
        (series / f"IM{i}.dcm").write_bytes(bytes([i]) * 10)
    (series / "sub" / "x.png").write_bytes(b"png")
    os.symlink(series / "IM0.dcm", series / "link.dcm")  # symlinks to files count, as before
    assert input_hash(series) == _legacy_hash(series)


# ------------------------------------------------------------------------------ prompts
def test_undecodable_sidecar_prompt_is_a_problem(folders):
    ref, m = folders
    (ref / "a.txt").write_bytes(b"caf\xe9 in latin-1")
    (ref / "b.txt").write_bytes("\ufeffcentrilobular emphysema".encode("utf-8"))  # BOM accepted
    p = pair_cases(ref, {"m": (m, "nifti")})
    assert p.case("a").reference is not None and p.case("a").prompt is None
    assert p.case("b").prompt == "centrilobular emphysema"
    bad = [pr for pr in p.problems if pr.path.endswith("a.txt")]
    assert len(bad) == 1 and bad[0].case_id == "a" and "not UTF-8" in bad[0].reason and "0xe9" in bad[0].reason


def test_prompt_file_with_bom_is_accepted(tmp_path):
    f = tmp_path / "p.csv"
    f.write_bytes("case_id,prompt\r\na,\"left lobe, nodule\"\r\nb,\"two\nlines\"\r\n".encode("utf-8-sig"))
    assert load_prompts(f) == {"a": "left lobe, nodule", "b": "two\nlines"}
    j = tmp_path / "p.json"
    j.write_bytes('{"a": "x"}'.encode("utf-8-sig"))
    assert load_prompts(j) == {"a": "x"}


@pytest.mark.parametrize("name,content,where", [
    ("quote.csv", b'case_id,prompt\na,"unterminated\nb,fine\nc,ok\n', "line 2"),
    ("stray.csv", b'case_id,prompt\na,ok\nb,"said "hi"\n', "line 3"),
    ("ragged.csv", b"case_id,prompt\na,ok\nb,too,many\n", "line 3"),
    ("short.csv", b"case_id,prompt\na\n", "line 2"),
    ("dup.csv", b"case_id,prompt\na,x\na,y\n", "line 3"),
    ("header.csv", b"id,text\n1,2\n", "case_id,prompt"),
    ("bad.json", b'{"a": "x",\n "b": }', "line 2"),
    ("rows.json", b'[{"case_id": "a"}]', "row 0"),
    ("latin1.csv", b"case_id,prompt\na,caf\xe9\n", "line 2: not UTF-8"),
])
def test_bad_prompt_file_is_a_one_line_config_error(tmp_path, name, content, where):
    f = tmp_path / name
    f.write_bytes(content)
    with pytest.raises(ConfigError) as info:
        load_prompts(f)
    msg = str(info.value)
    assert str(f) in msg and where in msg and "\n" not in msg, msg


# ------------------------------------------------------------------------------ header-size guard
def _peak_alloc(fn) -> int:
    tracemalloc.start()
    try:
        fn()
    finally:
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    return peak


def test_huge_header_nifti_refused_without_allocating(tmp_path):
    hdr = nib.Nifti1Header()
    hdr.set_data_shape((700, 700, 700))
    hdr.set_data_dtype(np.int16)
    raw = hdr.binaryblock + b"\x00" * 4 + b"\x00" * 16  # 352-byte offset + a few voxels
    f = tmp_path / "huge.nii.gz"
    f.write_bytes(gzip.compress(raw))
    assert f.stat().st_size < 200

    def read():
        with pytest.raises(CorruptFileError, match="truncated or corrupt.*700x700x700"):
            read_volume(f)

    t0 = time.perf_counter()
    assert _peak_alloc(read) < 50 * 2 ** 20
    assert time.perf_counter() - t0 < 5
    plain = tmp_path / "huge.nii"
    plain.write_bytes(raw)
    with pytest.raises(CorruptFileError, match="truncated: header declares 700x700x700"):
        read_volume(plain)


def test_huge_header_npy_refused_without_allocating(tmp_path):
    f = tmp_path / "huge.npy"
    with open(f, "wb") as fh:
        np.lib.format.write_array_header_1_0(fh, {"descr": "<i2", "fortran_order": False, "shape": (700, 700, 700)})
        fh.write(b"\x00" * 16)

    def read():
        with pytest.raises(CorruptFileError, match="truncated"):
            read_volume(f, spacing=(1, 1, 1))

    assert _peak_alloc(read) < 50 * 2 ** 20


def test_memory_budget(tmp_path, small_volume, monkeypatch):
    good = write_nifti(small_volume, tmp_path / "v.nii.gz")
    mha = tmp_path / "huge.mha"
    mha.write_bytes(b"ObjectType = Image\nNDims = 3\nDimSize = 700 700 700\nElementType = MET_SHORT\n"
                    b"ElementDataFile = LOCAL\n" + b"\x00" * 16)
    monkeypatch.setenv("TRACE_BENCH_MAX_VOLUME_BYTES", str(100 * 2 ** 20))
    read_volume(good)  # under budget
    with pytest.raises(InvalidVolumeError, match="memory budget") as info:
        read_volume(mha)
    assert str(mha) in str(info.value)
    monkeypatch.setenv("TRACE_BENCH_MAX_VOLUME_BYTES", "1000")
    with pytest.raises(InvalidVolumeError, match="over the memory budget.*TRACE_BENCH_MAX_VOLUME_BYTES"):
        read_volume(good)


# ------------------------------------------------------------------------------ DICOM spacing
def _write_series(vol, folder: Path, skip: int | None = None) -> None:
    folder.mkdir()
    img = sitk.GetImageFromArray(vol.array.astype(np.int16))
    img.SetSpacing(tuple(reversed(vol.spacing)))
    lps = np.diag([-1.0, -1.0, 1.0]) @ vol.affine[:3, :3]
    img.SetDirection(tuple((lps / np.array(list(reversed(vol.spacing)))).ravel()))
    img.SetOrigin(tuple(np.diag([-1.0, -1.0, 1.0]) @ vol.affine[:3, 3]))
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    common = [("0008|0060", "CT"), ("0020|000d", "1.2.826.0.1.3680043.2.1125.1"),
              ("0020|000e", "1.2.826.0.1.3680043.2.1125.1.2"),
              ("0020|0037", "\\".join(f"{d:.6f}" for d in img.GetDirection()[:6]))]
    for i in range(img.GetDepth()):
        if i == skip:
            continue
        sl = img[:, :, i]
        for k, v in common:
            sl.SetMetaData(k, v)
        sl.SetMetaData("0020|0032", "\\".join(f"{p:.6f}" for p in img.TransformIndexToPhysicalPoint((0, 0, i))))
        sl.SetMetaData("0020|0013", str(i))
        sl.SetMetaData("0008|0018", f"1.2.826.0.1.3680043.2.1125.1.3.{i}")
        writer.SetFileName(str(folder / f"IM{i:04d}.dcm"))
        writer.Execute(sl)


def test_dicom_series_with_missing_slice_is_refused(tmp_path, small_volume):
    dz = small_volume.spacing[0]
    _write_series(small_volume, tmp_path / "full")
    assert read_volume(tmp_path / "full").shape == small_volume.array.shape
    _write_series(small_volume, tmp_path / "gap", skip=5)
    with pytest.raises(InvalidVolumeError) as info:
        read_volume(tmp_path / "gap")
    msg = str(info.value)
    assert msg.startswith(str(tmp_path / "gap") + ": non-uniform slice spacing") and "\n" not in msg
    assert f"{2 * dz:.3f} mm between IM0004.dcm" in msg and "IM0006.dcm" in msg
    assert f"expected {dz:.3f} mm" in msg and "1 slice(s) missing" in msg
