"""Metrics: one :class:`~.base.Metric` class per metric (registered on import) and its functional twin.

The registry :data:`METRICS` maps names to classes. The statistics on a feature space (FD, KID, PRDC
on Inception slices, I3D clips, CLIP images, Astra / MedicalNet / CT-Net volumes) are generated from
the rows of :mod:`.catalog`; the other metrics are classes of their own modules.
"""

from .base import METRICS, CaseData, Metric, Option, Output, RunContext, State, register_metric
from .temporal import TemporalFlickering, temporal_flickering
from .segmentation import Segmentation, dice, hd95, jaccard  # noqa: E402,F401
from .catalog import CLASSES  # noqa: E402  FD / KID / PRDC on every feature space
from .fid import FID2p5D  # noqa: E402,F401
from .frechet import fid_from_features, fvd_from_features  # noqa: E402,F401
from .kid import kid_from_features  # noqa: E402,F401
from .prdc import prdc_from_features  # noqa: E402,F401
from .clip_score import ClipScore  # noqa: E402,F401
from .fvd_ctnet import FVDCTNet  # noqa: E402,F401 -- VLM3D FVD_CTNet (CT-Net, paired chunks)
from .fid_presets import FIDMaisi, FIDVlm3d, FIDVlm3dSqueezeNet  # noqa: E402,F401  MAISI / VLM3D 2.5D FID presets
from .frd import FRD, FRDLabels  # noqa: E402,F401  Frechet Radiomics Distance (pyradiomics, optional extra)
from .diversity import MMD, MSSSIMDiversity  # noqa: E402,F401  MS-SSIM diversity, MMD on a voxel grid
from .paired_fidelity import PairedFidelity  # noqa: E402,F401  SynthRAD2025 MAE / PSNR / SSIM / MS-SSIM in HU
from .anatomy import AnatomyDist, AnatomyStats  # noqa: E402,F401  organ volumes / HU, MAISI's HU check
from .vbench import *  # noqa: F401,F403  VBench dimensions: subject_consistency(features), metric classes

# the catalogue's classes under their public names
FID, FVD, KID, KIDI3D, KIDClip, PRDC, PRDCI3D, PRDCClip = (
    CLASSES[n] for n in ("fid", "fvd", "kid", "kid_i3d", "kid_clip", "prdc", "prdc_i3d", "prdc_clip"))
FDAstra, KIDAstra, PRDCAstra = (CLASSES[n] for n in ("fd_astra", "kid_astra", "prdc_astra"))
FDMedicalNet, KIDMedicalNet, PRDCMedicalNet = (CLASSES[n] for n in ("fd_medicalnet", "kid_medicalnet",
                                                                     "prdc_medicalnet"))
FDCTNet, KIDCTNet, PRDCCTNet = (CLASSES[n] for n in ("fd_ctnet", "kid_ctnet", "prdc_ctnet"))

__all__ = [
    "METRICS", "CaseData", "Metric", "Option", "Output", "RunContext", "State", "register_metric",
    "TemporalFlickering", "temporal_flickering", "Segmentation", "FID", "FID2p5D", "FVD", "ClipScore",
    "KID", "KIDI3D", "KIDClip", "PRDC", "PRDCI3D", "PRDCClip", "FDAstra", "KIDAstra", "PRDCAstra",
    "FDMedicalNet", "KIDMedicalNet", "PRDCMedicalNet", "FDCTNet", "KIDCTNet", "PRDCCTNet", "FVDCTNet",
    "FIDMaisi", "FIDVlm3d", "FIDVlm3dSqueezeNet", "FRD", "FRDLabels", "MMD", "MSSSIMDiversity", "PairedFidelity",
    "AnatomyStats", "AnatomyDist", "fid_from_features", "fvd_from_features", "kid_from_features", "prdc_from_features",
]
