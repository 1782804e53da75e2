"""imaging_quality + MUSIQ: network parity with pyiqa's MUSIQ, metric parity with VBench's
technical_quality, the 'longer' resize rule, registry plumbing. Networks are randomly initialised
(MUSIQ architecture at reduced width/depth), saved to temporary files: plumbing and parity only."""

from __future__ import annotations

import importlib.util
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch

from trace_bench.errors import WeightsError
from trace_bench.io import read_volume
from trace_bench.metrics import METRICS, CaseData, RunContext
from trace_bench.metrics.vbench.imaging_quality import ImagingQuality, imaging_quality, musiq_preprocess
from trace_bench.networks.musiq import MUSIQ, load_musiq
from trace_bench.protocol import FrameProtocol, to_rgb

from helpers.frames_case import case_with_frames
from helpers.paths import DEMO_CTS

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


@pytest.fixture(autouse=True, scope="module")
def _one_thread(one_torch_thread):
    """Small networks run on one intra-op thread (see conftest.one_torch_thread)."""


def pyiqa_musiq():
    """pyiqa's MUSIQ class without running ``pyiqa/__init__`` (which imports transformers etc.):
    pyiqa is installed ``--no-deps`` for parity only (Makefile PARITY_NODEPS)."""
    if "pyiqa" not in sys.modules:
        spec = importlib.util.find_spec("pyiqa")
        if spec is None or not spec.submodule_search_locations:
            pytest.skip("pyiqa not installed (make env installs it --no-deps for parity)")
        root = list(spec.submodule_search_locations)[0]
        for name, sub in (("pyiqa", ""), ("pyiqa.data", "/data")):
            m = types.ModuleType(name)
            m.__path__ = [root + sub]
            sys.modules[name] = m
    try:
        from pyiqa.archs.musiq_arch import MUSIQ as Ref
    except ImportError as exc:
        pytest.skip(f"pyiqa's MUSIQ not importable here: {exc}")

    return Ref


@pytest.fixture(scope="module")
def frames() -> np.ndarray:
    return FrameProtocol(size=128).frames(read_volume(DEMO_CTS / "lung1.nii.gz"))[18:22]


@pytest.fixture(scope="module")
def musiq_file(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    # random init, MUSIQ layout at reduced width/depth (64-d, 2 layers); the published one is 384-d x 14
    m = MUSIQ(hidden_size=64, mlp_dim=128, num_heads=1, num_layers=2)
    path = tmp_path_factory.mktemp("w") / "musiq_tiny.pth"
    torch.save(m.state_dict(), path)
    return path


def test_state_dict_matches_pyiqa_musiq():
    Ref = pyiqa_musiq()
    with torch.device("meta"):
        want = {k: tuple(v.shape) for k, v in Ref(pretrained=False, pretrained_model_path=None).state_dict().items()}
        got = {k: tuple(v.shape) for k, v in MUSIQ().state_dict().items()}
    assert got == want and len(got) == 248


def test_network_parity_with_pyiqa(tmp_path):
    Ref = pyiqa_musiq()
    torch.manual_seed(2)
    ref = Ref(hidden_size=64, mlp_dim=128, num_heads=1, num_layers=2, pretrained=False, pretrained_model_path=None)
    ref.training = False  # as VBench sets it
    torch.save(ref.state_dict(), tmp_path / "m.pth")
    mine = load_musiq(tmp_path / "m.pth")
    for shape in ((1, 3, 128, 128), (1, 3, 100, 170)):
        x = torch.rand(shape)
        with torch.no_grad():
            assert torch.equal(mine(x), ref(x).reshape(-1))


def test_preprocess_matches_vbench_longer_rule(frames):
    pyiqa_musiq()
    viq = pytest.importorskip("vbench.imaging_quality")
    big = np.repeat(np.repeat(frames[:2], 5, axis=1), 3, axis=2)  # 640 x 384 -> 512 x 307
    for f in (frames, big):
        video = torch.Tensor(to_rgb(f)).permute(0, 3, 1, 2)
        assert torch.equal(musiq_preprocess(f), viq.transform(video, "longer"))
    assert musiq_preprocess(big).shape[-2:] == (512, 307)


def test_metric_parity_with_vbench(frames, musiq_file, monkeypatch):
    pyiqa_musiq()
    viq = pytest.importorskip("vbench.imaging_quality")
    videos = {"a.mp4": frames, "b.mp4": frames[:2]}
    monkeypatch.setattr(viq, "load_video", lambda p: torch.Tensor(to_rgb(videos[p])).permute(0, 3, 1, 2))
    model = load_musiq(musiq_file)
    overall, per_video = viq.technical_quality(model, list(videos), "cpu")
    stream = ImagingQuality()
    stream.net.set(model)  # the small network built above
    for r in per_video:
        ours = imaging_quality(videos[r["video_path"]], model, batch_size=3)
        assert ours == pytest.approx(r["video_results"] / 100, abs=1e-6)
        stream.update(case_with_frames(videos[r["video_path"]]), RunContext(batch_size=3))
    assert stream.compute_result()["imaging_quality"] == pytest.approx(overall, abs=1e-6)


def test_plugin_end_to_end(frames, musiq_file, tmp_path, monkeypatch):
    import dataclasses

    from trace_bench import weights as W

    spec_w = W.WEIGHTS.get("musiq-spaq")  # drop the published size/hash pins for this random test file
    monkeypatch.setitem(W.WEIGHTS._items, "musiq-spaq", dataclasses.replace(
        spec_w, **{f: None for f in ("size", "sha256", "sha256_prefix") if hasattr(spec_w, f)}))
    spec = METRICS.get("imaging_quality")()
    ctx = RunContext(weights={"musiq-spaq": str(musiq_file)}, batch_size=2)
    spec.setup(ctx)
    data = CaseData(method="m", case_id="c", volume=read_volume(DEMO_CTS / "lung1.nii.gz"))
    data.__dict__["frames"] = frames
    assert spec.case_values(data, ctx)["imaging_quality"] == pytest.approx(
        imaging_quality(frames, load_musiq(musiq_file)), abs=1e-6)
    torch.save({"embedding.weight": torch.zeros(2, 2)}, tmp_path / "bad.pth")
    with pytest.raises(WeightsError, match="bad.pth"):
        spec.setup(RunContext(weights={"musiq-spaq": str(tmp_path / "bad.pth")}))
    monkeypatch.setenv("TRACE_BENCH_CACHE", str(tmp_path))
    monkeypatch.delenv("TRACE_BENCH_WEIGHTS_MUSIQ_SPAQ", raising=False)
    with pytest.raises(WeightsError, match="not installed"):
        spec.setup(RunContext())

