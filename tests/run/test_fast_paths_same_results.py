"""Speed paths without changed results: the CPU thread rule, generation progress, the per-pass cache of
the sampler (bit-identical outputs), the input-hash cache, and a light ``trace-bench --help``.

No timings are asserted here; ``benchmarks/bench_generate_cpu.py``, ``bench_cli_startup.py`` and
``bench_hash_cache.py`` measure them.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from trace_bench import inputs
from trace_bench.inputs import hash_cache_dir, input_hash
from trace_bench.io import read_volume, write_nifti
from trace_bench.volume import Volume
from trace_model.checkpoint import load_checkpoint
from trace_model.conditioning import encode_labels
from trace_model.demo import DEMO_CHECKPOINT
from trace_model.generate import generate
from trace_model.profile import phantom_labels
from trace_model.runtime import Progress, torch_threads
from trace_model.sampler import SamplerOptions, sample_volumes

from helpers.paths import ROOT


# Recorded with the code before the per-pass cache (main at 85fe754, torch.set_num_threads(1), this repo's
# torch build): per-slice sums (HU) of `generate(DEMO_CHECKPOINT, masks, out, steps=3, seed=7)` on the two
# phantom label maps written by `_phantom_masks`. On that machine the arrays' sha256 (float32 bytes) were
# 759da9ecf48682a6... (caseA) and dfc61218810627b3... (caseB), and the new code reproduces them bit for bit;
# the test compares sums to 1e-6 relative so that another CPU's kernels (other summation order) still pass.
REFERENCE_SUMS = {
    "caseA": [-2487877.5, -2596880.5, -2634476.5, -2558890.75, -2451180.0],
    "caseB": [-2512978.0, -2587768.75, -2622811.5, -2545563.0, -2490592.0],
}


def _phantom_masks(folder: Path) -> Path:
    lab = phantom_labels(5, 64).numpy().astype(np.float32)
    aff = np.diag([1.0, 1.0, 2.0, 1.0])
    write_nifti(Volume(lab, (2.0, 1.0, 1.0), aff, {}), folder / "caseA.nii.gz")
    write_nifti(Volume(lab[::-1].copy(), (2.0, 1.0, 1.0), aff, {}), folder / "caseB.nii.gz")
    return folder


# ------------------------------------------------------------------------------ threads
def test_torch_threads_rule_and_restore(monkeypatch):
    monkeypatch.delenv("TRACE_BENCH_THREADS", raising=False)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    old = torch.get_num_threads()
    with torch_threads(None, "cpu") as n:
        assert n == 1 == torch.get_num_threads()
    assert torch.get_num_threads() == old
    with torch_threads(2, "cpu") as n:
        assert n == 2
    with torch_threads(0, "cpu") as n:  # 0: torch's own setting
        assert n == old
    with torch_threads(None, "cuda") as n:  # CUDA runs keep the caller's CPU setting
        assert n == old
    monkeypatch.setenv("TRACE_BENCH_THREADS", "2")
    with torch_threads(None, "cpu") as n:
        assert n == 2
    with pytest.raises(ValueError), torch_threads(-1):
        pass
    assert torch.get_num_threads() == old


def test_generate_restores_threads_and_matches_recorded_outputs(tmp_path, monkeypatch, capfd):
    """generate() as a library: the caller's thread count survives, outputs equal the pre-optimisation code's."""
    monkeypatch.delenv("TRACE_BENCH_THREADS", raising=False)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    masks = _phantom_masks(tmp_path / "masks")
    old = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        files = generate(DEMO_CHECKPOINT, masks, tmp_path / "out", steps=3, seed=7, device="cpu", progress=False)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(old)
    err = capfd.readouterr().err
    assert "pass " not in err and "wrote" in err  # no progress lines, the usual "wrote" lines
    for f in files:
        sums = read_volume(f).array.sum(axis=(1, 2), dtype=np.float64)
        np.testing.assert_allclose(sums, REFERENCE_SUMS[f.name[: -len(".nii.gz")]], rtol=1e-6)


def test_pass_cache_is_bit_identical():
    """The per-pass cache (position / flow features computed once per DDIM pass) changes nothing."""
    model = load_checkpoint(DEMO_CHECKPOINT, torch.device("cpu"))
    m = encode_labels(phantom_labels(6, 64), model.cfg.conditioning)
    masks = torch.stack([m, m.flip(-1)])
    forward = model.forward

    def uncached(*a, pass_cache=None, **kw):
        return forward(*a, **kw)

    for mode, flow in (("overlap", "previous"), ("overlap", "refine"), ("markovian", "zero")):
        opts = SamplerOptions(steps=3, mode=mode, inference_flow=flow)
        with torch_threads(1):
            a = sample_volumes(model, masks, lengths=[6, 4], seeds=[3, 4], options=opts).frames
            model.forward = uncached
            try:
                b = sample_volumes(model, masks, lengths=[6, 4], seeds=[3, 4], options=opts).frames
            finally:
                del model.forward
        assert torch.equal(a, b), (mode, flow)


# ------------------------------------------------------------------------------ progress
def test_progress_callback_and_switch():
    model = load_checkpoint(DEMO_CHECKPOINT, torch.device("cpu"))
    masks = encode_labels(phantom_labels(4, 64), model.cfg.conditioning)[None]
    seen: list[tuple[int, int]] = []
    with torch_threads(1):
        sample_volumes(model, masks, seeds=[0], options=SamplerOptions(steps=1), progress=lambda d, t: seen.append((d, t)))
    assert seen == [(i, 5) for i in range(1, 6)]  # 1 + (4 - 2) * 2 passes

    out = io.StringIO()
    p = Progress(2, stream=out, every=0.0)
    p.begin_batch(2)
    for d in range(1, 6):
        p.passes(d, 5)
    text = out.getvalue()
    assert "pass 5/5" in text and "100%" in text and text.count("\n") == 5

    quiet = io.StringIO()
    q = Progress(2, enabled=False, stream=quiet, every=0.0)
    q.begin_batch(2)
    q.passes(5, 5)
    assert quiet.getvalue() == ""


def test_cli_generate_no_progress(tmp_path):
    masks = _phantom_masks(tmp_path / "masks")
    env = {**os.environ, "TRACE_BENCH_CACHE": str(tmp_path / "cache")}
    base = [sys.executable, "-m", "trace_bench", "generate", "--checkpoint", str(DEMO_CHECKPOINT), "--masks",
            str(masks / "caseA.nii.gz"), "--steps", "1", "--device", "cpu"]
    r = subprocess.run(base + ["--out", str(tmp_path / "a")], capture_output=True, text=True, cwd=ROOT, env=env,
                       timeout=600, check=False)
    assert r.returncode == 0, r.stderr
    assert "pass 7/7" in r.stderr  # 1 + (5 - 2) * 2 passes, the final line is always printed
    r = subprocess.run(base + ["--out", str(tmp_path / "b"), "--no-progress", "--threads", "1"], capture_output=True,
                       text=True, cwd=ROOT, env=env, timeout=600, check=False)
    assert r.returncode == 0, r.stderr
    assert "pass " not in r.stderr and "wrote" in r.stderr
    assert (tmp_path / "b" / "caseA.nii.gz").is_file()


# ------------------------------------------------------------------------------ hash cache
@pytest.fixture()
def hash_env(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("TRACE_BENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("TRACE_BENCH_HASH_CACHE", raising=False)
    monkeypatch.setattr(inputs, "RACY_SECONDS", 0.0)  # the files below were written a moment ago
    return tmp_path / "cache" / "hashes"


def _entries(folder: Path) -> list[Path]:
    return sorted(folder.rglob("*.json")) if folder.is_dir() else []


def test_hash_cache_hit_miss_and_disable(tmp_path, hash_env, monkeypatch):
    f = tmp_path / "vol.bin"
    f.write_bytes(b"abc" * 1000)
    want = hashlib.sha256(f.read_bytes()).hexdigest()
    assert hash_cache_dir() == hash_env
    assert input_hash(f) == want
    assert len(_entries(hash_env)) == 1
    rec = json.loads(_entries(hash_env)[0].read_text())
    assert rec["sha256"] == want and rec["size"] == 3000

    # a warm hit returns the stored digest without reading the file: plant a marker digest to prove it
    rec["sha256"] = "0" * 64
    _entries(hash_env)[0].write_text(json.dumps(rec))
    assert input_hash(f) == "0" * 64

    # touching the file (new mtime, same bytes) misses and re-hashes
    st = os.stat(f)
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    assert input_hash(f) == want

    # changed content of the same size misses too
    f.write_bytes(b"abd" * 1000)
    assert input_hash(f) == hashlib.sha256(b"abd" * 1000).hexdigest()

    # disabled: no lookup (the planted marker would be returned otherwise), nothing written
    rec = json.loads(_entries(hash_env)[0].read_text())
    rec["sha256"] = "1" * 64
    _entries(hash_env)[0].write_text(json.dumps(rec))
    monkeypatch.setenv("TRACE_BENCH_HASH_CACHE", "0")
    assert hash_cache_dir() is None
    assert input_hash(f) == hashlib.sha256(b"abd" * 1000).hexdigest()
    g = tmp_path / "other.bin"
    g.write_bytes(b"x")
    n = len(_entries(hash_env))
    input_hash(g)
    assert len(_entries(hash_env)) == n


def test_hash_cache_folder_and_racy_files(tmp_path, hash_env, monkeypatch):
    d = tmp_path / "series"
    (d / "sub").mkdir(parents=True)
    (d / "a.dcm").write_bytes(b"1" * 100)
    (d / "sub" / "b.dcm").write_bytes(b"2" * 100)
    monkeypatch.setenv("TRACE_BENCH_HASH_CACHE", "0")
    plain = input_hash(d)
    monkeypatch.delenv("TRACE_BENCH_HASH_CACHE")
    assert input_hash(d) == plain  # cold, fills the cache per file
    assert len(_entries(hash_env)) == 2
    assert input_hash(d) == plain  # warm

    # a file modified within RACY_SECONDS of hashing is never stored
    monkeypatch.setattr(inputs, "RACY_SECONDS", 3600.0)
    fresh = tmp_path / "fresh.bin"
    fresh.write_bytes(b"new")
    assert input_hash(fresh) == hashlib.sha256(b"new").hexdigest()
    assert len(_entries(hash_env)) == 2


def test_hash_cache_unwritable_is_ignored(tmp_path, monkeypatch):
    blocker = tmp_path / "file-not-folder"
    blocker.write_text("x")
    monkeypatch.setenv("TRACE_BENCH_CACHE", str(blocker))  # hashes/ cannot be created below a file
    monkeypatch.setattr(inputs, "RACY_SECONDS", 0.0)
    f = tmp_path / "v.bin"
    f.write_bytes(b"payload")
    assert input_hash(f) == hashlib.sha256(b"payload").hexdigest()


# ------------------------------------------------------------------------------ light start-up
@pytest.mark.parametrize("args", [["--help"], ["inspect", "--help"]])
def test_help_imports_no_numpy_or_torch(args):
    code = ("import sys, json, runpy\n"
            f"sys.argv = ['trace-bench'] + {args!r}\n"
            "try:\n    runpy.run_module('trace_bench', run_name='__main__')\nexcept SystemExit:\n    pass\n"
            "heavy = [m for m in ('numpy', 'torch', 'nibabel', 'scipy', 'trace_bench.io', 'trace_model') "
            "if m in sys.modules]\n"
            "print(json.dumps(heavy), file=sys.stderr)\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, cwd=ROOT, timeout=300, check=False)
    assert json.loads(r.stderr.decode().strip().splitlines()[-1]) == []


def test_lazy_top_level_names():
    code = ("import sys, trace_bench\n"
            "assert 'numpy' not in sys.modules\n"
            "from trace_bench import read_volume, write_nifti, Volume, VolumeError, TraceBenchError\n"
            "from trace_bench.io import read_volume as r2\n"
            "assert read_volume is r2 and 'read_volume' in dir(trace_bench)\n"
            "try:\n    trace_bench.no_such_name\nexcept AttributeError:\n    print('ok')\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=300, check=False)
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr
