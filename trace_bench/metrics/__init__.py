"""Metrics: one :class:`~.base.Metric` class per metric (registered on import) and its functional twin.

The registry :data:`METRICS` maps names to classes; :func:`metric_classes` loads every module that
registers metrics (and the user's plug-ins) and :func:`resolve_metric_names` turns the ``--metrics``
list (metric names, output column names such as ``dice``, ``all``, ``weight-free``) into metric names.
"""

from .base import METRICS, CaseData, Metric, Option, Output, RunContext, State, register_metric
from .temporal import TemporalFlickering, temporal_flickering
from .segmentation import Segmentation, dice, hd95, jaccard  # noqa: E402,F401
from .fid import FID, FID2p5D  # noqa: E402,F401
from .fvd import FVD  # noqa: E402,F401
from .clip_score import ClipScore  # noqa: E402,F401
from .kid import KID, KIDClip, KIDI3D  # noqa: E402,F401
from .prdc import PRDC, PRDCClip, PRDCI3D  # noqa: E402,F401
from .ct3d import FDAstra, KIDAstra, PRDCAstra  # noqa: E402,F401  CT-native 3D volume features (Astra)
from .medicalnet import FDMedicalNet, KIDMedicalNet, PRDCMedicalNet  # noqa: E402,F401  HA-GAN's 3D FID (MedicalNet)
from .fvd_ctnet import FDCTNet, FVDCTNet, KIDCTNet, PRDCCTNet  # noqa: E402,F401 -- VLM3D FVD_CTNet (CT-Net)
from .fid_presets import FIDMaisi, FIDVlm3d  # noqa: E402,F401  MAISI / VLM3D 2.5D FID presets (RadImageNet)
from .vbench import *  # noqa: F401,F403  VBench dimensions: subject_consistency(features), metric classes

__all__ = [
    "METRICS", "CaseData", "Metric", "Option", "Output", "RunContext", "State", "register_metric",
    "TemporalFlickering", "temporal_flickering", "Segmentation", "FID", "FID2p5D", "FVD", "ClipScore",
    "KID", "KIDI3D", "KIDClip", "PRDC", "PRDCI3D", "PRDCClip",
]
