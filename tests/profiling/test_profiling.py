"""Black-box profiling (``trace-bench profile-command``) and one-command regression checks
(``trace-bench regress``).

* a fake generator (a Python script run as a subprocess) writes NIfTI volumes of known slice counts
  over time and holds a 200 MB bytearray: slice count exact, fps near the truth from the script's own
  timestamps, RSS peak above the allocation, the JSON accepted by ``run --profile``;
* the NVML sampler's arithmetic with pynvml mocked at the binding boundary;
* profile JSONs given to ``run --profile``: impossible values and wrong types refused in one line;
* ``regress`` end to end on the demo checkpoint (2 tiny cases, 2 DDIM steps): passes against a
  baseline from the same checkpoint and seed, exits 1 on a checkpoint with noised weights, refuses a
  baseline whose protocol ids differ.
"""

from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace

import pytest
from typer.testing import CliRunner

from trace_bench.cli import app
from trace_bench.errors import ConfigError
from trace_bench.profiling import (NvmlSampler, WarmupRule, fps_from_outputs, parse_warmup, profile_command,
                                   run_measured)
from trace_bench.profiling.profile_json import read_profile

from helpers.paths import DEMO_CTS

ALLOC = 200 * 1024 * 1024

FAKE_GENERATOR = textwrap.dedent("""
    import json, os, sys, time
    import numpy as np, nibabel as nib
    out, slices, pause, truth = sys.argv[1], [int(x) for x in sys.argv[2].split(",")], float(sys.argv[3]), sys.argv[4]
    blob = bytearray(%d)
    for i in range(0, len(blob), 4096):  # touch every page: resident, not just reserved
        blob[i] = 1
    os.makedirs(out, exist_ok=True)
    time.sleep(pause)  # "loading the model"
    times = []
    for i, n in enumerate(slices):
        time.sleep(pause)
        arr = np.full((16, 16, n), -1000.0, np.float32)
        arr[4:12, 4:12] = 40.0
        tmp = os.path.join(out, ".tmp-%%d.nii.gz" %% i)
        nib.save(nib.Nifti1Image(arr, np.diag([1.0, 1.0, 2.0, 1.0])), tmp)
        os.replace(tmp, os.path.join(out, "case%%d.nii.gz" %% i))
        times.append(time.time())
    with open(truth, "w") as fh:
        json.dump({"times": times, "slices": slices, "alive": len(blob)}, fh)
""" % ALLOC)


@pytest.fixture
def fake_script(tmp_path: Path) -> Path:
    p = tmp_path / "fake_generator.py"
    p.write_text(FAKE_GENERATOR, encoding="utf-8")
    return p


# ------------------------------------------------------------------------------------------- fps rule
def test_warmup_rules_and_fps_arithmetic():
    assert parse_warmup("first-output") == WarmupRule(1) and parse_warmup("none") == WarmupRule(0)
    assert parse_warmup("first:3").name == "first:3"
    with pytest.raises(ConfigError, match="--warmup"):
        parse_warmup("sometimes")
    outs = [(3.0, 10), (5.0, 20), (9.0, 40)]
    r = fps_from_outputs(outs, WarmupRule(1))
    assert r.fps == pytest.approx(60 / 6) and r.slices_total == 70 and r.slices_counted == 60
    assert r.warmup_seconds == 3.0
    # the same number as "first to last plus the first volume's time extrapolated per slice"
    per_slice = 6 / 60
    assert r.fps == pytest.approx(70 / (6 + 10 * per_slice))
    assert fps_from_outputs(outs, WarmupRule(0)).fps == pytest.approx(70 / 9)
    one = fps_from_outputs([(2.0, 8)], WarmupRule(1))
    assert one.applied.name == "none" and one.fps == pytest.approx(4.0) and "needs at least 2" in one.note
    assert fps_from_outputs([], WarmupRule(1)).fps is None


# ----------------------------------------------------------------------------------- end to end (CPU)
def test_profile_command_fake_generator_end_to_end(tmp_path: Path, fake_script: Path):
    out_dir, truth_p, prof = tmp_path / "gen", tmp_path / "truth.json", tmp_path / "profile.json"
    slices = [5, 7, 9, 11]
    cmd = [sys.executable, str(fake_script), str(out_dir), ",".join(map(str, slices)), "0.5", str(truth_p)]
    res = profile_command(cmd, out_dir, interval=0.05, out=prof, use_gpu=False, log=lambda s: None)
    truth = json.loads(truth_p.read_text())
    assert res["slices"] == sum(slices) and res["volumes"] == 4
    assert sorted(o["slices"] for o in res["outputs"]) == slices
    true_fps = sum(slices[1:]) / (truth["times"][-1] - truth["times"][0])
    assert res["fps"] == pytest.approx(true_fps, rel=0.15)
    assert res["rss_peak_bytes"] > ALLOC
    assert res["gpu_available"] is False and res["inference_peak_bytes"] is None
    assert res["warmup"] == "first-output" and res["samples"] >= 10 and res["wall_seconds"] > 2.0
    on_disk = json.loads(prof.read_text())
    assert on_disk["fps"] == res["fps"] and "timeline" in on_disk

    assert read_profile(prof, "Fake")["fps"] == res["fps"]  # usable with `run --profile Fake=FILE`


def test_profile_command_cli_train_command_and_failures(tmp_path: Path, fake_script: Path):
    train = tmp_path / "train.py"
    train.write_text(f"import time\nblob = bytearray({ALLOC})\nblob[::4096] = b'x' * len(blob[::4096])\n"
                     "time.sleep(60)\n", encoding="utf-8")
    prof = tmp_path / "p.json"
    r = CliRunner().invoke(app, ["profile-command", "--train-command", f"{sys.executable} {train}",
                                 "--train-seconds", "1.5", "--no-gpu", "--interval", "0.05", "--out", str(prof)])
    assert r.exit_code == 0, r.output
    data = json.loads(prof.read_text())
    assert data["train_stopped"] is True and data["train_peak_bytes"] > ALLOC and data["train_seconds"] < 20
    assert data["fps"] is None and data["gpu_available"] is False

    assert read_profile(prof, "M")["train_peak_bytes"] == data["train_peak_bytes"]
    bad = CliRunner().invoke(app, ["profile-command", "--command", f"{sys.executable} -c 'import sys; sys.exit(3)'",
                                   "--output-dir", str(tmp_path / "x"), "--no-gpu"])
    assert bad.exit_code == 2 and "exited with status 3" in bad.output
    nothing = CliRunner().invoke(app, ["profile-command", "--no-gpu"])
    assert nothing.exit_code == 2 and "nothing to profile" in nothing.output


@pytest.mark.parametrize("text,words", [
    ('{"fps": -1}', "'fps' must be a finite number"),
    ('{"fps": 0}', "'fps' must be a finite number"),
    ('{"fps": NaN}', "got nan"),
    ('{"fps": 1e400}', "got inf"),
    ('{"fps": Infinity}', "got inf"),
    ('{"fps": "12"}', "got '12'"),
    ('{"fps": true}', "got True"),
    ('{"inference_peak_bytes": -5}', "'inference_peak_bytes' must be a whole number of bytes"),
    ('{"inference_peak_bytes": 1e400}', "'inference_peak_bytes'"),
    ('{"inference_peak_bytes": 10000000000000000000000000000000000000000000000000000}', "in [0, 2^60]"),
    ('{"train_peak_bytes": 1.5}', "'train_peak_bytes'"),
    ('{"train_peak_bytes": [1]}', "'train_peak_bytes'"),
    ('{"fps": 3.0, "device": 7}', "'device' must be a string"),
    ('[1, 2]', "expected a JSON object"),
    ('{"speed": 3}', "got keys ['speed']"),
    ('{"fps": 3', "not valid JSON"),
])
def test_bad_profile_values_are_refused_in_one_line(tmp_path: Path, text: str, words: str):
    p = tmp_path / "p.json"
    p.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as err:
        read_profile(p, "MedSyn")
    msg = str(err.value)
    assert msg.startswith(f"--profile MedSyn={p}: ") and words in msg and "\n" not in msg, msg


def test_good_profiles_and_unusable_paths(tmp_path: Path):
    p = tmp_path / "p.json"
    p.write_text('{"fps": 2.5, "inference_peak_bytes": 3.0e9, "train_peak_bytes": null, "device": "cpu", "x": [1]}')
    assert read_profile(p, "M") == {"fps": 2.5, "inference_peak_bytes": 3.0e9, "train_peak_bytes": None,
                                    "device": "cpu", "x": [1]}
    with pytest.raises(ConfigError, match="does not exist"):
        read_profile(tmp_path / "missing.json", "M")
    with pytest.raises(ConfigError, match="folder"):
        read_profile(tmp_path, "M")
    import os

    fifo = tmp_path / "fifo.json"
    os.mkfifo(fifo)
    with pytest.raises(ConfigError, match="not a regular file"):
        read_profile(fifo, "M")  # refused without opening it (no hang)


def test_run_refuses_a_bad_profile_before_any_work(tmp_path: Path):
    from helpers.fake_metrics import make_small_dataset

    data = tmp_path / "data"
    make_small_dataset(data)
    bad = tmp_path / "bad.json"
    bad.write_text('{"fps": -1, "inference_peak_bytes": 1e400}')
    out = tmp_path / "out"
    r = CliRunner().invoke(app, ["run", "--reference", str(data / "reference"), "--method", f"M={data / 'noisy'}",
                                 "--metrics", "temporal_flickering", "--profile", f"M={bad}", "--out", str(out),
                                 "--no-plots"])
    assert r.exit_code == 2 and "--profile M=" in r.output and "'fps'" in r.output
    assert not (out / "summary.csv").exists()


def test_one_black_box_profiling_command():
    """`profile-command` profiles any generator (the README's command); `profile` only TRACE checkpoints."""
    r = CliRunner().invoke(app, ["profile", "--help"])
    assert r.exit_code == 0 and "--checkpoint" in r.output and "--command" not in r.output
    assert "profile-command" in r.output
    r = CliRunner().invoke(app, ["profile-command", "--help"])
    assert r.exit_code == 0 and "--command" in r.output and "--output-dir" in r.output


def test_shell_flag_runs_through_sh(tmp_path: Path):
    m = run_measured(f"echo hi > {tmp_path / 'f.txt'} && sleep 0.2", shell=True, interval=0.05)
    assert m.returncode == 0 and (tmp_path / "f.txt").read_text().strip() == "hi"


# ------------------------------------------------------------------------------------- NVML (mocked)
def test_nvml_sampler_arithmetic(monkeypatch):
    pynvml = pytest.importorskip("pynvml")
    state = {"used": 1_000, "procs": []}
    calls = []
    monkeypatch.setattr(pynvml, "nvmlInit", lambda: calls.append("init"))
    monkeypatch.setattr(pynvml, "nvmlShutdown", lambda: calls.append("shutdown"))
    monkeypatch.setattr(pynvml, "nvmlDeviceGetCount", lambda: 2)
    monkeypatch.setattr(pynvml, "nvmlDeviceGetHandleByIndex", lambda i: f"h{i}")
    monkeypatch.setattr(pynvml, "nvmlDeviceGetName", lambda h: b"NVIDIA H20")
    monkeypatch.setattr(pynvml, "nvmlDeviceGetMemoryInfo", lambda h: SimpleNamespace(total=96 << 30, used=state["used"]))
    monkeypatch.setattr(pynvml, "nvmlDeviceGetComputeRunningProcesses", lambda h: state["procs"])
    monkeypatch.setattr(pynvml, "nvmlDeviceGetGraphicsRunningProcesses", lambda h: [SimpleNamespace(pid=11, usedGpuMemory=7)])
    s = NvmlSampler(1)
    assert s.name == "NVIDIA H20" and s.total == 96 << 30 and s.handle == "h1"
    state["procs"] = [SimpleNamespace(pid=10, usedGpuMemory=300), SimpleNamespace(pid=11, usedGpuMemory=50),
                      SimpleNamespace(pid=99, usedGpuMemory=10_000)]  # pid 99 is another tenant
    g = s.sample({10, 11})
    assert g.device_used == 1_000 and g.process_used == 350  # pid 11 listed twice counts once (its max)
    state["procs"] = [SimpleNamespace(pid=10, usedGpuMemory=None)]  # NVML without per-process figures
    monkeypatch.setattr(pynvml, "nvmlDeviceGetGraphicsRunningProcesses", lambda h: [])
    assert s.sample({10}).process_used is None and s.process_reported
    s.close()
    assert calls == ["init", "shutdown"]

    from trace_bench.profiling import Measurement, NvmlUnavailable

    with pytest.raises(NvmlUnavailable, match="sees 2 GPU"):
        NvmlSampler(5)
    m = Measurement(0, False, 0.0, 1.0, 3, 10, 1_000, 5_000, None)  # device figure minus the reading before
    assert m.gpu_peak_bytes == 4_000 and "device used memory" in m.gpu_memory_kind
    assert Measurement(0, False, 0.0, 1.0, 3, 10, 1_000, 5_000, 3_500).gpu_peak_bytes == 3_500


def test_profile_command_with_mocked_nvml(tmp_path: Path, fake_script: Path, monkeypatch):
    """The whole path with a GPU that NVML reports: per-process memory of the tree's pids is the figure."""
    pynvml = pytest.importorskip("pynvml")
    import os

    me = os.getpid()
    monkeypatch.setattr(pynvml, "nvmlInit", lambda: None)
    monkeypatch.setattr(pynvml, "nvmlShutdown", lambda: None)
    monkeypatch.setattr(pynvml, "nvmlDeviceGetCount", lambda: 1)
    monkeypatch.setattr(pynvml, "nvmlDeviceGetHandleByIndex", lambda i: "h")
    monkeypatch.setattr(pynvml, "nvmlDeviceGetName", lambda h: "Fake GPU")
    monkeypatch.setattr(pynvml, "nvmlDeviceGetMemoryInfo", lambda h: SimpleNamespace(total=1 << 34, used=1 << 30))

    def procs(h):  # every process except the profiler itself uses 123 MB
        import psutil

        return [SimpleNamespace(pid=p.pid, usedGpuMemory=123 << 20) for p in psutil.Process(me).children(recursive=True)]

    monkeypatch.setattr(pynvml, "nvmlDeviceGetComputeRunningProcesses", procs)
    monkeypatch.setattr(pynvml, "nvmlDeviceGetGraphicsRunningProcesses", lambda h: [])
    out_dir = tmp_path / "gen"
    cmd = [sys.executable, str(fake_script), str(out_dir), "3,4", "0.2", str(tmp_path / "t.json")]
    res = profile_command(cmd, out_dir, interval=0.05, log=lambda s: None)
    assert res["gpu_available"] is True and res["device"] == "Fake GPU"
    assert res["inference_peak_bytes"] == 123 << 20 and "per-process" in res["memory_kind"]
    assert res["slices"] == 7


# ------------------------------------------------------------------------------------------ regress
def _tiny_inputs(root: Path) -> tuple[Path, Path]:
    """2 cases of 6 slices at 64 x 64 (4x in-plane subsampling of the shipped CTs) and their masks."""
    from trace_bench.io import read_volume, write_nifti
    from trace_bench.volume import Volume
    from trace_model.data import segment_labels

    ref, masks = root / "reference", root / "masks"
    for name in ("lung1", "lung2"):
        v = read_volume(DEMO_CTS / f"{name}.nii.gz")
        z = v.shape[0] // 2
        aff = v.affine.copy()
        aff[:3, 0] *= 4
        aff[:3, 1] *= 4
        small = Volume(v.array[z - 3:z + 3, ::4, ::4], (v.spacing[0], v.spacing[1] * 4, v.spacing[2] * 4), aff,
                       {"convention": "hu"})
        write_nifti(small, ref / f"{name}.nii.gz")
        write_nifti(segment_labels(small, "threshold"), masks / f"{name}.nii.gz")
    return ref, masks


def test_regress_passes_on_same_checkpoint_and_fails_on_degraded(tmp_path: Path):
    import torch

    from trace_bench.config import RunConfig
    from trace_bench.regress import regress
    from trace_bench.run.pipeline import run
    from trace_model.checkpoint import load_checkpoint, save_checkpoint
    from trace_model.demo import DEMO_CHECKPOINT
    from trace_model.generate import generate

    old = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        ref, masks = _tiny_inputs(tmp_path)
        gen = tmp_path / "baseline-volumes"
        generate(DEMO_CHECKPOINT, masks, gen, steps=2, seed=0, device="cpu")
        base = tmp_path / "base"
        cfg = RunConfig(out=str(base), reference=str(ref), reference_masks=str(masks), methods={"TRACE": str(gen)},
                        metrics=["segmentation", "temporal_flickering"], frame_size=64, bootstrap=50, plots=False,
                        published=False, progress=False, device="cpu")
        run(cfg, report=False)

        same = regress(DEMO_CHECKPOINT, base, out=tmp_path / "r-same", steps=2, seed=0, device="cpu", log=lambda s: None)
        assert same.ok, same.comparison.rows.to_string()
        st = same.comparison.rows.set_index("metric").status  # seg_n_classes has no direction: "skip"
        assert st.isin(["ok", "skip"]).all() and (st == "ok").sum() > 4 and st.get("dice") == "ok"
        assert len(list(same.generated.glob("*.nii.gz"))) == 2

        model = load_checkpoint(DEMO_CHECKPOINT, "cpu")
        g = torch.Generator().manual_seed(0)
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn(p.shape, generator=g) * (p.std() if p.numel() > 1 else 0.1) * 2.0)
        bad_ckpt = save_checkpoint(tmp_path / "degraded", model)
        r = CliRunner().invoke(app, ["regress", "--checkpoint", str(bad_ckpt), "--baseline", str(base),
                                     "--out", str(tmp_path / "r-bad"), "--steps", "2", "--seed", "0", "--device", "cpu"])
        assert r.exit_code == 1, r.output
        assert "REGRESSED" in r.output and "regression(s) beyond tolerance" in r.output
        summary = json.loads((tmp_path / "r-bad" / "regress.json").read_text())
        assert summary["ok"] is False and summary["regressions"] >= 1

        # a baseline scored under another protocol is refused in one line, before generating anything
        man_p = base / "manifest.json"
        man = json.loads(man_p.read_text())
        man["metrics"]["segmentation"]["protocol"] = "segmentation-v0-other"
        man_p.write_text(json.dumps(man))
        r = CliRunner().invoke(app, ["regress", "--checkpoint", str(DEMO_CHECKPOINT), "--baseline", str(base),
                                     "--out", str(tmp_path / "r-refused"), "--steps", "2"])
        assert r.exit_code == 2 and "other protocols or weights" in r.output and "segmentation protocol" in r.output
        assert not list((tmp_path / "r-refused" / "generated" / "TRACE").glob("*.nii.gz"))
    finally:
        torch.set_num_threads(old)
