"""overall_consistency + ViCLIP: layout of the published checkpoint, network and metric parity with
VBench's ViCLIP code, frame sampling, registry plumbing. Networks are randomly initialised
(ViCLIP architecture at reduced width/depth), saved to temporary files: plumbing and parity only."""

from __future__ import annotations

import importlib
import shutil
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn

from trace_bench.errors import WeightsError
from trace_bench.io import read_volume
from trace_bench.metrics import METRICS, CaseData, RunContext
from trace_bench.metrics.vbench.overall_consistency import (
    OverallConsistency, middle_frame_indices, overall_consistency, overall_consistency_from_features,
)
from trace_bench.networks.viclip import ViCLIP, load_viclip
from trace_bench.protocol import DEFAULT_PROTOCOL

from helpers.frames_case import case_with_frames
from helpers.paths import DEMO_CTS

PROMPT = "Chest CT: a 3 cm spiculated nodule in the right upper lobe, no effusion."
pytestmark = [pytest.mark.filterwarnings("ignore::UserWarning"), pytest.mark.filterwarnings("ignore::FutureWarning")]


@pytest.fixture(autouse=True, scope="module")
def _one_thread(one_torch_thread):
    """Small networks run on one intra-op thread (see conftest.one_torch_thread)."""


@pytest.fixture(scope="module")
def frames() -> np.ndarray:
    return DEFAULT_PROTOCOL.frames(read_volume(DEMO_CTS / "lung1.nii.gz"))


@pytest.fixture(scope="module")
def vb(tmp_path_factory):
    """VBench's ViCLIP modules, importable offline: the BPE vocabulary is taken from open_clip's
    wheel (VBench would wget it into its cache) and ``pkg_resources`` (gone from setuptools >= 81)
    is given the ``packaging`` module it is asked for."""
    pytest.importorskip("vbench")
    open_clip = pytest.importorskip("open_clip")
    bpe = Path(open_clip.__file__).parent / "bpe_simple_vocab_16e6.txt.gz"
    stub = None
    if "pkg_resources" not in sys.modules:
        try:
            import pkg_resources  # noqa: F401
        except ImportError:
            import packaging.version

            stub = sys.modules["pkg_resources"] = types.SimpleNamespace(packaging=packaging)
    import vbench.utils as vu

    if "vbench.third_party.ViCLIP.simple_tokenizer" not in sys.modules:
        cache = tmp_path_factory.mktemp("vbench_cache")
        (cache / "ViCLIP").mkdir()
        shutil.copy(bpe, cache / "ViCLIP" / bpe.name)
        old, vu.CACHE_DIR = vu.CACHE_DIR, str(cache)
        try:
            st = importlib.import_module("vbench.third_party.ViCLIP.simple_tokenizer")
        finally:
            vu.CACHE_DIR = old
    st = importlib.import_module("vbench.third_party.ViCLIP.simple_tokenizer")
    st.SimpleTokenizer.__init__.__defaults__ = (str(bpe),)
    yield types.SimpleNamespace(
        st=st, bpe=str(bpe),
        vision=importlib.import_module("vbench.third_party.ViCLIP.viclip_vision"),
        text=importlib.import_module("vbench.third_party.ViCLIP.viclip_text"),
        viclip=importlib.import_module("vbench.third_party.ViCLIP.viclip"),
        oc=importlib.import_module("vbench.overall_consistency"))
    # the stub must not outlive this module: pytest's monkeypatch.syspath_prepend (and anything else that finds
    # "pkg_resources" in sys.modules) then imports names from it that it does not have
    if stub is not None and sys.modules.get("pkg_resources") is stub:
        del sys.modules["pkg_resources"]


def tiny_reference(vb, width=64, layers=2, seed=0):
    """VBench's ViCLIP class with its encoders at reduced size, random init (std 0.02, LN = 1/0)."""
    torch.manual_seed(seed)
    ref = vb.viclip.ViCLIP.__new__(vb.viclip.ViCLIP)
    nn.Module.__init__(ref)
    ref.tokenizer, ref.max_txt_l, ref.masking_prob = vb.st.SimpleTokenizer(vb.bpe), 32, 0.9
    ref.vision_encoder = vb.vision.VisionTransformer(input_resolution=224, patch_size=14, width=width, layers=layers,
                                                     heads=1, output_dim=32, num_frames=8)
    ref.text_encoder = vb.text.CLIP_TEXT(embed_dim=32, context_length=32, vocab_size=49408, transformer_width=width,
                                         transformer_heads=1, transformer_layers=layers, checkpoint_num=0)
    ref.temp = nn.Parameter(torch.ones([]) / 100.0)
    with torch.no_grad():
        for k, p in ref.named_parameters():
            if any(part.startswith("ln") for part in k.split(".")):
                p.fill_(1.0 if k.endswith("weight") else 0.0)
            else:
                p.normal_(0, 0.02)
    return ref.eval()


def test_full_size_layout_matches_vbench_viclip(vb):
    # one full-width block of each VBench encoder; blocks 1..N-1 have the same tensors as block 0
    v1 = vb.vision.VisionTransformer(input_resolution=224, patch_size=14, width=1024, layers=1, heads=16,
                                     output_dim=768, num_frames=8)
    t1 = vb.text.CLIP_TEXT(embed_dim=768, context_length=32, vocab_size=49408, transformer_width=768,
                           transformer_heads=12, transformer_layers=1, checkpoint_num=0)
    want = {"temp": ()}
    for prefix, mod, n in (("vision_encoder.", v1, 24), ("text_encoder.", t1, 12)):
        for k, v in mod.state_dict().items():
            ks = [k.replace("resblocks.0.", f"resblocks.{i}.") for i in range(n)] if "resblocks.0." in k else [k]
            want.update({prefix + kk: tuple(v.shape) for kk in ks})
    with torch.device("meta"):
        full = ViCLIP()
    got = {k: tuple(v.shape) for k, v in full.state_dict().items()}
    assert got == want
    n_params = sum(int(np.prod(s)) for s in got.values())
    assert n_params * 4 == pytest.approx(1.71e9, rel=0.01)  # the published file is 1.71 GB of float32


def test_tokenizer_matches_vbench(vb):
    ref = vb.text.CLIP_TEXT(embed_dim=8, context_length=32, vocab_size=49408, transformer_width=64,
                            transformer_heads=1, transformer_layers=1, checkpoint_num=0)
    long = PROMPT * 4  # longer than 32 tokens: truncated with <eot> kept last
    mine = ViCLIP(vision=dict(width=64, layers=1, heads=1, output_dim=8), text=dict(embed_dim=8, width=64, heads=1, layers=1))
    for text in (PROMPT, long, ""):
        assert torch.equal(mine.tokenize([text]), ref.tokenize(text, context_length=32).long())


def test_network_and_metric_parity_with_vbench(vb, frames, tmp_path, monkeypatch):
    ref = tiny_reference(vb)
    torch.save({"model": ref.state_dict(), "epoch": 1}, tmp_path / "viclip_tiny.pth")
    mine = load_viclip(tmp_path / "viclip_tiny.pth")
    x = torch.randn(1, 8, 3, 224, 224)
    with torch.no_grad():
        assert torch.allclose(mine.encode_vision(x), ref.encode_vision(x, test=True), atol=1e-5)
        assert torch.allclose(mine.encode_text([PROMPT]), ref.encode_text(PROMPT), atol=1e-5)

    # VBench's overall_consistency, reading frames the way decord would (its own index sampler)
    vu = importlib.import_module("vbench.utils")
    videos = {"a.mp4": frames, "b.mp4": frames[:5]}

    def fake_reader(path, num_frames=8, sample="middle", **_):
        idx = vu.get_frame_indices(num_frames, len(videos[path]), sample=sample)
        f = np.repeat(videos[path][idx][..., None], 3, axis=-1)
        return torch.from_numpy(f).permute(0, 3, 1, 2)  # (T, C, H, W) uint8

    monkeypatch.setattr(vb.oc, "read_frames_decord_by_fps", fake_reader)
    vb.oc.get_text_features.__defaults__[0].clear()  # VBench caches text features per prompt
    overall, per_video = vb.oc.overall_consistency(ref, [{"prompt": PROMPT, "video_list": list(videos)}],
                                                   None, "cpu")
    stream = OverallConsistency()
    stream.net.set(mine)  # the small network built above (random init, real architecture)
    for r in per_video:
        ours = overall_consistency(videos[r["video_path"]], PROMPT, mine)
        assert ours == pytest.approx(r["video_results"], abs=1e-6)
        stream.update(case_with_frames(videos[r["video_path"]], PROMPT))
    assert stream.compute_result()["overall_consistency"] == pytest.approx(overall, abs=1e-6)


def test_sampling_and_formula(vb):
    vu = importlib.import_module("vbench.utils")
    for vlen in (1, 5, 8, 9, 48, 61):
        assert middle_frame_indices(8, vlen) == [int(i) for i in vu.get_frame_indices(8, vlen, sample="middle")]
    assert overall_consistency_from_features(np.array([3.0, 0.0]), np.array([1.0, 1.0])) == pytest.approx(2 ** -0.5)
    with pytest.raises(ValueError, match="same size"):
        overall_consistency_from_features(np.ones(3), np.ones(4))


def test_plugin_end_to_end(vb, frames, tmp_path, monkeypatch):
    torch.save({"model": tiny_reference(vb, width=64, layers=1, seed=3).state_dict()}, tmp_path / "v.pth")
    spec = METRICS.get("overall_consistency")()
    assert spec.needs_prompt and spec.weights == ("viclip-l14",)
    ctx = RunContext(weights={"viclip-l14": str(tmp_path / "v.pth")})
    spec.setup(ctx)
    vol = read_volume(DEMO_CTS / "lung1.nii.gz")
    data = CaseData(method="m", case_id="lung1", volume=vol, prompt=PROMPT)
    data.__dict__["frames"] = frames
    got = spec.case_values(data, ctx)["overall_consistency"]
    assert got == pytest.approx(overall_consistency(frames, PROMPT, load_viclip(tmp_path / "v.pth")), abs=1e-6)
    with pytest.raises(ValueError, match="prompt"):
        spec.case_values(CaseData(method="m", case_id="lung1", volume=vol), ctx)
    torch.save({"model": {"temp": torch.ones(())}}, tmp_path / "bad.pth")
    with pytest.raises(WeightsError, match="bad.pth"):
        spec.setup(RunContext(weights={"viclip-l14": str(tmp_path / "bad.pth")}))
    monkeypatch.setenv("TRACE_BENCH_CACHE", str(tmp_path))
    monkeypatch.delenv("TRACE_BENCH_WEIGHTS_VICLIP_L14", raising=False)
    with pytest.raises(WeightsError, match="not installed"):
        spec.setup(RunContext())

