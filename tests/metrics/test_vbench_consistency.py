"""subject_consistency / background_consistency: formula, VBench parity, DINO checkpoint layout.

Backbones here are small randomly initialised networks of the real architecture, saved to
temporary weight files: they test plumbing and parity, not pretrained behaviour.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from trace_bench.errors import WeightsError
from trace_bench.io import read_volume
from trace_bench.metrics import METRICS, CaseData, RunContext, subject_consistency
from trace_bench.metrics.vbench.consistency import (
    SubjectConsistency, clip_preprocess, consistency_pairs, dino_preprocess,
)
from trace_bench.networks.dino import build_dino_vit, load_dino_vit
from trace_bench.protocol import DEFAULT_PROTOCOL, to_rgb

from helpers.paths import DEMO_CTS


@pytest.fixture(autouse=True, scope="module")
def _one_thread(one_torch_thread):
    """Small networks run on one intra-op thread (see conftest.one_torch_thread)."""


@pytest.fixture(scope="module")
def ct_frames() -> np.ndarray:
    return DEFAULT_PROTOCOL.frames(read_volume(DEMO_CTS / "lung1.nii.gz"))[10:22]


@pytest.fixture(scope="module")
def tiny_dino(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    # random init, real DINO ViT layout at reduced width/depth (2 blocks, 128-d, 2 heads)
    m = build_dino_vit(embed_dim=128, depth=2, num_heads=2)
    path = tmp_path_factory.mktemp("w") / "dino_tiny.pth"
    torch.save(m.state_dict(), path)
    return path


def test_formula_by_hand():
    f = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    # i=1: prev 1, first 1 -> 1 ; i=2: prev 0, first 0 -> 0 ; i=3: prev 0, first max(0,-1)=0 -> 0
    assert np.allclose(consistency_pairs(f), [1.0, 0.0, 0.0])
    assert subject_consistency(f) == pytest.approx(1 / 3)
    assert subject_consistency(np.ones((4, 7)) * 3) == pytest.approx(1.0)  # scale-invariant
    with pytest.raises(ValueError, match=r"\(T, D\)"):
        subject_consistency(np.ones(5))
    with pytest.raises(ValueError, match="at least 2"):
        subject_consistency(np.ones((1, 5)))


def test_streaming_is_vbench_pair_weighted_mean():
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(5, 8)), rng.normal(size=(9, 8))
    m = SubjectConsistency()
    m.update_features(a)
    m2 = SubjectConsistency()
    m2.update_features(b)
    m.merge_state(m2)
    expect = (consistency_pairs(a).sum() + consistency_pairs(b).sum()) / (4 + 8)
    assert m.compute_result()["subject_consistency"] == pytest.approx(expect, abs=1e-12)
    assert m.video_scores == pytest.approx([subject_consistency(a), subject_consistency(b)])


def _dino_reference_layout(dim=768, depth=12, patch=16, grid=14, mlp=4):
    """Keys and shapes of facebookresearch/dino vision_transformer.py ``vit_base`` (dino_vitb16)."""
    out = {"cls_token": (1, 1, dim), "pos_embed": (1, grid * grid + 1, dim),
           "patch_embed.proj.weight": (dim, 3, patch, patch), "patch_embed.proj.bias": (dim,),
           "norm.weight": (dim,), "norm.bias": (dim,)}
    for i in range(depth):
        b = f"blocks.{i}."
        out.update({b + "norm1.weight": (dim,), b + "norm1.bias": (dim,),
                    b + "attn.qkv.weight": (3 * dim, dim), b + "attn.qkv.bias": (3 * dim,),
                    b + "attn.proj.weight": (dim, dim), b + "attn.proj.bias": (dim,),
                    b + "norm2.weight": (dim,), b + "norm2.bias": (dim,),
                    b + "mlp.fc1.weight": (mlp * dim, dim), b + "mlp.fc1.bias": (mlp * dim,),
                    b + "mlp.fc2.weight": (dim, mlp * dim), b + "mlp.fc2.bias": (dim,)})
    return out


def test_dino_vitb16_accepts_published_layout(tmp_path):
    with torch.device("meta"):
        full = build_dino_vit()
    got = {k: tuple(v.shape) for k, v in full.state_dict().items()}
    assert got == _dino_reference_layout()
    # a full DINO training checkpoint (teacher, module./backbone. prefixes, head) maps onto it
    tiny = build_dino_vit(embed_dim=64, depth=1, num_heads=1)
    sd = {"module.backbone." + k: v for k, v in tiny.state_dict().items()}
    sd["module.head.mlp.0.weight"] = torch.zeros(3, 3)
    torch.save({"teacher": sd, "epoch": 3}, tmp_path / "ckpt.pth")
    m = load_dino_vit(str(tmp_path / "ckpt.pth"))
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        assert torch.equal(m(x), tiny.eval()(x))
    torch.save({"cls_token": torch.zeros(1, 1, 64)}, tmp_path / "bad.pth")
    with pytest.raises(WeightsError, match="bad.pth"):
        load_dino_vit(str(tmp_path / "bad.pth"))


def test_preprocessing_matches_vbench_transforms(ct_frames):
    vu = pytest.importorskip("vbench.utils")
    video = torch.Tensor(to_rgb(ct_frames[:, :, :200])).permute(0, 3, 1, 2)  # as vbench load_video
    assert torch.equal(dino_preprocess(ct_frames[:, :, :200]), vu.dino_transform(224)(video))
    assert torch.equal(clip_preprocess(ct_frames[:, :, :200]), vu.clip_transform(224)(video))


def test_subject_consistency_parity_with_vbench(ct_frames, tiny_dino, monkeypatch):
    vsc = pytest.importorskip("vbench.subject_consistency")
    videos = {"a.mp4": ct_frames, "b.mp4": ct_frames[::-1][:7]}
    monkeypatch.setattr(vsc, "load_video", lambda p: torch.Tensor(to_rgb(videos[p])).permute(0, 3, 1, 2))
    model = load_dino_vit(str(tiny_dino))
    overall, per_video = vsc.subject_consistency(model, list(videos), "cpu", read_frame=False)

    spec = METRICS.get("subject_consistency")()
    ctx = RunContext(weights={"dino-vitb16": str(tiny_dino)}, batch_size=5)
    spec.setup(ctx)
    stream = SubjectConsistency()
    stream.net.set(spec.net.loaded)  # the same tiny network, already loaded
    for r in per_video:
        frames = videos[r["video_path"]]
        vol = read_volume(DEMO_CTS / "lung1.nii.gz")
        data = CaseData(method="m", case_id="c", volume=vol)
        data.__dict__["frames"] = frames  # inject the cached frames view
        assert spec.case_values(data, ctx)["subject_consistency"] == pytest.approx(r["video_results"], abs=1e-6)
        stream.update(data, ctx)
    assert stream.compute_result()["subject_consistency"] == pytest.approx(overall, abs=1e-6)
    assert ctx.protocol.id in spec.protocol_id(ctx) and "dino-vitb16" in spec.protocol_id(ctx)


def test_missing_weights_refuse(tmp_path, monkeypatch):
    monkeypatch.setenv("TRACE_BENCH_CACHE", str(tmp_path))
    monkeypatch.delenv("TRACE_BENCH_WEIGHTS_DINO_VITB16", raising=False)
    monkeypatch.delenv("TRACE_BENCH_WEIGHTS_CLIP_VIT_B32", raising=False)
    for name in ("subject_consistency", "background_consistency"):
        with pytest.raises(WeightsError, match="not installed"):
            METRICS.get(name)().setup(RunContext())


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory) -> Path:
    open_clip = pytest.importorskip("open_clip")
    torch.manual_seed(0)
    # random init, OpenAI CLIP ViT-B/32 layout at reduced width/depth (1 block, 64-d), QuickGELU
    m = open_clip.model.CLIP(embed_dim=32, quick_gelu=True,
                             vision_cfg={"layers": 1, "width": 64, "patch_size": 32, "image_size": 224},
                             text_cfg={"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 1, "layers": 1})
    path = tmp_path_factory.mktemp("w") / "clip_tiny.pt"
    torch.save(m.state_dict(), path)
    return path


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_background_consistency_parity_with_vbench(ct_frames, tiny_clip, monkeypatch):
    sys_modules_shim(monkeypatch)
    vbc = pytest.importorskip("vbench.background_consistency")
    videos = {"a.mp4": ct_frames, "b.mp4": ct_frames[::2]}
    monkeypatch.setattr(vbc, "load_video", lambda p: torch.Tensor(to_rgb(videos[p])).permute(0, 3, 1, 2))
    spec = METRICS.get("background_consistency")()
    ctx = RunContext(weights={"clip-vit-b32": str(tiny_clip)}, batch_size=4)
    spec.setup(ctx)
    overall, per_video = vbc.background_consistency(spec.net.loaded, None, list(videos), "cpu", read_frame=False)
    for r in per_video:
        data = CaseData(method="m", case_id="c", volume=read_volume(DEMO_CTS / "lung1.nii.gz"))
        data.__dict__["frames"] = videos[r["video_path"]]
        assert spec.case_values(data, ctx)["background_consistency"] == pytest.approx(r["video_results"], abs=1e-6)
    assert "clip-vit-b32" in spec.protocol_id(ctx)


def sys_modules_shim(monkeypatch) -> None:
    """openai-clip (imported by vbench) still does ``from pkg_resources import packaging``; setuptools
    >= 81 no longer ships pkg_resources, so hand it the ``packaging`` module it wants."""
    import sys
    import types

    import packaging.version

    if "pkg_resources" not in sys.modules:
        try:
            import pkg_resources  # noqa: F401
        except ImportError:
            monkeypatch.setitem(sys.modules, "pkg_resources", types.SimpleNamespace(packaging=packaging))


def test_dino_non_square_frames_use_dino_pos_interpolation(tiny_dino):
    model = load_dino_vit(str(tiny_dino))
    x = dino_preprocess(np.zeros((2, 256, 320), np.uint8))
    assert x.shape == (2, 3, 224, 280)  # shorter side to 224, no crop (VBench dino_transform)
    pe = model.dino_pos_embed(14 * 17, 224, 280)
    assert pe.shape == (1, 1 + 14 * 17, 128)
    with torch.no_grad():
        assert model(x).shape == (2, 128)
