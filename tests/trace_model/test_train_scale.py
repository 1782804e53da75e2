"""TRACE training at scale: prepared sets (resumable, worker-count independent, shardable), prepare -> train ->
generate on the shipped demo data, DDP under torchrun (2 gloo ranks == 1 process), exact resume after a kill.

Tiny sizes throughout (16 px, a 2-level UNet, Farneback flow) so the file stays well under a minute of CPU."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from trace_bench.errors import ConfigError
from trace_model.config import TraceConfig
from trace_model.distributed import rank_positions, split_batch
from trace_model.prepare import PreparedPairDataset, load_prepared, prepare
from trace_model.train import StepBatchSampler, train

from helpers.paths import DEMO_CTS, DEMO_DIR, ROOT

STEPS = 4


def tiny_cfg() -> TraceConfig:
    return TraceConfig().replace(
        model={"image_size": 16, "channels": [8, 16], "attention_levels": [False, True], "num_res_blocks": 1,
               "num_head_channels": 8, "norm_num_groups": 4, "pos_dim": 64},
        conditioning={"flow": "farneback", "text": "none"},
        diffusion={"prediction_type": "v_prediction"},
        train={"batch_size": 4, "steps": 2 * STEPS, "warmup_steps": 2, "lr": 3e-3, "min_lr": 1e-4, "log_every": 1,
               "save_every": 2, "bf16": False, "grad_checkpointing": False},
        data={"skips": [1, 2, 4]})


def tree(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def weights(ck: Path) -> dict[str, torch.Tensor]:
    return load_file(str(Path(ck) / "model.safetensors"))


def max_diff(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    assert a.keys() == b.keys()
    return max((a[k] - b[k]).abs().max().item() for k in a)


def quiet(_: str) -> None:
    pass


@pytest.fixture(scope="module")
def cfg_file(tmp_path_factory) -> Path:
    p = tmp_path_factory.mktemp("cfg") / "tiny.json"
    p.write_text(tiny_cfg().to_json(), encoding="utf-8")
    return p


@pytest.fixture(scope="module")
def prep(tmp_path_factory) -> Path:
    """The demo volumes + tumour label maps + prompts, prepared with one worker."""
    out = tmp_path_factory.mktemp("prep1")
    res = prepare(tiny_cfg(), out, volumes=DEMO_CTS, masks=DEMO_DIR / "tumour_masks",
                  prompts=DEMO_DIR / "prompts.csv", workers=1, log=quiet)
    assert res["done"] == ["lung1", "lung2"] and res["skipped"] == []
    return out


@pytest.fixture(scope="module")
def single(prep, tmp_path_factory) -> Path:
    """One process, whole batch, one DataLoader worker: the run DDP and resume are compared with."""
    out = tmp_path_factory.mktemp("single")
    train(tiny_cfg(), out=out, prepared=prep, device="cpu", log=quiet, loader_workers=1, stop_at=STEPS)
    return out


def test_prepare_is_resumable_and_independent_of_workers(prep, tmp_path):
    before = tree(prep)
    assert set(before) == {"manifest.json", "cases/lung1.safetensors", "cases/lung2.safetensors"}
    man = json.loads(before["manifest.json"])
    assert man["cases"]["lung1"]["slices"] == 48 and man["cases"]["lung2"]["pairs"] > 0
    assert man["cases"]["lung1"]["prompt"].startswith("unknown age")
    # two worker processes: byte-identical folder
    two = tmp_path / "prep2"
    prepare(tiny_cfg(), two, volumes=DEMO_CTS, masks=DEMO_DIR / "tumour_masks", prompts=DEMO_DIR / "prompts.csv",
            workers=2, log=quiet)
    assert tree(two) == before
    # second call: nothing to do, nothing rewritten
    res = prepare(tiny_cfg(), prep, volumes=DEMO_CTS, masks=DEMO_DIR / "tumour_masks",
                  prompts=DEMO_DIR / "prompts.csv", log=quiet)
    assert res["done"] == [] and sorted(res["skipped"]) == ["lung1", "lung2"] and tree(prep) == before
    # one shard deleted (or corrupted): only it is redone, identical to before
    (two / "cases" / "lung2.safetensors").unlink()
    (two / "cases" / "lung1.safetensors").write_bytes(before["cases/lung1.safetensors"])
    res = prepare(tiny_cfg(), two, volumes=DEMO_CTS, masks=DEMO_DIR / "tumour_masks",
                  prompts=DEMO_DIR / "prompts.csv", workers=2, log=quiet)
    assert res["done"] == ["lung2"] and res["skipped"] == ["lung1"] and tree(two) == before
    # a changed setting (image size) makes every case stale; the training set refuses a mismatched config
    with pytest.raises(ConfigError, match=r"manifest\.json: prepared with different settings .*image_size"):
        load_prepared(prep, tiny_cfg().replace(model={"image_size": 32}))


def test_prepare_shards_partition_the_cases(prep, tmp_path):
    from trace_bench.run.assign import select_cases

    out = tmp_path / "sharded"
    got = {}
    for i in (1, 2):
        res = prepare(tiny_cfg(), out, volumes=DEMO_CTS, masks=DEMO_DIR / "tumour_masks",
                      prompts=DEMO_DIR / "prompts.csv", shard=f"{i}/2", log=quiet)
        assert res["done"] == select_cases(["lung1", "lung2"], f"{i}/2")
        got[i] = json.loads((out / f"manifest-{i}-of-2.json").read_text())["cases"]
    assert sorted(got[1]) + sorted(got[2]) != [] and not set(got[1]) & set(got[2])
    full = json.loads((prep / "manifest.json").read_text())["cases"]
    assert {**got[1], **got[2]} == full
    for n in ("lung1", "lung2"):
        assert (out / "cases" / f"{n}.safetensors").read_bytes() == (prep / "cases" / f"{n}.safetensors").read_bytes()
    assert [c.case_id for c in load_prepared(out, tiny_cfg())] == ["lung1", "lung2"]


def test_prepared_dataset_items(prep):
    ds = PreparedPairDataset(prep, tiny_cfg())
    it = ds[len(ds) - 1]
    assert it["frames"].shape == (2, 16, 16) and it["frames"].dtype == torch.float32
    assert it["flow"].shape == (2, 16, 16) and it["masks"].shape == (2, 16, 16)
    assert 0.0 <= float(it["positions"].min()) and float(it["positions"].max()) <= 1.0
    assert it["prompt"].startswith("unknown age")


def test_batch_split_rules():
    assert split_batch(28, 4, None, 7) == (7, 1) and split_batch(28, 2, 2, None) == (7, 2)
    assert split_batch(28, 1, None, None) == (28, 1)
    with pytest.raises(ConfigError, match="batch_size 28"):
        split_batch(28, 3, None, None)
    samplers = [StepBatchSampler(100, 8, 0, 0, 2, rank=r, world=2, accum=2) for r in range(2)]
    assert rank_positions(8, 2, 1) == [1, 3, 5, 7] and samplers[1].micro_positions(1) == [5, 7]
    one = list(StepBatchSampler(100, 8, 0, 0, 2))
    per_rank = [list(s) for s in samplers]
    for step in range(2):  # the ranks' micro-batches together are the step's global batch, position by position
        full = one[step]
        for r in range(2):
            for m in range(2):
                assert per_rank[r][2 * step + m] == [full[b] for b in samplers[r].micro_positions(m)]


def test_prepare_train_generate_end_to_end(prep, single, cfg_file, tmp_path):
    from typer.testing import CliRunner

    from trace_bench.cli import app

    log = [json.loads(x) for x in (single / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == list(range(1, STEPS + 1)) and all(r["samples_per_s"] > 0 for r in log)
    state = json.loads((single / "last" / "train_state.json").read_text())
    assert state["step"] == STEPS and state["sampler"]["next_step"] == STEPS and "torch" in state["rng"]
    runner = CliRunner()
    out = tmp_path / "gen"
    r = runner.invoke(app, ["generate", "--checkpoint", str(single / "last"), "--masks", str(DEMO_DIR / "tumour_masks"),
                            "--out", str(out), "--steps", "2", "--device", "cpu", "--no-progress"])
    assert r.exit_code == 0, r.output
    from trace_bench.io import read_volume

    v = read_volume(out / "lung1.nii.gz")
    assert v.shape == (48, 256, 256) and torch.isfinite(torch.from_numpy(v.array)).all()
    # the CLI's prepare is the API's prepare (same bytes)
    cli_prep = tmp_path / "cli_prep"
    r = runner.invoke(app, ["prepare", "--config", str(cfg_file), "--out", str(cli_prep), "--volumes",
                            f"{DEMO_DIR / 'reference'}:nifti", "--masks", str(DEMO_DIR / "tumour_masks"), "--prompts",
                            str(DEMO_DIR / "prompts.csv")])
    assert r.exit_code == 0, r.output
    assert tree(cli_prep) == tree(prep)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_ddp_two_gloo_ranks_with_accumulation_equal_one_process(prep, single, cfg_file, tmp_path):
    """batch 4 = 1 per rank x 2 ranks x accum 2 (torchrun, gloo) == 4 in one process, within float tolerance."""
    out = tmp_path / "ddp"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
               OMP_NUM_THREADS="1", MASTER_ADDR="127.0.0.1", GLOO_SOCKET_IFNAME="lo", TP_SOCKET_IFNAME="lo")
    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        env.pop(k, None)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc-per-node", "2",
           "--master-addr", "127.0.0.1", "--master-port", str(free_port()), "-m", "trace_bench", "train",
           "--config", str(cfg_file), "--prepared", str(prep), "--out", str(out), "--device", "cpu",
           "--per-rank-batch", "1", "--stop-after", str(STEPS)]
    p = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=240, check=False)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-5000:]
    assert p.stdout.count("last") == 1  # printed by rank 0 only
    assert "1 per rank x 2 rank(s) x accum 2" in p.stderr
    diff = max_diff(weights(out / "last"), weights(single / "last"))
    print(f"DDP (2 gloo ranks x accum 2) vs 1 process after {STEPS} steps: max abs diff {diff:.3e}")
    assert diff < 1e-5
    a = [json.loads(x)["loss"] for x in (out / "log.jsonl").read_text().splitlines()]
    b = [json.loads(x)["loss"] for x in (single / "log.jsonl").read_text().splitlines()]
    assert len(a) == len(b) == STEPS and max(abs(x - y) for x, y in zip(a, b)) < 1e-5
    st = json.loads((out / "last" / "train_state.json").read_text())
    assert st["world_size"] == 2 and st["accum"] == 2 and st["per_rank_batch"] == 1


class Killed(Exception):
    pass


def test_exact_resume_after_a_kill(prep, single, tmp_path):
    """Killed after step 3 (last checkpoint at step 2) -> resume -> step 4 equals the uninterrupted run exactly,
    and so does the loss curve (the log lines after the checkpoint are written again, not duplicated)."""
    out = tmp_path / "killed"

    def die_at_3(line: str) -> None:
        if line.startswith("step 3/"):
            raise Killed(line)

    with pytest.raises(Killed):
        train(tiny_cfg(), out=out, prepared=prep, device="cpu", log=die_at_3, stop_at=STEPS)
    assert json.loads((out / "last" / "train_state.json").read_text())["step"] == 2
    train(tiny_cfg(), out=out, prepared=prep, device="cpu", log=quiet, resume=out / "last", stop_at=STEPS)
    assert max_diff(weights(out / "last"), weights(single / "last")) == 0.0
    strip = lambda f: [{k: v for k, v in json.loads(x).items() if k in ("step", "loss", "lr")}
                       for x in f.read_text().splitlines()]
    assert strip(out / "log.jsonl") == strip(single / "log.jsonl")
    # and on to 2k: == 2k steps straight
    train(tiny_cfg(), out=out, prepared=prep, device="cpu", log=quiet, resume=out / "last")
    straight = tmp_path / "straight"
    train(tiny_cfg(), out=straight, prepared=prep, device="cpu", log=quiet)
    assert max_diff(weights(out / "last"), weights(straight / "last")) == 0.0
    shutil.rmtree(straight)
