"""Adapters that read other generators' outputs into canonical trace-bench volumes.

Importing this package registers every adapter in :data:`baselines.base.ADAPTERS`:
generic readers (``nifti``, ``npy``, ``dicom``, ``png-stack``), peers (``generatect-lowres``,
``generatect-sr``, ``medsyn``, ``medsyn-lowres``, ``maisi``) and ``auto`` (detection).
"""

from .base import ADAPTERS, Adapter, Detection, generic_case_id, get_adapter, register_adapter
from . import generic  # noqa: F401  (registers nifti, npy, dicom, png-stack)
from . import generatect, maisi, medsyn  # noqa: F401  (register the peers' adapters)
from . import ctrate  # noqa: F401  (registers ctrate: CT-RATE volumes + metadata CSV)
from .auto import AmbiguousFormatError, detect_adapter, detect_folder_adapter  # registers "auto"

__all__ = ["ADAPTERS", "Adapter", "AmbiguousFormatError", "Detection", "detect_adapter", "detect_folder_adapter",
           "generic_case_id", "get_adapter", "register_adapter"]
