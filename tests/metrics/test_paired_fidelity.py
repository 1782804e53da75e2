"""``paired_fidelity`` (trace_bench/metrics/paired_fidelity.py): MAE / PSNR / SSIM / MS-SSIM in HU inside the body.

Parity: SynthRAD2025/evaluation ``image_metrics.py`` (``ImageMetrics.mae``, ``psnr``,
``structural_similarity_at_scale``, ``ms_ssim``) and SynthRAD2023/metrics ``functions/image_metrics.py``
(``ImageMetrics.ssim``) transcribed below (reference code paths, kept in this test file only; SynthRAD's dynamic range set to [-1024, 3071] in both), plus
scikit-image (``peak_signal_noise_ratio``, ``structural_similarity``) and MONAI (``MAEMetric``, ``PSNRMetric``)
called directly on the masked voxels. Tolerances: 1e-9 relative (the same float64 arithmetic) unless stated.
"""

from __future__ import annotations

import numpy as np
import pytest

from trace_bench.errors import ConfigError
from trace_bench.metrics.base import CaseData, RunContext
from trace_bench.metrics.paired_fidelity import (PairedFidelity, masked_ms_ssim, masked_ssim, paired_scores, psnr,
                                                 ssim_components)
from trace_bench.volume import Volume

pytestmark = pytest.mark.usefixtures("one_torch_thread")
LO, HI = -1024.0, 3071.0


# ============================================================================= reference transcriptions
# --- SynthRAD2025/evaluation image_metrics.py (ImageMetrics, dynamic_range [-1024, 3071]); the unused `gaussian`
# --- branch of structural_similarity_at_scale left out (gaussian_weights is False in every call)
def sr_mae(gt, pred, mask):
    mask = np.where(mask > 0, 1., 0.)
    return float(np.sum(np.abs(gt * mask - pred * mask)) / mask.sum())


def sr_psnr(gt, pred, mask):
    from skimage.metrics import peak_signal_noise_ratio

    mask = np.where(mask > 0, 1., 0.)
    gt = np.clip(gt, a_min=LO, a_max=HI)
    pred = np.clip(pred, a_min=LO, a_max=HI)
    return float(peak_signal_noise_ratio(gt[mask == 1], pred[mask == 1], data_range=HI - LO))


def sr_structural_similarity_at_scale(im1, im2, *, luminance_weight=1, contrast_weight=1, structure_weight=1,
                                      data_range=None):
    from scipy.ndimage import uniform_filter
    from skimage.util.arraycrop import crop

    K1, K2, win_size = 0.01, 0.03, 7
    filter_args = {'size': win_size}
    NP = win_size ** im1.ndim
    cov_norm = NP / (NP - 1)
    ux = uniform_filter(im1, **filter_args)
    uy = uniform_filter(im2, **filter_args)
    uxx = uniform_filter(im1 * im1, **filter_args)
    uyy = uniform_filter(im2 * im2, **filter_args)
    uxy = uniform_filter(im1 * im2, **filter_args)
    vx = cov_norm * (uxx - ux * ux)
    vxsqrt = np.clip(vx, a_min=0, a_max=None) ** 0.5
    vy = cov_norm * (uyy - uy * uy)
    vysqrt = np.clip(vy, a_min=0, a_max=None) ** 0.5
    vxy = cov_norm * (uxy - ux * uy)
    R = data_range
    C1 = (K1 * R) ** 2
    C2 = (K2 * R) ** 2
    C3 = C2 / 2
    L = np.clip((2 * ux * uy + C1) / (ux * ux + uy * uy + C1), a_min=0, a_max=None)
    C = np.clip((2 * vxsqrt * vysqrt + C2) / (vx + vy + C2), a_min=0, a_max=None)
    S = np.clip((vxy + C3) / (vxsqrt * vysqrt + C3), a_min=0, a_max=None)
    result = (L ** luminance_weight) * (C ** contrast_weight) * (S ** structure_weight)
    pad = (win_size - 1) // 2
    return crop(result, pad).mean(dtype=np.float64), result


def sr_ms_ssim(gt, pred, mask):
    from scipy.signal import fftconvolve
    from skimage.util.arraycrop import crop

    dynamic_range = [LO, HI]
    gt = np.clip(gt, min(dynamic_range), max(dynamic_range))
    pred = np.clip(pred, min(dynamic_range), max(dynamic_range))
    mask = np.where(mask > 0, 1., 0.)
    gt = np.where(mask == 0, min(dynamic_range), gt)
    pred = np.where(mask == 0, min(dynamic_range), pred)
    gt = gt - min(dynamic_range)
    pred = pred - min(dynamic_range)
    dr = dynamic_range[1] - dynamic_range[0]
    scale_weights = np.array([0.0448, 0.2856, 0.3001, 0.2363, 0.1333])
    luminance_weights = np.array([0, 0, 0, 0, 0, 0.1333])
    levels = len(scale_weights)
    downsample_filter = np.ones((2, 2, 2)) / 8
    target_size = 97
    pad_values = [(np.clip((target_size - dim) // 2, a_min=0, a_max=None),
                   np.clip(target_size - dim - (target_size - dim) // 2, a_min=0, a_max=None)) for dim in gt.shape]
    gt = np.pad(gt, pad_values, mode='edge')
    pred = np.pad(pred, pad_values, mode='edge')
    mask = np.pad(mask, pad_values, mode='edge')
    ms_ssim_maps = []
    for level in range(levels):
        _, ssim_map = sr_structural_similarity_at_scale(gt, pred, luminance_weight=luminance_weights[level],
                                                        contrast_weight=scale_weights[level],
                                                        structure_weight=scale_weights[level], data_range=dr)
        ms_ssim_maps.append((crop(ssim_map, 3)[crop(mask, 3).astype(bool)]).mean(dtype=np.float64))
        filtered = [fftconvolve(im, downsample_filter, mode='same') for im in [gt, pred]]
        gt, pred, mask = [x[::2, ::2, ::2] for x in [*filtered, mask]]
    return float(np.prod([np.clip(x, a_min=0, a_max=1) for x in ms_ssim_maps]))


# --- SynthRAD2023/metrics functions/image_metrics.py ImageMetrics.ssim (dynamic range as above)
def sr23_ssim(gt, pred, mask):
    from skimage.metrics import structural_similarity
    from skimage.util.arraycrop import crop

    gt = np.clip(gt, LO, HI)
    pred = np.clip(pred, LO, HI)
    mask = np.where(mask > 0, 1., 0.)
    gt = np.where(mask == 0, LO, gt)
    pred = np.where(mask == 0, LO, pred)
    gt, pred = gt - LO, pred - LO
    _, ssim_map = structural_similarity(gt, pred, data_range=HI - LO, full=True)
    return (crop(ssim_map, 3)[crop(mask, 3).astype(bool)]).mean(dtype=np.float64)


# ============================================================================= data
@pytest.fixture(scope="module")
def pair(small_volume):
    """The real CT crop (12 x 64 x 48) and a 'generated' copy: smoothed, biased, noisy, a few values out of range."""
    from scipy.ndimage import gaussian_filter

    gt = small_volume.array.astype(np.float64)
    rng = np.random.default_rng(0)
    pred = gaussian_filter(gt, 0.8) + 15.0 + rng.normal(0, 30, gt.shape)
    pred[0, :3, :3] = -1500.0  # below the range: clipped for PSNR / SSIM, not for MAE
    mask = np.zeros(gt.shape, bool)
    mask[:, 8:56, 6:42] = True
    return gt, pred, mask


def test_equals_synthrad(pair):
    gt, pred, mask = pair
    got = paired_scores(gt, pred, mask)
    assert got["mae_hu"] == pytest.approx(sr_mae(gt, pred, mask), rel=1e-12)
    assert got["psnr"] == pytest.approx(sr_psnr(gt, pred, mask), rel=1e-12)
    assert got["ssim"] == pytest.approx(sr23_ssim(gt, pred, mask), rel=1e-9)
    assert got["ms_ssim"] == pytest.approx(sr_ms_ssim(gt, pred, mask), rel=1e-9)
    assert 0 < got["ms_ssim"] < 1 and -1 <= got["ssim"] <= 1 and got["mae_hu"] > 0


def test_equals_scikit_image_and_monai(pair):
    import torch
    from monai.metrics import MAEMetric, PSNRMetric
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity

    gt, pred, mask = pair
    g, p = np.clip(gt, LO, HI)[mask], np.clip(pred, LO, HI)[mask]
    assert psnr(gt, pred, mask) == pytest.approx(peak_signal_noise_ratio(g, p, data_range=HI - LO), rel=1e-12)
    t = lambda a: torch.from_numpy(np.asarray(a, np.float64))[None, None]  # noqa: E731
    assert psnr(gt, pred, mask) == pytest.approx(float(PSNRMetric(max_val=HI - LO)(t(p), t(g))), rel=1e-9)
    assert paired_scores(gt, pred, mask)["mae_hu"] == pytest.approx(float(MAEMetric()(t(pred[mask]), t(gt[mask]))),
                                                                    rel=1e-9)
    # without a mask, ssim is scikit-image's mean SSIM of the shifted volumes
    s = structural_similarity(np.clip(gt, LO, HI) - LO, np.clip(pred, LO, HI) - LO, data_range=HI - LO)
    assert masked_ssim(gt, pred, None) == pytest.approx(s, rel=1e-12)
    # the component split of the MS-SSIM port: with exponents 1 it is scikit-image's SSIM map, clipped at 0
    a, b = np.clip(gt, LO, HI) - LO, np.clip(pred, LO, HI) - LO
    _, smap = structural_similarity(a, b, data_range=HI - LO, full=True)
    np.testing.assert_allclose(ssim_components(a, b, HI - LO, 1, 1, 1), np.clip(smap, 0, None), rtol=1e-9, atol=1e-12)


@pytest.mark.filterwarnings("ignore:Mean of empty slice:RuntimeWarning", "ignore:invalid value:RuntimeWarning")
def test_empty_level_gives_no_ms_ssim(pair):
    gt, pred, _ = pair
    corner = np.zeros(gt.shape, bool)
    corner[:2, :2, :2] = True  # padded to 97, subsampled: nothing left inside the cropped border at the last level
    assert np.isnan(masked_ms_ssim(gt, pred, corner)) and np.isnan(sr_ms_ssim(gt, pred, corner))


def test_identical_volumes_are_perfect(pair):
    gt, _, mask = pair
    s = paired_scores(gt, gt.copy(), mask)
    assert s["mae_hu"] == 0 and s["psnr"] == float("inf")
    assert s["ssim"] == pytest.approx(1.0) and s["ms_ssim"] == pytest.approx(1.0)
    assert masked_ms_ssim(gt, gt + 200.0, mask) < 1


def _vol(a: np.ndarray, like: Volume) -> Volume:
    return Volume(a.astype(np.float32), like.spacing, like.affine.copy(), {})


def test_metric_masks_grid_and_refusals(demo_volume, tmp_path):
    """On the whole field of view (the demo CT, one in-plane voxel in 4), with the threshold segmenter's body."""
    v = demo_volume
    aff = v.affine.copy()
    aff[:3, :2] *= 4
    ref = Volume(v.array[:, ::4, ::4], (v.spacing[0], v.spacing[1] * 4, v.spacing[2] * 4), aff, {})
    pred = ref.array + np.random.default_rng(3).normal(0, 40, ref.shape).astype(np.float32)
    ctx = RunContext(cache_dir=str(tmp_path))
    gen = _vol(pred, ref)
    body = PairedFidelity().case_values(CaseData("m", "c", gen, reference=ref), ctx)
    every = PairedFidelity({"mask": "none"}).case_values(CaseData("m", "c", gen, reference=ref), ctx)
    assert body != every and set(body) == {"mae_hu", "psnr", "ssim", "ms_ssim"}
    from trace_bench.segmenters.threshold import threshold_segment

    m = threshold_segment(ref.array, ref.spacing) > 0
    assert body == pytest.approx(paired_scores(ref.array, gen.array, m), rel=1e-12)
    assert np.isfinite(list(body.values())).all()
    # a generated volume on another grid: refused in one line, or mapped with resample=extent
    half = Volume(pred[:, ::2, ::2], ref.spacing, ref.affine.copy(), {})
    with pytest.raises(ValueError, match="not on its reference's grid") as e:
        PairedFidelity().case_values(CaseData("m", "c", half, reference=ref), ctx)
    assert "\n" not in str(e.value)
    mapped = PairedFidelity({"resample": "extent"}).case_values(CaseData("m", "c", half, reference=ref), ctx)
    assert np.isfinite(list(mapped.values())).all()
    with pytest.raises(ConfigError, match="reference's label map"):
        PairedFidelity({"mask": "provided"}).case_values(CaseData("m", "c", gen, reference=ref), ctx)
    assert not PairedFidelity.in_default_set and PairedFidelity.needs_reference
