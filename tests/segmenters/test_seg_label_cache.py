"""The on-disk label-map cache (:class:`trace_bench.cache.LabelMapCache`, ``Segmenter.segment_cached``):
keyed by volume content + segmenter id + classes, shared between processes and metric instances,
atomic, verified on read (a damaged entry is recomputed), and switchable off."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from trace_bench.cache import LABEL_CACHE_ENV, LabelMapCache, label_cache_root
from trace_bench.metrics import CaseData, RunContext
from trace_bench.metrics.segmentation import Segmentation
from trace_bench.segmenters import get_segmenter
from trace_bench.segmenters.threshold import threshold_segment
from trace_bench.volume import from_canonical

from helpers.paths import ROOT


def _chest(seed: int = 0, shape=(6, 40, 44)) -> np.ndarray:
    """A small chest-like HU volume: a tissue ellipse with two air lungs, noise."""
    rng = np.random.default_rng(seed)
    nz, ny, nx = shape
    y, x = np.mgrid[0:ny, 0:nx]
    hu = np.full(shape, -1000.0, np.float32)
    hu[:, ((y - ny / 2) / (0.4 * ny)) ** 2 + ((x - nx / 2) / (0.42 * nx)) ** 2 <= 1] = 40.0
    for side in (-1, 1):
        hu[:, ((y - ny / 2) / (0.22 * ny)) ** 2 + ((x - nx / 2 - side * 0.18 * nx) / (0.1 * nx)) ** 2 <= 1] = -850.0
    return hu + rng.normal(0, 20, shape).astype(np.float32)


@pytest.fixture
def cache_env(tmp_path, monkeypatch):
    monkeypatch.setenv("TRACE_BENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv(LABEL_CACHE_ENV, raising=False)
    return tmp_path / "cache" / "labels"


def _entries(root: Path) -> list[Path]:
    return sorted(root.rglob("*.npz")) if root.exists() else []


def test_miss_then_hit_same_map_names_and_source(cache_env):
    assert label_cache_root() == cache_env and label_cache_root("/x/y") == Path("/x/y/labels")
    hu, sp = _chest(), (5.0, 2.0, 2.0)
    seg = get_segmenter("threshold", device="cpu")
    cache = LabelMapCache()
    first = seg.segment_cached(from_canonical(hu, sp, {"path": "a.nii.gz"}), "3", cache)
    assert (cache.hits, cache.misses) == (0, 1) and len(_entries(cache_env)) == 1
    again = seg.segment_cached(from_canonical(hu.copy(), sp, {"path": "renamed.nii.gz"}), "3", cache)
    assert (cache.hits, cache.misses) == (1, 1)  # same content under another name: a hit
    assert np.array_equal(again.labels, first.labels) and np.array_equal(first.labels, threshold_segment(hu, sp))
    assert again.labels.dtype == np.uint8 and again.segmenter == first.segmenter == "threshold-v1"
    assert again.names == first.names == {1: "lungs", 2: "other"} and again.classes == "3"
    assert again.meta["source"] == "renamed.nii.gz" and again.spacing == first.spacing
    # classes, content, spacing and affine are part of the key
    two = seg.segment_cached(from_canonical(hu, sp), "2", cache)
    assert cache.misses == 2 and two.names == {1: "body"} and np.array_equal(two.labels, first.labels > 0)
    changed = hu.copy()
    changed[3, 20, 22] += 1.0
    seg.segment_cached(from_canonical(changed, sp), "3", cache)
    seg.segment_cached(from_canonical(hu, (5.0, 2.0, 2.5)), "3", cache)
    moved = from_canonical(hu, sp)
    moved.affine[:3, 3] += 10.0
    seg.segment_cached(moved, "3", cache)
    assert (cache.hits, cache.misses) == (1, 5) and len(_entries(cache_env)) == 5
    assert not [p for p in cache_env.rglob("*") if p.is_file() and p.suffix != ".npz"]  # no temporary files left


@pytest.mark.parametrize("damage", ["truncate", "garbage", "flip_byte", "stale_checksum", "wrong_key"])
def test_damaged_entry_is_recomputed_and_rewritten(cache_env, damage):
    hu, sp = _chest(1), (5.0, 2.0, 2.0)
    seg = get_segmenter("threshold", device="cpu")
    want = seg.segment_cached(from_canonical(hu, sp), "3", LabelMapCache()).labels
    (entry,) = _entries(cache_env)
    raw = entry.read_bytes()
    if damage == "truncate":
        entry.write_bytes(raw[: len(raw) // 2])
    elif damage == "garbage":
        entry.write_bytes(b"not a zip file")
    elif damage == "flip_byte":  # inside the compressed labels: the zip CRC or the checksum catches it
        b = bytearray(raw)
        b[len(b) // 3] ^= 0xFF
        entry.write_bytes(bytes(b))
    else:  # a well-formed entry whose labels or key do not match what it claims
        with np.load(entry) as z:
            labels, info = z["labels"].copy(), json.loads(str(z["info"][()]))
        if damage == "stale_checksum":
            labels[labels == 1] = 2
        else:
            info["key"] = "0" * 64
        np.savez_compressed(entry.with_suffix(".tmp.npz"), labels=labels, info=np.array(json.dumps(info)))
        os.replace(entry.with_suffix(".tmp.npz"), entry)
    cache = LabelMapCache()
    got = seg.segment_cached(from_canonical(hu, sp), "3", cache)
    assert np.array_equal(got.labels, want) and (cache.corrupt, cache.hits, cache.misses) == (1, 0, 1)
    fresh = LabelMapCache()
    assert np.array_equal(seg.segment_cached(from_canonical(hu, sp), "3", fresh).labels, want)
    assert (fresh.corrupt, fresh.hits) == (0, 1)  # the entry was rewritten whole
    with zipfile.ZipFile(entry) as zf:
        assert zf.testzip() is None and sorted(zf.namelist()) == ["info.npy", "labels.npy"]


def test_switched_off_and_unwritable(cache_env, monkeypatch, tmp_path):
    hu, sp = _chest(2), (5.0, 2.0, 2.0)
    seg = get_segmenter("threshold", device="cpu")
    monkeypatch.setenv(LABEL_CACHE_ENV, "off")
    cache = LabelMapCache()
    assert not cache.enabled
    seg.segment_cached(from_canonical(hu, sp), "3", cache)
    assert not _entries(cache_env) and cache.misses == 0
    monkeypatch.delenv(LABEL_CACHE_ENV)
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    bad = LabelMapCache(blocker / "labels")  # its folder cannot be created: computed, not stored, no error
    lm = seg.segment_cached(from_canonical(hu, sp), "3", bad)
    assert np.array_equal(lm.labels, threshold_segment(hu, sp)) and bad.misses == 1


def test_shared_between_processes_and_metric_instances(cache_env, tmp_path):
    """A reference segmented by one process is read by another (a fresh interpreter), and by a new
    Segmentation metric instance, with the same scores."""
    from trace_bench.io import write_nifti

    sp = (5.0, 2.0, 2.0)
    ref_v = from_canonical(_chest(3), sp)
    gen_v = from_canonical(np.roll(_chest(4), 2, axis=2), sp)
    write_nifti(ref_v, tmp_path / "ref.nii.gz")
    code = ("import sys; from trace_bench.io import read_volume; from trace_bench.cache import LabelMapCache; "
            "from trace_bench.segmenters import get_segmenter; c = LabelMapCache(); "
            "get_segmenter('threshold', device='cpu').segment_cached(read_volume(sys.argv[1]), '3', c); "
            "print(c.hits, c.misses)")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    runs = [subprocess.run([sys.executable, "-c", code, str(tmp_path / "ref.nii.gz")], env=env, capture_output=True,
                           text=True, check=True).stdout.split() for _ in range(2)]
    assert runs == [["0", "1"], ["1", "0"]]  # the second process reads the first one's entry
    from trace_bench.io import read_volume

    ref = read_volume(tmp_path / "ref.nii.gz")
    ctx = RunContext()
    a, b = Segmentation(), Segmentation()
    va = a.case_values(CaseData("m", "c", gen_v, reference=ref), ctx)
    assert a.label_cache(ctx).hits == 1 and a.label_cache(ctx).misses == 1  # reference from disk, generated computed
    vb = b.case_values(CaseData("m2", "c", gen_v, reference=ref), ctx)
    assert b.label_cache(ctx).hits == 2 and b.label_cache(ctx).misses == 0
    assert va == vb and 0.5 < va["dice"] < 1.0
    assert a.label_cache(RunContext(cache_dir=str(tmp_path / "elsewhere"))).root == tmp_path / "elsewhere" / "labels"
