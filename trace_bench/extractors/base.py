"""Feature-extractor registry shared by the distribution metrics.

An extractor turns frames (uint8, see :mod:`trace_bench.protocol`) or clips into float features
with a fixed, documented preprocessing. Every extractor exposes an ``id`` that names the network,
its weights (sha256 prefix) and its preprocessing, so a feature cache key and a result row say
exactly how a number was made.

``EXTRACTORS`` maps a name to a *loader*: ``loader(path=None, device="cpu") -> extractor``.
Loaders resolve weights through :func:`trace_bench.weights.resolve_weights` and raise
:class:`~trace_bench.errors.WeightsError` when the file is missing: never a random init.
"""

from __future__ import annotations

from typing import Any, Callable, Protocol

from ..registry import Registry


class FeatureExtractor(Protocol):
    """What every extractor object provides."""

    #: registry name of the extractor (``inception-fid``, ``i3d-400``, ``clip``)
    name: str
    #: feature dimension
    dim: int
    #: sha256 of the weights file actually loaded
    weights_sha256: str

    @property
    def id(self) -> str: ...  # noqa: E704


Loader = Callable[..., Any]

EXTRACTORS: Registry[Loader] = Registry("feature extractor")


def register_extractor(name: str) -> Callable[[Loader], Loader]:
    """Decorator: ``@register_extractor("inception-fid")`` on a loader function."""

    def deco(fn: Loader) -> Loader:
        EXTRACTORS.register(name, fn)
        return fn

    return deco


def get_extractor(name: str, path: str | None = None, device: str = "cpu", **kwargs: Any) -> Any:
    """Load the extractor registered as ``name`` (weights from ``path`` or the weights registry)."""
    return EXTRACTORS.get(name)(path=path, device=device, **kwargs)
