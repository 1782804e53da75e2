"""Feature extractors (registry :data:`EXTRACTORS`): ``inception-fid``, ``i3d-400``, ``clip``.

Importing this package registers all three; loading one resolves its weights through
:mod:`trace_bench.weights` (never a random init).
"""

from .base import EXTRACTORS, FeatureExtractor, get_extractor, register_extractor
from .clip import CLIP_MEAN, CLIP_STD, ClipModel, load_clip_model
from .i3d import I3DFeatures, InceptionI3d, load_i3d
from .inception import InceptionFID, load_inception

__all__ = [
    "EXTRACTORS", "FeatureExtractor", "get_extractor", "register_extractor",
    "CLIP_MEAN", "CLIP_STD", "ClipModel", "load_clip_model",
    "I3DFeatures", "InceptionI3d", "load_i3d", "InceptionFID", "load_inception",
]
