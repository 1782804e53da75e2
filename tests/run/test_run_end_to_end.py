"""End to end: trace-bench run on small copies of the shipped CTs with the weight-free metrics and
small metric plug-ins registered here (a per-case and a distribution one, see tests/helpers/fake_metrics.py)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from trace_bench.config import RunConfig
from trace_bench.errors import ConfigError, WeightsError
from trace_bench.run import aggregate, plan_run, run

from helpers.fake_metrics import make_small_dataset, register_fakes, unregister_fakes
from helpers.paths import TESTS

METRICS = ["weight-free", "fake_mae", "fake_mean"]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_small_dataset(tmp_path_factory.mktemp("runner-data"))


@pytest.fixture(autouse=True)
def fakes():
    register_fakes()
    yield
    unregister_fakes()


def cfg(data: Path, out: Path, **kw) -> RunConfig:
    base = dict(out=str(out), reference=str(data / "reference"),
                methods={"interp": str(data / "interp"), "noisy": str(data / "noisy")},
                metrics=METRICS, frame_size=64, bootstrap=200, bootstrap_distribution=20, plots=False,
                published=False, progress=False)
    base.update(kw)
    return RunConfig(**base)


@pytest.fixture(scope="module")
def first_run(data, tmp_path_factory):
    register_fakes()
    out = tmp_path_factory.mktemp("run1")
    res = run(cfg(data, out))
    unregister_fakes()
    return res


def test_outputs_and_columns(first_run):
    out = first_run.out
    for name in ("per_case.csv", "summary.csv", "errors.csv", "provenance.json", "config.toml", "metrics.json",
                 "report.md", "report.tex", "report.html"):
        assert (out / name).is_file(), name
    pc = pd.read_csv(out / "per_case.csv")
    assert list(pc.columns) == ["method", "case_id", "metric", "value", "protocol"]
    s = pd.read_csv(out / "summary.csv")
    assert list(s.columns) == ["method", "metric", "value", "ci_low", "ci_high", "n", "ci_method", "n_resamples_ok", "note",
                               "ci_flag"]
    assert list(pd.read_csv(out / "errors.csv").columns) == ["method", "case_id", "stage", "error"]
    assert len(pd.read_csv(out / "errors.csv")) == 0
    # GT row: the reference scored for the metrics that need no reference, never for the others
    gt = set(s[s.method == "GT"].metric)
    assert "temporal_flickering" in gt and "fake_mae" not in gt and "fake_mean" not in gt
    # slice interpolation is smoother along z than the real volume; noise is rougher
    tf = s[s.metric == "temporal_flickering"].set_index("method").value
    assert tf["interp"] > tf["GT"] > tf["noisy"]
    # per-case fake metric: the noisy copy is further from the reference than ... itself plus nothing
    mae = pc[(pc.metric == "fake_mae")].set_index(["method", "case_id"]).value
    assert mae[("noisy", "lung1")] > 0.03  # ~ E|N(0, 60)| = 48 HU
    # distribution metric: one "(all)" row per method, the state files merged exactly
    dist = pc[pc.metric == "fake_mean"]
    assert set(dist.case_id) == {"(all)"} and set(dist.method) == {"interp", "noisy"}
    assert (out / "stats" / "interp_fake_mean.npz").is_file() and (out / "stats" / "GT_fake_mean.npz").is_file()
    # summary of a per-case metric = mean of per-case values, CI brackets it
    row = s[(s.method == "noisy") & (s.metric == "fake_mae")].iloc[0]
    assert row.value == pytest.approx(mae.loc["noisy"].mean(), rel=1e-9)
    assert row.ci_low <= row.value <= row.ci_high and row.n == 2


def test_distribution_value_equals_direct_computation(first_run, data):
    """fake_mean from merged per-case states == computed on all frames at once."""
    from trace_bench.io import read_volume
    from trace_bench.protocol import FrameProtocol

    proto = FrameProtocol(size=64)

    def mean_of(folder):
        s = n = 0.0
        for f in sorted(Path(folder).glob("*.nii.gz")):
            fr = proto.frames(read_volume(f)).astype(np.float64)
            s += fr.mean(axis=(1, 2)).sum()
            n += fr.shape[0]
        return s / n

    expected = abs(mean_of(data / "noisy") - mean_of(data / "reference"))
    s = pd.read_csv(first_run.out / "summary.csv")
    got = s[(s.method == "noisy") & (s.metric == "fake_mean")].value.iloc[0]
    assert got == pytest.approx(expected, rel=1e-9)


def test_provenance(first_run):
    prov = json.loads((first_run.out / "provenance.json").read_text(encoding="utf-8"))
    assert prov["toolkit"]["version"]
    assert "torch" in prov["packages"] and prov["device"]["requested"] == "cpu"
    assert set(prov["inputs"]) == {"GT", "interp", "noisy"}
    assert all(len(h) == 64 for h in prov["inputs"]["GT"].values())
    assert prov["protocols"]["temporal_flickering"].startswith("ct-frames-v1:64px")
    assert "per_case_s" in prov["timings_s"]


def test_rerun_is_cached_and_byte_identical(first_run, data, tmp_path):
    """Same command again: nothing recomputed, identical tables. A fresh folder: identical tables."""
    out = first_run.out
    before = {n: (out / n).read_bytes() for n in ("per_case.csv", "summary.csv", "errors.csv")}
    again = run(cfg(data, out), report=False)
    assert again.stats["computed"] == 0 and again.stats["cached"] == again.stats["entries"]
    fresh = run(cfg(data, tmp_path / "fresh"), report=False)
    assert fresh.stats["computed"] > 0
    for n, b in before.items():
        assert (out / n).read_bytes() == b, n
        assert (tmp_path / "fresh" / n).read_bytes() == b, n


def test_changed_input_is_recomputed(data, tmp_path):
    import shutil

    d = tmp_path / "d"
    shutil.copytree(data, d)
    out = tmp_path / "o"
    run(cfg(d, out, metrics=["temporal_flickering"]), report=False)
    v1 = pd.read_csv(out / "summary.csv")
    # replace one generated file by another volume: its entries must be recomputed, the others reused
    shutil.copy(d / "noisy" / "lung1.nii.gz", d / "interp" / "lung1.nii.gz")
    r = run(cfg(d, out, metrics=["temporal_flickering"]), report=False)
    assert r.stats["computed"] == 1
    v2 = pd.read_csv(out / "summary.csv")
    a = v1[(v1.method == "interp")].value.iloc[0]
    b = v2[(v2.method == "interp")].value.iloc[0]
    assert a != b


def test_bad_inputs_are_listed_and_do_not_stop_the_run(data, tmp_path):
    """A corrupt file, an unpaired file and a wrongly shaped volume end up in errors.csv."""
    import shutil

    import nibabel as nib

    broken = tmp_path / "broken"
    broken.mkdir()
    shutil.copy(data / "interp" / "lung1.nii.gz", broken / "lung1.nii.gz")  # good
    (broken / "lung2.nii.gz").write_bytes(b"\x1f\x8b\x08\x00 this is not a gzip stream")  # corrupt
    nib.save(nib.Nifti1Image(np.zeros((64, 64), np.int16), np.eye(4)), str(broken / "extra.nii.gz"))  # unpaired, 2-D
    shutil.copy(data / "reference" / "lung1.nii.gz", tmp_path / "shape_ref.nii.gz")
    # wrongly shaped: a 4-D array under a case id of the reference
    ref = tmp_path / "ref"
    shutil.copytree(data / "reference", ref)
    shutil.copy(data / "reference" / "lung1.nii.gz", ref / "lung3.nii.gz")
    hu = np.random.default_rng(0).integers(-1000, 1000, size=(64, 64, 5, 2)).astype(np.int16)
    nib.save(nib.Nifti1Image(hu, np.eye(4)), str(broken / "lung3.nii.gz"))  # 4-D: not a volume
    c = cfg(data, tmp_path / "out", reference=str(ref), methods={"broken": str(broken), "noisy": str(data / "noisy")})
    r = run(c, report=True)
    err = pd.read_csv(r.out / "errors.csv")
    got = {(m, cid, st) for m, cid, st in zip(err.method, err.case_id, err.stage)}
    assert ("broken", "lung2", "read") in got  # corrupt
    assert ("broken", "lung3", "read") in got  # wrongly shaped
    assert ("broken", "extra", "pairing") in got  # unpaired
    assert ("noisy", "lung3", "pairing") in got  # reference case missing from a method
    msg = err[(err.case_id == "lung3") & (err.method == "broken")].error.iloc[0]
    assert "3-D" in msg and "lung3.nii.gz" in msg
    s = pd.read_csv(r.out / "summary.csv")
    # everything else was scored
    assert set(s[s.metric == "temporal_flickering"].method) == {"GT", "broken", "noisy"}
    assert s[(s.method == "broken") & (s.metric == "temporal_flickering")].n.iloc[0] == 1
    assert s[(s.method == "GT") & (s.metric == "temporal_flickering")].n.iloc[0] == 3


def test_metric_failure_is_an_error_row(data, tmp_path):
    """fake_mae refuses volumes of another shape: the case gets an error row, the others values."""
    import shutil

    from trace_bench.io import read_volume, write_nifti

    m = tmp_path / "m"
    shutil.copytree(data / "noisy", m)
    v = read_volume(m / "lung2.nii.gz")
    write_nifti(type(v)(v.array[:-2], v.spacing, v.affine, {}), m / "lung2.nii.gz")
    # default geometry policy: 8 slices against a 10-slice reference at the same spacing is another field
    # of view, refused for the reference-based metric (the weight-free one still scores it)
    r = run(cfg(data, tmp_path / "o0", methods={"m": str(m)}, metrics=["fake_mae", "temporal_flickering"]), report=False)
    err = pd.read_csv(r.out / "errors.csv")
    assert list(zip(err.method, err.case_id, err.stage)) == [("m", "lung2", "geometry")]
    assert "field of view" in err.error.iloc[0] and "--geometry" in err.error.iloc[0]
    # --geometry warn scores it anyway: the metric itself refuses the shape
    r = run(cfg(data, tmp_path / "o", methods={"m": str(m)}, metrics=["fake_mae", "temporal_flickering"],
                geometry="warn"), report=False)
    err = pd.read_csv(r.out / "errors.csv")
    assert list(zip(err.method, err.case_id, err.stage)) == [("m", "lung2", "metric:fake_mae")]
    assert "Expected the reference shape" in err.error.iloc[0]
    pc = pd.read_csv(r.out / "per_case.csv")
    assert ((pc.method == "m") & (pc.metric == "temporal_flickering")).sum() == 2


def test_preflight_missing_weights_stops_fast_or_skips(data, tmp_path, monkeypatch):
    from trace_bench.metrics.base import METRICS, Metric, Output, register_metric

    class NeedsWeights(Metric):
        name = "needs_weights"
        outputs = {"needs_weights": Output(True)}
        weights = ("dino-vitb16",)

    monkeypatch.setenv("TRACE_BENCH_CACHE", str(tmp_path / "empty-cache"))
    monkeypatch.delenv("TRACE_BENCH_WEIGHTS_DINO_VITB16", raising=False)
    register_metric(NeedsWeights, overwrite=True)
    try:
        with pytest.raises(WeightsError, match="dino-vitb16"):
            run(cfg(data, tmp_path / "o", metrics=["needs_weights", "temporal_flickering"]))
        assert not (tmp_path / "o" / "cases").exists()  # stopped before any per-case work
        r = run(cfg(data, tmp_path / "o", metrics=["needs_weights", "temporal_flickering"], skip_unavailable=True))
        meta = json.loads((r.out / "metrics.json").read_text(encoding="utf-8"))
        assert "needs_weights" in meta["skipped"]
        assert "needs_weights" in (r.out / "report.md").read_text(encoding="utf-8")
    finally:
        METRICS.unregister("needs_weights")


def test_config_errors(data, tmp_path):
    with pytest.raises(ConfigError, match="not a folder"):
        plan_run(cfg(data, tmp_path / "o", reference=str(tmp_path / "nope")))
    with pytest.raises(ConfigError, match="unknown metric"):
        plan_run(cfg(data, tmp_path / "o", metrics=["temporal_flickerin"]))


def test_profile_rows(data, tmp_path):
    p = tmp_path / "prof.json"
    p.write_text(json.dumps({"fps": 12.5, "inference_peak_bytes": 3 * 2**30, "train_peak_bytes": 5 * 2**30, "device": "cpu"}))
    r = run(cfg(data, tmp_path / "o", metrics=["temporal_flickering"], profiles={"interp": str(p)}))
    s = pd.read_csv(r.out / "summary.csv")
    got = s[s.method == "interp"].set_index("metric").value
    assert got["fps"] == 12.5 and got["vram"] == 3 * 2**30 and got["vram_train"] == 5 * 2**30
    md = (r.out / "report.md").read_text(encoding="utf-8")
    assert "5.0 GB / 3.0 GB" in md and "12.50" in md


_KILL_SCRIPT = r"""
import sys
sys.path.insert(0, {tests!r})
from helpers.fake_metrics import register_fakes
register_fakes(slow=True)
from trace_bench.config import RunConfig
from trace_bench.run import run
run(RunConfig(out={out!r}, reference={ref!r}, methods={methods!r}, metrics=["slow_flicker", "fake_mean"],
              frame_size=64, bootstrap=100, bootstrap_distribution=10, plots=False, progress=False), report=False)
"""


def test_resume_after_kill_equals_uninterrupted(data, tmp_path):
    register_fakes(slow=True)
    methods = {"interp": str(data / "interp"), "noisy": str(data / "noisy")}
    kw = dict(metrics=["slow_flicker", "fake_mean"], bootstrap=100, bootstrap_distribution=10)
    killed = tmp_path / "killed"
    script = _KILL_SCRIPT.format(tests=str(TESTS), out=str(killed), ref=str(data / "reference"),
                                 methods=methods)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    try:
        while time.time() < deadline:
            done = list((killed / "cases").rglob("slow_flicker.json")) if (killed / "cases").exists() else []
            if len(done) >= 2 or proc.poll() is not None:
                break
            time.sleep(0.05)
        assert proc.poll() is None, "the run finished before it could be killed: " + proc.stderr.read().decode()[-2000:]
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
    n_done = len(list((killed / "cases").rglob("slow_flicker.json")))
    assert 2 <= n_done < 6  # killed mid-run
    assert not (killed / "summary.csv").exists()
    # aggregating the partial folder lists what is missing instead of failing
    aggregate(killed)
    assert "not computed" in (killed / "errors.csv").read_text(encoding="utf-8")
    resumed = run(cfg(data, killed, **kw), report=False)
    assert 0 < resumed.stats["computed"] and resumed.stats["cached"] >= n_done
    clean = run(cfg(data, tmp_path / "clean", **kw), report=False)
    for n in ("per_case.csv", "summary.csv", "errors.csv"):
        assert (killed / n).read_bytes() == (clean.out / n).read_bytes(), n


def test_workers_give_identical_results(data, tmp_path, first_run, monkeypatch):
    """2 worker threads (the default) and 2 spawned worker processes write the same tables as the in-process run."""
    unregister_fakes()  # the spawned workers only know the registered plug-ins
    threads = run(cfg(data, tmp_path / "t2", metrics=["weight-free"], workers=2), report=False)
    monkeypatch.setenv("TRACE_BENCH_WORKERS", "processes")
    procs = run(cfg(data, tmp_path / "w2", metrics=["weight-free"], workers=2), report=False)
    monkeypatch.delenv("TRACE_BENCH_WORKERS")
    one = run(cfg(data, tmp_path / "w1", metrics=["weight-free"]), report=False)
    assert threads.stats["computed"] == procs.stats["computed"] == one.stats["computed"] > 0
    for n in ("per_case.csv", "summary.csv"):
        assert (threads.out / n).read_bytes() == (one.out / n).read_bytes() == (procs.out / n).read_bytes(), n


def test_worker_kind_is_checked(monkeypatch):
    from trace_bench.run.execute import worker_kind

    assert worker_kind() == "threads"
    monkeypatch.setenv("TRACE_BENCH_WORKERS", "fibres")
    with pytest.raises(ConfigError, match="TRACE_BENCH_WORKERS"):
        worker_kind()
