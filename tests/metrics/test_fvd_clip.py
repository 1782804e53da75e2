"""FVD (I3D) and CLIP score end to end with SMALL RANDOMLY INITIALISED networks saved to temporary
weight files (the published weights cannot be downloaded here): this tests loading, preprocessing,
clip sampling, states and the formulas, not the published numbers."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from trace_bench.errors import WeightsError
from trace_bench.metrics import METRICS, CaseData, RunContext

from helpers.small_video_nets import SMALL, clip_file, ct_crop_volume, i3d_file, i3d_script  # noqa: F401  (fixtures)


def test_fvd_end_to_end_with_torchscript_file(i3d_script, tmp_path):
    spec = METRICS.get("fvd")()
    assert spec.columns == {"fvd": False, "fvd_inf": False} and spec.kind == "distribution" and spec.table == "table2"
    ctx = RunContext(weights={"i3d-torchscript": str(i3d_script)}, cache_dir=str(tmp_path), seed=3)
    states = {}
    for cid, seed in (("a", 0), ("b", 1), ("c", 2)):
        states[cid] = spec.case_state(CaseData("m", cid, ct_crop_volume(seed), protocol=SMALL), ctx)
        assert states[cid]["features"].shape == (2, 400)  # 40 slices -> 2 clips of 16
    gen = spec.merge([states["a"], states["b"]])
    ref = spec.merge([states["c"]])
    v = spec.compute(gen, ref, ctx)["fvd"]
    assert np.isfinite(v) and v > 0
    assert spec.compute(gen, gen, ctx)["fvd"] == pytest.approx(0.0, abs=1e-6 * max(v, 1.0))
    assert spec.compute(spec.merge([states["b"], states["a"]]), ref, ctx)["fvd"] == pytest.approx(v, rel=1e-9)
    st = spec.export_stats(gen)
    assert st["mu"].shape == (400,) and int(st["n"]) == 4 and int(st["ddof"]) == 0
    # too short a volume is refused with the case named
    with pytest.raises(Exception, match="at least 16 slices"):
        spec.case_state(CaseData("m", "short", ct_crop_volume(4, z=10), protocol=SMALL), ctx)


def test_clip_sampling_is_seeded_and_order_free():
    from trace_bench.metrics.spaces import clip_starts

    a = clip_starts(61, 16, seed=0, key="abcdef12")
    assert list(a) == list(clip_starts(61, 16, seed=0, key="abcdef12"))
    assert len(a) == 3 and a[0] <= 61 % 16 and np.all(np.diff(a) == 16) and a[-1] + 16 <= 61
    assert len(clip_starts(48, 16)) == 3 and clip_starts(48, 16)[0] == 0
    assert len(clip_starts(10, 16)) == 0
    assert len(clip_starts(200, 16, max_clips=4)) == 4


def test_i3d_architecture_loads_tats_state_dict(tmp_path):
    from trace_bench.networks.i3d import InceptionI3d, load_i3d, tats_preprocess

    torch.manual_seed(0)
    net = InceptionI3d(400, width=16).eval()  # 1/16 of the channels, random weights
    sd = {k: v for k, v in net.state_dict().items() if not k.endswith("num_batches_tracked")}  # as TATS saved it
    p = tmp_path / "i3d_pretrained_400.pt"
    torch.save(sd, p)
    ext = load_i3d(p, weights="i3d-tats")
    clips = np.random.default_rng(0).integers(0, 256, size=(2, 16, 40, 40), dtype=np.uint8)
    f = ext.features(clips)
    with torch.no_grad():
        ref = net(tats_preprocess(torch.from_numpy(clips))).numpy()
    assert f.shape == (2, 400)
    np.testing.assert_allclose(f, ref, rtol=1e-5, atol=1e-6)
    x = tats_preprocess(torch.from_numpy(clips))
    assert x.shape == (2, 3, 16, 224, 224) and float(x.min()) >= -1.0 and float(x.max()) <= 1.0
    # published architecture: 12.7 M parameters (51 MB in float32)
    assert sum(p.numel() for p in InceptionI3d().parameters()) == 12_697_264
    bad = tmp_path / "bad.pt"
    torch.save({"foo": torch.zeros(1)}, bad)
    with pytest.raises(WeightsError, match="VideoGPT/TATS layout.*trace-bench weights"):
        load_i3d(bad, weights="i3d-tats")


def test_fvd_missing_and_corrupt_weights(tmp_path, monkeypatch):
    from trace_bench.networks.i3d import load_i3d

    monkeypatch.setenv("TRACE_BENCH_CACHE", str(tmp_path))
    monkeypatch.delenv("TRACE_BENCH_WEIGHTS_I3D_TORCHSCRIPT", raising=False)
    with pytest.raises(WeightsError) as e:
        load_i3d()
    msg = str(e.value)
    assert "i3d_torchscript.pt" in msg and "dropbox.com" in msg and "trace-bench weights fetch i3d-torchscript" in msg
    corrupt = tmp_path / "weights" / "i3d_torchscript.pt"
    corrupt.parent.mkdir(parents=True)
    corrupt.write_bytes(b"\x00not a torchscript archive")
    # a TorchScript file is code: with no pinned sha256 for the entry, it is refused before it is read
    with pytest.raises(WeightsError, match=r"i3d_torchscript\.pt: refused.*pins no sha256.*fvd\.weights=i3d-tats"):
        load_i3d()


# ----------------------------------------------------------------------------- CLIP
def test_clip_model_api_matches_open_clip(clip_file):
    import open_clip

    from trace_bench.networks.clip import CLIP_MEAN, CLIP_STD, load_clip_model

    m, p = clip_file
    with pytest.warns(UserWarning, match="user-supplied"):
        cm = load_clip_model(path=p)
    assert cm.format == "openai-state-dict" and cm.quick_gelu and cm.image_size == 64 and cm.dim == 32
    x = torch.randn(2, 3, 64, 64)
    torch.testing.assert_close(cm.encode_image(x), m.encode_image(x), rtol=1e-5, atol=1e-5)
    texts = ["a chest CT with a nodule", "normal lungs"]
    torch.testing.assert_close(cm.encode_text(texts), m.encode_text(open_clip.tokenize(texts)), rtol=1e-5, atol=1e-5)
    h = cm.encode_text_hidden(texts)
    assert h.shape == (2, 77, 64)
    # the hidden states feed the pooled feature: eot-position state @ projection == encode_text
    eot = open_clip.tokenize(texts).argmax(-1)
    torch.testing.assert_close(h[torch.arange(2), eot] @ m.text_projection, cm.encode_text(texts), rtol=1e-5, atol=1e-5)
    frames = np.random.default_rng(0).integers(0, 256, size=(3, 80, 100), dtype=np.uint8)
    px = cm.preprocess_frames(frames)
    assert px.shape == (3, 3, 64, 64)
    assert len(CLIP_MEAN) == len(CLIP_STD) == 3


def test_clip_loads_hf_layout(clip_file, tmp_path):
    """HF transformers CLIPModel keys (written here from the OpenAI layout) load to the same model."""
    from safetensors.torch import save_file

    from trace_bench.networks.clip import load_clip_model

    m, _ = clip_file
    sd = m.state_dict()
    hf = {"logit_scale": sd["logit_scale"], "text_projection.weight": sd["text_projection"].t().contiguous(),
          "visual_projection.weight": sd["visual.proj"].t().contiguous(),
          "text_model.embeddings.token_embedding.weight": sd["token_embedding.weight"],
          "text_model.embeddings.position_embedding.weight": sd["positional_embedding"],
          "text_model.final_layer_norm.weight": sd["ln_final.weight"], "text_model.final_layer_norm.bias": sd["ln_final.bias"],
          "vision_model.embeddings.class_embedding": sd["visual.class_embedding"],
          "vision_model.embeddings.patch_embedding.weight": sd["visual.conv1.weight"],
          "vision_model.embeddings.position_embedding.weight": sd["visual.positional_embedding"],
          "vision_model.pre_layrnorm.weight": sd["visual.ln_pre.weight"], "vision_model.pre_layrnorm.bias": sd["visual.ln_pre.bias"],
          "vision_model.post_layernorm.weight": sd["visual.ln_post.weight"], "vision_model.post_layernorm.bias": sd["visual.ln_post.bias"]}
    for tower, pre in (("text_model", ""), ("vision_model", "visual.")):
        b = f"{pre}transformer.resblocks.0."
        q, k, v = sd[b + "attn.in_proj_weight"].chunk(3)
        qb, kb, vb = sd[b + "attn.in_proj_bias"].chunk(3)
        L = f"{tower}.encoder.layers.0."
        hf.update({L + "self_attn.q_proj.weight": q, L + "self_attn.k_proj.weight": k, L + "self_attn.v_proj.weight": v,
                   L + "self_attn.q_proj.bias": qb, L + "self_attn.k_proj.bias": kb, L + "self_attn.v_proj.bias": vb,
                   L + "self_attn.out_proj.weight": sd[b + "attn.out_proj.weight"],
                   L + "self_attn.out_proj.bias": sd[b + "attn.out_proj.bias"],
                   L + "layer_norm1.weight": sd[b + "ln_1.weight"], L + "layer_norm1.bias": sd[b + "ln_1.bias"],
                   L + "layer_norm2.weight": sd[b + "ln_2.weight"], L + "layer_norm2.bias": sd[b + "ln_2.bias"],
                   L + "mlp.fc1.weight": sd[b + "mlp.c_fc.weight"], L + "mlp.fc1.bias": sd[b + "mlp.c_fc.bias"],
                   L + "mlp.fc2.weight": sd[b + "mlp.c_proj.weight"], L + "mlp.fc2.bias": sd[b + "mlp.c_proj.bias"]})
    d = tmp_path / "hf"
    d.mkdir()
    save_file({k: v.contiguous() for k, v in hf.items()}, str(d / "model.safetensors"))
    cm = load_clip_model(path=d)
    assert cm.format == "hf-transformers"
    x = torch.randn(1, 3, 64, 64)
    torch.testing.assert_close(cm.encode_image(x), m.encode_image(x), rtol=1e-5, atol=1e-5)


def test_clip_score_case_metric(clip_file):
    from trace_bench.networks.clip import load_clip_model
    from trace_bench.metrics.clip_score import clip_score_from_features

    m, p = clip_file
    spec = METRICS.get("clip_score")({"slices": 4})
    assert spec.kind == "case" and spec.needs_prompt and spec.columns == {"clip_score": True}
    ctx = RunContext(weights={"clip-vit-b32": str(p)})
    data = CaseData("m", "a", ct_crop_volume(0, z=12), prompt="right upper lobe nodule", protocol=SMALL)
    got = spec.case_values(data, ctx)["clip_score"]
    # by hand, torchmetrics' definition: 100 * cos per (slice, prompt) pair, max(mean, 0)
    cm = load_clip_model(path=p)
    idx = np.round(np.linspace(0, 11, 4)).astype(int)
    img = cm.encode_image(cm.preprocess_frames(data.frames[idx]))
    txt = cm.encode_text([data.prompt])
    cos = torch.nn.functional.cosine_similarity(img, txt.expand_as(img), dim=-1)
    assert got == pytest.approx(max(float(100 * cos.mean()), 0.0), rel=1e-5, abs=1e-5)
    score, per = clip_score_from_features(torch.tensor([[1.0, 0.0], [0.0, 2.0]]), torch.tensor([[-3.0, 0.0], [0.0, 1.0]]))
    assert per.tolist() == [-100.0, 100.0] and score == 0.0
    assert clip_score_from_features(torch.tensor([[1.0, 0.0]]), torch.tensor([[-1.0, 0.0]]))[0] == 0.0
    with pytest.raises(Exception, match="prompt"):
        spec.case_values(CaseData("m", "b", ct_crop_volume(1, z=12), protocol=SMALL), ctx)


def test_clip_missing_and_wrong_file(tmp_path, monkeypatch):
    from trace_bench.networks.clip import load_clip_model

    monkeypatch.setenv("TRACE_BENCH_CACHE", str(tmp_path))
    monkeypatch.delenv("TRACE_BENCH_WEIGHTS_CLIP_VIT_B32", raising=False)
    with pytest.raises(WeightsError) as e:
        load_clip_model()
    assert "ViT-B-32.pt" in str(e.value) and "openaipublic" in str(e.value) and "trace-bench weights" in str(e.value)
    junk = tmp_path / "junk.pt"
    torch.save({"a": torch.zeros(2)}, junk)
    with pytest.warns(UserWarning), pytest.raises(WeightsError, match="not a CLIP checkpoint"):
        load_clip_model(path=junk)
