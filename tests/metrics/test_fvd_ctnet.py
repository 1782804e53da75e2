"""VLM3D's FVD_CTNet (trace_bench/networks/ctnet.py, trace_bench/metrics/fvd_ctnet.py).

The reference is forithmus/VLM3D-Dockers ``ctgen_evaluation/`` (commit 25f9c7b), which cannot be
installed (a Docker context, not a package). The section "transcription" below is a minimal, faithful
transcription of its code path (file and line numbers cited per function), kept apart from the
product code; the tests compare the product with it. No CT-Net weights are public in usable form (the
repository's checkpoint is truncated), so the network tests use RANDOM weights of the real
architecture (said at each test); no test reads a weights file that is not written here.
"""

from __future__ import annotations

import argparse
import json
import warnings
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
import scipy.linalg
import torch
import torch.nn as nn
import torch.nn.functional as F

from trace_bench.errors import WeightsError
from trace_bench.networks import ctnet as C
from trace_bench.metrics import METRICS, CaseData, RunContext
from trace_bench.metrics import fvd_ctnet as M
from trace_bench.metrics.kid import kid_from_features
from trace_bench.metrics.prdc import prdc_from_features
from trace_bench.metrics import frechet
from trace_bench.volume import Volume

from helpers.paths import DEMO_CT

torch.set_num_threads(1)


# ============================================================================= transcription (reference)
def vlm3d_read_mha(path):
    """evaluate_fvd.py L30-44 ``_read_mha`` (the spacing it also returns is unused downstream)."""
    import SimpleITK as sitk

    img = sitk.ReadImage(str(path))
    arr = sitk.GetArrayFromImage(img)  # (sz, sy, sx)
    return arr.astype(np.float32).transpose(0, 2, 1)  # -> (sz, sx, sy)


def vlm3d_resize_vol(vol, target_dhw=(201, 224, 224)):
    """metrics3d.py L28-37 ``_resize_vol``."""
    d, h, w = target_dhw
    vol = vol.unsqueeze(0).unsqueeze(0)
    vol = F.interpolate(vol, size=(d, h, w), mode="trilinear", align_corners=False)
    return vol.squeeze(0)  # (1, D, H, W)


def vlm3d_prep_volume(arr):
    """evaluate_fvd.py L48-62 ``_prep_volume`` (TARGET_DHW = (402, 420, 420), L25)."""
    arr = np.clip(arr, -1000, 1000)
    vol = torch.from_numpy(arr)
    vol = vlm3d_resize_vol(vol, (402, 420, 420))
    vol = vol / 1000.0
    vol = (vol + 1) / 2
    return vol


def vlm3d_normalize(ctvol, lower_bound, upper_bound):
    """utils.py L32-37 ``normalize``."""
    ctvol = torch.clamp(ctvol, lower_bound, upper_bound)
    return (ctvol - lower_bound) / (upper_bound - lower_bound)


def vlm3d_torchify_pixelnorm_pixelcenter(ctvol, pixel_bounds):
    """utils.py L39-53."""
    ctvol = torch.from_numpy(ctvol).type(torch.float)
    ctvol = vlm3d_normalize(ctvol, pixel_bounds[0], pixel_bounds[1])
    return ctvol - 0.449


def vlm3d_pad_slices(ctvol, max_slices):
    """utils.py L58-69."""
    padding_needed = max_slices - ctvol.shape[0]
    assert padding_needed >= 0
    if padding_needed > 0:
        before = int(padding_needed / 2.0)
        ctvol = np.pad(ctvol, ((before, padding_needed - before), (0, 0), (0, 0)), mode="constant",
                       constant_values=np.amin(ctvol))
    return ctvol


def vlm3d_pad_sides(ctvol, max_side_length):
    """utils.py L71-93 (the final equal-sides assertion kept)."""
    needed_padding = 0
    for side in [1, 2]:
        padding_needed = max_side_length - ctvol.shape[side]
        if padding_needed > 0:
            before = int(padding_needed / 2.0)
            pw = [(0, 0), (0, 0), (0, 0)]
            pw[side] = (before, padding_needed - before)
            ctvol = np.pad(ctvol, pw, mode="constant", constant_values=np.amin(ctvol))
            needed_padding += 1
    if needed_padding == 2:
        assert ctvol.shape[1] == ctvol.shape[2] == max_side_length
    return ctvol


def vlm3d_pad_volume(ctvol, max_slices, max_side_length):
    """utils.py L95-103."""
    if ctvol.shape[0] < max_slices:
        ctvol = vlm3d_pad_slices(ctvol, max_slices)
    if ctvol.shape[1] < max_side_length:
        ctvol = vlm3d_pad_sides(ctvol, max_side_length)
    return ctvol


def vlm3d_crop_specified_axis(ctvol, max_dim, axis):
    """utils.py L128-142."""
    dim = ctvol.shape[axis]
    if dim > max_dim:
        amount = dim - max_dim
        one = int(amount / 2.0)
        two = dim - (amount - one)
        return ctvol[(slice(None),) * axis + (slice(one, two),)]
    return ctvol


def vlm3d_prepare_ctvol_2019_10_dataset(ctvol, pixel_bounds, data_augment, num_channels, crop_type):
    """utils.py L194-227 with data_augment=False and num_channels=1, the call of fvd_pytorch.py L52-60
    (the augmentation and 3-channel branches are not on that path and are not transcribed)."""
    assert data_augment is False and num_channels == 1 and crop_type == "single"
    ctvol = vlm3d_pad_volume(ctvol, 402, 420)
    for axis, n in ((0, 402), (1, 420), (2, 420)):  # single_crop_3d_fixed, L144-150
        ctvol = vlm3d_crop_specified_axis(ctvol, n, axis)
    return vlm3d_torchify_pixelnorm_pixelcenter(ctvol, pixel_bounds)


def vlm3d_network_input(mha_paths):
    """evaluate_fvd.py L98-121 (DataLoader batch_size=1, ``gen[0, 0]``, ``torch.stack(gb).numpy()``) then
    fvd_pytorch.py L43-60 (``* 2000``, ``- 1000``, prepare_ctvol per volume, ``torch.stack``) and the view of
    custom_models_ctnet.py L73: the (B * 134, 3, 420, 420) batch CTNetModel's ResNet sees."""
    gb = []
    for p in mha_paths:
        vol = vlm3d_prep_volume(vlm3d_read_mha(p))[None]  # the DataLoader's batch axis: (1, 1, D, H, W)
        gb.append(vol.contiguous()[0, 0].cpu())
    videos = torch.stack(gb).numpy().astype(np.float32)
    videos = videos * 2000
    videos = videos - 1000
    x = torch.stack([vlm3d_prepare_ctvol_2019_10_dataset(v, [-1000, 200], False, 1, "single") for v in videos], dim=0)
    return x.view(len(mha_paths) * 134, 3, 420, 420)


class VLM3DCTNetModel(nn.Module):
    """custom_models_ctnet.py L39-88 ``CTNetModel`` (Copyright (c) 2020 Rachel Lea Ballantyne Draelos, MIT),
    with VLM3D's forward returning the 96-d activations."""

    def __init__(self, n_outputs):
        super().__init__()
        import torchvision

        resnet = torchvision.models.resnet18()
        self.features = nn.Sequential(*(list(resnet.children())[:-2]))
        self.reducingconvs = nn.Sequential(
            nn.Conv3d(134, 64, kernel_size=(3, 3, 3), stride=(3, 1, 1), padding=0), nn.ReLU(),
            nn.Conv3d(64, 32, kernel_size=(3, 3, 3), stride=(3, 1, 1), padding=0), nn.ReLU(),
            nn.Conv3d(32, 16, kernel_size=(3, 2, 2), stride=(3, 2, 2), padding=0), nn.ReLU())
        self.classifier = nn.Sequential(
            nn.Linear(16 * 18 * 5 * 5, 128), nn.ReLU(True), nn.Dropout(0.5),
            nn.Linear(128, 96), nn.ReLU(True), nn.Dropout(0.5),
            nn.Linear(96, n_outputs))

    def forward(self, x):
        batch_size = int(list(x.size())[0])
        x = x.view(batch_size * 134, 3, 420, 420)
        x = self.features(x)
        x = x.view(batch_size, 134, 512, 14, 14)
        x = self.reducingconvs(x)
        x = x.view(batch_size, 16 * 18 * 5 * 5)
        x = self.classifier[0](x)
        x = self.classifier[1](x)
        x = self.classifier[2](x)
        x_96 = self.classifier[3](x)
        x = self.classifier[4](x_96)
        x = self.classifier[5](x)
        return x


def vlm3d_load_checkpoint(check_point, model):
    """fvd_pytorch.py L18-34: ``check_point['params']``, one leading ``module.`` stripped, strict load."""
    new_state_dict = {}
    for k, v in check_point["params"].items():
        new_state_dict[k.replace("module.", "", 1) if k.startswith("module.") else k] = v
    model.load_state_dict(new_state_dict)
    return model


def vlm3d_compute_stats(feats):
    """fvd_pytorch_model.py L21-26."""
    return feats.mean(axis=0), np.cov(feats, rowvar=False)


def vlm3d_frechet(feats_fake, feats_real):
    """fvd_pytorch_model.py L9-18 ``compute_fvd``."""
    mu_gen, sigma_gen = vlm3d_compute_stats(feats_fake)
    mu_real, sigma_real = vlm3d_compute_stats(feats_real)
    m = np.square(mu_gen - mu_real).sum()
    s, _ = scipy.linalg.sqrtm(np.dot(sigma_gen, sigma_real), disp=False)
    return float(np.real(m + np.trace(sigma_gen + sigma_real - s * 2)))


def vlm3d_fvd_ctnet(gen_names, feats_of, chunk=4):
    """evaluate_fvd.py L79-88 + L108-133: generated files in sorted order, each with the reference of the
    same name; chunks of CHUNK (=4) pairs; ``compute_fvd(r_np, g_np)`` per chunk, i.e. fake = reference,
    real = generated (fvd_pytorch.py L16, L66-72); the mean over chunks. ``feats_of(kind, name)`` stands
    for the CT-Net forward of fvd_pytorch.py L66-67 (tested separately above)."""
    files = sorted(f"{n}.mha" for n in gen_names)
    gb, rb, scores = [], [], []
    for f in files:
        gb.append(feats_of("gen", f[:-4]))
        rb.append(feats_of("ref", f[:-4]))
        if len(gb) == chunk:
            scores.append(vlm3d_frechet(np.stack(rb), np.stack(gb)))
            gb, rb = [], []
    if gb:
        scores.append(float(vlm3d_frechet(np.stack(rb), np.stack(gb))))
    return float(np.mean(scores)) if scores else None


# ============================================================================= helpers
def write_mha(path: Path, array_zyx: np.ndarray, spacing_xyz=(1.0, 1.0, 1.0), direction=None) -> Path:
    import SimpleITK as sitk

    img = sitk.GetImageFromArray(np.ascontiguousarray(array_zyx))
    img.SetSpacing(tuple(float(s) for s in spacing_xyz))
    if direction is not None:
        img.SetDirection(tuple(float(d) for d in np.asarray(direction).ravel()))
    sitk.WriteImage(img, str(path))
    return path


def _lps_volume(arr: np.ndarray, spacing=(2.0, 1.0, 1.0)) -> Volume:
    aff = np.diag([-spacing[2], -spacing[1], spacing[0], 1.0])  # LPS index -> RAS mm
    return Volume(arr.astype(np.float32), spacing, aff, {"path": "synthetic"})


@pytest.fixture(scope="module")
def demo_mha(tmp_path_factory):
    """The shipped real chest CT (lung1, 48 x 256 x 256, HU) written as VLM3D's challenge files are:
    .mha through SimpleITK with the identity direction (ctgen_example_docker/process.py save_final_mha)."""
    from trace_bench.io import read_volume

    v = read_volume(DEMO_CT)
    sz, sy, sx = v.spacing
    return v, write_mha(tmp_path_factory.mktemp("mha") / "lung1.mha", v.array, (sx, sy, sz))


# ============================================================================= preprocessing
def test_preprocessing_equals_vlm3d_on_the_shipped_ct(demo_mha):
    """Our preprocessing of the trace-bench Volume equals VLM3D's evaluate_fvd -> compute_fvd chain on the
    same CT read from .mha, value for value (same float32 operations in the same order)."""
    from trace_bench.io import read_volume

    v, mha = demo_mha
    want = vlm3d_network_input([mha]).numpy()
    assert want.shape == (134, 3, 420, 420)
    got = C.preprocess(read_volume(mha))
    assert got.shape == (134, 3, 420, 420) and got.dtype == np.float32
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(C.preprocess(v), want)  # the NIfTI original: same canonical array
    assert got.min() == np.float32(-0.449) and got.max() <= np.float32(1.0 - 0.449)


def test_orientation_follows_the_canonical_array_not_the_storage_order(demo_mha, tmp_path):
    """VLM3D ignores the direction matrix (its files use the identity). A copy stored with the x axis
    reversed (direction diag(-1, 1, 1)) is the same patient: trace-bench reorients it to LPS and gives
    the identity file's input; VLM3D's raw reading gives the input mirrored along its H axis (= x)."""
    from trace_bench.io import read_volume

    v, mha = demo_mha
    sz, sy, sx = v.spacing
    flipped = write_mha(tmp_path / "flipped.mha", v.array[:, :, ::-1], (sx, sy, sz), np.diag([-1.0, 1.0, 1.0]))
    want = C.preprocess(read_volume(mha))
    np.testing.assert_array_equal(C.preprocess(read_volume(flipped)), want)
    raw = vlm3d_network_input([flipped]).numpy()
    assert np.abs(raw - want).max() > 0.1  # VLM3D's input differs from the identity file's ...
    # ... by a mirror along H (= x) of (134, 3, H, W), up to the resize's rounding (not symmetric bit for bit)
    assert np.abs(raw - want[:, :, ::-1, :]).max() < 1e-4


def test_axes_windows_and_slice_triplets_on_an_analytic_volume():
    """A volume already at 402 x 420 x 420 (z, y, x) is not resampled (trilinear at scale 1 is the
    identity); HU(z, x) = -900 + 100 (z mod 3) + 1200 [x >= 210], constant along y. Image t, channel c
    is slice 3t + c; the image's rows are x, its columns y; values (clip(HU, -1000, 200) + 1000) / 1200
    - 0.449 (the [0, 1] round trip costs float32 rounding only)."""
    z = np.arange(402)[:, None, None]
    x = np.arange(420)[None, None, :]
    hu = (-900.0 + 100.0 * (z % 3) + 1200.0 * (x >= 210)) * np.ones((1, 420, 1))
    got = C.preprocess(_lps_volume(hu))
    t, c = 7, 2
    want_row = (np.clip(hu[3 * t + c, 0, :], -1000, 200) + 1000) / 1200 - 0.449  # along x
    np.testing.assert_allclose(got[t, c, :, 5], want_row, atol=2e-6)
    np.testing.assert_allclose(got[t, c, 100, :], want_row[100], atol=2e-6)  # constant along y
    assert np.isclose(got[0, 0, 0, 0], 100 / 1200 - 0.449, atol=2e-6) and np.isclose(got[0, 2, 0, 0], 300 / 1200 - 0.449, atol=2e-6)
    assert np.isclose(got[0, 1, 300, 0], 1200 / 1200 - 0.449, atol=2e-6)  # -800 + 1200 = 400 HU clipped to 200
    with pytest.raises(ValueError, match="3-D"):
        C.preprocess_array(np.zeros((4, 4), np.float32))


# ============================================================================= the network
def _random_bn(model: nn.Module, seed: int = 0) -> nn.Module:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.copy_(torch.rand(m.running_mean.shape, generator=g) * 0.2 - 0.1)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)
    return model.eval()


def test_architecture_keys_shapes_and_output():
    """RANDOM weights of the real architecture. The transcribed CTNetModel's state dict loads strictly into
    ours; key count, parameter count and the shapes below are those of the challenge checkpoint's data.pkl
    (132 tensors: read from VLM3D-Dockers' CTNet28_ctclip_whole_data_18classes, whose pickle is intact
    even though the file is truncated); the full-size forward gives (B, 96) (shapes on the meta device)."""
    torch.manual_seed(0)
    ref = VLM3DCTNetModel(18)
    ours = C.CTNet()
    ours.load_state_dict(ref.state_dict(), strict=True)
    sd = ours.state_dict()
    assert len(sd) == 132
    assert sum(v.numel() for k, v in sd.items() if not k.endswith("num_batches_tracked")) == 12_415_074
    assert sum(p.numel() for p in ours.parameters()) == 12_405_474
    assert tuple(sd["reducingconvs.0.weight"].shape) == (64, 134, 3, 3, 3)
    assert tuple(sd["reducingconvs.4.weight"].shape) == (16, 32, 3, 2, 2)
    assert tuple(sd["classifier.0.weight"].shape) == (128, 7200)
    assert tuple(sd["classifier.3.weight"].shape) == (96, 128) and tuple(sd["classifier.6.weight"].shape) == (18, 96)
    assert tuple(sd["features.7.1.bn2.running_var"].shape) == (512,)
    with torch.device("meta"):
        net = C.CTNet()
        assert tuple(net(torch.empty(2, 134, 3, 420, 420)).shape) == (2, 96)
        assert tuple(net(torch.empty(1, 402, 420, 420)).shape) == (1, 96)
        assert tuple(net.logits(torch.empty(1, 402, 420, 420)).shape) == (1, 18)
    with pytest.raises(ValueError, match="134, 3, 420, 420"):
        C.CTNet()(torch.zeros(1, 3, 64, 64))


def test_trunk_is_torchvision_resnet18_without_pool_and_fc():
    """RANDOM weights (random BN statistics). ``features`` is torchvision's resnet18 up to layer4 (what
    ``children()[:-2]`` keeps), 420 -> 14; run in slices of ``trunk_batch`` images it gives the same maps."""
    import torchvision

    torch.manual_seed(1)
    tv = _random_bn(torchvision.models.resnet18(weights=None), 1)
    net = C.CTNet(trunk_batch=2).eval()
    net.features.load_state_dict(nn.Sequential(*list(tv.children())[:-2]).state_dict(), strict=True)
    x = torch.randn(2, 3, 420, 420)
    with torch.no_grad():
        t = tv
        want = t.layer4(t.layer3(t.layer2(t.layer1(t.maxpool(t.relu(t.bn1(t.conv1(x))))))))
        got = net.features(x)
        assert got.shape == (2, 512, 14, 14)
        torch.testing.assert_close(got, want, rtol=0, atol=0)
        small = torch.randn(5, 3, 64, 64)
        torch.testing.assert_close(net.trunk(small), net.features(small), rtol=1e-5, atol=1e-5)


class _StandInTrunk(nn.Module):
    """Cheap (M, 3, 420, 420) -> (M, 512, 14, 14) map (30 x 30 average pool + random 1 x 1 conv), put in
    place of the ResNet-18 in BOTH models so the full forward (views, trunk slicing, reducing convs,
    classifier cut) is compared at the real input size in about a second instead of ~60 s."""

    def __init__(self) -> None:
        super().__init__()
        self.pool = nn.AvgPool2d(30)
        self.proj = nn.Conv2d(3, 512, 1)

    def forward(self, x):
        return torch.relu(self.proj(self.pool(x)))


def test_forward_equals_transcription_with_identical_random_weights():
    """RANDOM weights, identical in both models; the ResNet-18 is replaced by one shared stand-in (its own
    identity with torchvision is the previous test). Full-size input (1, 134, 3, 420, 420)."""
    torch.manual_seed(2)
    ref = VLM3DCTNetModel(18).eval()
    ours = C.CTNet(trunk_batch=7).eval()
    ours.load_state_dict(ref.state_dict(), strict=True)
    stand_in = _StandInTrunk().eval()
    ref.features = stand_in
    ours.features = stand_in
    x = torch.rand(1, 134, 3, 420, 420) - 0.449
    with torch.no_grad():
        want = ref(x)
        got = ours(x)
        got_flat = ours(x.view(1, 402, 420, 420))
    assert got.shape == (1, 96) and (got >= 0).all() and (got > 0).any()  # after ReLU
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(got_flat, got, rtol=0, atol=0)
    # batch of 2 through the head (trunk maps given): rows independent, equal to the reference's steps
    maps = torch.rand(2, 134, 512, 14, 14)
    with torch.no_grad():
        r = ref.reducingconvs(maps).view(2, 7200)
        for i in range(6):
            r = ref.classifier[i](r)
        torch.testing.assert_close(ours.head(maps), r, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(ours.head(maps[1:]), r[1:], rtol=1e-5, atol=1e-6)


# ============================================================================= weights file
def _checkpoint(model: nn.Module) -> dict:
    """The challenge checkpoint's layout (DataParallel 'module.' keys under 'params', plus an SGD state)."""
    params = OrderedDict(("module." + k, v.clone()) for k, v in model.state_dict().items())
    return {"params": params, "optimizer": {"state": {}, "param_groups": [
        {"lr": 0.001, "momentum": 0.99, "dampening": 0, "weight_decay": 1e-07, "nesterov": False, "params": [0, 1]}]}}


def test_checkpoint_loads_like_vlm3d_and_pickles_are_refused(tmp_path):
    """RANDOM weights saved in the challenge's checkpoint format load strictly, equal to VLM3D's own
    loading (``params``, ``module.`` stripped); a checkpoint needing full unpickling is refused in one line
    with the conversion command; a foreign state dict is refused."""
    torch.manual_seed(3)
    src = VLM3DCTNetModel(18)
    ckpt = _checkpoint(src)
    p = tmp_path / "CTNet28_ctclip_whole_data_18classes"
    torch.save(ckpt, p)
    ext = C.load_ctnet(p, "cpu", sha256="ab" * 32)
    assert not ext.model.training and ext.weights_sha256 == "ab" * 32 and ext.id == C.EXTRACTOR_ID
    ref = vlm3d_load_checkpoint(torch.load(p, weights_only=True), VLM3DCTNetModel(18))
    for k, v in ref.state_dict().items():
        torch.testing.assert_close(ext.model.state_dict()[k], v, rtol=0, atol=0)
    bare = tmp_path / "bare.pt"
    torch.save(src.state_dict(), bare)  # a plain state dict without 'params' or prefix is accepted too
    assert set(C.ctnet_state_dict(bare)) == set(src.state_dict())

    evil = tmp_path / "evil.pt"
    torch.save({"params": {"module.features.0.weight": torch.zeros(1)}, "args": argparse.Namespace(lr=1.0)}, evil)
    with pytest.raises(WeightsError) as e:
        C.load_ctnet(evil)
    msg = str(e.value)
    assert "refused" in msg and "weights_only=False" in msg and "\n" not in msg
    assert "--weights vlm3d-ctnet=" in msg and "TRACE_BENCH_WEIGHTS_VLM3D_CTNET" in msg
    other = tmp_path / "other.pt"
    torch.save({"params": {"conv1.weight": torch.zeros(1)}}, other)
    with pytest.raises(WeightsError, match="no CT-Net state dict"):
        C.load_ctnet(other)
    bad_shape = tmp_path / "bad_shape.pt"
    sd = dict(src.state_dict())
    sd["classifier.3.weight"] = torch.zeros(95, 128)
    torch.save({"params": sd}, bad_shape)
    with pytest.raises(WeightsError, match="does not fit CT-Net"):
        C.load_ctnet(bad_shape)


def test_truncated_public_copy_is_named(tmp_path, monkeypatch):
    """The registry records the size and sha256 of the truncated copy in VLM3D-Dockers; a file with those
    is refused with that explanation (here a stand-in blob registered in its place)."""
    from trace_bench.weights import WEIGHTS, sha256_file

    spec = WEIGHTS.get("vlm3d-ctnet")
    cut = spec.extra["truncated_public_copy"]
    assert cut["size"] == 840000 and cut["sha256"].startswith("442c4832")
    blob = tmp_path / "cut.bin"
    blob.write_bytes(b"PK\x03\x04" + bytes(60))
    monkeypatch.setitem(spec.extra, "truncated_public_copy", {"size": 64, "sha256": sha256_file(blob)})
    with pytest.raises(WeightsError, match="truncated copy committed in forithmus/VLM3D-Dockers"):
        C.ctnet_state_dict(blob)


def test_registry_entry():
    from trace_bench.weights import WEIGHTS

    spec = WEIGHTS.get("vlm3d-ctnet")
    assert "not_implemented" not in spec.extra
    assert spec.sha256 is None and not spec.pinned  # no complete official file to hash
    assert spec.filename == "CTNet28_ctclip_whole_data_18classes"
    assert set(spec.used_by) == {"fvd_ctnet", "fd_ctnet", "kid_ctnet", "prdc_ctnet"}
    assert "MIT" in spec.licence and "CC BY-NC-SA" in spec.licence
    assert "402 x 420 x 420" in spec.description and "[-1000, 200]" in spec.description
    assert "840,000 bytes" in spec.provenance
    assert not spec.url.startswith("http")  # `weights fetch` must not save a web page as the checkpoint


# ============================================================================= Frechet distance
def test_frechet_equals_vlm3d_compute_fvd_on_random_features():
    """Our low-rank Frechet distance equals fvd_pytorch_model.compute_fvd (np.cov, scipy sqrtm of a rank-3
    96 x 96 product) to 1e-6 relative on ReLU'd random features, chunks of 2 to 5, several scales
    (measured worst case 7e-8); and VLM3D's swapped argument order does not matter."""
    rng = np.random.default_rng(0)
    worst = 0.0
    for n in (2, 3, 4, 4, 5):
        for scale in (0.01, 1.0, 10.0):
            g = (np.maximum(rng.normal(0.3, 1.0, (n, 96)), 0) * scale).astype(np.float32)
            r = (np.maximum(rng.normal(0.0, 1.0, (n, 96)), 0) * scale).astype(np.float32)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                want, swapped = vlm3d_frechet(r, g), vlm3d_frechet(g, r)
            got = frechet.frechet_distance_low_rank(g, r, ddof=1)
            worst = max(worst, abs(got - want) / want)
            assert swapped == pytest.approx(want, rel=1e-6)
    assert worst < 1e-6


def _states(rng, ids, d=96):
    """Per-case states as FVDCTNet.case_state makes them (random features)."""
    out = {}
    for c in ids:
        out[c] = {"features": np.maximum(rng.normal(0.4, 1.0, (1, d)), 0).astype(np.float32),
                  "reference_features": np.maximum(rng.normal(0.0, 1.0, (1, d)), 0).astype(np.float32),
                  "case": np.array([c])}
    return out


@pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::scipy.linalg.LinAlgWarning")
def test_chunked_fvd_equals_the_evaluate_fvd_loop_in_any_merge_order():
    """FVDCTNet.compute equals the transcribed evaluate_fvd.py loop (chunks of 4 in sorted-name order,
    remainder chunk) for 10 cases (chunks 4 + 4 + 2), whatever order the states are merged in; 9 cases
    (a last chunk of one pair) fail in both."""
    rng = np.random.default_rng(4)
    ids = ["valid_10_a_1", "valid_1_a_1", "valid_2_b_2", "valid_3", "x-1", "x", "valid_7_a", "a_5", "b", "valid_1_a_2"]
    st = _states(rng, ids)
    want = vlm3d_fvd_ctnet(ids, lambda kind, n: st[n]["features" if kind == "gen" else "reference_features"][0])
    m = METRICS.get("fvd_ctnet")()
    ctx = RunContext()
    for order in (ids, sorted(ids), ids[::-1]):
        res = m.compute(m.merge([st[c] for c in order]), {}, ctx)
        assert res["fvd_ctnet"] == pytest.approx(want, rel=1e-6) and res["fvd_ctnet_chunks"] == 3.0
    assert want > 0
    # option chunk: one chunk of all 10 pairs = the plain Frechet distance of the two sets
    m10 = METRICS.get("fvd_ctnet")({"chunk": 10})
    g = np.concatenate([st[c]["features"] for c in ids])
    r = np.concatenate([st[c]["reference_features"] for c in ids])
    assert m10.compute(m10.merge(st.values()), {}, ctx)["fvd_ctnet"] == pytest.approx(
        frechet.frechet_distance_low_rank(g, r), rel=1e-12)
    nine = ids[:9]
    with pytest.raises(ValueError, match="last chunk of 1 pair"):
        m.compute(m.merge([st[c] for c in nine]), {}, ctx)
    # VLM3D's last chunk: np.cov of one row is NaN, on which scipy.linalg.sqrtm raises (scipy 1.17: LinAlgError
    # after ~10 s, so only the cause is checked here; older scipy: ValueError from its finiteness check)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert np.isnan(vlm3d_compute_stats(st[sorted(nine)[-1]]["features"])[1]).all()
    # a reference case's state (no pair) cannot be the generated side; mixing the two kinds is refused
    ref_state = {"features": st[ids[0]]["features"], "case": st[ids[0]]["case"]}
    with pytest.raises(ValueError, match="reference_features"):
        m.compute(m.merge([ref_state]), {}, ctx)
    with pytest.raises(ValueError, match="mix"):
        m.merge([ref_state, st[ids[1]]])
    assert m.sample_info(m.merge(st.values())) == {"samples": 4, "dim": 96}


def test_protocol_ids_and_registration():
    ctx = RunContext()
    for name in ("fvd_ctnet", "fd_ctnet", "kid_ctnet", "prdc_ctnet"):
        cls = METRICS.get(name)
        assert cls.weights == ("vlm3d-ctnet",) and cls.kind == "distribution" and cls.table == "table2"
        assert cls.in_default_set is False
        pid = cls().protocol_id(ctx)
        assert C.PREPROCESS_ID in pid and C.EXTRACTOR_ID in pid and pid.startswith("vlm3d-ctnet:")
    assert METRICS.get("fvd_ctnet").needs_reference and not METRICS.get("fd_ctnet").needs_reference
    pid = METRICS.get("fvd_ctnet")().protocol_id(ctx)
    assert "chunks4" in pid and "paired-by-case" in pid and "fd-ddof1" in pid
    assert METRICS.get("fvd_ctnet")({"chunk": 8}).protocol_id(ctx).replace("chunks8", "chunks4") == pid
    assert METRICS.get("fvd_ctnet")({"feature_cache": False}).protocol_id(ctx) == pid  # cache switch: same numbers
    assert "fd:ddof=1" in METRICS.get("fd_ctnet")().protocol_id(ctx)
    assert C.PREPROCESS_ID.startswith("vlm3d-fvd-v1:")


def test_unpaired_companions_match_functional_twins():
    rng = np.random.default_rng(5)
    g = np.maximum(rng.normal(0.3, 1, (12, 96)), 0).astype(np.float32)
    r = np.maximum(rng.normal(0.0, 1, (15, 96)), 0).astype(np.float32)
    ctx = RunContext()
    fd, kid, prdc = (METRICS.get(n)() for n in ("fd_ctnet", "kid_ctnet", "prdc_ctnet"))
    gs, rs = fd.merge([{"features": g[:5]}, {"features": g[5:]}]), fd.merge([{"features": r}])
    assert fd.compute(gs, rs, ctx)["fd_ctnet"] == pytest.approx(frechet.frechet_distance_low_rank(g, r), rel=1e-12)
    assert kid.compute(gs, rs, ctx)["kid_ctnet"] == pytest.approx(kid_from_features(g, r)[0], rel=1e-12)
    assert prdc.compute(gs, rs, ctx) == {f"prdc_ctnet_{c}": v for c, v in prdc_from_features(r, g, 5).items()}


# ============================================================================= metric API and runs
class _StandInExtractor:
    """Plumbing only: takes the place of the loaded CT-Net; its 'features' are the 96 block means of the
    stand-in preprocessing below (which replaces the 402 x 420 x 420 resize to keep the test fast)."""

    id = "stand-in-ctnet"
    weights_sha256 = "0" * 64
    dim = 96

    def features(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(x, np.float32).reshape(len(x), 96)


def _stand_in_preprocess(volume: Volume) -> np.ndarray:
    a = np.clip(volume.array.astype(np.float64), -1000, 1000).ravel()
    return np.array([b.mean() / 1000.0 for b in np.array_split(a, 96)], np.float32)


def test_case_state_carries_its_reference_and_uses_the_cache(tmp_path, monkeypatch, small_volume):
    """Plumbing with the stand-ins above: a generated case's state holds its features, its reference's
    features and its id; the reference features are the same cache entry a reference case writes."""
    monkeypatch.setattr(C, "preprocess", _stand_in_preprocess)
    ctx = RunContext(cache_dir=str(tmp_path))
    ref = small_volume
    gen = ref.with_array(ref.array + 50.0)
    mr, mg = METRICS.get("fvd_ctnet")(), METRICS.get("fvd_ctnet")()
    for m in (mr, mg):
        m.net.set(_StandInExtractor(), "0" * 64)
    sr = mr.case_state(CaseData("GT", "c1", ref), ctx)
    assert set(sr) == {"features", "case"} and sr["case"].tolist() == ["c1"]
    sg = mg.case_state(CaseData("m", "c1", gen, reference=ref), ctx)
    assert set(sg) == {"features", "reference_features", "case"} and sg["features"].shape == (1, 96)
    np.testing.assert_array_equal(sg["reference_features"], sr["features"])
    assert not np.array_equal(sg["features"], sr["features"])
    assert mg.net.cache is not None and mg.net.cache.hits >= 1  # the reference's features came from the cache


def test_missing_weights_refuse_in_one_line_and_a_run_lists_them_as_not_computed(tmp_path, monkeypatch):
    from helpers.fake_metrics import make_small_dataset

    from trace_bench.config import RunConfig
    from trace_bench.run import run

    monkeypatch.setenv("TRACE_BENCH_CACHE", str(tmp_path / "empty-cache"))
    monkeypatch.delenv("TRACE_BENCH_WEIGHTS_VLM3D_CTNET", raising=False)
    with pytest.raises(WeightsError) as e:
        METRICS.get("fvd_ctnet")().setup(RunContext())
    assert "vlm3d-ctnet" in str(e.value) and "\n" not in str(e.value)
    data = make_small_dataset(tmp_path / "data")
    names = ["fvd_ctnet", "fd_ctnet", "kid_ctnet", "prdc_ctnet"]
    r = run(RunConfig(out=str(tmp_path / "o"), reference=str(data / "reference"), methods={"interp": str(data / "interp")},
                      metrics=names + ["temporal_flickering"], skip_unavailable=True, frame_size=64, bootstrap=50,
                      plots=False, published=False, progress=False), report=False)
    meta = json.loads((r.out / "metrics.json").read_text(encoding="utf-8"))
    for n in names:
        assert n in meta["skipped"] and "vlm3d-ctnet" in meta["skipped"][n] and "\n" not in meta["skipped"][n]


def test_a_run_scores_fvd_ctnet_paired_and_the_companions(tmp_path, monkeypatch):
    """End to end with a user-supplied weights file (RANDOM weights, never loaded: the loader and the
    resize are replaced by the stand-ins above, so this tests the run plumbing: states with case ids in
    npz records, pairing, GT row rules, aggregation)."""
    import pandas as pd
    from helpers.fake_metrics import make_small_dataset

    from trace_bench.config import RunConfig
    from trace_bench.run import run

    monkeypatch.setattr(C, "preprocess", _stand_in_preprocess)
    monkeypatch.setattr(C, "load_backbone", lambda path, device, name, ctx: _StandInExtractor())
    monkeypatch.setenv("TRACE_BENCH_CACHE", str(tmp_path / "cache"))
    w = tmp_path / "random-ctnet.pt"
    torch.save({"params": {"module.features.0.weight": torch.zeros(1)}}, w)
    data = make_small_dataset(tmp_path / "data")
    r = run(RunConfig(out=str(tmp_path / "o"), reference=str(data / "reference"),
                      methods={"interp": str(data / "interp"), "noisy": str(data / "noisy")},
                      metrics=["fvd_ctnet", "fd_ctnet", "kid_ctnet"], weights={"vlm3d-ctnet": str(w)},
                      frame_size=64, bootstrap=50, plots=False, published=False, progress=False), report=False)
    s = pd.read_csv(r.out / "summary.csv")
    err = pd.read_csv(r.out / "errors.csv")
    # no errors: with 2 reference cases (1 per half) no GT/GT floor is attempted (a note says so)
    assert err.empty, err.to_string()
    fv = s[s.metric == "fvd_ctnet"].set_index("method").value
    assert set(fv.index) == {"interp", "noisy"}  # paired: no GT/GT floor row
    assert (fv > 0).all() and "< 96 feature dimensions" in s[s.metric == "fvd_ctnet"].note.iloc[0]
    assert set(s[s.metric == "fd_ctnet"].method) == {"interp", "noisy"}  # (GT floor: see errors above)
    assert (s[s.metric == "fvd_ctnet_chunks"].value == 1.0).all()  # 2 cases: one chunk
    # the chunked value recomputed from the stand-in features equals the run's
    from trace_bench.io import read_volume

    for method in ("interp", "noisy"):
        g = np.stack([_stand_in_preprocess(read_volume(data / method / f"{c}.nii.gz")) for c in ("lung1", "lung2")])
        rf = np.stack([_stand_in_preprocess(read_volume(data / "reference" / f"{c}.nii.gz")) for c in ("lung1", "lung2")])
        assert fv[method] == pytest.approx(M.fvd_ctnet_from_features(g, rf)[0], rel=1e-5)
