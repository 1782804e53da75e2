"""Readers and run core meeting through ``python -m trace_bench run``: case ids that are long for a file name,
the readers' environment checked in preflight, a plot case whose volumes are all unreadable, and the report's
viewer reading volumes with the run's reading options."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from helpers.generator_corpus import KINDS, build_corpus, reference_crops
from helpers.paths import ROOT

FAST = ["--no-progress", "--no-published", "--bootstrap", "10", "--frame-size", "64"]


def _run(args: list[str], env: dict[str, str] | None = None, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    e = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", **(env or {})}
    return subprocess.run([sys.executable, "-m", "trace_bench", "run", *args], capture_output=True, text=True,
                          env=e, cwd=cwd, timeout=900)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("integration-corpus")
    ref, folders = build_corpus(root, kinds=tuple(k for k in KINDS if k.name in ("unit", "npy")))
    return root, ref, folders


def test_long_and_cjk_case_ids_run_and_plot(tmp_path):
    """A 245-character and an 80-character CJK case id: records, plots and the report are written (their file
    names shortened with a hash); no 'File name too long'."""
    crops = reference_crops(tmp_path / "crops")
    ids = {"lung1": "a" * 245, "lung2": "肺" * 80}
    for d in ("reference", "gen"):
        (tmp_path / d).mkdir()
        for cid, long_id in ids.items():
            shutil.copy(tmp_path / "crops" / f"{cid}.nii.gz", tmp_path / d / f"{long_id}.nii.gz")
    out = tmp_path / "out"
    r = _run(["--reference", str(tmp_path / "reference"), "--method", f"gen={tmp_path / 'gen'}", "--metrics",
              "temporal_flickering,dice", "--segmenter", "threshold", "--plot-case", ids["lung2"], "--out", str(out),
              *FAST])
    assert r.returncode == 0, r.stderr[-3000:]
    assert "too long" not in r.stderr.lower()
    pc = pd.read_csv(out / "per_case.csv", keep_default_na=False)
    assert set(pc.case_id) == set(ids.values())
    assert (out / "report.html").is_file() and (out / "report.md").is_file()
    pngs = [p.name for p in (out / "plots").glob("*.png")]
    assert any(p.startswith("montage_") for p in pngs), pngs
    assert all(len(p.encode()) <= 255 for p in pngs)
    names = [p.name for p in (out / "cases" / "gen").iterdir()]
    assert len(names) == 2 and all(len(n.encode()) <= 180 and "~" in n for n in names)


def test_case_names_keep_short_ids_and_shorten_long_ones():
    from trace_bench.results.layout import MAX_NAME_BYTES, case_name, safe_name

    assert case_name("lung1") == "lung1" and case_name("a b") == "a%20b" and case_name("[x]") == "[x]"
    for cid in ("a" * 245, "肺" * 80, "肺" * 30, "é" * 50, "x" * 101):
        name = case_name(cid)
        assert len(name.encode()) <= MAX_NAME_BYTES and "~" in name and name == safe_name(cid), cid
    assert case_name("a" * 245) != case_name("a" * 246)
    with pytest.raises(Exception, match="path"):
        case_name("../x")


def test_bad_reader_environment_is_one_line_in_preflight(corpus, tmp_path):
    root, ref, folders = corpus
    r = _run(["--reference", str(ref), "--method", f"twin={folders['twin']}", "--metrics", "temporal_flickering",
              "--out", str(tmp_path / "out"), *FAST], env={"TRACE_BENCH_MAX_VOLUME_BYTES": "garbage"})
    assert r.returncode == 2, r.stderr
    lines = [x for x in r.stderr.splitlines() if x.strip()]
    assert len(lines) == 1 and "TRACE_BENCH_MAX_VOLUME_BYTES='garbage'" in lines[0], r.stderr
    assert "internal error" not in r.stderr and not (tmp_path / "out" / "cases").exists()


def test_plot_case_without_readable_volumes_still_writes_the_report(corpus, tmp_path):
    """Every volume of the run fails to read (npy reference without spacing, [0, 1] method without convention):
    the run exits 1 ("no method scored any case") with its report, never 'internal error: PlotCaseError'."""
    from reports import PlotCaseError
    from trace_bench.errors import TraceBenchError

    assert issubclass(PlotCaseError, TraceBenchError)
    root, ref, folders = corpus
    out = tmp_path / "out"
    r = _run(["--reference", str(folders["npy"]), "--reference-format", "npy", "--method", f"unit={folders['unit']}",
              "--metrics", "temporal_flickering", "--out", str(out), *FAST])
    assert r.returncode == 1, r.stderr[-3000:]
    assert "internal error" not in r.stderr and "no method scored any case" in r.stderr
    assert (out / "report.md").is_file() and json.loads((out / "metrics.json").read_text())["plot_case"] is None
    errors = pd.read_csv(out / "errors.csv", keep_default_na=False)
    assert any("--read reference.spacing=z,y,x" in e for e in errors.error)
    assert any("--read unit.convention=unit" in e for e in errors.error)


def test_viewer_reads_volumes_with_the_runs_reading_options(corpus, tmp_path, monkeypatch):
    from trace_bench.read_options import ReadOptions
    from trace_bench.report_inputs import input_folders, viewer_stacks

    root, ref, folders = corpus
    out = tmp_path / "out"
    r = _run(["--reference", str(ref), *[x for m in ("npy", "unit", "twin", "twin_window") for x in
                                        ("--method", f"{m}={folders[m]}" + (":npy" if m == "npy" else ""))],
              "--read", "npy.spacing=reference", "--read", "unit.convention=unit", "--metrics", "temporal_flickering",
              "--no-plots", "--out", str(out), *FAST])
    assert r.returncode == 0, r.stderr[-3000:]
    monkeypatch.chdir(tmp_path)
    found = input_folders(out)
    assert found["npy"] == (folders["npy"], ReadOptions(format="npy", spacing="reference"))
    assert found["unit"][1] == ReadOptions(convention="unit")
    stacks = viewer_stacks(out, ["lung1"])["lung1"]
    assert set(stacks) == {"GT", "npy", "unit", "twin", "twin_window"}
    np.testing.assert_array_equal(stacks["npy"]["stack"], stacks["twin"]["stack"])
    np.testing.assert_allclose(stacks["unit"]["stack"].astype(np.float32),
                               stacks["twin_window"]["stack"].astype(np.float32), atol=1.0)


def test_viewer_applies_folder_tables_of_runs_without_recorded_reading(tmp_path, corpus):
    """A run folder whose provenance predates the ``reading`` record: the config's folder tables are applied."""
    from trace_bench.read_options import ReadOptions
    from trace_bench.report_inputs import input_folders

    root, ref, folders = corpus
    out = tmp_path / "old"
    out.mkdir()
    cfg = {"reference": str(ref), "methods": {"npy": {"path": str(folders["npy"]), "format": "npy",
                                                       "spacing": "reference"},
                                              "twin": f"{folders['twin']}:nifti"}}
    (out / "manifest.json").write_text(json.dumps({"config": cfg}), encoding="utf-8")
    found = input_folders(out)
    assert found["npy"] == (folders["npy"], ReadOptions(format="npy", spacing="reference"))
    assert found["twin"] == (folders["twin"], ReadOptions()) and found["GT"] == (ref, ReadOptions())
