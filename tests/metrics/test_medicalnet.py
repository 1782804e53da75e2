"""HA-GAN's 3D FID on MedicalNet ResNet-50 features (fd_medicalnet, kid_medicalnet, prdc_medicalnet).

The real checkpoints (resnet_50_23dataset.pth / resnet_50.pth) cannot be downloaded here. The network
is checked against a transcription of MedicalNet's own ``models/resnet.py`` (below, clearly separate
from the product code) with identical RANDOM weights, and its state-dict keys against MONAI's
``resnet50``, into which MONAI loads the real Hugging Face checkpoint strictly. The preprocessing is
checked against a transcription of HA-GAN's ``preprocess.py`` on the real CT shipped in
``trace_bench/data/demo``. Real-weights tests run when ``TRACE_BENCH_WEIGHTS_MEDICALNET_RESNET50``
points at the file, and are skipped otherwise.
"""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from trace_bench.errors import ConfigError, WeightsError
from trace_bench.networks import medicalnet as M
from trace_bench.metrics import METRICS, CaseData, RunContext, frechet
from trace_bench.metrics.kid import kid_from_features
from trace_bench.metrics import FDMedicalNet, KIDMedicalNet, PRDCMedicalNet
from trace_bench.metrics.prdc import prdc_from_features
from trace_bench.volume import Volume

from helpers.paths import DEMO_CTS

REAL = os.environ.get("TRACE_BENCH_WEIGHTS_MEDICALNET_RESNET50")
needs_real_weights = pytest.mark.skipif(
    not (REAL and Path(REAL).is_file()),
    reason="MedicalNet weights not available offline: set TRACE_BENCH_WEIGHTS_MEDICALNET_RESNET50=/path/to/"
           "resnet_50_23dataset.pth (Hugging Face TencentMedicalNet/MedicalNet-Resnet50)")


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


# =====================================================================================================
# Reference transcriptions (test-only; NOT product code)
# =====================================================================================================
# (1) Tencent/MedicalNet models/resnet.py @ 20f76aaab5cac8056eaf50b79ed97c09dbfbd3bd: Bottleneck (lines
#     72-109), ResNet.__init__ / _make_layer / forward (lines 112-215) with shortcut_type='B', resnet50 (lines
#     238-242). The deprecated kaiming_normal / Variable calls are written with today's names; the
#     shortcut-A path (downsample_basic_block) is left out: ResNet-50 uses B. HA-GAN's evaluation/resnet3D.py
#     and WDM-3D's eval/models/resnet.py hold the same trunk.
class _RefBottleneck(nn.Module):
    expansion = 4

    def __init__(self, inplanes, planes, stride=1, dilation=1, downsample=None):
        super().__init__()
        self.conv1 = nn.Conv3d(inplanes, planes, kernel_size=1, bias=False)
        self.bn1 = nn.BatchNorm3d(planes)
        self.conv2 = nn.Conv3d(
            planes, planes, kernel_size=3, stride=stride, dilation=dilation, padding=dilation, bias=False)
        self.bn2 = nn.BatchNorm3d(planes)
        self.conv3 = nn.Conv3d(planes, planes * 4, kernel_size=1, bias=False)
        self.bn3 = nn.BatchNorm3d(planes * 4)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample
        self.stride = stride
        self.dilation = dilation

    def forward(self, x):
        residual = x
        out = self.conv1(x)
        out = self.bn1(out)
        out = self.relu(out)
        out = self.conv2(out)
        out = self.bn2(out)
        out = self.relu(out)
        out = self.conv3(out)
        out = self.bn3(out)
        if self.downsample is not None:
            residual = self.downsample(x)
        out += residual
        out = self.relu(out)
        return out


class _RefResNet(nn.Module):
    def __init__(self, block, layers, sample_input_D, sample_input_H, sample_input_W, num_seg_classes,
                 shortcut_type='B', no_cuda=False):
        self.inplanes = 64
        self.no_cuda = no_cuda
        super().__init__()
        self.conv1 = nn.Conv3d(1, 64, kernel_size=7, stride=(2, 2, 2), padding=(3, 3, 3), bias=False)
        self.bn1 = nn.BatchNorm3d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool3d(kernel_size=(3, 3, 3), stride=2, padding=1)
        self.layer1 = self._make_layer(block, 64, layers[0], shortcut_type)
        self.layer2 = self._make_layer(block, 128, layers[1], shortcut_type, stride=2)
        self.layer3 = self._make_layer(block, 256, layers[2], shortcut_type, stride=1, dilation=2)
        self.layer4 = self._make_layer(block, 512, layers[3], shortcut_type, stride=1, dilation=4)
        self.conv_seg = nn.Sequential(
            nn.ConvTranspose3d(512 * block.expansion, 32, 2, stride=2), nn.BatchNorm3d(32), nn.ReLU(inplace=True),
            nn.Conv3d(32, 32, kernel_size=3, stride=(1, 1, 1), padding=(1, 1, 1), bias=False), nn.BatchNorm3d(32),
            nn.ReLU(inplace=True), nn.Conv3d(32, num_seg_classes, kernel_size=1, stride=(1, 1, 1), bias=False))
        for m in self.modules():
            if isinstance(m, nn.Conv3d):
                m.weight = nn.init.kaiming_normal_(m.weight, mode='fan_out')
            elif isinstance(m, nn.BatchNorm3d):
                m.weight.data.fill_(1)
                m.bias.data.zero_()

    def _make_layer(self, block, planes, blocks, shortcut_type, stride=1, dilation=1):
        downsample = None
        if stride != 1 or self.inplanes != planes * block.expansion:
            assert shortcut_type == 'B'  # (shortcut A not transcribed)
            downsample = nn.Sequential(
                nn.Conv3d(self.inplanes, planes * block.expansion, kernel_size=1, stride=stride, bias=False),
                nn.BatchNorm3d(planes * block.expansion))
        layers = []
        layers.append(block(self.inplanes, planes, stride=stride, dilation=dilation, downsample=downsample))
        self.inplanes = planes * block.expansion
        for i in range(1, blocks):
            layers.append(block(self.inplanes, planes, dilation=dilation))
        return nn.Sequential(*layers)

    def forward(self, x):
        x = self.conv1(x)
        x = self.bn1(x)
        x = self.relu(x)
        x = self.maxpool(x)
        x = self.layer1(x)
        x = self.layer2(x)
        x = self.layer3(x)
        x = self.layer4(x)
        x = self.conv_seg(x)
        return x


def _ref_resnet50(**kwargs):
    return _RefResNet(_RefBottleneck, [3, 4, 6, 3], **kwargs)


# (2) batmanlab/HA-GAN evaluation/fid_score.py @ 1d4f22646412b726811a69aa455a835d96d363d4: Flatten (lines 43-45),
#     get_feature_extractor (lines 177-188): resnet50(shortcut_type='B') with conv_seg replaced by
#     AdaptiveAvgPool3d((1, 1, 1)) + Flatten, checkpoint["state_dict"] with k[7:] ('module.') stripped, strict.
class _RefFlatten(torch.nn.Module):
    def forward(self, inp):
        return inp.view(inp.size(0), -1)


def _ref_hagan_feature_extractor(ckpt: dict | None = None) -> nn.Module:
    model = _ref_resnet50(sample_input_D=0, sample_input_H=0, sample_input_W=0, num_seg_classes=2, shortcut_type='B')
    model.conv_seg = nn.Sequential(nn.AdaptiveAvgPool3d((1, 1, 1)), _RefFlatten())
    if ckpt is not None:
        model.load_state_dict({k[7:]: v for k, v in ckpt["state_dict"].items()})
    return model.eval()


# (3) batmanlab/HA-GAN preprocess.py @ 1d4f226 resize_img (lines 25-35) with its configuration (lines 14-23:
#     IMG_SIZE, LOW_THRESHOLD=-1024, HIGH_THRESHOLD=600, TRIM_BLANK_SLICES=True), on the array that
#     sitk.GetArrayFromImage returns (line 61); volume_dataset.py then reads it as img[None] and fid_score
#     casts it with .float(). ``resize`` is scikit-image's skimage.transform.resize when installed, else (4).
def _ref_hagan_resize_img(img, IMG_SIZE, resize):
    LOW_THRESHOLD, HIGH_THRESHOLD, TRIM_BLANK_SLICES = -1024, 600, True
    nan_mask = np.isnan(img)  # Remove NaN
    img[nan_mask] = LOW_THRESHOLD
    img = np.interp(img, [LOW_THRESHOLD, HIGH_THRESHOLD], [-1, 1])
    if TRIM_BLANK_SLICES:
        valid_plane_i = np.mean(img, (1, 2)) != -1  # Remove blank axial planes
        img = img[valid_plane_i, :, :]
    img = resize(img, (IMG_SIZE, IMG_SIZE, IMG_SIZE), mode='constant', cval=-1)
    return img


# (4) scikit-image v0.19.2 (HA-GAN environment.yml: scikit-image=0.19.2, scipy=1.7.3) skimage/transform/
#     _warps.py resize (SciPy >= 1.6 branch) and _clip_warp_output, for float64 input, order=None -> 1,
#     anti_aliasing=None, clip=True, preserve_range=False; skimage/_shared/utils.py _to_ndimage_mode /
#     _fix_ndimage_mode ('constant' -> 'grid-constant').
def _ref_skimage_0192_resize(image, output_shape, order=None, mode='reflect', cval=0, clip=True,
                             preserve_range=False, anti_aliasing=None, anti_aliasing_sigma=None):
    from scipy import ndimage as ndi

    output_shape = tuple(output_shape)
    input_shape = image.shape
    input_type = image.dtype
    if anti_aliasing is None:
        anti_aliasing = (not input_type == bool and any(x < y for x, y in zip(output_shape, input_shape)))
    factors = np.divide(input_shape, output_shape)
    order = 1 if order is None else order
    img_bounds = np.array([image.min(), image.max()]) if clip else None
    ndi_mode = {'constant': 'grid-constant', 'edge': 'nearest', 'symmetric': 'reflect', 'reflect': 'mirror',
                'wrap': 'grid-wrap'}[mode]
    if anti_aliasing:
        if anti_aliasing_sigma is None:
            anti_aliasing_sigma = np.maximum(0, (factors - 1) / 2)
        image = ndi.gaussian_filter(image, anti_aliasing_sigma, cval=cval, mode=ndi_mode)
    zoom_factors = [1 / f for f in factors]
    out = ndi.zoom(image, zoom_factors, order=order, mode=ndi_mode, cval=cval, grid_mode=True)
    # _clip_warp_output(img_bounds, out, mode, cval, clip)
    if clip:
        min_val = img_bounds.min()
        max_val = img_bounds.max()
        preserve_cval = (mode == 'constant' and not (min_val <= cval <= max_val))
        if preserve_cval:
            cval_mask = out == cval
        np.clip(out, min_val, max_val, out=out)
        if preserve_cval:
            out[cval_mask] = cval
    return out


def _reference_resize():
    try:
        from skimage.transform import resize

        return resize, "scikit-image"
    except ImportError:
        return _ref_skimage_0192_resize, "transcription of scikit-image 0.19.2"


# =====================================================================================================
# helpers
# =====================================================================================================
def _vol(arr: np.ndarray, spacing=(5.0, 1.0, 1.0)) -> Volume:
    aff = np.diag([-spacing[2], -spacing[1], spacing[0], 1.0])  # LPS index -> RAS mm
    return Volume(arr.astype(np.float32), spacing, aff, {"path": "synthetic"})


def _randomise_bn(model: nn.Module, seed: int = 0) -> None:
    """Random BN affine parameters and running statistics (eval mode uses them), so that a wrong
    BN pairing or a missing BN would show."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm3d):
                n = m.num_features
                m.weight.copy_(torch.rand(n, generator=g) * 0.5 + 0.5)
                m.bias.copy_(torch.rand(n, generator=g) * 0.2 - 0.1)
                m.running_mean.copy_(torch.rand(n, generator=g) * 0.2 - 0.1)
                m.running_var.copy_(torch.rand(n, generator=g) + 0.5)


@pytest.fixture(scope="module")
def ref_net():
    """MedicalNet's ResNet-50 as transcribed above with SMALL RANDOM weights (kaiming init of the
    reference code, seed 0, plus random BN statistics): a plumbing / parity network, not the real
    one, which cannot be downloaded here."""
    torch.manual_seed(0)
    net = _ref_hagan_feature_extractor()
    _randomise_bn(net)
    return net.eval()


@pytest.fixture(scope="module")
def lung1():
    from trace_bench.io import read_volume

    return read_volume(DEMO_CTS / "lung1.nii.gz")


# =====================================================================================================
# network
# =====================================================================================================
def test_state_dict_keys_and_shapes_equal_medicalnet_and_monai(ref_net):
    """Our trunk has exactly the keys and shapes of MedicalNet's ResNet-50 without ``conv_seg`` and of
    MONAI's resnet50(n_input_channels=1, feed_forward=False, shortcut B, bias_downsample=False), into
    which MONAI loads the real checkpoint (``module.`` stripped) strictly
    (monai/networks/nets/resnet.py ``_resnet`` / ``get_pretrained_resnet_medicalnet``)."""
    from monai.networks.nets import resnet50

    with torch.device("meta"):
        ours = {k: tuple(v.shape) for k, v in M.MedicalNetResNet50().state_dict().items()}
        monai = {k: tuple(v.shape) for k, v in resnet50(spatial_dims=3, n_input_channels=1, feed_forward=False,
                                                          shortcut_type="B", bias_downsample=False).state_dict().items()}
        full = _ref_resnet50(sample_input_D=0, sample_input_H=0, sample_input_W=0, num_seg_classes=2)
    ref = {k: tuple(v.shape) for k, v in ref_net.state_dict().items()}
    assert list(ours) == list(ref)  # same names, same order
    assert ours == ref == monai
    assert len(ours) == 318 and ours["conv1.weight"] == (64, 1, 7, 7, 7)
    assert ours["layer4.0.downsample.0.weight"] == (2048, 1024, 1, 1, 1)
    assert {k for k in full.state_dict() if k not in ref} == {k for k in full.state_dict() if k.startswith("conv_seg.")}
    # 46,208,192 tensors' values (BN running statistics included) = the README's "3D-ResNet50 46.21 M"
    assert sum(int(np.prod(s)) for k, s in ours.items() if not k.endswith("num_batches_tracked")) == 46_208_192


def test_network_equals_medicalnet_transcription_with_identical_random_weights(ref_net):
    """Identical random weights (loaded strictly) and a small input in float64: our ``embed`` equals
    HA-GAN's feature extractor (MedicalNet trunk + AdaptiveAvgPool3d + Flatten); the map has stride 8
    (dilated layer3 / layer4)."""
    ours = M.MedicalNetResNet50()
    ours.load_state_dict(ref_net.state_dict(), strict=True)
    ours = ours.double().eval()
    ref = copy.deepcopy(ref_net).double()
    x = torch.randn(2, 1, 24, 17, 16, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    with torch.no_grad():
        want = ref(x)
        got = ours.embed(x)
        fmap = ours(x)
    assert tuple(fmap.shape) == (2, 2048, 3, 3, 2)
    assert want.shape == got.shape == (2, 2048) and want.abs().max() > 0
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12 * float(want.abs().max()))


def test_output_map_of_a_256_cube_on_meta_device():
    with torch.device("meta"):
        out = M.MedicalNetResNet50()(torch.empty(1, 1, 256, 256, 256))
    assert tuple(out.shape) == (1, 2048, 32, 32, 32)


# =====================================================================================================
# weights file
# =====================================================================================================
def _save_checkpoint(path: Path, sd: dict, head: bool = True, drop_nbt: bool = True) -> Path:
    """A file laid out like MedicalNet's: {"state_dict": {"module.<key>": tensor}} (DataParallel);
    optionally with a conv_seg head (random) and without the num_batches_tracked counters."""
    out = {f"module.{k}": v.clone() for k, v in sd.items() if not (drop_nbt and k.endswith("num_batches_tracked"))}
    if head:
        with torch.device("meta"):
            full = _ref_resnet50(sample_input_D=0, sample_input_H=0, sample_input_W=0, num_seg_classes=2)
        for k, v in full.state_dict().items():
            if k.startswith("conv_seg."):
                out[f"module.{k}"] = torch.zeros(v.shape, dtype=v.dtype)
    torch.save({"state_dict": out}, path)
    return path


def test_load_strips_module_ignores_head_and_matches_hagan(ref_net, tmp_path):
    """The same file read by trace-bench (tensors only) and by HA-GAN's loader (k[7:], strict) gives the
    same features. HA-GAN loads a head-free file; trace-bench also accepts one carrying conv_seg keys."""
    p0 = _save_checkpoint(tmp_path / "nohead.pth", ref_net.state_dict(), head=False, drop_nbt=False)
    p1 = _save_checkpoint(tmp_path / "head.pth", ref_net.state_dict(), head=True, drop_nbt=True)
    x = torch.randn(1, 1, 16, 16, 16, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        want = _ref_hagan_feature_extractor(torch.load(p0, weights_only=True))(x)
        for p in (p0, p1):
            enc = M.load_medicalnet(p, "cpu", sha256="x")
            got = enc.model.embed(x)
            torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
    f = enc.features(x[:, 0].numpy())
    assert f.shape == (1, 2048) and f.dtype == np.float32


def test_load_refuses_other_networks_and_pickles(ref_net, tmp_path):
    sd = dict(ref_net.state_dict())
    missing = dict(sd)
    del missing["layer3.2.conv2.weight"]
    torch.save({"state_dict": {f"module.{k}": v for k, v in missing.items()}}, tmp_path / "missing.pth")
    with pytest.raises(WeightsError, match=r"1 missing key\(s\) \['layer3.2.conv2.weight'\]"):
        M.load_medicalnet(tmp_path / "missing.pth")
    torch.save({"state_dict": {**{f"module.{k}": v for k, v in sd.items()}, "module.fc.weight": torch.zeros(2, 2048)}},
               tmp_path / "extra.pth")
    with pytest.raises(WeightsError, match=r"1 unexpected \['fc.weight'\]"):
        M.load_medicalnet(tmp_path / "extra.pth")
    bad = dict(sd)
    bad["conv1.weight"] = torch.zeros(64, 3, 7, 7, 7)  # a 3-channel stem is another network
    torch.save({"state_dict": bad}, tmp_path / "shape.pth")
    with pytest.raises(WeightsError, match="shape mismatch"):
        M.load_medicalnet(tmp_path / "shape.pth")
    # a checkpoint that needs full unpickling (e.g. training options saved with it) is refused, never run
    import argparse

    torch.save({"state_dict": {f"module.{k}": v for k, v in sd.items()}, "opts": argparse.Namespace(a=1)},
               tmp_path / "pickled.pth")
    with pytest.raises(WeightsError, match="refused, the checkpoint needs full unpickling"):
        M.load_medicalnet(tmp_path / "pickled.pth")


# =====================================================================================================
# preprocessing
# =====================================================================================================
@pytest.mark.parametrize("size", [256, 128])
def test_preprocessing_equals_hagan_on_the_shipped_ct(lung1, size):
    """lung1 (real chest CT, 48 x 256 x 256, HU -1024 .. 3071) with blank slices added above and below:
    trace-bench's input equals HA-GAN's resize_img on the same (z, y, x) array (scikit-image's resize
    when installed, else the 0.19.2 transcription), cast to float32 as HA-GAN's loader does."""
    resize, which = _reference_resize()
    a = np.pad(lung1.array, ((2, 3), (0, 0), (0, 0)), constant_values=-3024.0)  # outside-FOV fill: trimmed
    want = _ref_hagan_resize_img(a.copy(), size, resize).astype(np.float32)
    got = M.preprocess_hagan(_vol(a), size)
    assert got.shape == (size,) * 3 and got.dtype == np.float32, which
    np.testing.assert_array_equal(got, want, err_msg=which)  # the same scipy operations: bit-identical
    assert -1.0 <= got.min() < -0.99 and 0.99 < got.max() <= 1.0  # window [-1024, 600] HU -> [-1, 1]
    # trimming: the padded slices go, so the padded volume maps to the unpadded one's input
    np.testing.assert_array_equal(got, M.preprocess_hagan(lung1, size))


def test_preprocessing_nan_window_and_trim_rules():
    a = np.full((6, 8, 8), -1024.0)
    a[1:5] = np.linspace(-1500, 1000, 4 * 64).reshape(4, 8, 8)  # slices 0 and 5: blank
    a[2, 0, 0] = np.nan
    want = _ref_hagan_resize_img(a.copy(), 8, _ref_skimage_0192_resize).astype(np.float32)
    got = M.preprocess_hagan(a.astype(np.float32), 8)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-6)
    with pytest.raises(ValueError, match="nothing left"):
        M.preprocess_hagan(np.full((3, 4, 4), -2000.0, np.float32), 8)


def test_resize_port_equals_skimage_0192_transcription_including_its_clip_rule():
    """Up / down / mixed factors; and inputs without a voxel at cval (-1: no voxel <= -1024 HU), where
    the -1 padding pulls border voxels below the input's minimum: scikit-image 0.19.2 clips them back to
    that minimum (scikit-image >= 0.20 would keep them, widening the range to cval)."""
    rng = np.random.default_rng(3)
    for shape_in, shape_out, lo, hi in (((9, 14, 11), (16, 16, 16), -1.0, 1.0), ((40, 30, 20), (16, 16, 16), -0.9, -0.89),
                                        ((5, 33, 12), (8, 8, 8), -0.5, 1.0), ((6, 7, 8), (16, 16, 16), -0.7, -0.6)):
        img = rng.uniform(lo, hi, shape_in)
        img.flat[0] = lo
        want = _ref_skimage_0192_resize(img.copy(), shape_out, mode="constant", cval=-1)
        got = M.resize_skimage(img, shape_out, cval=-1.0)
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)
        if lo > -1.0 and shape_in[0] > shape_out[0]:
            assert got.min() == lo  # clipped at the input minimum, not at cval
            from scipy import ndimage as ndi

            sigma = np.maximum(0, (np.divide(shape_in, shape_out) - 1) / 2)
            raw = ndi.zoom(ndi.gaussian_filter(img, sigma, cval=-1, mode="grid-constant"),
                           np.divide(shape_out, shape_in), order=1, mode="grid-constant", cval=-1, grid_mode=True)
            assert raw.min() < lo - 0.005  # ... which the unclipped interpolation goes below


def test_resize_port_equals_installed_scikit_image():
    """Parity with scikit-image itself (any version: they agree with 0.19.2 whenever the input range
    contains cval, the CT case)."""
    skt = pytest.importorskip("skimage.transform", reason="scikit-image not installed (pip install scikit-image)")
    rng = np.random.default_rng(4)
    for shape_in, shape_out in (((9, 14, 11), (16, 16, 16)), ((40, 30, 20), (16, 16, 16)), ((5, 33, 12), (8, 8, 8))):
        img = rng.uniform(-1.0, 1.0, shape_in)
        img.flat[0] = -1.0
        want = skt.resize(img, shape_out, mode="constant", cval=-1)
        np.testing.assert_allclose(M.resize_skimage(img, shape_out, cval=-1.0), want, rtol=0, atol=1e-12)


def test_protocol_ids():
    ctx = RunContext()
    fd = FDMedicalNet()
    pid = fd.protocol_id(ctx)
    assert pid == ("medicalnet-resnet50:medicalnet-resnet50:shortcutB:dil1,1,2,4:gap2048|hagan:zyx:hu-1024,600->-1,1:"
                   "trim-blank-axial:skimage0.19-resize256:linear-aa-cval-1:f32|fd:ddof=1|"
                   "inf:chong-forsyth:volumes-both:points=8:min0.5:seed0")
    others = {FDMedicalNet({"size": 128}).protocol_id(ctx),
              FDMedicalNet({"weights": "medicalnet-resnet50-3dseg8"}).protocol_id(ctx),
              KIDMedicalNet().protocol_id(ctx), PRDCMedicalNet().protocol_id(ctx)}
    assert len(others | {pid}) == 5
    assert "resize128" in FDMedicalNet({"size": 128}).protocol_id(ctx)
    assert FDMedicalNet({"weights": "medicalnet-resnet50-3dseg8"}).required_weights() == ("medicalnet-resnet50-3dseg8",)
    assert fd.protocol_id(ctx) == FDMedicalNet({"feature_cache": False, "batch_size": 4}).protocol_id(ctx)
    with pytest.raises(ConfigError, match="size"):
        FDMedicalNet({"size": 200})
    with pytest.raises(ConfigError, match="weights"):
        FDMedicalNet({"weights": "astra-i3resnet152"})


# =====================================================================================================
# metric API and registry
# =====================================================================================================
def test_registered_not_default_and_listed():
    from trace_bench.run.select import resolve_metric_names
    from trace_bench.weights import WEIGHTS

    for name in ("fd_medicalnet", "kid_medicalnet", "prdc_medicalnet"):
        cls = METRICS.get(name)
        assert cls.kind == "distribution" and cls.table == "table2" and not cls.in_default_set
        assert cls().required_weights() == ("medicalnet-resnet50",)
    assert not {"fd_medicalnet", "kid_medicalnet", "prdc_medicalnet"} & set(resolve_metric_names(["available"]))
    assert resolve_metric_names(["kid_medicalnet_std"]) == ["kid_medicalnet"]
    for w in ("medicalnet-resnet50", "medicalnet-resnet50-3dseg8"):
        spec = WEIGHTS.get(w)
        assert "not_implemented" not in spec.extra and spec.sha256 is None and not spec.pinned
        assert "fd_medicalnet" in spec.used_by and spec.licence.startswith("MIT")
    from typer.testing import CliRunner

    from trace_bench.cli import app

    r = CliRunner().invoke(app, ["metrics"])
    assert r.exit_code == 0, r.output
    assert "fd_medicalnet  [distribution, table2; medicalnet-resnet50]" in r.output
    assert "--option fd_medicalnet.weights=VALUE" in r.output


class _BlockMeans:
    """Stands in for the network in API tests: 2048 block means of the preprocessed volume."""

    id = "block-means"
    weights_sha256 = "0" * 64
    batch_size = 1

    def features(self, x: np.ndarray) -> np.ndarray:
        return x.reshape(len(x), 2048, -1).mean(-1).astype(np.float32)


def test_set_metrics_through_the_api_match_functional_twins(tmp_path):
    rng = np.random.default_rng(5)
    gen = [_vol(rng.normal(-300, 200, (6, 16, 16))) for _ in range(7)]
    ref = [_vol(rng.normal(-100, 300, (6, 16, 16))) for _ in range(8)]
    ctx = RunContext(cache_dir=str(tmp_path))
    ms = {cls: cls({"size": 128, "feature_cache": False}) for cls in (FDMedicalNet, KIDMedicalNet, PRDCMedicalNet)}
    for m in ms.values():
        m.net.set(_BlockMeans())
    fdm = ms[FDMedicalNet]
    st = {who: fdm.merge([fdm.case_state(CaseData(who, f"c{i}", v), ctx) for i, v in enumerate(vols)])
          for who, vols in (("gen", gen), ("ref", ref))}
    for cls in (KIDMedicalNet, PRDCMedicalNet):  # the same per-case features (one preprocessing each)
        np.testing.assert_array_equal(ms[cls].case_state(CaseData("gen", "c0", gen[0]), ctx)["features"],
                                      st["gen"]["features"][:1])
    states = {cls: st for cls in ms}
    g, r = states[FDMedicalNet]["gen"]["features"], states[FDMedicalNet]["ref"]["features"]
    assert g.shape == (7, 2048) and r.shape == (8, 2048)
    want = _BlockMeans().features(np.stack([M.preprocess_hagan(v, 128) for v in gen]))
    np.testing.assert_array_equal(g, want)
    fd = FDMedicalNet().compute(states[FDMedicalNet]["gen"], states[FDMedicalNet]["ref"], ctx)["fd_medicalnet"]
    assert fd == pytest.approx(frechet.frechet_distance_low_rank(g, r), rel=1e-12) and fd > 0
    k = KIDMedicalNet().compute(states[KIDMedicalNet]["gen"], states[KIDMedicalNet]["ref"], ctx)
    assert k["kid_medicalnet"] == pytest.approx(kid_from_features(g, r)[0], rel=1e-12)
    p = PRDCMedicalNet().compute(states[PRDCMedicalNet]["gen"], states[PRDCMedicalNet]["ref"], ctx)
    assert p == {f"prdc_medicalnet_{c}": v for c, v in prdc_from_features(r, g, 5).items()}
    assert FDMedicalNet().sample_info(states[FDMedicalNet]["gen"]) == {"samples": 7, "dim": 2048, "volumes": 7}


def test_missing_weights_listed_not_computed_in_a_run(tmp_path, monkeypatch):
    """No weights file: a run naming fd_medicalnet stops in preflight, or with --skip-unavailable lists
    it as not computed with a one-line reason (never a random network)."""
    from helpers.fake_metrics import make_small_dataset

    from trace_bench.config import RunConfig
    from trace_bench.run import run

    monkeypatch.setenv("TRACE_BENCH_CACHE", str(tmp_path / "empty-cache"))
    for k in [k for k in os.environ if k.startswith("TRACE_BENCH_WEIGHTS_MEDICALNET")]:
        monkeypatch.delenv(k)
    data = make_small_dataset(tmp_path / "data", n_slices=4, step=8)

    def cfg(out, **kw):
        return RunConfig(out=str(out), reference=str(data / "reference"), methods={"noisy": str(data / "noisy")},
                         metrics=["fd_medicalnet", "kid_medicalnet", "temporal_flickering"], frame_size=32,
                         bootstrap=20, bootstrap_distribution=5, plots=False, published=False, progress=False, **kw)

    with pytest.raises(WeightsError, match="medicalnet-resnet50"):
        run(cfg(tmp_path / "o1"))
    r = run(cfg(tmp_path / "o2", skip_unavailable=True))
    meta = json.loads((r.out / "metrics.json").read_text(encoding="utf-8"))
    for name in ("fd_medicalnet", "kid_medicalnet"):
        why = meta["skipped"][name]
        assert "\n" not in why and "'medicalnet-resnet50' (resnet_50_23dataset.pth) are not installed" in why
        assert "trace-bench weights import medicalnet-resnet50" in why
    assert "fd_medicalnet" in (r.out / "report.md").read_text(encoding="utf-8")
    import pandas as pd

    assert not {"fd_medicalnet", "kid_medicalnet"} & set(pd.read_csv(r.out / "summary.csv").metric)


# =====================================================================================================
# real weights (skipped offline)
# =====================================================================================================
@needs_real_weights
def test_real_checkpoint_loads_and_separates_patients(lung1):
    from trace_bench.io import read_volume
    from trace_bench.weights import resolve_weights

    r = resolve_weights("medicalnet-resnet50")
    enc = M.load_medicalnet(r.path, "cpu", sha256=r.sha256)
    lung2 = read_volume(DEMO_CTS / "lung2.nii.gz")
    noisy = lung1.with_array(lung1.array + np.random.default_rng(0).normal(0, 10, lung1.shape).astype(np.float32))
    f = enc.volume_features([lung1, noisy, lung2], size=128)
    assert f.shape == (3, 2048) and np.isfinite(f).all()
    assert np.linalg.norm(f[1] - f[0]) < 0.5 * np.linalg.norm(f[2] - f[0])
