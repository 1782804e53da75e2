"""The prefetching reader of the per-case stage (issue "Speed": decode the next volume while the
current one is scored): a run with prefetch gives the same tables, error rows and warnings as a run
without it, including when a file read ahead is broken, and the reader reads each file once."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from trace_bench.config import RunConfig
from trace_bench.run.execute import Reader
from trace_bench.run.pipeline import run

from helpers.fake_metrics import make_small_dataset


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = make_small_dataset(tmp_path_factory.mktemp("prefetch-data"))
    # a broken generated file in the middle of the case order: the read ahead must fail the same way
    bad = sorted((root / "noisy").glob("*.nii.gz"))[1]
    bad.write_bytes(b"\x1f\x8b not really gzip")
    return root


def _run(data: Path, out: Path, prefetch: bool) -> Path:
    run(RunConfig(out=str(out), reference=str(data / "reference"),
                  methods={"interp": str(data / "interp"), "noisy": str(data / "noisy")},
                  metrics=["temporal_flickering", "segmentation"], frame_size=64, bootstrap=50,
                  plots=False, published=False, progress=False, prefetch=prefetch))
    return out


def test_prefetch_changes_no_output(data, tmp_path):
    a = _run(data, tmp_path / "with", True)
    b = _run(data, tmp_path / "without", False)
    for name in ("per_case.csv", "summary.csv", "errors.csv", "warnings.csv"):
        fa, fb = pd.read_csv(a / name), pd.read_csv(b / name)
        drop = [c for c in ("seconds",) if c in fa.columns]
        pd.testing.assert_frame_equal(fa.drop(columns=drop), fb.drop(columns=drop))
    errors = pd.read_csv(a / "errors.csv")
    assert (errors["method"] == "noisy").any() and errors["stage"].eq("read").all()


def test_reader_reads_each_file_once_and_reraises(data, monkeypatch):
    calls: list[str] = []
    orig = Reader._read

    def counting(path, adapter):
        calls.append(Path(path).name)
        return orig(path, adapter)

    monkeypatch.setattr(Reader, "_read", staticmethod(counting))
    ref = sorted((data / "reference").glob("*.nii.gz"))
    bad = sorted((data / "noisy").glob("*.nii.gz"))[1]
    r = Reader(prefetch=True)
    try:
        r.prefetch([(ref[0], "nifti"), (ref[1], "nifti"), (bad, "nifti")])
        r.prefetch([(ref[0], "nifti"), (ref[1], "nifti"), (bad, "nifti")])  # already pending: not submitted again
        v0 = r.volume(ref[0], "nifti")
        assert r.volume(ref[0], "nifti") is v0  # cached
        r.volume(ref[1], "nifti")
        with pytest.raises(Exception):
            r.volume(bad, "nifti")
    finally:
        r.close()
    assert sorted(calls) == sorted([ref[0].name, ref[1].name, bad.name])


def test_reader_drops_volumes_no_longer_wanted(data):
    ref = sorted((data / "reference").glob("*.nii.gz"))
    r = Reader(prefetch=True)
    try:
        r.prefetch([(ref[0], "nifti"), (ref[1], "nifti")])
        r.prefetch([(ref[1], "nifti")])  # ref[0]'s task failed before reading it: not held any longer
        assert r.pending() == [f"nifti:{ref[1]}"]
        r.volume(ref[1], "nifti")
        assert r.pending() == []
    finally:
        r.close()


def test_prefetch_auto_is_on_for_gpu_runs_only():
    from trace_bench.run.execute import prefetch_enabled

    assert prefetch_enabled(None, "cuda") and prefetch_enabled(None, "cuda:1")
    assert not prefetch_enabled(None, "cpu")
    assert prefetch_enabled(True, "cpu") and not prefetch_enabled(False, "cuda")
    assert RunConfig().prefetch is None
