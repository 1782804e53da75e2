"""``trace-bench doctor``: folders made the way generators write volumes (from the shipped CT crop) get the
reading options that read them equal to the reference, as a `run` command and TOML (trace_bench.doctor)."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from baselines.base import read_with_options
from trace_bench.doctor import diagnose, run_command, run_toml
from trace_bench.io import write_nifti
from trace_bench.read_options import ReadOptions

from helpers.paths import ROOT


@pytest.fixture()
def corpus(tmp_path: Path, small_volume) -> dict[str, Path]:
    """reference/ (real geometry) and one folder per generator habit, two cases each (a, b)."""
    ref = tmp_path / "reference"
    folders = {k: tmp_path / k for k in ("plain", "unit", "eye_zyx", "npy", "offset")}
    for f in folders.values():
        f.mkdir()
    for cid, shift in (("a", 0.0), ("b", 10.0)):
        vol = small_volume.with_array(small_volume.array + shift)
        write_nifti(vol, ref / f"{cid}.nii.gz")
        write_nifti(vol, folders["plain"] / f"{cid}.nii.gz")
        unit = ((np.clip(vol.array, -1000, 1000) + 1000) / 2000).astype(np.float32)
        nib.save(nib.Nifti1Image(unit.T.copy(), vol.affine), str(folders["unit"] / f"{cid}.nii.gz"))
        nib.save(nib.Nifti1Image(vol.array.astype(np.int16), np.eye(4)), str(folders["eye_zyx"] / f"{cid}.nii.gz"))
        np.save(folders["npy"] / f"{cid}.npy", vol.array)
        off = (vol.array + 1024).astype(np.int16)
        off[:, :4] = -2000
        nib.save(nib.Nifti1Image(off.T.copy(), vol.affine), str(folders["offset"] / f"{cid}.nii.gz"))
    return {"reference": ref, **folders}


def test_doctor_suggests_the_options_that_read_each_folder_right(corpus):
    ref_dir = corpus["reference"]
    reports = {r.name: r for r in diagnose([(k, corpus[k]) for k in ("plain", "unit", "eye_zyx", "npy", "offset")],
                                           reference=ref_dir)}
    assert reports["plain"].options == {} and not any(f.warnings for f in reports["plain"].files)
    assert reports["unit"].options == {"convention": "unit"}
    assert reports["eye_zyx"].options == {"layout": "reference"}
    assert all(f.geometry == "trivial" and f.warnings for f in reports["eye_zyx"].files)
    assert reports["npy"].options == {"format": "npy", "layout": "reference"}
    assert reports["offset"].options == {"convention": "hu+1024"}
    for r in reports.values():
        assert r.matched == ["a", "b"] and not r.only_here and not r.only_reference
    # the suggested options read every folder equal to the reference (the offset folder outside its padding)
    from baselines import get_adapter

    for name, r in reports.items():
        opts = ReadOptions.parse({"format": r.adapter, **r.options})
        for cid in ("a", "b"):
            reference = get_adapter("nifti").read(ref_dir / f"{cid}.nii.gz")
            path = next(p for p in corpus[name].iterdir() if p.name.startswith(cid))
            vol = read_with_options(path, opts, reference=reference)
            want = np.clip(reference.array, -1000, 1000) if name == "unit" else reference.array
            got, want = (vol.array[:, 4:], want[:, 4:]) if name == "offset" else (vol.array, want)
            np.testing.assert_allclose(got, want, atol=0.05 if name == "unit" else 0)
            np.testing.assert_allclose(vol.affine[:3, :3], reference.affine[:3, :3], atol=1e-5)
    cmd = run_command(list(reports.values()), str(ref_dir))
    assert "--read unit.convention=unit" in cmd and "--read eye_zyx.layout=reference" in cmd
    assert f"--method npy={corpus['npy']}:npy" in cmd and "--read offset.convention=hu+1024" in cmd
    toml = tomllib.loads(run_toml(list(reports.values()), str(ref_dir)))
    assert toml["reference"] == str(ref_dir)
    assert toml["methods"]["npy"] == {"path": str(corpus["npy"]), "format": "npy", "layout": "reference"}


def test_doctor_without_reference_says_what_cannot_be_told(corpus):
    (r,) = diagnose([(None, corpus["eye_zyx"])])
    assert r.name == "eye_zyx" and r.options["layout"] == "CODE" and r.reference is None
    assert any("no reference shape to match" in n for n in r.notes)


def test_doctor_cli_prints_tables_and_the_command(corpus):
    out = subprocess.run([sys.executable, "-m", "trace_bench", "doctor", f"gen={corpus['unit']}",
                          str(corpus["eye_zyx"]), "--reference", str(corpus["reference"])],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "values (sampled)" in out.stdout and "[0, 1]" in out.stdout and "identity affine" in out.stdout
    assert "pairing with" in out.stdout and "2 matched" in out.stdout
    assert "--read gen.convention=unit" in out.stdout and "[methods.\"gen\"]" in out.stdout


def test_the_printed_command_runs_and_reads_every_folder_right(corpus, tmp_path):
    """What `doctor` prints is a command `run` accepts as printed (only the speed flags of this test added)
    and that scores every folder without an error row; the hints name the real options."""
    import os
    import shlex

    import pandas as pd

    folders = [f"{k}={corpus[k]}" for k in ("plain", "unit", "eye_zyx", "npy", "offset")]
    out = tmp_path / "out"
    doc = subprocess.run([sys.executable, "-m", "trace_bench", "doctor", *folders, "--reference",
                          str(corpus["reference"]), "--out", str(out)], capture_output=True, text=True, timeout=300)
    assert doc.returncode == 0, doc.stderr
    lines = doc.stdout.splitlines()
    cmd = shlex.split(lines[lines.index("read them right with:") + 1])
    assert cmd[:2] == ["trace-bench", "run"] and "CODE" not in cmd and not any("NAME." in c for c in cmd)
    fast = ["--metrics", "dice,jaccard,temporal_flickering", "--segmenter", "threshold", "--no-plots", "--no-progress",
            "--no-published", "--bootstrap", "10", "--frame-size", "64"]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    r = subprocess.run([sys.executable, "-m", "trace_bench", *cmd[1:], *fast], capture_output=True, text=True,
                       timeout=600, env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    errors = pd.read_csv(out / "errors.csv", keep_default_na=False)
    assert errors.empty, errors.to_dict("records")
    pc = pd.read_csv(out / "per_case.csv", keep_default_na=False)
    assert set(pc.method) == {"GT", "plain", "unit", "eye_zyx", "npy", "offset"}
    # the printed TOML (`--config`) reads them the same way
    toml = "\n".join(x[2:] for x in lines[lines.index("or, in a TOML file passed with --config:") + 1:])
    (tmp_path / "bench.toml").write_text(toml, encoding="utf-8")
    r = subprocess.run([sys.executable, "-m", "trace_bench", "run", "--config", str(tmp_path / "bench.toml"),
                        "--out", str(tmp_path / "out2"), *fast], capture_output=True, text=True, timeout=600, env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    pc2 = pd.read_csv(tmp_path / "out2" / "per_case.csv", keep_default_na=False)
    pd.testing.assert_frame_equal(pc.drop(columns="protocol"), pc2.drop(columns="protocol"))


def test_undecided_options_stay_out_of_the_command(corpus):
    out = subprocess.run([sys.executable, "-m", "trace_bench", "doctor", str(corpus["eye_zyx"])],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    cmd = lines[lines.index("read them right with:") + 1]
    assert "CODE" not in cmd and "--reference REFERENCE_DIR" in cmd and "--method eye_zyx=" in cmd
    assert "--read eye_zyx.layout=CODE" in out.stdout and "once you know them" in out.stdout
    assert '# layout = "CODE"' in out.stdout


def test_default_method_names_are_names_run_accepts(tmp_path, small_volume):
    from trace_bench.config import check_method_name
    from trace_bench.doctor import default_name

    for raw in ("my gen#2", "GT", ".hidden", "ok-name"):
        d = tmp_path / raw
        d.mkdir()
        assert check_method_name(default_name(d)) == default_name(d)
    assert default_name(tmp_path / "ok-name") == "ok-name" and default_name(tmp_path / "GT") == "GT_"
