"""Work done once (issue 34): the per-case stage stores what the report needs, so the report stage never
decodes or segments a volume again and renders the same files in the run's process and in a later
``trace-bench report``; a warm rerun verifies every record once and rewrites no unchanged file."""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from trace_bench.cli import app
from trace_bench.config import RunConfig
from trace_bench.run import run

from helpers.fake_metrics import make_small_dataset
from helpers.paths import ROOT

LOCK = ".trace-bench/lock"


@pytest.fixture(scope="module")
def cache_home(tmp_path_factory):
    """A private label-map / feature cache for this module's runs."""
    old = os.environ.get("TRACE_BENCH_CACHE")
    os.environ["TRACE_BENCH_CACHE"] = str(tmp_path_factory.mktemp("cache"))
    yield
    if old is None:
        os.environ.pop("TRACE_BENCH_CACHE", None)
    else:
        os.environ["TRACE_BENCH_CACHE"] = old


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_small_dataset(tmp_path_factory.mktemp("reuse-data"))


def cfg(data: Path, out: Path, **kw) -> RunConfig:
    base = dict(out=str(out), reference=str(data / "reference"), methods={"noisy": str(data / "noisy")},
                metrics=["temporal_flickering", "dice", "hd95"], segmenter="threshold", frame_size=32,
                bootstrap=50, plot_case="lung1", published=False, progress=False)
    base.update(kw)
    return RunConfig(**base)


@pytest.fixture(scope="module")
def finished(data, cache_home, tmp_path_factory):
    """A run with plots, its viewer and every report file, rendered by the run itself."""
    out = tmp_path_factory.mktemp("reuse") / "o"
    run(cfg(data, out))
    return out


def files_of(out: Path, skip: tuple[str, ...] = ()) -> dict[str, bytes]:
    return {p.relative_to(out).as_posix(): p.read_bytes() for p in sorted(out.rglob("*"))
            if p.is_file() and not p.relative_to(out).as_posix().startswith(skip)}


def mtimes(out: Path) -> dict[str, int]:
    return {p.relative_to(out).as_posix(): p.stat().st_mtime_ns for p in sorted(out.rglob("*"))
            if p.is_file() and p.relative_to(out).as_posix() != LOCK}


@pytest.fixture
def no_input_reads(monkeypatch):
    """Record (and refuse) every volume read and threshold segmentation."""
    import baselines.base
    import trace_bench.segmenters.threshold as thr

    calls: list[str] = []

    def refuse(name):
        def f(*a, **k):
            calls.append(name)
            raise AssertionError(f"{name} called by the report stage")
        return f

    monkeypatch.setattr(baselines.base, "read_with_options", refuse("read_with_options"))
    monkeypatch.setattr(thr, "threshold_segment", refuse("threshold_segment"))
    return calls


def test_plot_artifact_holds_the_viewer_arrays(finished):
    for method in ("GT", "noisy"):
        with np.load(finished / "cases" / method / "lung1" / "_plot.npz") as z:
            assert {"stack", "stack_z", "stack_labels", "labels_axial", "view_axial", "flicker_mae"} <= set(z.files)
            assert z["stack"].shape[0] == 10 and z["stack_labels"].shape == z["stack"].shape
    with np.load(finished / "cases" / "noisy" / "lung1" / "_plot.npz") as z:
        assert "dice_z" in z.files and z["dice_z"].shape == (10,)


def test_later_report_reads_no_input_and_writes_the_same_files(finished, tmp_path, no_input_reads):
    """`trace-bench report OUT` in another process's place renders byte-identical files from the stored
    arrays: no volume is decoded, no label map computed."""
    copy = tmp_path / "copy"
    shutil.copytree(finished, copy)
    before = files_of(copy, skip=(".trace-bench",))
    r = CliRunner().invoke(app, ["report", str(copy), "--no-published"])
    assert r.exit_code == 0, r.output
    assert no_input_reads == []
    after = files_of(copy, skip=(".trace-bench",))
    assert set(after) == set(before)
    assert [n for n in before if before[n] != after[n]] == []
    assert b'"mode":"stack"' in after["report.html"]


def test_report_in_another_process_writes_the_same_files(finished, tmp_path):
    """The per-case stage ran in this process; `python -m trace_bench report` in a new one renders the same bytes."""
    import subprocess

    copy = tmp_path / "copy"
    shutil.copytree(finished, copy)
    before = files_of(copy, skip=(".trace-bench",))
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    r = subprocess.run([sys.executable, "-m", "trace_bench", "report", str(copy), "--no-published"], env=env,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    after = files_of(copy, skip=(".trace-bench",))
    assert [n for n in before if before[n] != after.get(n)] == [] and set(after) == set(before)


def test_runs_without_stored_arrays_read_the_inputs_and_render_the_same(finished, tmp_path):
    """A run made before plot-v2 stored mid-planes only: the report reads the inputs again (today's path)
    and the viewer and figures come out the same as from the stored arrays."""
    copy = tmp_path / "old"
    shutil.copytree(finished, copy)
    for p in copy.glob("cases/*/*/_plot.npz"):
        with np.load(p) as z:
            arrays = {k: z[k] for k in z.files if not k.startswith("stack")}
        np.savez(p, **arrays)
    ref = tmp_path / "ref"
    shutil.copytree(finished, ref)
    assert CliRunner().invoke(app, ["report", str(ref), "--no-published"]).exit_code == 0
    r = CliRunner().invoke(app, ["report", str(copy), "--no-published"])
    assert r.exit_code == 0, r.output
    want, got = files_of(ref, skip=(".trace-bench", "cases")), files_of(copy, skip=(".trace-bench", "cases"))
    assert [n for n in want if want[n] != got.get(n)] == []


def test_warm_rerun_verifies_each_record_once_and_rewrites_nothing(data, cache_home, tmp_path, monkeypatch):
    import trace_bench.run.execute as execute

    out = tmp_path / "o"
    first = run(cfg(data, out))
    assert first.stats["computed"] > 0
    before = mtimes(out)
    content = files_of(out, skip=(LOCK,))
    checked: list[Path] = []
    real = execute.check_record
    monkeypatch.setattr(execute, "check_record", lambda p, k: checked.append(p) or real(p, k))
    again = run(cfg(data, out))
    assert again.stats["computed"] == 0 and again.stats.get("outputs_current") is True
    assert sorted(checked) == sorted(set(checked)) and len(checked) == again.stats["entries"]
    assert mtimes(out) == before
    assert files_of(out, skip=(LOCK,)) == content


def test_rerun_restores_a_changed_output_and_recomputes_a_corrupt_record(data, cache_home, tmp_path):
    out = tmp_path / "o"
    run(cfg(data, out))
    (out / "report.md").write_text("edited\n", encoding="utf-8")
    again = run(cfg(data, out))
    assert not again.stats.get("outputs_current")  # rendered again (its timing table is this run's)
    assert (out / "report.md").read_text(encoding="utf-8").startswith("# trace-bench report")
    rec = out / "cases" / "noisy" / "lung1" / "temporal_flickering.json"
    body = json.loads(rec.read_text(encoding="utf-8"))
    body["seconds"] += 1.0  # edited by hand: the checksum no longer matches
    rec.write_text(json.dumps(body), encoding="utf-8")
    fixed = run(cfg(data, out))
    assert fixed.stats["computed"] == 1 and not fixed.stats.get("outputs_current")
    assert "failed its checksum" in (out / "warnings.csv").read_text(encoding="utf-8")
    assert not run(cfg(data, out)).stats.get("outputs_current")  # the manifest's integrity rows changed
    assert run(cfg(data, out)).stats.get("outputs_current") is True


def test_a_changed_setting_that_changes_no_record_still_renders(data, cache_home, tmp_path):
    """A report option (``run`` scope) keeps every record but changes the outputs: rendered again."""
    out = tmp_path / "o"
    run(cfg(data, out))
    again = run(cfg(data, out, published=True))
    assert again.stats["computed"] == 0 and not again.stats.get("outputs_current")
    assert "as published" in (out / "report.md").read_text(encoding="utf-8")
