"""Segmenter interface, the :class:`LabelMap` it returns, and the segmenter registry.

A segmenter turns a canonical :class:`~trace_bench.volume.Volume` (float32 HU, (z, y, x), LPS)
into an integer label map on the **same grid** at a granularity ``classes`` (``full``, ``3`` or
``2``, see :mod:`trace_bench.segmenters.labels`). Every label map records which segmenter (and which weights) made it,
so reports can say which segmenter produced every number.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from ..cache import LabelMapCache
from ..registry import Registry
from ..volume import Volume
from .labels import check_classes


@dataclass
class LabelMap:
    """Integer labels (z, y, x) on the grid of the volume they were computed from."""

    labels: np.ndarray  # integer (z, y, x), 0 = background
    spacing: tuple[float, float, float]  # mm (z, y, x)
    affine: np.ndarray  # 4x4 (x, y, z) index -> RAS mm, as Volume.affine
    classes: str  # "full" | "3" | "2"
    segmenter: str  # segmenter id, e.g. "threshold-v1" or "vista3d@<sha256[:12]>"
    names: dict[int, str] = field(default_factory=dict)  # label -> name (for "full")
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        a = np.asarray(self.labels)
        if a.ndim != 3 or not (np.issubdtype(a.dtype, np.integer) or a.dtype == bool):
            raise ValueError(f"Expected an integer label map of shape (z, y, x), got {a.dtype} {a.shape}")
        self.labels = np.ascontiguousarray(a.astype(np.uint8 if a.max(initial=0) < 256 else np.int32, copy=False))
        self.spacing = tuple(float(s) for s in self.spacing)  # type: ignore[assignment]
        self.affine = np.asarray(self.affine, dtype=np.float64)

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.labels.shape)  # type: ignore[return-value]

    def to_volume(self) -> Volume:
        """As a :class:`Volume` (labels stored as exact float32 integers), e.g. for ``write_nifti``."""
        return Volume(self.labels.astype(np.float32), self.spacing, self.affine.copy(),
                      {**self.meta, "kind": "labels", "classes": self.classes, "segmenter": self.segmenter})

    @classmethod
    def from_volume(cls, volume: Volume, classes: str, segmenter: str, **meta: Any) -> "LabelMap":
        """Wrap a label :class:`Volume` (e.g. from :func:`trace_bench.io.read_label_map`)."""
        a = np.rint(volume.array).astype(np.int32)
        return cls(a, volume.spacing, volume.affine, classes, segmenter, meta={**volume.meta, **meta})


class Segmenter(ABC):
    """Base class. Subclasses set ``name`` and implement :meth:`segment`."""

    name: ClassVar[str]
    #: weights registry names this segmenter needs (empty = weight-free)
    weights: ClassVar[tuple[str, ...]] = ()
    description: ClassVar[str] = ""

    def __init__(self, device: str | None = None, weights: dict[str, str] | None = None, **options: Any) -> None:
        """``device``: "cpu", "cuda", ... (None = GPU when present); ``weights``: registry name ->
        explicit path (as :class:`~trace_bench.metrics.base.RunContext` ``weights``)."""
        self.device = device
        self.weights_paths = dict(weights or {})
        self.options = options

    @property
    def id(self) -> str:
        """Identifies the algorithm version and weights; goes into caches and result rows."""
        return self.name

    @abstractmethod
    def segment(self, volume: Volume, classes: str = "3") -> LabelMap:
        """Label map of ``volume`` on its own grid at granularity ``classes``."""

    def segment_cached(self, volume: Volume, classes: str = "3", cache: LabelMapCache | None = None) -> LabelMap:
        """:meth:`segment` through the on-disk label-map cache (:class:`~trace_bench.cache.LabelMapCache`,
        keyed by the volume's content, this segmenter's :attr:`id` and ``classes``): computed once per
        machine, then read back with its label names and meta (``meta["source"]`` = this volume's path)."""
        if cache is None or not cache.enabled:
            return self.segment(volume, classes)
        c = self._check(volume, classes)
        made: list[LabelMap] = []

        def compute() -> tuple[np.ndarray, dict[str, Any]]:
            lm = self.segment(volume, c)
            made.append(lm)
            meta = {k: v for k, v in lm.meta.items() if k != "source"}
            return lm.labels, {"segmenter": lm.segmenter, "classes": lm.classes,
                               "names": {str(k): v for k, v in lm.names.items()}, "meta": meta}

        labels, info = cache.get_or_compute(volume, self.id, c, compute)
        if made:
            return made[0]
        return LabelMap(labels, volume.spacing, volume.affine, c, str(info["segmenter"]),
                        names={int(k): str(v) for k, v in info.get("names", {}).items()},
                        meta={**info.get("meta", {}), "source": volume.meta.get("path")})

    def _check(self, volume: Volume, classes: str) -> str:
        if not isinstance(volume, Volume):
            raise TypeError(f"Expected a trace_bench Volume, got {type(volume).__name__}")
        return check_classes(classes)


SEGMENTERS: Registry[type[Segmenter]] = Registry("segmenter")


def register_segmenter(cls: type[Segmenter]) -> type[Segmenter]:
    """Class decorator: add a :class:`Segmenter` subclass to :data:`SEGMENTERS` under ``cls.name``."""
    if not (isinstance(cls, type) and issubclass(cls, Segmenter)):
        raise TypeError(f"Expected a Segmenter subclass, got {cls!r}")
    SEGMENTERS.register(cls.name, cls)
    return cls


def get_segmenter(name: str, **kwargs: Any) -> Segmenter:
    """Instantiate the registered segmenter ``name`` (``kwargs`` go to its constructor)."""
    return SEGMENTERS.get(name)(**kwargs)
