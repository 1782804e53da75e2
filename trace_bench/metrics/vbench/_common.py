"""Helpers shared by the VBench plug-ins: frames -> tensors, batching. (Their networks and loaders are in
:mod:`trace_bench.networks`.)"""

from __future__ import annotations

from types import ModuleType
from typing import TYPE_CHECKING, Any, Callable, Iterator

import numpy as np

from ...optional import require
from ...protocol import to_rgb

if TYPE_CHECKING:  # torch is imported where tensors are made
    import torch

#: what torchvision is for in the VBench dimensions (named in the message when it is missing)
TRANSFORMS_PURPOSE = "VBench's frame transforms (torchvision resize / crop / normalize)"


def transforms() -> tuple[ModuleType, Any]:
    """``torchvision.transforms.functional`` and ``InterpolationMode``, or
    :class:`~trace_bench.optional.MissingDependency` (the ``vbench`` extra). Imported on first use, not at module
    level: torchvision costs ~1 s at start-up and is not part of the core install. Metrics call it in ``setup``
    too, so a missing torchvision is met in the preflight."""
    tf = require("torchvision.transforms.functional", TRANSFORMS_PURPOSE)
    return tf, require("torchvision.transforms", TRANSFORMS_PURPOSE).InterpolationMode


def frames_uint8_tchw(frames: np.ndarray) -> torch.Tensor:
    """uint8 frames (T, H, W) or (T, H, W, 3) -> uint8 tensor (T, 3, H, W), grey replicated to RGB."""
    import torch

    f = np.asarray(frames)
    if f.dtype != np.uint8 or f.ndim not in (3, 4) or (f.ndim == 4 and f.shape[-1] != 3):
        raise ValueError(f"Expected uint8 frames of shape (T, H, W) or (T, H, W, 3), got {f.dtype} {f.shape}")
    return torch.from_numpy(np.ascontiguousarray(to_rgb(f))).permute(0, 3, 1, 2).contiguous()


def batches(n: int, size: int) -> Iterator[slice]:
    size = max(1, int(size))
    for i in range(0, n, size):
        yield slice(i, min(n, i + size))


def run_batched(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, batch_size: int) -> torch.Tensor:
    """Apply ``fn`` to ``x`` in chunks along dim 0 and concatenate (inference mode)."""
    import torch

    with torch.inference_mode():
        return torch.cat([fn(x[s]) for s in batches(x.shape[0], batch_size)], dim=0)
