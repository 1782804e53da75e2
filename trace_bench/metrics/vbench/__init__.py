"""The six VBench dimensions of the TRACE paper's Table 1, on CT slice stacks (see each module)."""

from ..temporal import TemporalFlickering, temporal_flickering
from .consistency import (
    BackgroundConsistency, SubjectConsistency, background_consistency, subject_consistency,
)

__all__ = [
    "TemporalFlickering", "temporal_flickering",
    "SubjectConsistency", "BackgroundConsistency", "subject_consistency", "background_consistency",
]
from .motion_smoothness import MotionSmoothness, motion_smoothness  # noqa: E402

__all__ += ["MotionSmoothness", "motion_smoothness"]
from .imaging_quality import ImagingQuality, imaging_quality  # noqa: E402

__all__ += ["ImagingQuality", "imaging_quality"]
from .overall_consistency import OverallConsistency, overall_consistency  # noqa: E402

__all__ += ["OverallConsistency", "overall_consistency"]
