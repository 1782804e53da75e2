"""torchrun with 2 gloo processes (CPU, loopback only) == one process (issue 9).

Started as ``python -m torch.distributed.run --nproc-per-node 2 -m trace_bench run ...`` in a
subprocess; the distribution plug-in of helpers.shard_metrics is loaded in each rank with ``--plugins``."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from trace_bench.config import RunConfig
from trace_bench.results.layout import read_record, write_record
from trace_bench.run.distributed import torchrun_env
from trace_bench.launch import launch as run
from trace_bench.results.layout import Entry, entry_path

from helpers.paths import TESTS
from helpers.shard_metrics import NAME, make_cases, register, unregister


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_torchrun_env(monkeypatch):
    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(k, raising=False)
    assert torchrun_env() is None
    monkeypatch.setenv("WORLD_SIZE", "1")
    monkeypatch.setenv("RANK", "0")
    assert torchrun_env() is None  # one process: the ordinary run
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("RANK", "3")
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert torchrun_env() == (3, 4, 1)


ARGS_METRICS = ["temporal_flickering", "segmentation", NAME]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_cases(tmp_path_factory.mktemp("torchrun-data"), per_volume=2)


@pytest.fixture(scope="module")
def one(data, tmp_path_factory):
    """The single-process run everything is compared with."""
    register()
    try:
        return run(config(data, tmp_path_factory.mktemp("one")), report=False).out
    finally:
        unregister()


def config(data: Path, out: Path, **kw) -> RunConfig:
    return RunConfig(out=str(out), reference=str(data / "reference"), reference_masks=str(data / "masks"),
                     methods={"interp": str(data / "interp"), "noisy": str(data / "noisy")}, metrics=ARGS_METRICS,
                     frame_size=64, bootstrap=200, bootstrap_distribution=20, published=False, progress=False,
                     plugins=["helpers.shard_metrics:register"], **kw)


def torchrun(data: Path, out: Path, *extra: str) -> subprocess.CompletedProcess:
    """``python -m torch.distributed.run --nproc-per-node 2 -m trace_bench run ...`` on loopback, gloo."""
    args = ["--reference", str(data / "reference"), "--reference-masks", str(data / "masks"),
            "--method", f"interp={data / 'interp'}", "--method", f"noisy={data / 'noisy'}",
            "--metrics", ",".join(ARGS_METRICS), "--segmenter", "threshold",
            "--frame-size", "64", "--bootstrap", "200", "--bootstrap-distribution", "20", "--no-published",
            "--no-progress", "--plugins", "helpers.shard_metrics:register", *extra]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]),
               OMP_NUM_THREADS="1", MASTER_ADDR="127.0.0.1", GLOO_SOCKET_IFNAME="lo", TP_SOCKET_IFNAME="lo")
    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        env.pop(k, None)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc-per-node", "2",
           "--master-addr", "127.0.0.1", "--master-port", str(free_port()), "-m", "trace_bench", "run",
           "--out", str(out), *args]
    p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-5000:]
    return p


def test_torchrun_two_gloo_ranks_equal_one_process(data, one, tmp_path):
    out2 = tmp_path / "tr2"
    p = torchrun(data, out2)
    prov = json.loads((out2 / "provenance.json").read_text(encoding="utf-8"))
    d = prov["distributed"]
    assert d["world_size"] == 2 and d["backend"] == "gloo" and sorted(d["cases_per_rank"]) == [2, 2]
    assert d["records_received"] > 0  # rank 1's results went through torch.distributed
    assert p.stdout.count("summary.csv") == 1  # printed once, by rank 0
    for n in ("per_case.csv", "summary.csv", "errors.csv", "metrics.json"):
        assert (out2 / n).read_bytes() == (one / n).read_bytes(), n
    assert (out2 / "report.html").is_file()


def test_torchrun_shard_merges_with_a_plain_shard(data, one, tmp_path):
    """A torchrun job can itself be one shard of an array job: its folder merges like any shard."""
    from trace_bench.run.merge import merge_shards

    torchrun(data, tmp_path / "s1", "--shard", "1/2")
    assert not (tmp_path / "s1" / "summary.csv").exists()
    register()
    try:
        run(config(data, tmp_path / "s2", shard="2/2"), report=False)
        merge_shards([tmp_path / "s1", tmp_path / "s2"], tmp_path / "m", report=False,
                     plugins=["helpers.shard_metrics:register"])
    finally:
        unregister()
    for n in ("per_case.csv", "summary.csv", "errors.csv"):
        assert (tmp_path / "m" / n).read_bytes() == (one / n).read_bytes(), n


def test_records_round_trip(tmp_path):
    """What a rank sends (read_record) is what rank 0 writes (write_record) on a machine without
    the rank's files: byte-identical case files, so aggregation cannot tell the difference."""
    data = make_cases(tmp_path / "data", per_volume=1)
    register()
    try:
        c = RunConfig(out=str(tmp_path / "a"), reference=str(data / "reference"), methods={"n": str(data / "noisy")},
                      metrics=["temporal_flickering", NAME], frame_size=64, plots=False, progress=False)
        r = run(c, report=False)
    finally:
        unregister()

    n = 0
    for d in json.loads((r.out / "manifest.json").read_text(encoding="utf-8"))["entries"]:
        e = Entry(**d)
        rec = read_record(r.out, e)
        assert rec is not None
        assert write_record(tmp_path / "b", rec) and not write_record(tmp_path / "b", rec)
        a, b = entry_path(r.out, e), entry_path(tmp_path / "b", e)
        if e.kind == "case":
            assert a.read_bytes() == b.read_bytes()
        else:
            import numpy as np

            with np.load(a) as x, np.load(b) as y:
                assert sorted(x.files) == sorted(y.files) and all(np.array_equal(x[k], y[k]) for k in x.files)
        n += 1
    assert n == 8  # 2 cases x (GT flicker, GT state, n flicker, n state)
