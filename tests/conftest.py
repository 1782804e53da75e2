"""Shared fixtures: small crops of the shipped real chest CT (kept small so the suite stays fast)."""

from __future__ import annotations

import contextlib
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "trace_bench" / "data" / "demo"
DEMO_CT = DEMO / "reference" / "lung1.nii.gz"


@pytest.fixture(scope="session")
def demo_ct_path() -> Path:
    return DEMO_CT


@pytest.fixture(scope="session")
def demo_volume():
    from trace_bench.io import read_volume

    return read_volume(DEMO_CT)


@pytest.fixture(scope="session")
def small_volume(demo_volume):
    """A 12 x 64 x 48 crop of the real chest CT (through the lungs), canonical LPS, float32 HU."""
    from trace_bench.volume import Volume

    v = demo_volume
    arr = v.array[18:30, 96:160, 100:148].copy()
    aff = v.affine.copy()
    # origin moves to the crop's first voxel: index (x=100, y=96, z=18)
    aff[:3, 3] = v.affine[:3, :3] @ np.array([100, 96, 18]) + v.affine[:3, 3]
    return Volume(arr, v.spacing, aff, {"path": "crop", "convention": "hu"})


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny networks gain nothing from a second intra-op thread; on a shared 2-core machine two threads
    per process oversubscribe the cores (measured here: tens of times slower). Restored afterwards."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


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
