"""Metrics: functional twins, streaming classes and runner plug-ins (registered on import)."""

from .base import METRICS, CaseData, MetricSpec, RunContext, StreamingMetric, register_metric
from .temporal import TemporalFlickering, temporal_flickering
from .segmentation import SegmentationOverlap, dice, hd95, jaccard  # noqa: E402,F401  (registers 'segmentation')
from . import fid, fvd, clip_score  # noqa: E402,F401  distribution metrics + CLIP score (issue 4)
from .vbench import *  # noqa: F401,F403  VBench dimensions (issue 5): subject_consistency(features), plug-ins

__all__ = [
    "METRICS", "CaseData", "MetricSpec", "RunContext", "StreamingMetric", "register_metric",
    "TemporalFlickering", "temporal_flickering",
]
