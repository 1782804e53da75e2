"""Paired fidelity in HU, for runs whose generated volume reproduces its reference patient (mask-conditioned
generation, super-resolution, translation): ``paired_fidelity`` writes ``mae_hu``, ``psnr``, ``ssim`` and ``ms_ssim``,
inside a mask, with SynthRAD2025's fixed dynamic range [-1024, 3071] HU (R = 4095).

Formulas (SynthRAD2025/evaluation ``image_metrics.py``, class ``ImageMetrics``, and SynthRAD2023/metrics
``functions/image_metrics.py`` for SSIM, which SynthRAD2025 dropped), reference = ``gt``, generated = ``pred``:

* ``mae_hu`` = ``sum |gt - pred| m / sum m`` (``ImageMetrics.mae``; no clipping);
* ``psnr`` = scikit-image ``peak_signal_noise_ratio(gt[m], pred[m], data_range=4095)`` with both clipped to
  [-1024, 3071] (``psnr(..., use_population_range=True)``); in dB, infinite for identical volumes;
* ``ssim``: both clipped to the range, set to -1024 outside the mask, shifted by +1024; scikit-image
  ``structural_similarity(gt, pred, data_range=4095, full=True)`` (7^3 uniform window, sample covariance); the map's
  mean over the mask after cropping 3 voxels from every border (SynthRAD2023 ``ImageMetrics.ssim``);
* ``ms_ssim``: SynthRAD2025's masked MS-SSIM (``ImageMetrics.ms_ssim``), ported in :func:`masked_ms_ssim`: the
  same clipping / masking / shift, edge-padding to at least 97 voxels per axis, five levels; per level the SSIM map
  of :func:`ssim_components` (scikit-image's uniform-window SSIM split into luminance, contrast and structure, each
  clipped at 0) with exponents 0 (luminance, at every level: SynthRAD2025's ``luminance_weights`` has six entries of
  which the used five are 0) and the weights 0.0448 / 0.2856 / 0.3001 / 0.2363 / 0.1333 (contrast and structure),
  its mean over the (cropped) mask; between levels the images are filtered by a 2^3 box (``fftconvolve``, 'same')
  and every second voxel is kept, as is every second voxel of the mask; the value is the product of the level means
  clipped to [0, 1]; NaN (no value) when the subsampled mask leaves no voxel inside a level's cropped border
  (SynthRAD2025 then averages an empty selection). scikit-image has no weighted-component SSIM, hence the port.

Mask (option ``mask``): ``body`` (default: the reference volume's body from the weight-free threshold segmenter),
``provided`` (the reference's paired label map > 0) or ``none``. Grid (option ``resample``): ``none`` (default) refuses
a generated volume not on its reference's grid, in one line; ``extent`` maps it onto the reference grid by trilinear
interpolation of field of view onto field of view (``torch.nn.functional.interpolate``, ``align_corners=False``).
Not in ``--metrics available``: on an unpaired run (text-to-CT) the numbers are meaningless. Cost: 4.4 CPU-seconds for
one 48 x 256 x 256 volume pair (one core, MS-SSIM dominates; benchmarks/bench_issue31_costs.py).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import ConfigError
from ..optional import require
from .anatomy_labels import LabelSource
from .base import CaseData, Metric, Option, Output, Part, RunContext, register_metric

#: SynthRAD2025 ImageMetrics.dynamic_range
DYNAMIC_RANGE = (-1024.0, 3071.0)
SCALE_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
#: what SynthRAD2025 applies to the luminance term at levels 0..4 (np.array([0, 0, 0, 0, 0, 0.1333])[:5])
LUMINANCE_WEIGHTS = (0.0, 0.0, 0.0, 0.0, 0.0)
MIN_SIZE = 97
WIN = 7
MASKS = ("body", "provided", "none")
RESAMPLE = ("none", "extent")
#: what scikit-image is for (named in the message when it is missing: the ``fidelity`` extra)
SKIMAGE_PURPOSE = "paired_fidelity (scikit-image's PSNR / SSIM, as SynthRAD2025)"


def _crop(a: np.ndarray, pad: int) -> np.ndarray:
    return require("skimage.util", SKIMAGE_PURPOSE).crop(a, pad)


def prepare(gt: np.ndarray, pred: np.ndarray, mask: np.ndarray | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Both clipped to the dynamic range, set to its minimum outside the mask, shifted to start at 0 (float64);
    the binarised mask (float64 0 / 1)."""
    lo, hi = DYNAMIC_RANGE
    g = np.clip(np.asarray(gt, np.float64), lo, hi)
    p = np.clip(np.asarray(pred, np.float64), lo, hi)
    m = np.ones(g.shape) if mask is None else np.where(np.asarray(mask) > 0, 1.0, 0.0)
    g = np.where(m == 0, lo, g) - lo
    p = np.where(m == 0, lo, p) - lo
    return g, p, m


def mae_hu(gt: np.ndarray, pred: np.ndarray, mask: np.ndarray | None) -> float:
    m = np.ones(np.shape(gt)) if mask is None else np.where(np.asarray(mask) > 0, 1.0, 0.0)
    g, p = np.asarray(gt, np.float64), np.asarray(pred, np.float64)
    return float(np.sum(np.abs(g * m - p * m)) / m.sum())


def psnr(gt: np.ndarray, pred: np.ndarray, mask: np.ndarray | None) -> float:
    peak_signal_noise_ratio = require("skimage.metrics", SKIMAGE_PURPOSE).peak_signal_noise_ratio
    lo, hi = DYNAMIC_RANGE
    g = np.clip(np.asarray(gt, np.float64), lo, hi)
    p = np.clip(np.asarray(pred, np.float64), lo, hi)
    sel = np.ones(g.shape, bool) if mask is None else np.asarray(mask) > 0
    with np.errstate(divide="ignore"):
        return float(peak_signal_noise_ratio(g[sel], p[sel], data_range=hi - lo))


def masked_ssim(gt: np.ndarray, pred: np.ndarray, mask: np.ndarray | None) -> float:
    structural_similarity = require("skimage.metrics", SKIMAGE_PURPOSE).structural_similarity
    g, p, m = prepare(gt, pred, mask)
    full, smap = structural_similarity(g, p, data_range=DYNAMIC_RANGE[1] - DYNAMIC_RANGE[0], full=True)
    if mask is None:
        return float(full)
    pad = (WIN - 1) // 2
    return float(_crop(smap, pad)[_crop(m, pad).astype(bool)].mean(dtype=np.float64))


def ssim_components(x: np.ndarray, y: np.ndarray, data_range: float, lw: float, cw: float, sw: float) -> np.ndarray:
    """SSIM map ``L^lw C^cw S^sw`` with scikit-image's uniform 7^3 window and sample covariance; each component
    clipped at 0 (SynthRAD2025 ``structural_similarity_at_scale``)."""
    from scipy.ndimage import uniform_filter

    npix = WIN ** x.ndim
    cov_norm = npix / (npix - 1)
    ux, uy = uniform_filter(x, size=WIN), uniform_filter(y, size=WIN)
    uxx, uyy, uxy = uniform_filter(x * x, size=WIN), uniform_filter(y * y, size=WIN), uniform_filter(x * y, size=WIN)
    vx, vy, vxy = cov_norm * (uxx - ux * ux), cov_norm * (uyy - uy * uy), cov_norm * (uxy - ux * uy)
    sx, sy = np.clip(vx, 0, None) ** 0.5, np.clip(vy, 0, None) ** 0.5
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    c3 = c2 / 2
    lum = np.clip((2 * ux * uy + c1) / (ux * ux + uy * uy + c1), 0, None)
    con = np.clip((2 * sx * sy + c2) / (vx + vy + c2), 0, None)
    struct = np.clip((vxy + c3) / (sx * sy + c3), 0, None)
    return (lum ** lw) * (con ** cw) * (struct ** sw)


def masked_ms_ssim(gt: np.ndarray, pred: np.ndarray, mask: np.ndarray | None) -> float:
    """SynthRAD2025's masked MS-SSIM (see the module doc)."""
    from scipy.signal import fftconvolve

    g, p, m = prepare(gt, pred, mask)
    pads = [(max(0, (MIN_SIZE - d) // 2), max(0, MIN_SIZE - d - (MIN_SIZE - d) // 2)) for d in g.shape]
    g, p, m = (np.pad(a, pads, mode="edge") for a in (g, p, m))
    box = np.ones((2, 2, 2)) / 8
    pad = (WIN - 1) // 2
    levels = []
    for lw, w in zip(LUMINANCE_WEIGHTS, SCALE_WEIGHTS):
        sel = _crop(m, pad).astype(bool)
        if not sel.any():  # the (subsampled) mask misses this level's interior: SynthRAD2025's mean of nothing
            return float("nan")
        smap = ssim_components(g, p, DYNAMIC_RANGE[1] - DYNAMIC_RANGE[0], lw, w, w)
        levels.append(_crop(smap, pad)[sel].mean(dtype=np.float64))
        g, p = (fftconvolve(a, box, mode="same") for a in (g, p))
        g, p, m = g[::2, ::2, ::2], p[::2, ::2, ::2], m[::2, ::2, ::2]
    return float(np.prod([np.clip(v, 0, 1) for v in levels]))


def paired_scores(gt: np.ndarray, pred: np.ndarray, mask: np.ndarray | None) -> dict[str, float]:
    """Functional twin: the four columns for arrays on one grid (``mask``: voxels to score, None = all)."""
    if np.shape(gt) != np.shape(pred) or (mask is not None and np.shape(mask) != np.shape(gt)):
        raise ValueError(f"Expected arrays of one shape, got {np.shape(gt)}, {np.shape(pred)}"
                         + ("" if mask is None else f" and mask {np.shape(mask)}"))
    if mask is not None and not np.any(np.asarray(mask) > 0):
        raise ValueError("the mask is empty: no voxel to score")
    return {"mae_hu": mae_hu(gt, pred, mask), "psnr": psnr(gt, pred, mask), "ssim": masked_ssim(gt, pred, mask),
            "ms_ssim": masked_ms_ssim(gt, pred, mask)}


def on_reference_grid(pred: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Trilinear field-of-view-to-field-of-view map of a (z, y, x) array onto ``shape``."""
    import torch
    import torch.nn.functional as F

    x = torch.from_numpy(np.ascontiguousarray(pred, dtype=np.float32))[None, None]
    return F.interpolate(x, size=tuple(shape), mode="trilinear", align_corners=False)[0, 0].numpy()


@register_metric
class PairedFidelity(Metric):
    name = "paired_fidelity"
    kind = "case"
    table = "table1"
    needs_reference = True
    in_default_set = False  # meaningful only when the generated volume reproduces its reference patient
    outputs = {
        "mae_hu": Output(False, "MAE (HU)", digits=1, rank=10.0, tolerance={"abs": 1.0, "rel": 0.05},
                         value_range=(0.0, None)),
        "psnr": Output(True, "PSNR (dB)", digits=2, rank=10.1, tolerance={"abs": 0.1}, value_range=(0.0, None)),
        "ssim": Output(True, "SSIM", digits=4, rank=10.2, tolerance={"abs": 0.005}, value_range=(-1.0, 1.0)),
        "ms_ssim": Output(True, "MS-SSIM", digits=4, rank=10.3, tolerance={"abs": 0.005}, value_range=(0.0, 1.0)),
    }
    options = (
        Option("mask", "body", "voxels scored: 'body' (the reference's body, threshold segmenter), 'provided' (the "
               "reference's label map > 0) or 'none' (every voxel)", choices=MASKS),
        Option("resample", "none", "a generated volume not on its reference's grid: 'none' refuses it, 'extent' maps "
               "it field of view onto field of view (trilinear)", choices=RESAMPLE),
    )
    description = ("Paired fidelity in HU against the same patient's reference (SynthRAD2025 formulas): MAE, PSNR, "
                   "SSIM and masked MS-SSIM inside the body mask, dynamic range [-1024, 3071] HU; only for generated "
                   "volumes that reproduce their reference (conditioned generation, super-resolution, translation)")

    def __init__(self, options: dict[str, Any] | None = None) -> None:
        super().__init__(options)
        self.labels = LabelSource()

    def setup(self, ctx: RunContext) -> None:
        require("skimage.metrics", SKIMAGE_PURPOSE)  # met in the preflight, not at the first case

    def protocol_parts(self, ctx: RunContext) -> list[Part]:
        mask, rule = self.opts["mask"], self.opts["resample"]
        masks = {"body": "the reference volume's body (threshold-v1 segmenter, 2 classes, weight-free)",
                 "provided": "the reference's paired label map > 0", "none": "every voxel"}
        return [("synthrad2025:range[-1024,3071]",
                 "SynthRAD2025 image_metrics.py: dynamic range [-1024, 3071] HU (R = 4095); MAE in HU (no clipping), "
                 "PSNR (scikit-image, clipped), SSIM (scikit-image uniform 7^3 window, SynthRAD2023's masked mean), "
                 "masked MS-SSIM (5 levels, luminance exponent 0, 2^3 box downsampling, padded to >= 97 voxels)"),
                (f"mask:{mask}", f"voxels scored: {masks[mask]}; outside it both volumes are set to -1024 HU for "
                                 "SSIM / MS-SSIM"),
                (f"grid:{rule}", "the generated volume must be on its reference's grid" if rule == "none" else
                 "the generated volume mapped onto the reference grid, field of view onto field of view, trilinear")]

    def case_values(self, data: CaseData, ctx: RunContext) -> dict[str, float]:
        ref = data.reference
        if ref is None:
            raise ConfigError(f"paired_fidelity: case {data.case_id!r} has no reference volume")
        gt, pred = ref.array, data.volume.array
        if pred.shape != gt.shape:
            if self.opts["resample"] == "none":
                raise ValueError(f"generated volume {pred.shape} is not on its reference's grid {gt.shape}; paired "
                                 "fidelity compares voxel by voxel (--option paired_fidelity.resample=extent maps it)")
            pred = on_reference_grid(pred, gt.shape)
        mask = self.opts["mask"]
        if mask == "body":
            ref_data = CaseData(method=data.method, case_id=data.case_id, volume=ref, shared=data.shared)
            m: np.ndarray | None = self.labels.body(ref_data, ctx)
        elif mask == "provided":
            if data.reference_mask is None:
                raise ConfigError(f"paired_fidelity: mask 'provided' needs the reference's label map for case "
                                  f"{data.case_id!r} (--reference-masks)")
            m = np.rint(data.reference_mask.array) > 0
            if m.shape != gt.shape:
                raise ValueError(f"reference label map {m.shape} is not on the reference grid {gt.shape}")
        else:
            m = None
        return paired_scores(gt, pred, m)


__all__ = ["DYNAMIC_RANGE", "PairedFidelity", "mae_hu", "masked_ms_ssim", "masked_ssim", "paired_scores", "psnr",
           "ssim_components"]
