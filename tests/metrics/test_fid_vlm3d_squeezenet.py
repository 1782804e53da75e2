"""The VLM3D 2.5D FID, current revision (``fid_vlm3d``, vlm3d-2.5d-v2: torchvision SqueezeNet 1.1) and the July 2025
one kept as ``fid_vlm3d_2507`` (trace_bench/metrics/fid_presets.py, trace_bench/networks/squeezenet.py).

Parity with the current evaluator's code path: ``get_features_2p5d`` / ``_chunked_forward_avg`` /
``radimagenet_intensity_normalisation`` of forithmus/VLM3D-Dockers ``ct_challenges/ctgen_evaluation/
compute_fid_2-5d_ct.py`` (revision a945900) are transcribed below (reference code path, test file only), fed the
script's MONAI transforms (tests/helpers/fid_script.py ``script_image``) and ``torchvision.models.squeezenet1_1``, the
model the script builds; trace-bench's features equal them to float32 round-off. Every network here is a RANDOMLY
INITIALISED SqueezeNet 1.1 of the real architecture (torchvision's class, seeded), used to test plumbing and parity,
never to produce a reported number (the ImageNet file is not available offline).
"""

from __future__ import annotations

import pickle
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import Tensor

from trace_bench.errors import WeightsError
from trace_bench.io import read_volume
from trace_bench.metrics.base import METRICS, CaseData, RunContext
from trace_bench.metrics.fid_presets import (PLANES, VLM3D, VLM3D_SQUEEZENET, FIDVlm3d,
                                             FIDVlm3dSqueezeNet, preset_fid, volume_plane_features)
from trace_bench.networks.squeezenet import CHUNK, build_squeezenet, load_squeezenet
from trace_bench.weights import WEIGHTS

from helpers.fid_script import script_image, small
from helpers.paths import DEMO_CTS, ROOT

pytestmark = [pytest.mark.usefixtures("one_torch_thread"),
              pytest.mark.filterwarnings("ignore:.*labels.*:FutureWarning"),
              pytest.mark.filterwarnings("ignore:NvImgCodecPydicomReader:UserWarning")]


# ============================================================================= reference transcription
# --- forithmus/VLM3D-Dockers ct_challenges/ctgen_evaluation/compute_fid_2-5d_ct.py (a945900), logging and drop_empty
# --- removed; model_name "squeezenet1_1": feature_network = torchvision.models.squeezenet1_1(pretrained=True)
def script_subtract_mean(x: Tensor) -> Tensor:
    mean = [0.406, 0.456, 0.485]
    x[:, 0, ...] -= mean[0]
    x[:, 1, ...] -= mean[1]
    x[:, 2, ...] -= mean[2]
    return x


def script_spatial_average(x: Tensor, keepdim: bool = True) -> Tensor:
    dim = len(x.shape)
    if dim == 2:
        return x
    if dim == 3:
        return x.mean([2], keepdim=keepdim)
    if dim == 4:
        return x.mean([2, 3], keepdim=keepdim)
    if dim == 5:
        return x.mean([2, 3, 4], keepdim=keepdim)
    return x


def script_chunked_forward_avg(feature_network, images_2d: Tensor, chunk: int = 32) -> Tensor:
    feats = []
    for i in range(0, images_2d.shape[0], chunk):
        out = feature_network.forward(images_2d[i:i + chunk])
        feats.append(script_spatial_average(out, keepdim=False))
    return torch.cat(feats, dim=0)


def script_normalisation(volume: Tensor) -> Tensor:  # radimagenet_intensity_normalisation, norm2d=False, 4-D
    max3d, min3d = torch.max(volume), torch.min(volume)
    return script_subtract_mean((volume - min3d) / (max3d - min3d + 1e-10))


def script_get_features_2p5d(image: Tensor, feature_network) -> tuple[Tensor, Tensor, Tensor]:
    """center_slices False (no ratio in VLM3D's arguments), xy_only False."""
    if image.shape[1] == 1:
        image = image.repeat(1, 3, 1, 1, 1)
    image = image[:, [2, 1, 0], ...]
    with torch.no_grad():
        out = []
        for dim in (-1, 2, 3):  # XY along D, YZ along H, ZX along W
            images_2d = script_normalisation(torch.cat(torch.unbind(image, dim=dim), dim=0))
            out.append(script_chunked_forward_avg(feature_network, images_2d))
    return out[0], out[1], out[2]


# ============================================================================= fixtures
@pytest.fixture(scope="module")
def weights_file(tmp_path_factory) -> Path:
    """A seeded random SqueezeNet 1.1 state dict (torchvision's architecture), NOT the ImageNet weights."""
    torch.manual_seed(0)
    p = tmp_path_factory.mktemp("w") / "random-squeezenet.pth"
    torch.save(build_squeezenet().state_dict(), p)
    return p


@pytest.fixture(scope="module")
def lung1():
    return read_volume(DEMO_CTS / "lung1.nii.gz")


# ============================================================================= definitions
def test_revisions_and_protocol_ids():
    ctx = RunContext()
    cur, old = METRICS.get("fid_vlm3d")(), METRICS.get("fid_vlm3d_2507")()
    assert isinstance(cur, FIDVlm3dSqueezeNet) and isinstance(old, FIDVlm3d)
    assert cur.protocol_id(ctx).startswith("vlm3d-2.5d-v2|") and "squeezenet1_1" in cur.protocol_id(ctx)
    assert old.protocol_id(ctx).startswith("vlm3d-2.5d-v1|") and "radimagenet-resnet50" in old.protocol_id(ctx)
    # the same evaluator arguments, only the network changed: the same preprocessing cube is shared in a case
    assert VLM3D_SQUEEZENET.preprocess_id == VLM3D.preprocess_id and VLM3D_SQUEEZENET.center_ratio is None
    assert set(FIDVlm3dSqueezeNet.outputs) == {"fid_vlm3d", "fid_vlm3d_xy", "fid_vlm3d_yz", "fid_vlm3d_xz"}
    assert cur.required_weights() == ("squeezenet1_1-imagenet",) and old.required_weights() == ("radimagenet-resnet50",)
    assert not FIDVlm3dSqueezeNet.in_default_set


def test_weights_entry_is_torchvisions_file():
    from torchvision.models import SqueezeNet1_1_Weights

    spec = WEIGHTS.get("squeezenet1_1-imagenet")
    url = SqueezeNet1_1_Weights.IMAGENET1K_V1.url
    assert spec.url == url and spec.filename == url.rsplit("/", 1)[1] == "squeezenet1_1-b8a52dc0.pth"
    assert spec.sha256_prefix == "b8a52dc0" and spec.pinned  # the prefix torchvision's check_hash verifies
    assert spec.contract["tensors"] == len(build_squeezenet().state_dict()) == 52


# ============================================================================= parity with the evaluator's code path
def test_features_equal_current_evaluator(weights_file, lung1):
    ext = load_squeezenet(weights_file, "cpu", batch_size=7)  # batches of 7 vs the script's chunks of 32
    import torchvision

    ref_net = torchvision.models.squeezenet1_1(weights=None)
    ref_net.load_state_dict(torch.load(weights_file, weights_only=True), strict=True)
    ref_net.eval()
    p = small(VLM3D_SQUEEZENET)
    ours = volume_plane_features(ext, lung1, p)
    want = script_get_features_2p5d(script_image(DEMO_CTS / "lung1.nii.gz", p), ref_net)
    for plane, w in zip(PLANES, want):
        w = w.numpy()
        assert ours[plane].shape == w.shape and w.shape[1] == 1000
        assert np.abs(w).max() > 1e-4  # a non-degenerate random network
        np.testing.assert_allclose(ours[plane], w, rtol=1e-4, atol=5e-6 * np.abs(w).max())
    assert CHUNK == 32


class SmallSqueeze(FIDVlm3dSqueezeNet):
    """fid_vlm3d's code at the small test geometry (not registered)."""

    preset = small(VLM3D_SQUEEZENET)


def test_streaming_metric_with_random_network(weights_file, lung1, tmp_path):
    ext = load_squeezenet(weights_file, "cpu")
    ctx = RunContext(cache_dir=str(tmp_path))
    lung2 = read_volume(DEMO_CTS / "lung2.nii.gz")
    g, r = SmallSqueeze(), SmallSqueeze()
    for m in (g, r):
        m.net.set(ext, sha256="random-test-weights")
    s = g.update(CaseData("m", "lung1", lung1), ctx)
    refs = [r.update(CaseData("GT", "lung2", lung2), ctx), r.update(CaseData("GT", "lung1", lung1), ctx)]
    res = g.compute_result(ctx, reference=r)
    assert set(res) == set(FIDVlm3dSqueezeNet.outputs) and all(np.isfinite(v) and v >= -1e-6 for v in res.values())
    want = preset_fid({p: s[f"{p}:features"] for p in PLANES},
                      {p: np.concatenate([st[f"{p}:features"] for st in refs]) for p in PLANES}, SmallSqueeze.preset)
    assert res == pytest.approx(want, rel=1e-9)
    np.testing.assert_array_equal(refs[1]["xy:features"], s["xy:features"])  # same volume, same features


# ============================================================================= weights: missing, pickled
def test_missing_weights_refused_in_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv("TRACE_BENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("TRACE_BENCH_WEIGHTS_SQUEEZENET1_1_IMAGENET", raising=False)
    with pytest.raises(WeightsError) as e:
        FIDVlm3dSqueezeNet().setup(RunContext())
    assert "\n" not in str(e.value) and "squeezenet1_1-b8a52dc0.pth" in str(e.value)


class Evil:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


def test_pickled_or_wrong_weights_refused(tmp_path):
    marker = tmp_path / "PWNED"
    evil = tmp_path / "evil.pth"
    torch.save({"features.0.weight": Evil(str(marker))}, evil)
    with pytest.raises(WeightsError, match="refused, the checkpoint needs full unpickling"):
        load_squeezenet(evil)
    raw = tmp_path / "raw.pth"
    with open(raw, "wb") as fh:
        pickle.dump({"features.0.weight": Evil(str(marker))}, fh)
    with pytest.raises(WeightsError, match="cannot load"):
        load_squeezenet(raw)
    assert not marker.exists()
    other = tmp_path / "other.pth"
    torch.save({"fc.weight": torch.zeros(2)}, other)
    with pytest.raises(WeightsError, match="no SqueezeNet state dict"):
        load_squeezenet(other)
    sd = build_squeezenet().state_dict()
    sd.pop("classifier.1.bias")
    short = tmp_path / "short.pth"
    torch.save(sd, short)
    with pytest.raises(WeightsError, match="does not fit"):
        load_squeezenet(short)


# ============================================================================= end to end
PLUGIN = '''"""fid_vlm3d's class at the small test geometry (6 mm, 40 x 36 x 32 cube): a test-only plug-in."""
import dataclasses

from trace_bench.metrics.base import Output, register_metric
from trace_bench.metrics.fid_presets import VLM3D_SQUEEZENET, FIDVlm3dSqueezeNet

SMALL = dataclasses.replace(VLM3D_SQUEEZENET, spacing=(6.0, 6.0, 6.0), target_shape=(40, 36, 32),
                            columns={"xy": "small_xy", "yz": "small_yz", "zx": "small_xz"}, mean_column="small")


@register_metric
class SmallVlm3d(FIDVlm3dSqueezeNet):
    name = "fid_vlm3d_small"
    preset = SMALL
    outputs = {c: Output(False, c, value_range=(0.0, None)) for c in ("small", "small_xy", "small_yz", "small_xz")}
'''


def test_run_end_to_end(weights_file, tmp_path):
    """``python -m trace_bench run`` through fid_vlm3d's class (weights resolution of the registry entry from
    ``--weights``, backbone, states, merge, set-level values), at the small geometry as a plug-in: the real 512^3
    cube costs ~275 CPU-seconds per volume."""
    import os
    import subprocess

    import pandas as pd

    (tmp_path / "plug").mkdir()
    (tmp_path / "plug" / "small_vlm3d_plugin.py").write_text(PLUGIN)
    out = tmp_path / "out"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TRACE_BENCH_CACHE": str(tmp_path / "cache"),
           "PYTHONPATH": f"{ROOT}{os.pathsep}{tmp_path / 'plug'}"}
    r = subprocess.run([sys.executable, "-m", "trace_bench", "run", "-r", str(DEMO_CTS), "-m", f"copy={DEMO_CTS}",
                        "-o", str(out), "--plugins", "small_vlm3d_plugin", "--metrics", "fid_vlm3d_small",
                        "--weights", f"squeezenet1_1-imagenet={weights_file}", "--no-plots", "--no-progress"],
                       capture_output=True, text=True, cwd=ROOT, env=env, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    s = pd.read_csv(out / "summary.csv")
    v = s[(s.method == "copy") & (s.metric == "small")].value
    assert len(v) == 1 and abs(float(v.iloc[0])) < 1e-3  # the same volumes as the reference: FID ~ 0
    prov = (out / "provenance.json").read_text()
    assert "squeezenet1_1-imagenet" in prov
