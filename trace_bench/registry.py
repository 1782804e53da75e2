"""Plain-dict registries with validating ``register`` and helpful ``get``.

Every pluggable family (metrics, segmenters, adapters, weights, intensity
conventions) is a :class:`Registry`. The CLI's choices and error hints are generated from them.
"""

from __future__ import annotations

import re
from typing import Generic, Iterator, TypeVar

from .errors import ConfigError, did_you_mean

T = TypeVar("T")
_NAME = re.compile(r"^[a-z0-9][a-z0-9_.\-]*$")


class Registry(Generic[T]):
    """A named table ``name -> entry``; names are lower-case ``[a-z0-9_.-]``."""

    def __init__(self, kind: str):
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, name: str, entry: T, *, overwrite: bool = False) -> T:
        if not isinstance(name, str) or not _NAME.match(name):
            raise ConfigError(f"invalid {self.kind} name {name!r}: expected lower-case letters, digits, '_', '-', '.'")
        if name in self._items and not overwrite:
            raise ConfigError(f"{self.kind} {name!r} is already registered")
        self._items[name] = entry
        return entry

    def get(self, name: str) -> T:
        try:
            return self._items[name]
        except KeyError:
            hint = did_you_mean(name, self._items, n=3, quote=True)
            raise ConfigError(
                f"unknown {self.kind} {name!r}. Expected one of: {', '.join(sorted(self._items))}.{hint}"
            ) from None

    def unregister(self, name: str) -> None:
        """Remove an entry if present (plug-ins registered for one test or session)."""
        self._items.pop(name, None)

    def names(self) -> list[str]:
        return sorted(self._items)

    def items(self) -> list[tuple[str, T]]:
        return sorted(self._items.items())

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._items)
