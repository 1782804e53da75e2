"""Helpers shared by the VBench plug-ins: frames -> tensors, checkpoint loading, batching.

Each plug-in's ``protocol_id`` names the frame protocol, the weights entry and the preprocessing;
it does not depend on whether weights are loaded. The weights' sha256 is recorded by the runner
(cache key and provenance) from :func:`trace_bench.weights.resolve_weights`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch

from ...errors import WeightsError
from ...protocol import to_rgb
from ...weights_load import load_state_dict


def frames_uint8_tchw(frames: np.ndarray) -> torch.Tensor:
    """uint8 frames (T, H, W) or (T, H, W, 3) -> uint8 tensor (T, 3, H, W), grey replicated to RGB."""
    f = np.asarray(frames)
    if f.dtype != np.uint8 or f.ndim not in (3, 4) or (f.ndim == 4 and f.shape[-1] != 3):
        raise ValueError(f"Expected uint8 frames of shape (T, H, W) or (T, H, W, 3), got {f.dtype} {f.shape}")
    return torch.from_numpy(np.ascontiguousarray(to_rgb(f))).permute(0, 3, 1, 2).contiguous()


def load_checkpoint(path: str | Path, name: str) -> Any:
    """Checkpoint on CPU through :func:`trace_bench.weights_load.load_state_dict`: tensors only, no
    pickle fallback (a file that needs full unpickling is refused with the conversion command)."""
    return load_state_dict(path, name)


def strict_load(module: torch.nn.Module, state: dict[str, torch.Tensor], name: str, path: str | Path) -> None:
    """``load_state_dict(strict=True)`` with an error that names the file and the mismatching keys."""
    own = module.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    bad = [f"{k}: file {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
           for k in own if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
    if missing or unexpected or bad:
        raise WeightsError(
            f"weights {name!r}: {path} does not match the architecture: "
            f"{len(missing)} missing keys {missing[:5]}, {len(unexpected)} unexpected keys {unexpected[:5]}, "
            f"shape mismatches {bad[:5]}")
    module.load_state_dict(state, strict=True)


def batches(n: int, size: int) -> Iterator[slice]:
    size = max(1, int(size))
    for i in range(0, n, size):
        yield slice(i, min(n, i + size))


def run_batched(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, batch_size: int) -> torch.Tensor:
    """Apply ``fn`` to ``x`` in chunks along dim 0 and concatenate (inference mode)."""
    with torch.inference_mode():
        return torch.cat([fn(x[s]) for s in batches(x.shape[0], batch_size)], dim=0)
