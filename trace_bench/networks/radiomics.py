"""The pyradiomics feature extractor of the Frechet Radiomics Distance (FRD v1, 3D), and the volume -> SimpleITK
conversion it needs.

FRD (Konz, Osuala et al., "Frechet Radiomic Distance (FRD): A Versatile Metric for Comparing Medical Imaging
Datasets", Medical Image Analysis 2026, doi:10.1016/j.media.2026.103943) compares two sets of volumes by the
Frechet distance of their pyradiomics features. The settings below are those of the reference implementation,
PyPI ``frd-score`` 1.0.1 (RichardObi/frd-score): ``frd_score/configs/extraction_3d.yaml`` (the v1 config for
3-D inputs) and ``frd_score/frd.py`` ``process_image_mask_pair`` (what becomes a feature vector), reproduced
here from that source:

* image types: Original, LoG with sigma 2, 3, 4, 5 mm, Wavelet (the 8 first-level sub-bands);
* feature classes: firstorder (all 18), glcm (the 22 features listed in :data:`GLCM_FEATURES`), glrlm (16),
  glszm (16), ngtdm (5): 77 features per image type, 13 image types;
* settings: ``normalize`` on, ``normalizeScale`` 100; B-spline resampling to 2 x 2 x 2 mm, ``padDistance`` 10,
  ``preCrop``; ``binWidth`` 5; ``voxelArrayShift`` 300; ``correctMask``; ``minimumROIDimensions`` 1; label 1;
* mask: the user's / segmenter's mask when given, else the whole volume except voxel (0, 0, 0) (frd-score's
  workaround for pyradiomics issue 765); a mask of at most one voxel yields no vector;
* the vector: every numeric pyradiomics output in its order, i.e. the 1001 features and the 13 numeric
  diagnostics (image mean / minimum / maximum and mask voxel / volume counts, original and interpolated),
  which frd-score keeps on purpose "for exact paper reproducibility". Those diagnostics include the mask's
  voxel count, so the vector depends on the volume's size (its field of view at 2 mm).

The features depend on pyradiomics (``pyradiomics-bhklab`` builds on Python >= 3.10; PyPI's ``pyradiomics`` has no
wheel there), PyWavelets (wavelet sub-bands) and SimpleITK (resampling, LoG): their versions are part of
:func:`versions_id`, hence of the protocol id and every cache key. Cost: 106 CPU-seconds for the shipped
48 x 256 x 256 demo chest CT (5 x 1.14 x 1.14 mm; benchmarks/bench_issue31_costs.py), all in pyradiomics'
single-threaded C and numpy code. The features are computed after resampling to 2 mm, so the cost follows the field of
view's voxel count at 2 mm more than the input resolution.

Nothing here is a network with weights; the module sits on the networks floor beside them because a feature
space (:mod:`trace_bench.metrics.frd`) names it as its extractor.
"""

from __future__ import annotations

import hashlib
import json
from importlib import metadata
from typing import Any

import numpy as np

from ..optional import require
from ..volume import Volume

#: what pyradiomics is for (named in the message when it is missing: the ``radiomics`` extra)
RADIOMICS_PURPOSE = "FRD (pyradiomics features)"

#: frd_score/configs/extraction_3d.yaml, featureClass glcm (22 of pyradiomics' 24 glcm features; no MCC, no
#: SumAverage)
GLCM_FEATURES = ("Autocorrelation", "JointAverage", "ClusterProminence", "ClusterShade", "ClusterTendency", "Contrast",
                 "Correlation", "DifferenceAverage", "DifferenceEntropy", "DifferenceVariance", "JointEnergy",
                 "JointEntropy", "Imc1", "Imc2", "Idm", "Idmn", "Id", "Idn", "InverseVariance", "MaximumProbability",
                 "SumEntropy", "SumSquares")
#: frd_score/configs/extraction_3d.yaml as a pyradiomics parameter dict (``None``: every feature of the class)
FRD_V1_PARAMS: dict[str, Any] = {
    "imageType": {"Original": {}, "LoG": {"sigma": [2.0, 3.0, 4.0, 5.0]}, "Wavelet": {}},
    "featureClass": {"firstorder": None, "glcm": list(GLCM_FEATURES), "glrlm": None, "glszm": None, "ngtdm": None},
    "setting": {"normalize": True, "normalizeScale": 100, "interpolator": "sitkBSpline",
                "resampledPixelSpacing": [2, 2, 2], "padDistance": 10, "preCrop": True, "binWidth": 5,
                "voxelArrayShift": 300, "correctMask": True, "minimumROIDimensions": 1, "label": 1},
}
#: the settings in words (protocol legend)
FRD_V1_MEANING = (
    "pyradiomics features with FRD v1's 3-D settings (frd-score 1.0.1, configs/extraction_3d.yaml): image types "
    "Original, LoG (sigma 2, 3, 4, 5 mm) and Wavelet (8 sub-bands); classes firstorder, glcm (22 features), glrlm, "
    "glszm, ngtdm; intensities normalised (scale 100, shift 300), B-spline resampling to 2 x 2 x 2 mm, pad 10, "
    "bin width 5; vector = the 1001 features plus the 13 numeric diagnostics (image mean / min / max, mask voxel "
    "and volume counts) in pyradiomics' output order, as frd-score keeps them")
PACKAGES = (("pyradiomics-bhklab", "pyradiomics"), ("PyWavelets", "pywavelets"), ("SimpleITK", "simpleitk"))


def settings_digest(params: dict[str, Any] = FRD_V1_PARAMS) -> str:
    """First 12 hex digits of the sha256 of the parameter dict (canonical JSON): any change of a setting moves it."""
    return hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()[:12]


def package_version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "missing"


def versions_id() -> str:
    """``pyradiomics3.1.4:pywavelets1.9.0:simpleitk2.5.7`` (the installed versions; ``missing`` when absent)."""
    out = []
    for dist, short in PACKAGES:
        v = package_version(dist)
        if dist == "pyradiomics-bhklab" and v == "missing":
            v = package_version("pyradiomics")  # the upstream distribution, where it installs
        out.append(f"{short}{v}")
    return ":".join(out)


#: extractor id (cache keys, protocol ids): the FRD v1 settings, their digest, and the vector rule
EXTRACTOR_ID = f"frd-v1-3d:settings-{settings_digest()}:numeric-diagnostics"


def require_radiomics() -> Any:
    """The ``radiomics`` package, or :class:`~trace_bench.optional.MissingDependency` (an ImportError) naming the
    extra that installs it (``pip install 'trace-bench[radiomics]'``: pyradiomics-bhklab 3.1.4, built from source
    with the system C compiler)."""
    require("radiomics.featureextractor", RADIOMICS_PURPOSE)
    return require("radiomics", RADIOMICS_PURPOSE)


def to_sitk(volume: Volume, array: np.ndarray | None = None) -> Any:
    """A SimpleITK image of ``volume`` (or of ``array``, e.g. a mask, on its grid) with the same geometry a NIfTI
    file of the volume has once SimpleITK reads it: voxel (z, y, x) order, LPS direction cosines, spacing and
    origin from the affine (the canonical affine maps (x, y, z) indices to RAS mm; LPS = RAS with x, y negated)."""
    import SimpleITK as sitk

    a = volume.array if array is None else array
    img = sitk.GetImageFromArray(np.ascontiguousarray(a))
    m = np.diag([-1.0, -1.0, 1.0]) @ np.asarray(volume.affine, dtype=np.float64)[:3, :3]
    spacing = np.sqrt((m ** 2).sum(axis=0))
    img.SetSpacing(tuple(float(s) for s in spacing))
    img.SetDirection(tuple(float(v) for v in (m / spacing).ravel()))
    img.SetOrigin(tuple(float(v) for v in np.diag([-1.0, -1.0, 1.0]) @ np.asarray(volume.affine)[:3, 3]))
    return img


def whole_volume_mask(shape: tuple[int, ...]) -> np.ndarray:
    """frd-score's mask without a mask file: every voxel but (0, 0, 0) (uint8, (z, y, x))."""
    m = np.ones(shape, dtype=np.uint8)
    m[(0,) * len(shape)] = 0
    return m


class RadiomicsExtractor:
    """pyradiomics with fixed parameters; :meth:`features` maps a volume (+ mask) to its FRD feature vector."""

    def __init__(self, params: dict[str, Any] = FRD_V1_PARAMS) -> None:
        radiomics = require_radiomics()
        featureextractor = require("radiomics.featureextractor", RADIOMICS_PURPOSE)

        radiomics.setVerbosity(60)  # pyradiomics logs every image type at INFO / WARNING otherwise
        self.params = params
        self._extractor = featureextractor.RadiomicsFeatureExtractor(json.loads(json.dumps(params)))

    def execute(self, volume: Volume, mask: np.ndarray | None = None) -> dict[str, Any]:
        """pyradiomics' raw output for ``volume`` in ``mask`` (label 1; whole volume when None)."""
        m = whole_volume_mask(volume.shape) if mask is None else np.asarray(mask).astype(np.uint8)
        if m.shape != volume.shape:
            raise ValueError(f"Expected a mask of the volume's shape {volume.shape}, got {m.shape}")
        image = to_sitk(volume)
        return dict(self._extractor.execute(image, to_sitk(volume, m)))

    def named_features(self, volume: Volume, mask: np.ndarray | None = None) -> dict[str, float] | None:
        """``{name: value}`` in pyradiomics' output order: features (``original_`` removed) and the numeric
        diagnostics (frd_score/frd.py ``process_image_mask_pair``, v1); None when the mask has <= 1 voxel."""
        m = whole_volume_mask(volume.shape) if mask is None else np.asarray(mask).astype(np.uint8)
        if int(np.count_nonzero(m)) <= 1:
            return None
        out: dict[str, float] = {}
        for name, value in self.execute(volume, m).items():
            if "diagnostics" not in name:
                out[name.replace("original_", "")] = float(value)
                continue
            try:
                out[name] = float(value)
            except (TypeError, ValueError):
                pass  # text, tuples and dicts of the diagnostics
        return out

    def features(self, volume: Volume, mask: np.ndarray | None = None) -> np.ndarray:
        """float64 (1, d) FRD feature vector, or (0, d?) -> (0, 0) when the mask holds at most one voxel."""
        f = self.named_features(volume, mask)
        if f is None:
            return np.zeros((0, 0), dtype=np.float64)
        return np.asarray(list(f.values()), dtype=np.float64)[None]


__all__ = ["EXTRACTOR_ID", "FRD_V1_MEANING", "FRD_V1_PARAMS", "GLCM_FEATURES", "RadiomicsExtractor", "package_version",
           "require_radiomics", "settings_digest", "to_sitk", "versions_id", "whole_volume_mask"]
