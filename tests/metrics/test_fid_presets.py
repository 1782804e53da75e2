"""MAISI / VLM3D 2.5D FID presets (trace_bench/metrics/fid_presets.py, trace_bench/networks/radimagenet.py).

Parity with the references, on the shipped real chest CT:

* preprocessing: the MAISI script's MONAI dictionary transforms (MONAI itself, composed as in
  Project-MONAI/tutorials generation/maisi/scripts/compute_fid_2-5d_ct.py lines 566-588) on the NIfTI
  file, against ``preprocess`` on the canonical volume: bit for bit (tolerance 0 HU);
* VLM3D: the evaluator's .mha -> .nii.gz conversion (transcribed below from forithmus/VLM3D-Dockers
  ctgen_evaluation/evaluation.py) followed by the same MONAI transforms with its arguments: bit for bit;
* slicing + input normalisation: a transcription of the script's ``get_features_2p5d`` (lines 158-352)
  with a network that returns its input: bit for bit;
* network: a transcription of Warvito/radimagenet-models radimagenet_models/models/resnet.py: same
  state-dict keys and shapes, and the script's feature step through it equals ours to float32 round-off
  (batches of 7 slices vs the script's single batch: |difference| <= 5e-6 x max |feature| asserted,
  <= 4e-7 x seen);
* Frechet distance: MONAI's ``get_fid_score`` itself against trace_bench.metrics.frechet (relative
  1e-10 with full-rank covariances, 1e-6 with rank-deficient ones, where MONAI's sqrtm is the less exact).

The real RadImageNet weights are not available offline; every network here is a RANDOMLY INITIALISED
ResNet-50 of the real architecture (same layers and parameter names), used only to test plumbing and
parity, never to produce a reported number. The transcriptions below are reference code paths, kept in
this test file only (not part of trace-bench).
"""

from __future__ import annotations

import dataclasses
import pickle
from pathlib import Path
from typing import Optional

import numpy as np
import pytest
import torch
import torch.nn as nn
from torch import Tensor

from trace_bench.errors import WeightsError
from trace_bench.networks.radimagenet import RadImageNetResNet50, load_radimagenet, radimagenet_input
from trace_bench.io import read_volume
from trace_bench.metrics.base import METRICS, CaseData, RunContext
from trace_bench.metrics.fid_presets import (MAISI, PLANES, VLM3D, FIDMaisi, FIDVlm3d, central_range, nifti_affine,
                                             plane_slices, preprocess, preset_fid, volume_plane_features)

from helpers.fid_script import script_image, small
from helpers.paths import DEMO_CTS

pytestmark = [pytest.mark.usefixtures("one_torch_thread"),
              # the script's Orientationd leaves `labels` at its announced-to-change default; MONAI's DICOM plug-in note
              pytest.mark.filterwarnings("ignore:.*labels.*:FutureWarning"),
              pytest.mark.filterwarnings("ignore:NvImgCodecPydicomReader:UserWarning")]

#: odd pad / crop amounts on every axis (the 1 mm lung1 cube is 292 x 292 x 236): x padded by 9, y and z
#: cropped by 37 (MONAI splits odd amounts unevenly; the test sees that)
SHAPE = (301, 255, 199)


# ============================================================================= reference transcriptions
# --- Project-MONAI/tutorials generation/maisi/scripts/compute_fid_2-5d_ct.py (identical in
# --- forithmus/VLM3D-Dockers ctgen_evaluation/compute_fid_2-5d_ct.py), logging and drop_empty removed
def script_subtract_mean(x: Tensor) -> Tensor:  # lines 158-168
    mean = [0.406, 0.456, 0.485]
    x[:, 0, ...] -= mean[0]
    x[:, 1, ...] -= mean[1]
    x[:, 2, ...] -= mean[2]
    return x


def script_spatial_average(x: Tensor, keepdim: bool = True) -> Tensor:  # lines 171-197 (4-D branch)
    return x.mean([2, 3], keepdim=keepdim)


def script_radimagenet_intensity_normalisation(volume: Tensor) -> Tensor:  # lines 218-250, norm2d=False, 4-D
    max3d = torch.max(volume)
    min3d = torch.min(volume)
    volume = (volume - min3d) / (max3d - min3d + 1e-10)
    return script_subtract_mean(volume)


def script_get_features_2p5d(image: Tensor, feature_network, center_slices: bool = False,
                             center_slices_ratio: float = 1.0):  # lines 253-352, sample_every_k=1, no drop_empty
    if image.shape[1] == 1:
        image = image.repeat(1, 3, 1, 1, 1)
    image = image[:, [2, 1, 0], ...]
    B, C, H, W, D = image.size()
    with torch.no_grad():
        if center_slices:
            start_d = int((1.0 - center_slices_ratio) / 2.0 * D)
            end_d = int((1.0 + center_slices_ratio) / 2.0 * D)
            slices = torch.unbind(image[:, :, :, :, start_d:end_d:1], dim=-1)
        else:
            slices = torch.unbind(image, dim=-1)
        images_2d = script_radimagenet_intensity_normalisation(torch.cat(slices, dim=0))
        xy = script_spatial_average(feature_network.forward(images_2d), keepdim=False)
        if center_slices:
            start_h = int((1.0 - center_slices_ratio) / 2.0 * H)
            end_h = int((1.0 + center_slices_ratio) / 2.0 * H)
            slices = torch.unbind(image[:, :, start_h:end_h:1, :, :], dim=2)
        else:
            slices = torch.unbind(image, dim=2)
        images_2d = script_radimagenet_intensity_normalisation(torch.cat(slices, dim=0))
        yz = script_spatial_average(feature_network.forward(images_2d), keepdim=False)
        if center_slices:
            start_w = int((1.0 - center_slices_ratio) / 2.0 * W)
            end_w = int((1.0 + center_slices_ratio) / 2.0 * W)
            slices = torch.unbind(image[:, :, :, start_w:end_w:1, :], dim=3)
        else:
            slices = torch.unbind(image, dim=3)
        images_2d = script_radimagenet_intensity_normalisation(torch.cat(slices, dim=0))
        zx = script_spatial_average(feature_network.forward(images_2d), keepdim=False)
    return xy, yz, zx


# --- forithmus/VLM3D-Dockers ctgen_evaluation/evaluation.py lines 121-133 (_convert_and_list_files), one file
def vlm3d_convert(mha: Path, nifti_dir: Path) -> Path:
    import SimpleITK as sitk

    tgt = nifti_dir / (mha.stem + ".nii.gz")
    if not tgt.exists():
        sitk.WriteImage(sitk.ReadImage(str(mha)), str(tgt))
    return tgt


# --- Warvito/radimagenet-models radimagenet_models/models/resnet.py lines 12-121 (download code left out)
def warvito_conv1x1(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_planes, out_planes, kernel_size=1, stride=stride, bias=True)


class WarvitoBottleneck(nn.Module):
    expansion: int = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: Optional[nn.Module] = None) -> None:
        super().__init__()
        width = int(planes)
        self.conv1 = warvito_conv1x1(inplanes, width, stride=stride)
        self.bn1 = nn.BatchNorm2d(width, eps=1.001e-5, momentum=0.99)
        self.conv2 = nn.Conv2d(width, width, kernel_size=3, stride=1, padding=1, bias=True)
        self.bn2 = nn.BatchNorm2d(width, eps=1.001e-5, momentum=0.99)
        self.conv3 = warvito_conv1x1(width, planes * self.expansion)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion, eps=1.001e-5, momentum=0.99)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x: Tensor) -> Tensor:
        identity = x
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        if self.downsample is not None:
            identity = self.downsample(x)
        out += identity
        return self.relu(out)


class WarvitoResNet50(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.inplanes = 64
        self.conv1 = nn.Conv2d(3, self.inplanes, kernel_size=7, stride=2, padding=3, bias=True)
        self.bn1 = nn.BatchNorm2d(self.inplanes, eps=1.001e-5, momentum=0.01)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(64, 3)
        self.layer2 = self._make_layer(128, 4, stride=2)
        self.layer3 = self._make_layer(256, 6, stride=2)
        self.layer4 = self._make_layer(512, 3, stride=2)

    def _make_layer(self, planes: int, blocks: int, stride: int = 1):
        downsample = None
        if stride != 1 or self.inplanes != planes * WarvitoBottleneck.expansion:
            downsample = nn.Sequential(
                warvito_conv1x1(self.inplanes, planes * WarvitoBottleneck.expansion, stride),
                nn.BatchNorm2d(planes * WarvitoBottleneck.expansion, eps=1.001e-5, momentum=0.99),
            )
        layers = [WarvitoBottleneck(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes * WarvitoBottleneck.expansion
        for _ in range(1, blocks):
            layers.append(WarvitoBottleneck(self.inplanes, planes))
        return nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))


def expected_keys() -> list[str]:
    """The state-dict names Warvito's model has, listed from its source: conv1 / bn1, then per layer
    (3, 4, 6, 3 blocks) conv1-3 + bn1-3 per block and downsample.0 (conv) / .1 (BN) in block 0."""
    conv = ("weight", "bias")
    bn = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
    keys = [f"conv1.{p}" for p in conv] + [f"bn1.{p}" for p in bn]
    for i, n in enumerate((3, 4, 6, 3), start=1):
        for j in range(n):
            b = f"layer{i}.{j}"
            for k in (1, 2, 3):
                keys += [f"{b}.conv{k}.{p}" for p in conv] + [f"{b}.bn{k}.{p}" for p in bn]
            if j == 0:
                keys += [f"{b}.downsample.0.{p}" for p in conv] + [f"{b}.downsample.1.{p}" for p in bn]
    return keys


# ============================================================================= fixtures
def random_state_dict(seed: int = 0) -> dict[str, Tensor]:
    """A random RadImageNet ResNet-50 state dict (conv init by torch, BN statistics randomised so that
    eval-mode BatchNorm is not the identity). NOT the published weights."""
    torch.manual_seed(seed)
    net = RadImageNetResNet50()
    g = torch.Generator().manual_seed(seed + 1)
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.weight.data = 0.5 + torch.rand(m.weight.shape, generator=g)
            m.bias.data = 0.1 * torch.randn(m.bias.shape, generator=g)
            m.running_mean = 0.1 * torch.randn(m.running_mean.shape, generator=g)
            m.running_var = 0.5 + torch.rand(m.running_var.shape, generator=g)
    return net.state_dict()


@pytest.fixture(scope="module")
def weights_file(tmp_path_factory) -> Path:
    p = tmp_path_factory.mktemp("w") / "random-radimagenet.pth"
    torch.save(random_state_dict(), p)  # a plain state dict of tensors, like Warvito's torch.save(model.state_dict())
    return p


@pytest.fixture(scope="module")
def lung1():
    return read_volume(DEMO_CTS / "lung1.nii.gz")


# ============================================================================= preset definitions
def test_presets_are_the_evaluators_arguments():
    # MAISI README / script docstring command; VLM3D evaluation.py argument list (no centre ratio)
    for p in (MAISI, VLM3D):
        assert p.spacing == (1.0, 1.0, 1.0) and p.target_shape == (512, 512, 512) and p.pad and p.crop
    assert MAISI.center_ratio == 0.4 and VLM3D.center_ratio is None
    assert central_range(512, 0.4) == (153, 358)  # 205 slices per plane
    assert central_range(512, None) == (0, 512)
    assert MAISI.id == "maisi-2.5d-v1" and VLM3D.id == "vlm3d-2.5d-v1"


def test_protocol_ids_differ_and_name_the_preset():
    ctx = RunContext()
    ids = {n: METRICS.get(n)().protocol_id(ctx) for n in ("fid_maisi", "fid_vlm3d_2507", "fid_2p5d")}
    assert len(set(ids.values())) == 3
    assert ids["fid_maisi"].startswith("maisi-2.5d-v1|") and "center0.4" in ids["fid_maisi"]
    assert ids["fid_vlm3d_2507"].startswith("vlm3d-2.5d-v1|") and "slices:all" in ids["fid_vlm3d_2507"]
    assert "radimagenet-resnet50" in ids["fid_maisi"] and "radimagenet" not in ids["fid_2p5d"]
    # batch size and cache switch cannot change a number: not in the id
    assert FIDMaisi({"batch_size": 3, "feature_cache": False}).protocol_id(ctx) == ids["fid_maisi"]
    assert set(FIDMaisi.outputs) == {"fid_maisi", "fid_maisi_xy", "fid_maisi_yz", "fid_maisi_zx"}
    assert set(FIDVlm3d.outputs) == {"fid_vlm3d_2507", "fid_vlm3d_2507_xy", "fid_vlm3d_2507_yz", "fid_vlm3d_2507_xz"}


# ============================================================================= preprocessing parity
def test_maisi_preprocessing_equals_script_transforms(lung1, tmp_path):
    import nibabel as nib

    preset = dataclasses.replace(MAISI, target_shape=SHAPE)
    ref = script_image(DEMO_CTS / "lung1.nii.gz", preset)[0, 0]
    ours = preprocess(lung1, preset)
    assert ours.shape == SHAPE and ours.dtype == torch.float32
    assert float(ours.min()) == -1000.0 and float(ours.max()) == 1000.0  # padded, clipped
    assert torch.equal(ours, ref)  # tolerance 0 HU
    # a RAS-stored NIfTI of a crop of the same scan (MAISI's own outputs are RAS; the crop keeps this fast)
    ras = tmp_path / "lung1_ras.nii.gz"
    nib.save(nib.as_closest_canonical(nib.load(str(DEMO_CTS / "lung1.nii.gz")).slicer[70:190, 60:200, 5:40]), str(ras))
    v = read_volume(ras)
    assert v.meta["source_orientation"] == "RAS"
    crop = dataclasses.replace(preset, target_shape=(141, 147, 171))
    assert torch.equal(preprocess(v, crop), script_image(ras, crop)[0, 0])


def test_vlm3d_preprocessing_equals_evaluator_path(lung1, tmp_path):
    import SimpleITK as sitk

    # a challenge-like .mha (int16 HU clipped to [-1000, 1000]) with a spacing a NIfTI header cannot hold
    # exactly (0.7 mm is 0.69999999 in float32): Spacingd's grid then differs by one voxel unless the
    # float32 header is reproduced (nifti_affine)
    img = sitk.ReadImage(str(DEMO_CTS / "lung1.nii.gz"))
    mha = sitk.GetImageFromArray(np.clip(sitk.GetArrayFromImage(img), -1000, 1000).astype(np.int16))
    mha.SetSpacing((0.7, 0.7, 2.5))
    mha.SetOrigin((-89.3, 101.7, -600.1))
    mha.SetDirection(img.GetDirection())
    path = tmp_path / "case.mha"
    sitk.WriteImage(mha, str(path))
    preset = dataclasses.replace(VLM3D, target_shape=(181, 150, 101))  # the 1 mm cube is 179 x 179 x 118
    ref = script_image(vlm3d_convert(path, tmp_path), preset)[0, 0]
    v = read_volume(path)
    assert not np.array_equal(nifti_affine(v), v.affine)  # the rounding matters here
    ours = preprocess(v, preset)
    assert torch.equal(ours, ref)  # tolerance 0 HU
    np.testing.assert_array_equal(nifti_affine(lung1), lung1.affine)  # NIfTI input: unchanged


def test_nifti_affine_rounds_in_the_source_axis_order():
    from trace_bench.volume import from_xyz

    # a RAS-stored file whose affine a NIfTI header cannot hold exactly; the canonical volume is LPS
    a = np.array([[0.7, 0, 0, -89.3], [0, 0.7, 0, 101.7], [0, 0, 2.5, -600.1], [0, 0, 0, 1.0]])
    data = np.zeros((5, 6, 7), np.float32)
    v = from_xyz(data, a)
    a32 = a.copy()
    a32[:3] = a[:3].astype(np.float32)  # what the header's srow_x/y/z hold
    np.testing.assert_array_equal(nifti_affine(v), from_xyz(data, a32).affine)
    assert not np.array_equal(nifti_affine(v), v.affine)


# ============================================================================= slicing, normalisation, network
class Flatten(nn.Module):
    """A 'network' returning its input pixels as channels: the script's feature step then yields the
    normalised slices themselves, so slicing and normalisation are compared without convolutions."""

    def forward(self, x: Tensor) -> Tensor:
        return x.reshape(len(x), -1, 1, 1)


@pytest.mark.parametrize("preset", [MAISI, VLM3D], ids=["maisi", "vlm3d"])
def test_slicing_and_normalisation_equal_script(preset, lung1):
    p = small(preset)
    cube = preprocess(lung1, p)
    img = cube[None, None].clone()
    want = script_get_features_2p5d(img, Flatten(), p.center_ratio is not None, p.center_ratio or 1.0)
    for plane, w in zip(PLANES, want):
        s = plane_slices(cube, plane, p.center_ratio)
        lo, hi = torch.min(s), torch.max(s)
        got = radimagenet_input(s, lo, hi).reshape(len(s), -1)
        assert torch.equal(got, w), plane  # bit for bit
    n = {pl: len(plane_slices(cube, pl, p.center_ratio)) for pl in PLANES}
    assert n == ({"xy": 13, "yz": 16, "zx": 15} if preset is MAISI else {"xy": 32, "yz": 40, "zx": 36})


def test_state_dict_keys_match_warvito():
    ours, ref = RadImageNetResNet50().state_dict(), WarvitoResNet50().state_dict()
    assert list(ours) == list(ref) == expected_keys() and len(ours) == 371
    assert all(ours[k].shape == ref[k].shape for k in ours)
    assert ours["layer2.0.conv1.weight"].shape == (128, 256, 1, 1)  # stride on the 1x1 conv (Keras layout)
    eps = {n: m.eps for n, m in RadImageNetResNet50().named_modules() if isinstance(m, nn.BatchNorm2d)}
    assert eps == {n: m.eps for n, m in WarvitoResNet50().named_modules() if isinstance(m, nn.BatchNorm2d)}
    assert set(eps.values()) == {1.001e-5} and len(eps) == 53  # Keras' epsilon, not torch's 1e-5
    ref_model = WarvitoResNet50()
    ref_model.load_state_dict(random_state_dict(), strict=True)


def test_features_equal_script_feature_step(weights_file, lung1):
    # random weights (see the module doc), loaded into both networks from the same tensors-only file
    ext = load_radimagenet(weights_file, "cpu", batch_size=7)  # batches of 7 vs the script's one batch
    ref_net = WarvitoResNet50()
    ref_net.load_state_dict(torch.load(weights_file, weights_only=True), strict=True)
    ref_net.eval()
    for preset in (MAISI, VLM3D):
        p = small(preset)
        ours = volume_plane_features(ext, lung1, p)
        want = script_get_features_2p5d(script_image(DEMO_CTS / "lung1.nii.gz", p), ref_net, p.center_ratio is not None,
                                        p.center_ratio or 1.0)
        for plane, w in zip(PLANES, want):
            w = w.numpy()
            assert ours[plane].shape == w.shape and w.shape[1] == 2048
            assert np.abs(w).max() > 1e-3  # a non-degenerate random network
            np.testing.assert_allclose(ours[plane], w, rtol=1e-4, atol=5e-6 * np.abs(w).max())  # seen: <= 4e-7 * max


# ============================================================================= Frechet distance vs MONAI
@pytest.mark.parametrize("n1,n2,rel", [(40, 50, 1e-6), (300, 200, 1e-10)], ids=["rank-deficient", "full-rank"])
def test_frechet_equals_monai_fid(n1, n2, rel):
    import warnings

    from monai.metrics.fid import FIDMetric

    d = 96
    rng = np.random.default_rng(3)
    a = rng.normal(size=(d, d)) / np.sqrt(d)
    g = np.maximum(rng.normal(size=(n1, d)) @ a, 0).astype(np.float32)  # ReLU-like, correlated features
    r = np.maximum((rng.normal(size=(n2, d)) + 0.2) @ a, 0).astype(np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # scipy's disp deprecation inside MONAI
        want = float(FIDMetric()(torch.from_numpy(g), torch.from_numpy(r)))  # the scripts: fid(synth, real)
    m = FIDMaisi()
    gs = m.merge([{f"{p}:features": g[: n1 // 3] for p in PLANES}, {f"{p}:features": g[n1 // 3:] for p in PLANES}])
    rs = m.merge([{f"{p}:features": r for p in PLANES}])
    res = m.compute(gs, rs, RunContext())
    for col in ("fid_maisi_xy", "fid_maisi_yz", "fid_maisi_zx", "fid_maisi"):
        assert res[col] == pytest.approx(want, rel=rel)
    twin = preset_fid({p: g for p in PLANES}, {p: r for p in PLANES}, MAISI)
    assert twin["fid_maisi"] == pytest.approx(want, rel=rel)
    assert m.sample_info(gs) == {"samples": n1, "dim": d}


# ============================================================================= the metric objects
class SmallMaisi(FIDMaisi):
    """fid_maisi's code at the small test geometry (not registered)."""

    preset = small(MAISI)


class SmallVlm3d(FIDVlm3d):
    preset = small(VLM3D)


def test_streaming_metric_with_random_network(weights_file, lung1, tmp_path):
    ext = load_radimagenet(weights_file, "cpu", batch_size=16)
    lung2 = read_volume(DEMO_CTS / "lung2.nii.gz")
    ctx = RunContext(cache_dir=str(tmp_path))
    gen_m, ref_m, gen_v = SmallMaisi(), SmallMaisi(), SmallVlm3d()
    for m in (gen_m, ref_m, gen_v):
        m.net.set(ext, sha256="random-test-weights")
    data = CaseData("m", "lung1", lung1)
    s = gen_m.update(data, ctx)
    cube_keys = [k for k in data.shared if k[0] == "fid-presets:cube"]
    gen_v.update(data, ctx)  # same preprocessing: the cube of the first preset is reused
    assert len([k for k in data.shared if k[0] == "fid-presets:cube"]) == len(cube_keys) == 1
    assert sorted(s) == ["xy:features", "yz:features", "zx:features"] and s["xy:features"].dtype == np.float32
    r2 = ref_m.update(CaseData("GT", "lung2", lung2), ctx)
    r1 = ref_m.update(CaseData("GT", "lung1", lung1), ctx)
    res = gen_m.compute_result(ctx, reference=ref_m)
    assert set(res) == set(FIDMaisi.outputs) and all(np.isfinite(v) and v >= -1e-6 for v in res.values())
    assert res["fid_maisi"] == pytest.approx((res["fid_maisi_xy"] + res["fid_maisi_yz"] + res["fid_maisi_zx"]) / 3)
    np.testing.assert_array_equal(r1["xy:features"], s["xy:features"])  # same volume, same features
    # the functional twin on the volume-level path gives the same values
    gen_f = volume_plane_features(ext, lung1, SmallMaisi.preset)
    np.testing.assert_allclose(gen_f["zx"], s["zx:features"], rtol=1e-5, atol=1e-6)
    ref_f = {p: np.concatenate([r2[f"{p}:features"], r1[f"{p}:features"]]) for p in PLANES}
    want = preset_fid({p: s[f"{p}:features"] for p in PLANES}, ref_f, SmallMaisi.preset)
    assert res == pytest.approx(want, rel=1e-9)
    # features come back from the on-disk cache on a second instance
    again = SmallMaisi()
    again.net.set(ext, sha256="random-test-weights")
    again.update(CaseData("m", "lung1", lung1), ctx)
    assert again.net.cache.hits >= 3


# ============================================================================= weights: missing, pickled
@pytest.fixture()
def empty_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TRACE_BENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("TRACE_BENCH_WEIGHTS_RADIMAGENET_RESNET50", raising=False)


def test_missing_weights_refused_in_one_line_and_listed_not_computed(empty_cache, tmp_path):
    from trace_bench.config import RunConfig
    from trace_bench.run.plan import plan_run
    from trace_bench.run.select import resolve_metric_names

    with pytest.raises(WeightsError) as e:
        FIDVlm3d().setup(RunContext())
    msg = str(e.value)
    assert "\n" not in msg and "RadImageNet-ResNet50_notop.pth" in msg
    assert "trace-bench weights import radimagenet-resnet50" in msg
    # a run lists both as not computed (skipped, with that reason) and goes on with the rest
    cfg = RunConfig(out=str(tmp_path / "out"), reference=str(DEMO_CTS), methods={"m": str(DEMO_CTS)},
                    metrics=["fid_maisi", "fid_vlm3d_2507_xz", "temporal_flickering"], skip_unavailable=True)
    plan = plan_run(cfg)
    assert set(plan.skipped) == {"fid_maisi", "fid_vlm3d_2507"}
    assert [m.name for m in plan.metrics] == ["temporal_flickering"]
    assert "radimagenet-resnet50" in plan.skipped["fid_maisi"]
    with pytest.raises(WeightsError, match="preflight: cannot compute fid_maisi"):
        plan_run(dataclasses.replace(cfg, metrics=["fid_maisi"], skip_unavailable=False))
    # never part of the default set; named, or in all
    assert not {"fid_maisi", "fid_vlm3d_2507"} & set(resolve_metric_names(["available"]))
    assert {"fid_maisi", "fid_vlm3d_2507"} <= set(resolve_metric_names(["all"]))


class Evil:
    """Unpickling this creates a marker file: proof that a weights file ran code."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


def test_pickled_weights_file_refused(tmp_path):
    marker = tmp_path / "PWNED"
    evil = tmp_path / "evil.pth"
    torch.save({"conv1.weight": Evil(str(marker))}, evil)  # a torch checkpoint asking to run code
    with pytest.raises(WeightsError, match="refused, the checkpoint needs full unpickling"):
        load_radimagenet(evil)
    raw = tmp_path / "raw.pth"
    with open(raw, "wb") as fh:
        pickle.dump({"conv1.weight": Evil(str(marker))}, fh)  # a bare pickle
    with pytest.raises(WeightsError, match="cannot load"):
        load_radimagenet(raw)
    assert not marker.exists()
    bad = tmp_path / "other.pth"
    torch.save({"fc.weight": torch.zeros(2)}, bad)
    with pytest.raises(WeightsError, match="no RadImageNet ResNet-50 state dict"):
        load_radimagenet(bad)
    wrong = tmp_path / "wrong.pth"
    sd = random_state_dict()
    sd.pop("layer4.2.bn3.running_var")
    torch.save(sd, wrong)
    with pytest.raises(WeightsError, match="does not fit"):
        load_radimagenet(wrong)

