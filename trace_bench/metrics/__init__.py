"""Metrics: functional twins, streaming classes and runner plug-ins (registered on import)."""

from .base import METRICS, CaseData, MetricSpec, RunContext, StreamingMetric, register_metric
from .temporal import TemporalFlickering, temporal_flickering

__all__ = [
    "METRICS", "CaseData", "MetricSpec", "RunContext", "StreamingMetric", "register_metric",
    "TemporalFlickering", "temporal_flickering",
]
