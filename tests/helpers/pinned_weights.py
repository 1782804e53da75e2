"""Run a test's small TorchScript network as the registry's pinned published file would be run."""

from __future__ import annotations

import contextlib
from pathlib import Path


@contextlib.contextmanager
def pinned_weights(name: str, path: Path):
    """Within the block, registry entry ``name`` pins ``path`` as its published file (its sha256 and size):
    how a test's small TorchScript network is run as the pinned published file would be. Restored after."""
    from dataclasses import replace

    from trace_bench.weights import WEIGHTS, sha256_file

    old = WEIGHTS.get(name)
    WEIGHTS.register(name, replace(old, sha256=sha256_file(path), size=Path(path).stat().st_size, sha256_prefix=None),
                     overwrite=True)
    try:
        yield
    finally:
        WEIGHTS.register(name, old, overwrite=True)
