"""Memorization audit: does a generator copy its training volumes?

``run_audit(out, train, heldout, methods)`` -> :class:`AuditResult` and ``OUT/audit/`` (CSV, JSON,
Markdown, montages). Modules: ``features`` (audit canvas, thumbnails, registry of volume features),
``search`` (slice-level NCC search), ``stats`` (nearest neighbours, C_T, AuthPct), ``core``
(``run_audit``), ``report`` (files, JSON schema, Markdown).
"""

from .core import FolderSpec, run_audit
from .features import (
           VOLUME_FEATURES,
           VolumeFeature,
           get_volume_feature,
           register_volume_feature,
)
from .report import SCHEMA, AuditResult, load_memorization, memorization_markdown
from .stats import authpct, c_t, c_t_score, z_u

__all__ = [
           "SCHEMA",
           "VOLUME_FEATURES",
           "AuditResult",
           "FolderSpec",
           "VolumeFeature",
           "authpct",
           "c_t",
           "c_t_score",
           "get_volume_feature",
           "load_memorization",
           "memorization_markdown",
           "register_volume_feature",
           "run_audit",
           "z_u",
]
