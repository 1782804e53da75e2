"""Adapters that read other generators' outputs into canonical trace-bench volumes.

Importing this package registers every adapter in :data:`baselines.base.ADAPTERS`.
"""

from .base import ADAPTERS, Adapter, Detection, generic_case_id, get_adapter, register_adapter
from . import generic  # noqa: F401  (registers nifti, npy, dicom, png-stack)

__all__ = ["ADAPTERS", "Adapter", "Detection", "generic_case_id", "get_adapter", "register_adapter"]
