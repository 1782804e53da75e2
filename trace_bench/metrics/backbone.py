"""Backbone handling shared by every metric that runs a network: weights resolution, lazy loading
once per (weights entry, file, device), and the on-disk feature cache.

A metric holds one :class:`Backbone` per network, named by its module in :mod:`trace_bench.networks`::

    self.net = Backbone("inception")             # trace_bench.networks.inception.load_backbone, imported lazily
    model = self.net.get("inception-fid", ctx)  # resolved through trace_bench.weights, loaded once

The weights file is found by :func:`trace_bench.weights.resolve_weights` (explicit path from
``ctx.weights`` / ``--weights``, environment variable, cache), verified there, and loaded by the
metric's loader with ``weights_only=True`` or safetensors (never an unpickle). Features of a volume
are cached by content hash + protocol + extractor + weights sha256 (:mod:`trace_bench.cache`).
"""

from __future__ import annotations

import importlib
import threading
from typing import Any, Callable

import numpy as np

from ..cache import FeatureCache, volume_hash
from .base import CaseData, RunContext

Loader = Callable[[str, str, str, RunContext], Any]


def network_loader(network: str) -> Loader:
    """``trace_bench.networks.<network>.load_backbone``, looked up when called (so importing the metric
    layer imports no network, and a test may replace a network's loader on its module)."""

    def load(path: str, device: str, name: str, ctx: RunContext) -> Any:
        return importlib.import_module(f"trace_bench.networks.{network}").load_backbone(path, device, name, ctx)

    return load


class Backbone:
    """A lazily loaded network for one metric instance: ``network`` is a module of
    :mod:`trace_bench.networks` (or any ``loader(path, device, name, ctx)``)."""

    def __init__(self, network: str | Loader) -> None:
        self._loader = network_loader(network) if isinstance(network, str) else network
        self._model: Any = None
        self._key: tuple | str | None = None
        self.sha256 = ""
        self._lock = threading.Lock()
        #: the on-disk feature cache last used (hit / miss counters for tests and benchmarks)
        self.cache: FeatureCache | None = None

    def get(self, name: str, ctx: RunContext) -> Any:
        """The model for weights entry ``name`` on ``ctx.device`` (loaded on first use)."""
        from ..weights import resolve_weights

        key = (name, ctx.weights.get(name), ctx.device, int(ctx.batch_size))
        with self._lock:
            if self._key == "given":
                return self._model
            if self._model is None or self._key != key:
                r = resolve_weights(name, ctx.weights.get(name))
                self._model = self._loader(str(r.path), ctx.device, name, ctx)
                self._key, self.sha256 = key, r.sha256
            return self._model

    @property
    def loaded(self) -> Any:
        return self._model

    def set(self, model: Any, sha256: str = "") -> None:
        """Use an already built model (tests with small random networks, custom integrations)."""
        self._model, self._key, self.sha256 = model, "given", sha256

    def cached_features(self, data: CaseData, ctx: RunContext, parts: tuple[str, ...],
                        compute: Callable[[], np.ndarray], enabled: bool = True) -> np.ndarray:
        """Features of ``data.volume`` keyed by (volume content hash, frame protocol, ``*parts``), computed
        once and cached on disk (``ctx.cache_dir`` or ``$TRACE_BENCH_CACHE/features``)."""
        root = ctx.cache_dir if ctx.cache_dir else None
        want = FeatureCache(root, enabled=enabled)
        if self.cache is None or self.cache.root != want.root or self.cache.enabled != enabled:
            self.cache = want
        return self.cache.get_or_compute((volume_hash(data.volume), data.protocol.id, *parts), compute)
