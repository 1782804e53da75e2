"""Named, versioned preprocessing protocols. A protocol's ``id`` goes into every cache key and
every result row, so a number always says how its inputs were made.

``ct-frames-v1`` (:class:`FrameProtocol`), slices of a canonical volume -> uint8 video frames:

1. orientation LPS (see :mod:`trace_bench.volume`), axial slices, order z ascending = inferior -> superior;
2. each slice resized in-plane to ``size`` x ``size`` (default 256, the paper's resolution) with
   bilinear interpolation, ``align_corners=False`` and anti-aliasing when shrinking (torch);
3. HU clipped to the window ``[lo, hi]`` (default [-1000, 1000]) and mapped linearly to 0..255:
   ``v = (clip(hu, lo, hi) - lo) / (hi - lo) * 255``, rounded half up (``floor(v + 0.5)``);
4. grey frames ``(T, H, W)``; metrics that need RGB replicate the grey channel (:func:`to_rgb`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from .volume import Volume


@dataclass(frozen=True)
class FrameProtocol:
    size: int = 256
    window: tuple[float, float] = (-1000.0, 1000.0)
    version: int = 1

    @property
    def id(self) -> str:
        lo, hi = self.window
        return f"ct-frames-v{self.version}:{self.size}px:hu[{lo:g},{hi:g}]:bilinear-aa:round-half-up"

    def frames(self, volume: Volume) -> np.ndarray:
        """uint8 frames (T, size, size), T = number of axial slices, inferior first."""
        return hu_to_frames(volume.array, self.size, self.window)


DEFAULT_PROTOCOL = FrameProtocol()


def resize_slices(array_zyx: np.ndarray, size: int) -> np.ndarray:
    """Bilinear in-plane resize of every slice to (size, size), float32."""
    t = torch.from_numpy(np.ascontiguousarray(array_zyx, dtype=np.float32))
    if t.shape[1:] == (size, size):
        return t.numpy()
    shrinking = t.shape[1] > size or t.shape[2] > size
    out = F.interpolate(t[:, None], size=(size, size), mode="bilinear", align_corners=False, antialias=shrinking)
    return out[:, 0].numpy()


def window_to_uint8(hu: np.ndarray, window: tuple[float, float]) -> np.ndarray:
    lo, hi = float(window[0]), float(window[1])
    v = (np.clip(hu, lo, hi) - lo) * np.float32(255.0 / (hi - lo))
    return np.floor(v + np.float32(0.5)).astype(np.uint8)


def hu_to_frames(array_zyx: np.ndarray, size: int = 256, window: tuple[float, float] = (-1000.0, 1000.0)) -> np.ndarray:
    return window_to_uint8(resize_slices(array_zyx, size), window)


def to_rgb(frames: np.ndarray) -> np.ndarray:
    """(T, H, W) grey -> (T, H, W, 3) by replication (no copy of meaning, only of values)."""
    if frames.ndim == 4 and frames.shape[-1] == 3:
        return frames
    return np.repeat(frames[..., None], 3, axis=-1)
