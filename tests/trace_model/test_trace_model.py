"""TRACE model: shapes and channels of every input path, training, DDIM determinism, Algorithm 1's frame
bookkeeping, flexible lengths, checkpoints, generation to NIfTI, profiling.

All networks here are tiny and randomly initialised (plumbing only). The text path is tested with a small
random stand-in module built in this file in place of the frozen CLIP encoder (no CLIP weights offline);
it follows the ``encode_text_hidden(texts) -> (N, L, W)`` API of ``trace_bench.networks.clip``.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from torch import nn

from trace_bench.errors import ConfigError
from trace_bench.io import read_volume, write_nifti
from trace_bench.volume import from_canonical
from trace_model.checkpoint import load_checkpoint, load_train_state, save_checkpoint
from trace_model.conditioning import encode_labels, guidance_map, relative_position_embedding
from trace_model.config import CONFIG_DIR, TraceConfig, load_config
from trace_model.data import CaseTensors, FramePairDataset, pair_indices
from trace_model.flow import FlowEstimator
from trace_model.generate import generate, resample_length
from trace_model.network import TraceUNet
from trace_model.profile import phantom_labels, profile_checkpoint
from trace_model.sampler import SamplerOptions, make_scheduler, sample_volumes
from trace_model.train import lr_at, train, training_loss

from helpers.paths import ROOT

S = 16


@pytest.fixture(autouse=True, scope="module")
def _one_thread(one_torch_thread):
    """Small networks run on one intra-op thread (see conftest.one_torch_thread)."""


def tiny_cfg(**cond) -> TraceConfig:
    c = {"flow": "none", "text": "none", **cond}
    return TraceConfig().replace(
        model={"image_size": S, "channels": [8, 16], "attention_levels": [False, True], "num_res_blocks": 1,
               "num_head_channels": 8, "norm_num_groups": 4, "pos_dim": 64},
        conditioning=c, train={"batch_size": 4, "steps": 6, "warmup_steps": 2, "lr": 3e-3, "min_lr": 1e-4,
                               "log_every": 100, "save_every": 3, "bf16": False, "grad_checkpointing": False},
        data={"skips": [1, 2, 4]})


class StandInText(nn.Module):
    """Random stand-in for the frozen CLIP text encoder: hashes characters to embeddings -> (N, L, W)."""

    def __init__(self, width: int = 32, length: int = 7):
        super().__init__()
        torch.manual_seed(5)
        self.emb, self.L = nn.Embedding(128, width), length

    @torch.no_grad()
    def encode_text_hidden(self, texts):
        ids = torch.tensor([[ord(ch) % 128 for ch in (t + " " * self.L)[: self.L]] for t in texts])
        return self.emb(ids)


def rand_batch(B: int, g: torch.Generator) -> dict:
    return {"frames": torch.rand(B, 2, S, S, generator=g) * 2 - 1,
            "masks": torch.randint(0, 3, (B, 2, S, S), generator=g).float() / 2,
            "flow": torch.randn(B, 2, S, S, generator=g) * 0.01,
            "positions": torch.rand(B, 2, generator=g).sort(dim=1).values, "prompt": ["60 years old male: x"] * B}


# ----------------------------------------------------------------------------- config
def test_configs_load_and_validate(tmp_path):
    paper = load_config(CONFIG_DIR / "paper.toml")
    assert paper.model.image_size == 256 and paper.data.skips == (1, 2, 4) and paper.model.pos_dim == 64
    assert paper.train.lr == 1e-5 and paper.train.min_lr == 1e-6 and paper.train.warmup_steps == 35000
    tiny = load_config(CONFIG_DIR / "tiny_cpu.toml")
    assert tiny.conditioning.text == "none" and tiny.conditioning.flow in ("farneback", "none")
    bad = tmp_path / "bad.toml"
    bad.write_text("[model]\nimage_sise = 64\n")
    with pytest.raises(ConfigError, match="image_sise"):
        load_config(bad)
    with pytest.raises(ConfigError, match="flow"):
        TraceConfig().replace(conditioning={"flow": "raft-tiny"})
    assert TraceConfig.from_dict(json.loads(paper.to_json())) == paper


# ----------------------------------------------------------------------------- conditioning
def test_mask_granularities():
    lab = torch.tensor([[0, 1, 2, 5]])
    assert encode_labels(lab, tiny_cfg(mask_granularity="2").conditioning).tolist() == [[0, 1, 1, 1]]
    assert encode_labels(lab, tiny_cfg(mask_granularity="3").conditioning).tolist() == [[0, 0.5, 1, 1]]
    full = encode_labels(lab, tiny_cfg(mask_granularity="full", max_label=5).conditioning)
    assert torch.allclose(full, torch.tensor([[0, 0.2, 0.4, 1.0]]))


def test_relative_position_embedding_eq7():
    r = torch.tensor([0.0, 0.25, 1.0])
    e = relative_position_embedding(r, dim=64, lam=1000.0)
    assert e.shape == (3, 64)
    k = 3
    want = math.sin(1000.0 * 0.25 / 10000 ** (2 * k / 64))
    assert abs(e[1, 2 * k].item() - want) < 1e-5
    assert abs(e[1, 2 * k + 1].item() - math.cos(1000.0 * 0.25 / 10000 ** (2 * k / 64))) < 1e-5
    assert torch.allclose(e[0, 0::2], torch.zeros(32)) and torch.allclose(e[0, 1::2], torch.ones(32))


def test_guidance_map_formula():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, 1, S, S, generator=g) * 2 - 1
    m = torch.zeros(2, 1, S, S)
    m[:, :, 4:10, 4:10] = 1.0
    m[:, :, 0:2, :] = 0.5
    G = guidance_map(x, m, gamma=2.0, sigma=0.0, norm="none")  # no smoothing, no normalisation
    u = ((x + 1) / 2) ** 2
    assert torch.allclose(G, m + (1 - m) * u, atol=1e-6)
    Gs = guidance_map(x, m, gamma=2.0, sigma=1.5, norm="minmax")
    assert Gs.min() >= 0 and Gs.max() <= 1 + 1e-6
    assert torch.equal(Gs[m == 1], torch.ones_like(Gs[m == 1]))  # anatomy keeps M = 1


# ----------------------------------------------------------------------------- network input paths
@pytest.mark.parametrize("flow,text", [("none", "none"), ("farneback", "none"), ("none", "clip-vit-b32"),
                                       ("farneback", "clip-vit-b32")])
def test_network_shapes_every_input_path(flow, text):
    cfg = tiny_cfg(flow=flow, text=text, text_dim=32)
    torch.manual_seed(0)
    m = TraceUNet(cfg)
    assert m.unet.conv_in.conv.in_channels == 4 and m.unet.out[-1].conv.out_channels == 2  # 2C+2 -> 2C, C = 1
    b = rand_batch(3, torch.Generator().manual_seed(1))
    th = StandInText().encode_text_hidden(b["prompt"]) if text != "none" else None
    eps = m(b["frames"], torch.tensor([1, 500, 999]), b["masks"], b["positions"],
            flow=b["flow"] if flow != "none" else None, text_hidden=th)
    assert eps.shape == (3, 2, S, S)
    assert (m.flow_adapter is not None) == (flow != "none") and (m.text_adapter is not None) == (text != "none")
    with pytest.raises(ValueError, match="cond"):
        m(b["frames"], torch.tensor([1, 2, 3]), b["masks"][:, :1], b["positions"], text_hidden=th)
    if text != "none":
        with pytest.raises(ValueError, match="text_hidden"):
            m(b["frames"], torch.tensor([1, 2, 3]), b["masks"], b["positions"])


def test_conditioning_changes_output():
    """Every conditioning input reaches the output."""
    cfg = tiny_cfg(flow="farneback", text="clip-vit-b32", text_dim=32)
    torch.manual_seed(0)
    m = TraceUNet(cfg).eval()
    with torch.no_grad():  # zero-initialised layers (adapters, MONAI's resnet conv2 and output conv)
        for p in m.parameters():
            if p.dim() > 1 and not p.any():
                nn.init.normal_(p, std=0.1)
    b = rand_batch(2, torch.Generator().manual_seed(1))
    th = StandInText().encode_text_hidden(["a", "b"])
    t = torch.tensor([300, 300])
    base = m(b["frames"], t, b["masks"], b["positions"], flow=b["flow"], text_hidden=th)
    for kw in ({"cond": b["masks"] * 0}, {"positions": b["positions"].flip(1)}, {"flow": b["flow"] * 5},
               {"text_hidden": StandInText().encode_text_hidden(["zz", "yy"])}):
        args = {"cond": b["masks"], "positions": b["positions"], "flow": b["flow"], "text_hidden": th, **kw}
        out = m(b["frames"], t, args["cond"], args["positions"], flow=args["flow"], text_hidden=args["text_hidden"])
        assert not torch.allclose(out, base), kw.keys()


# ----------------------------------------------------------------------------- data
def test_pair_indices_eq3():
    p = pair_indices(9, (1, 2, 4))
    assert (0, 1) in p and (7, 8) in p and (0, 2) in p and (6, 8) in p and (0, 4) in p and (4, 8) in p
    assert (1, 3) not in p and (2, 6) not in p  # i mod k == 0
    assert len(p) == 8 + 4 + 2
    assert all(j < 9 for _, j in p)


def test_dataset_items_and_flow_cache(tmp_path):
    cfg = tiny_cfg(flow="farneback").replace(data={"cache_dir": str(tmp_path / "cache")})
    g = torch.Generator().manual_seed(0)
    frames = torch.rand(9, S, S, generator=g) * 2 - 1
    case = CaseTensors("c1", frames, torch.randint(0, 3, (9, S, S), generator=g).float() / 2, "p")
    ds = FramePairDataset([case], cfg)
    assert len(ds) == 14 and len(list((tmp_path / "cache").glob("*.safetensors"))) == 1
    it = ds[ds.pairs.index((0, 0, 4, next(q for c, i, j, q in ds.pairs if (i, j) == (0, 4))))]
    assert it["frames"].shape == (2, S, S) and it["masks"].shape == (2, S, S) and it["flow"].shape == (2, S, S)
    assert torch.equal(it["frames"][1], frames[4]) and it["positions"].tolist() == [0.0, 0.5]
    ds2 = FramePairDataset([CaseTensors("c1", frames, case.cond, "p")], cfg)  # from the cache
    assert torch.equal(ds2.cases[0].flows, ds.cases[0].flows)


def test_farneback_flow_detects_shift():
    yy, xx = torch.meshgrid(torch.arange(32.0), torch.arange(32.0), indexing="ij")
    img = lambda c: (torch.exp(-((xx - c) ** 2 + (yy - 16) ** 2) / 20.0) * 2 - 1)[None, None]
    f = FlowEstimator("farneback")(img(14.0), img(16.0))
    assert f.shape == (1, 2, 32, 32)
    assert 0.5 / 32 < f[0, 0, 12:20, 12:20].mean() < 3.0 / 32  # ~2 px to the right, in units of W


def test_raft_without_weights_refuses(tmp_path, monkeypatch):
    from trace_bench.errors import WeightsError

    monkeypatch.setenv("TRACE_BENCH_CACHE", str(tmp_path))
    monkeypatch.delenv("TRACE_BENCH_WEIGHTS_RAFT_SMALL", raising=False)
    with pytest.raises(WeightsError):
        FlowEstimator("raft-small")


# ----------------------------------------------------------------------------- training
def test_lr_schedule():
    cfg = TraceConfig().replace(train={"lr": 1e-5, "min_lr": 1e-6, "warmup_steps": 10, "steps": 110})
    assert lr_at(0, cfg) == pytest.approx(1e-6) and lr_at(9, cfg) == pytest.approx(1e-5)
    assert lr_at(60, cfg) == pytest.approx(5.5e-6) and lr_at(110, cfg) == pytest.approx(1e-6)


@pytest.mark.parametrize("prediction", ["epsilon", "v_prediction"])
def test_training_steps_reduce_loss(prediction):
    cfg = tiny_cfg(flow="farneback", text="clip-vit-b32", text_dim=32).replace(diffusion={"prediction_type": prediction})
    torch.manual_seed(0)
    m = TraceUNet(cfg).train()
    opt = torch.optim.AdamW(m.parameters(), lr=3e-3)
    b = rand_batch(4, torch.Generator().manual_seed(1))
    th = StandInText().encode_text_hidden(b["prompt"])
    sched = make_scheduler(cfg)

    def loss_at(seed: int) -> torch.Tensor:
        return training_loss(m, b, sched, torch.Generator().manual_seed(seed), torch.device("cpu"), th)

    with torch.no_grad():
        before = sum(loss_at(s).item() for s in range(4))
    for step in range(25):
        opt.zero_grad()
        loss_at(step % 4).backward()
        opt.step()
    with torch.no_grad():
        after = sum(loss_at(s).item() for s in range(4))
    assert after < 0.85 * before


def _tiny_dataset(cfg: TraceConfig) -> FramePairDataset:
    g = torch.Generator().manual_seed(0)
    cases = [CaseTensors(f"c{i}", torch.rand(6, S, S, generator=g) * 2 - 1,
                         torch.randint(0, 3, (6, S, S), generator=g).float() / 2, "") for i in range(2)]
    return FramePairDataset(cases, cfg, cache=False)


def test_checkpoint_round_trip_and_resume(tmp_path):
    cfg = tiny_cfg()
    ds = _tiny_dataset(cfg)
    ck = train(cfg, out=tmp_path / "run", dataset=ds, device="cpu", log=lambda s: None)
    assert {p.name for p in ck.iterdir()} >= {"config.json", "model.safetensors", "optimizer.safetensors", "train_state.json"}
    m = load_checkpoint(ck)
    assert m.cfg == cfg
    m2 = TraceUNet(cfg)
    save_checkpoint(tmp_path / "copy", m)
    m2 = load_checkpoint(tmp_path / "copy")
    for (k, a), (_, b) in zip(m.state_dict().items(), m2.state_dict().items()):
        assert torch.equal(a, b), k
    # resume: 3 steps + 3 resumed == 6 uninterrupted (per-step RNG keyed by step)
    half = train(cfg.replace(train={"steps": 3}), out=tmp_path / "half", dataset=ds, device="cpu", log=lambda s: None)
    resumed = train(cfg, out=tmp_path / "resumed", resume=half, dataset=ds, device="cpu", log=lambda s: None)
    ra, rb = load_checkpoint(resumed).state_dict(), m.state_dict()
    assert all(torch.allclose(ra[k], rb[k], atol=1e-6) for k in ra)
    opt = torch.optim.AdamW(m.parameters())
    assert load_train_state(resumed, opt)["step"] == 6
    (tmp_path / "copy" / "model.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(ConfigError, match="safetensors"):
        load_checkpoint(tmp_path / "copy")


# ----------------------------------------------------------------------------- sampling
@pytest.fixture(scope="module")
def tiny_model() -> TraceUNet:
    """Random tiny network whose zero-initialised layers (MONAI's conv2/out, our adapters) are perturbed too,
    so that its output depends on every input."""
    torch.manual_seed(0)
    m = TraceUNet(tiny_cfg(flow="farneback")).eval()
    with torch.no_grad():
        for p in m.parameters():
            if p.dim() > 1 and not p.any():
                nn.init.normal_(p, std=0.05)
    return m


def _masks(B: int, N: int) -> torch.Tensor:
    return encode_labels(phantom_labels(N, S), tiny_cfg().conditioning)[None].repeat(B, 1, 1, 1)


def test_ddim_deterministic(tiny_model):
    opts = SamplerOptions(steps=3)
    a = sample_volumes(tiny_model, _masks(1, 4), seeds=[7], options=opts).frames
    b = sample_volumes(tiny_model, _masks(1, 4), seeds=[7], options=opts).frames
    c = sample_volumes(tiny_model, _masks(1, 4), seeds=[8], options=opts).frames
    assert torch.equal(a, b) and not torch.equal(a, c)


@pytest.mark.parametrize("N", [2, 7, 23])
def test_algorithm1_bookkeeping_any_length(tiny_model, N):
    res = sample_volumes(tiny_model, _masks(1, N), seeds=[0], options=SamplerOptions(steps=1, record=True))
    log = res.log
    assert res.frames.shape == (1, N, S, S) and torch.isfinite(res.frames).all()
    key = lambda e: (e["line"], e["n"], e["frames"])
    assert key(log[0]) == (4, 0, (0, 1))
    assert len(log) == 1 + 2 * (N - 2)  # lines 8 and 11 for n = 1 .. N-2
    for n in range(1, N - 1):
        assert key(log[2 * n - 1]) == (8, n, (n, n + 1)) and key(log[2 * n]) == (11, n, (n, n + 1))
    for n in range(N):  # the final slice n is line 11's output of step n (step N-2 for the last slice)
        last = [e for e in log if e["line"] in (4, 11) and n in e["frames"]][-1]
        assert torch.allclose(last["out"][0][last["frames"].index(n)], res.frames[0, n])
    written = {f for e in log if e["line"] in (4, 11) for f in e["frames"]}
    assert written == set(range(N))  # every slice generated
    assert all((res.frames[0, n] != 0).any() for n in range(N))
    mk = sample_volumes(tiny_model, _masks(1, N), seeds=[0], options=SamplerOptions(steps=1, mode="markovian", record=True))
    assert [e["line"] for e in mk.log] == [4] + [8] * (N - 2)


def test_overlap_consistency_with_a_spy_network():
    """The guidance map fed at line 7 is built from the frame written at line 11 of the previous step, and
    line 10 carries G(n) and G(n+1). Checked by recording the network's condition channels (real network)."""
    torch.manual_seed(0)
    model = TraceUNet(tiny_cfg()).eval()
    seen: list[torch.Tensor] = []
    orig = model.forward

    def spy(x, t, cond, positions, flow=None, text_hidden=None):
        seen.append(cond.clone())
        return orig(x, t, cond, positions, flow=flow, text_hidden=text_hidden)

    model.forward = spy  # type: ignore[method-assign]
    N, c = 5, model.cfg.conditioning
    M = _masks(1, N)
    res = sample_volumes(model, M, seeds=[0], options=SamplerOptions(steps=1))
    conds = seen  # one network call per pass (steps = 1): passes 4, 8, 11, 8, 11, 8, 11
    assert len(conds) == 7
    assert torch.equal(conds[0][0], M[0, 0:2])
    kw = dict(gamma=c.guidance_gamma, sigma=c.guidance_sigma, norm=c.guidance_norm)
    x = res.frames[0]
    log = sample_volumes(model, M, seeds=[0], options=SamplerOptions(steps=1, record=True)).log
    assert len(seen) == 14
    for n in range(1, N - 1):
        c7, c10 = conds[2 * n - 1][0], conds[2 * n][0]
        prev = log[2 * n - 2]["out"][0]  # the pair written by line 11 of step n-1 (line 4 for n = 1)
        Gn = guidance_map(prev[1][None, None], M[0, n][None, None], **kw)[0, 0]  # G(n) from that x(n)
        assert torch.allclose(c7[0], Gn, atol=1e-5) and torch.equal(c7[1], M[0, n + 1])  # line 7
        first = log[2 * n - 1]["out"][0]  # line 8's (x~(n), x~(n+1))
        Gn1 = guidance_map(first[1][None, None], M[0, n + 1][None, None], **kw)[0, 0]  # line 9
        assert torch.allclose(c10[0], Gn, atol=1e-5) and torch.allclose(c10[1], Gn1, atol=1e-5)  # line 10
        assert torch.allclose(log[2 * n]["out"][0][0], x[n] if n < N - 2 else x[n])  # line 11 wrote x(n)
    assert torch.allclose(log[-1]["out"][0], x[N - 2:N])


def test_batched_volumes_of_different_lengths(tiny_model):
    opts = SamplerOptions(steps=2)
    masks = _masks(2, 7)
    both = sample_volumes(tiny_model, masks, lengths=[7, 4], seeds=[1, 2], options=opts).frames
    alone = sample_volumes(tiny_model, masks[1:, :4], seeds=[2], options=opts).frames
    assert torch.allclose(both[1, :4], alone[0], atol=1e-4)
    with pytest.raises(ConfigError):
        sample_volumes(tiny_model, masks, lengths=[7, 1], options=opts)


# ----------------------------------------------------------------------------- generate / profile
def _label_file(path: Path, N: int = 5) -> Path:
    lab = phantom_labels(N, 24).numpy().astype(np.float32)
    write_nifti(from_canonical(lab, (5.0, 0.8, 0.8), origin_ras=(1.0, 2.0, 3.0)), path)
    return path


def test_generate_writes_valid_nifti(tmp_path):
    torch.manual_seed(0)
    ck = save_checkpoint(tmp_path / "ck", TraceUNet(tiny_cfg(flow="farneback")))
    masks = tmp_path / "masks"
    _label_file(masks / "caseA.nii.gz", 5)
    _label_file(masks / "caseB.nii.gz", 3)
    out = generate(ck, masks, tmp_path / "gen", steps=2, seed=3, batch=2, device="cpu")
    assert sorted(p.name for p in out) == ["caseA.nii.gz", "caseB.nii.gz"]
    ref = nib.load(str(masks / "caseA.nii.gz"))
    img = nib.load(str(tmp_path / "gen" / "caseA.nii.gz"))
    assert img.shape == ref.shape and np.allclose(img.affine, ref.affine)
    v = read_volume(tmp_path / "gen" / "caseA.nii.gz", convention="hu")  # random net: values not unmistakably HU
    assert v.array.min() >= -1000 and v.array.max() <= 1000 and v.spacing == pytest.approx((5.0, 0.8, 0.8))
    again = generate(ck, masks / "caseA.nii.gz", tmp_path / "gen2", steps=2, seed=3, device="cpu")
    assert np.array_equal(read_volume(again[0], convention="hu").array, v.array)  # same seed -> identical, batch-independent
    longer = generate(ck, masks / "caseA.nii.gz", tmp_path / "gen3", steps=1, length=9, device="cpu")
    lv = read_volume(longer[0], convention="hu")
    assert lv.shape[0] == 9 and lv.spacing[0] == pytest.approx(5.0 * 4 / 8)
    text_ck = save_checkpoint(tmp_path / "ckt", TraceUNet(tiny_cfg(text="clip-vit-b32", text_dim=32)))
    with pytest.raises(ConfigError, match="prompts"):
        generate(text_ck, masks, tmp_path / "gen4", steps=1)


def test_resample_length_geometry():
    lab = from_canonical(np.zeros((5, 4, 4), np.float32), (5.0, 1.0, 1.0))
    r = resample_length(lab, 9)
    assert r.shape == (9, 4, 4) and r.spacing[0] == pytest.approx(2.5)
    assert np.allclose(r.affine[:3, 2], lab.affine[:3, 2] / 2)


def test_profile_json_keys(tmp_path):
    torch.manual_seed(0)
    ck = save_checkpoint(tmp_path / "ck", TraceUNet(tiny_cfg()))
    res = profile_checkpoint(ck, slices=4, batch=2, steps=2, device="cpu", train_batch=2, out=tmp_path / "p.json")
    for k in ("fps", "inference_peak_bytes", "train_peak_bytes", "device", "slices", "batch", "steps", "dtype"):
        assert k in res
    assert res["fps"] > 0 and res["inference_peak_bytes"] > 0 and res["device"] == "cpu" and res["slices"] == 4
    assert json.loads((tmp_path / "p.json").read_text(encoding="utf-8"))["batch"] == 2


@pytest.mark.parametrize("flow_mode,line9", [("zero", "next"), ("previous", "next"), ("refine", "literal")])
def test_inference_flow_switches(flow_mode, line9):
    # v-prediction keeps the random network's outputs off the [-1, 1] clip (eps-prediction saturates at t = T)
    torch.manual_seed(0)
    tiny_model = TraceUNet(tiny_cfg(flow="farneback").replace(diffusion={"prediction_type": "v_prediction"})).eval()
    with torch.no_grad():
        for p in tiny_model.parameters():
            if p.dim() > 1 and not p.any():
                nn.init.normal_(p, std=0.05)
    if True:
        opts = SamplerOptions(steps=1, inference_flow=flow_mode, line9=line9)
        out = sample_volumes(tiny_model, _masks(1, 5), seeds=[0], options=opts).frames
        ref = sample_volumes(tiny_model, _masks(1, 5), seeds=[0], options=SamplerOptions(steps=1, inference_flow="zero")).frames
        assert torch.isfinite(out).all()
        assert torch.equal(out[0, 0], ref[0, 0])  # the first pair always gets a null flow (x(0) is final)
        if flow_mode != "zero":
            assert not torch.equal(out, ref)


def test_demo_checkpoint_generates_on_demo_data(tmp_path):
    """The committed demo checkpoint loads (safetensors + config.json) and turns the threshold segmenter's
    masks of a shipped reference into a NIfTI volume with the reference's geometry (4 slices, 2 steps here;
    the full demo is trace_model.demo.make_demo_methods)."""
    from trace_model.data import segment_labels
    from trace_model.demo import DEMO_CHECKPOINT, demo_reference_dir
    from trace_model.generate import GenerateJob, generate_jobs

    model = load_checkpoint(DEMO_CHECKPOINT)
    assert model.cfg.conditioning.text == "none" and model.cfg.model.image_size == 64
    ref = read_volume(demo_reference_dir() / "lung1.nii.gz")
    labels = resample_length(segment_labels(ref), 4)
    (path,) = generate_jobs(model, [GenerateJob("lung1", labels)], tmp_path, options=SamplerOptions(steps=2), log=lambda s: None)
    v = read_volume(path)  # plain HU: readable without a convention
    assert v.shape == (4, *ref.shape[1:]) and v.orientation == ref.orientation
    assert v.array.min() >= -1000 and v.array.max() <= 1000


@pytest.mark.parametrize("steps", [1, 10, 30, 100])
def test_ddim_eq2_recovers_x0_with_an_oracle(steps):
    """Analytic check of eq. 2: a denoiser that returns the exact noise of a known x0 must lead DDIM (eta = 0)
    from any x_T back to x0, for any number of steps; the timestep grid matches MONAI's step()."""
    from trace_model.sampler import ddim, ddim_timesteps

    cfg = tiny_cfg()
    sched = make_scheduler(cfg)
    ts = ddim_timesteps(sched, steps)
    assert ts[0] == 999 and len(ts) == steps and all(a - b == 1000 // steps for a, b in zip(ts, ts[1:]))
    g = torch.Generator().manual_seed(0)
    x0 = torch.rand(2, 2, S, S, generator=g) * 1.8 - 0.9
    ab = sched.alphas_cumprod.double()

    def oracle(x, t, cond, positions, flow=None, text_hidden=None):
        a = ab[t[0]]
        return ((x.double() - a.sqrt() * x0.double()) / (1 - a).sqrt()).float()

    out = ddim(oracle, sched, torch.randn(2, 2, S, S, generator=g), torch.zeros(2, 2, S, S), torch.zeros(2, 2), None, None, steps)
    assert torch.allclose(out, x0, atol=1e-4)


# ----------------------------------------------------------------------------- layering
def test_trace_model_does_not_import_the_run_core():
    """trace_model sits beside the run core, not above it: its shard / rank helpers come from the
    neutral :mod:`trace_bench.sharding` (static check of every import statement, lazy ones included)."""
    import ast

    root = ROOT / "trace_model"
    banned = ("trace_bench.run", "trace_bench.config", "trace_bench.cli", "trace_bench.launch")
    found = []
    for path in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else [])
            found += [f"{path.name}: {n}" for n in names if any(n == b or n.startswith(b + ".") for b in banned)]
    assert not found, found
