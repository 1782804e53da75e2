"""Sharded runs + merge == one unsharded run; merge refuses incomplete / inconsistent shards (issue 9).

Inputs: 6 small crops of the shipped demo CTs (tests/helpers/shard_metrics.make_cases); metrics: the
weight-free ``temporal_flickering`` and ``segmentation`` (threshold segmenter) plus a small
distribution plug-in (``shard_fake_mean``) so that state files are merged too."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from trace_bench.config import RunConfig, parse_shard
from trace_bench.errors import ConfigError
from trace_bench.run import run
from trace_bench.run.assign import assign_cases, case_hash, select_cases
from trace_bench.run.merge import MergeError, merge_shards

from helpers.shard_metrics import NAME, make_cases, register, unregister

TABLES = ("per_case.csv", "summary.csv", "errors.csv", "metrics.json")
METRICS = ["temporal_flickering", "segmentation", NAME]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_cases(tmp_path_factory.mktemp("shard-data"))


@pytest.fixture(autouse=True)
def plugin():
    register()
    yield
    unregister()


PLUGINS = ["helpers.shard_metrics:register"]


def cfg(data: Path, out: Path, **kw) -> RunConfig:
    base = dict(out=str(out), reference=str(data / "reference"), reference_masks=str(data / "masks"),
                methods={"interp": str(data / "interp"), "noisy": str(data / "noisy")}, metrics=METRICS,
                segmenter="threshold", frame_size=64, bootstrap=200, bootstrap_distribution=20, plots=True,
                published=False, progress=False, plugins=PLUGINS)
    base.update(kw)
    return RunConfig(**base)


@pytest.fixture(scope="module")
def single(data, tmp_path_factory):
    register()
    out = tmp_path_factory.mktemp("single")
    r = run(cfg(data, out), report=False)
    unregister()
    return r.out


def run_shards(data: Path, root: Path, n: int, **kw) -> list[Path]:
    outs = []
    for i in range(1, n + 1):
        r = run(cfg(data, root / f"s{i}", shard=f"{i}/{n}", **kw), report=False)
        assert not (r.out / "summary.csv").exists()  # a shard writes no tables
        outs.append(r.out)
    return outs


def assert_same_tables(a: Path, b: Path) -> None:
    for n in TABLES:
        assert (a / n).read_bytes() == (b / n).read_bytes(), n


# ----------------------------------------------------------------------------- assignment
def test_assignment_is_stable_balanced_and_order_free():
    ids = [f"case{i:03d}" for i in range(50)]
    a = assign_cases(ids, 3)
    assert a == assign_cases(list(reversed(ids)), 3)
    sizes = [sum(1 for v in a.values() if v == k) for k in (1, 2, 3)]
    assert sorted(sizes) == [16, 17, 17]
    parts = [select_cases(ids, f"{i}/3") for i in (1, 2, 3)]
    assert sorted(sum(parts, [])) == sorted(ids)
    # pinned: sha256 based, not Python's salted hash()
    assert case_hash("lung1") == "536de677ba7329433321aa4a455ca7da26adc5afc512838ca8cd1a5fdb9ef057"
    # a rank part splits a shard further; together the parts are the shard
    sub = [select_cases(ids, "2/3", (r, 2)) for r in (1, 2)]
    assert sorted(sub[0] + sub[1]) == sorted(parts[1]) and not set(sub[0]) & set(sub[1])


def test_shard_spec_is_checked():
    assert parse_shard("2/4") == (2, 4)
    for bad in ("0/3", "4/3", "3", "a/b", "1/0"):
        with pytest.raises(ConfigError, match="I/N"):
            RunConfig(shard=bad)


# ----------------------------------------------------------------------------- merge == unsharded
@pytest.mark.parametrize("n", [2, 3])
def test_shards_merged_equal_unsharded(data, single, tmp_path, n):
    import pandas as pd

    s = pd.read_csv(single / "summary.csv")
    assert {"temporal_flickering", "dice", "hd95", NAME} <= set(s.metric) and not len(pd.read_csv(single / "errors.csv"))
    shards = run_shards(data, tmp_path, n)
    cases = [json.loads((s / "manifest.json").read_text(encoding="utf-8"))["shard"]["cases"] for s in shards]
    assert all(cases) and sorted(sum(cases, [])) == sorted(f"lung{v}-{k}" for v in (1, 2) for k in range(3))
    with pytest.raises(MergeError, match="plug-in.*--plugins"):  # plug-ins named in the shards run only when named
        merge_shards(shards, tmp_path / "merged", report=True)
    res = merge_shards(list(reversed(shards)), tmp_path / "merged", report=True,  # shard order does not matter
                       plugins=PLUGINS)
    assert_same_tables(res.out, single)
    assert (res.out / "report.html").is_file() and (res.out / "plots").is_dir()
    prov = json.loads((res.out / "provenance.json").read_text(encoding="utf-8"))
    assert len(prov["shards"]) == n and set(prov["inputs"]) == {"GT", "interp", "noisy"}
    assert sum(len(v) for v in prov["inputs"].values()) == 18


def test_merge_cli_and_rerun_of_a_killed_shard(data, single, tmp_path):
    """A shard missing results is refused (named, with the resume command); rerunning that shard alone
    computes only what is missing, and the merge then equals the unsharded run."""
    from typer.testing import CliRunner

    from trace_bench.cli import app

    shards = run_shards(data, tmp_path, 2)
    victim = sorted((shards[1] / "cases").rglob("temporal_flickering.json"))[0]
    victim.unlink()
    with pytest.raises(MergeError, match=r"s2.*incomplete: 1 of .*temporal_flickering.*config\.toml"):
        merge_shards(shards, tmp_path / "m", plugins=PLUGINS)
    r = run(cfg(data, shards[1], shard="2/2"), report=False)
    assert r.stats["computed"] == 1
    res = CliRunner().invoke(app, ["merge", *map(str, shards), "--out", str(tmp_path / "m"), "--no-report",
                                   "--plugins", PLUGINS[0]])
    assert res.exit_code == 0, res.output
    assert "summary.csv" in res.output
    assert_same_tables(tmp_path / "m", single)


def test_merge_refuses_mismatched_shards(data, tmp_path):
    s1, s2, s3 = run_shards(data, tmp_path / "a", 3)
    # a shard missing, a shard given twice
    with pytest.raises(MergeError, match="shard.* 2/3 missing"):
        merge_shards([s1, s3], tmp_path / "m", plugins=PLUGINS)
    with pytest.raises(MergeError, match="given twice"):
        merge_shards([s1, s1, s2, s3], tmp_path / "m", plugins=PLUGINS)
    # a different setting (protocol): named with both values
    o2 = run(cfg(data, tmp_path / "b2", shard="2/3", frame_size=32), report=False).out
    with pytest.raises(MergeError, match=r"b2.*config\.frame_size: 64 != 32"):
        merge_shards([s1, o2, s3], tmp_path / "m", plugins=PLUGINS)
    # different metric protocol / weights sha256 recorded in a manifest
    w = tmp_path / "w3"
    shutil.copytree(s3, w)
    man = json.loads((w / "manifest.json").read_text(encoding="utf-8"))
    man["weights"] = {"inception-fid": "0" * 64}
    (w / "manifest.json").write_text(json.dumps(man))
    with pytest.raises(MergeError, match=r"w3.*weights\.inception-fid: missing != \"0000"):
        merge_shards([s1, s2, w], tmp_path / "m", plugins=PLUGINS)
    # a different split
    o = run(cfg(data, tmp_path / "c", shard="1/2"), report=False).out
    with pytest.raises(MergeError, match="different splits"):
        merge_shards([o, s2, s3], tmp_path / "m", plugins=PLUGINS)
    # not a shard at all; merging into a shard folder
    with pytest.raises(MergeError, match="no manifest.json"):
        merge_shards([tmp_path, s2, s3], tmp_path / "m", plugins=PLUGINS)
    with pytest.raises(MergeError, match="one of the shard folders"):
        merge_shards([s1, s2, s3], s1, plugins=PLUGINS)


def test_merge_refuses_shards_of_changed_inputs(data, tmp_path):
    """Shard 2 ran after an input file changed: the input listing differs."""
    d = tmp_path / "d"
    shutil.copytree(data, d)
    s1 = run(cfg(d, tmp_path / "s1", shard="1/2", metrics=["temporal_flickering"]), report=False).out
    shutil.copy(d / "noisy" / "lung1-0.nii.gz", d / "noisy" / "lung2-2.nii.gz")
    s2 = run(cfg(d, tmp_path / "s2", shard="2/2", metrics=["temporal_flickering"]), report=False).out
    with pytest.raises(MergeError, match=r"s2.*listing.*input folders changed"):
        merge_shards([s1, s2], tmp_path / "m", plugins=PLUGINS)


def test_demo_cannot_be_sharded(tmp_path):
    from trace_bench.launch import launch

    with pytest.raises(ConfigError, match="--shard needs explicit inputs"):
        launch(RunConfig(out=str(tmp_path / "o"), shard="1/2", progress=False))
