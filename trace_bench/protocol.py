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

    @property
    def meaning(self) -> str:
        """:attr:`id` in words (the protocol-id legend written with every run)."""
        lo, hi = self.window
        return (f"CT frames, protocol version {self.version}: every axial slice (inferior to superior) resized to "
                f"{self.size} x {self.size} px (bilinear, anti-aliased when shrinking); HU clipped to [{lo:g}, {hi:g}] "
                "and mapped linearly to grey levels 0-255, rounded half up")

    def frames(self, volume: Volume, device: str | torch.device | None = None) -> np.ndarray:
        """uint8 frames (T, size, size), T = number of axial slices, inferior first. ``device``: where
        the resize + window + rounding run (default CPU); the frames are the same on every device."""
        return hu_to_frames(volume.array, self.size, self.window, device=device)


DEFAULT_PROTOCOL = FrameProtocol()


def _on_cpu(device: str | torch.device | None) -> bool:
    if device is None:
        return True
    import torch

    return torch.device(device).type == "cpu"


def _resize_t(t: torch.Tensor, size: int) -> torch.Tensor:
    import torch.nn.functional as F

    if t.shape[1:] == (size, size):
        return t
    shrinking = t.shape[1] > size or t.shape[2] > size
    return F.interpolate(t[:, None], size=(size, size), mode="bilinear", align_corners=False, antialias=shrinking)[:, 0]


def resize_slices(array_zyx: np.ndarray, size: int, device: str | torch.device | None = None) -> np.ndarray:
    """Bilinear in-plane resize of every slice to (size, size), float32 (computed on ``device``)."""
    import torch

    t = torch.from_numpy(np.ascontiguousarray(array_zyx, dtype=np.float32))
    if _on_cpu(device):
        return _resize_t(t, size).numpy()
    return _resize_t(t.to(device), size).cpu().numpy()


def window_to_uint8(hu: np.ndarray, window: tuple[float, float]) -> np.ndarray:
    lo, hi = float(window[0]), float(window[1])
    v = (np.clip(hu, lo, hi) - lo) * np.float32(255.0 / (hi - lo))
    return np.floor(v + np.float32(0.5)).astype(np.uint8)


def window_to_uint8_torch(hu: torch.Tensor, window: tuple[float, float]) -> torch.Tensor:
    """:func:`window_to_uint8` on a float32 tensor (any device), the same float32 operations in the
    same order: clip to the float32 window, subtract, scale by float32 ``255 / (hi - lo)``, add 0.5, floor."""
    import torch

    lo, hi = float(np.float32(window[0])), float(np.float32(window[1]))
    scale = float(np.float32(255.0 / (float(window[1]) - float(window[0]))))
    v = (torch.clamp(hu, lo, hi) - lo) * scale
    return torch.floor(v + 0.5).to(torch.uint8)


def hu_to_frames_torch(array_zyx: np.ndarray, size: int = 256, window: tuple[float, float] = (-1000.0, 1000.0),
                       device: str | torch.device = "cpu") -> np.ndarray:
    """:func:`hu_to_frames` with the resize, window and rounding in torch on ``device`` (uint8 on the host)."""
    import torch

    t = torch.from_numpy(np.ascontiguousarray(array_zyx, dtype=np.float32)).to(device)
    return window_to_uint8_torch(_resize_t(t, size), window).cpu().numpy()


def hu_to_frames(array_zyx: np.ndarray, size: int = 256, window: tuple[float, float] = (-1000.0, 1000.0),
                 device: str | torch.device | None = None) -> np.ndarray:
    """ct-frames-v1 frames; ``device`` None / CPU = the numpy path, else :func:`hu_to_frames_torch` there."""
    if _on_cpu(device):
        return window_to_uint8(resize_slices(array_zyx, size), window)
    return hu_to_frames_torch(array_zyx, size, window, device)


def to_rgb(frames: np.ndarray) -> np.ndarray:
    """(T, H, W) grey -> (T, H, W, 3) by replication (no copy of meaning, only of values)."""
    if frames.ndim == 4 and frames.shape[-1] == 3:
        return frames
    return np.repeat(frames[..., None], 3, axis=-1)


# ----------------------------------------------------------------------------- slice sampling
#: named slice-sampling presets (option value -> spec)
#: (There is no VLM3D or MAISI preset here: their evaluators slice a resampled 512^3 cube on three
#: planes with 2D CNN features, reproduced exactly by the metrics ``fid_vlm3d`` (every slice) and
#: ``fid_maisi`` (MAISI's central 40%, its own rounding) in trace_bench.metrics.fid_presets.)
SAMPLING_PRESETS = {
    # a CPU-practical protocol for quick looks (trace-bench run --fast): 16 slices from the central 40%
    "fast": "central:0.4:16",
}


@dataclass(frozen=True)
class SliceSampling:
    """Which axial slices of a volume a slice-feature metric uses. Named and part of the protocol id:

    * ``all``: every slice;
    * ``K`` (an integer): K evenly spaced slices (``round(linspace(0, n-1, K))``);
    * ``every:K``: every K-th slice from the first;
    * ``central:F``: the central fraction F of the slices (``floor(n (1-F) / 2)`` on each side);
    * ``central:F:K``: K evenly spaced slices of the central fraction F;
    * preset: ``fast`` = ``central:0.4:16``.
    """

    spec: str = "all"

    @classmethod
    def parse(cls, value: object) -> "SliceSampling":
        from .errors import ConfigError

        raw = str(value).strip()
        text = SAMPLING_PRESETS.get(raw, raw)
        s = cls(text)
        try:
            s._parts()
        except (ValueError, IndexError):
            raise ConfigError(f"slice sampling {value!r}: expected all, an integer K >= 1, every:K, central:F or "
                              f"central:F:K (0 < F <= 1), or a preset ({', '.join(SAMPLING_PRESETS)})") from None
        return s

    def _parts(self) -> tuple[str, float, int | None]:
        t = self.spec
        if t == "all":
            return "all", 1.0, None
        if t.isdigit():
            k = int(t)
            if k < 1:
                raise ValueError(t)
            return "count", 1.0, k
        kind, _, rest = t.partition(":")
        if kind == "every":
            k = int(rest)
            if k < 1:
                raise ValueError(t)
            return "every", 1.0, k
        if kind == "central":
            f_txt, _, k_txt = rest.partition(":")
            f = float(f_txt)
            k = int(k_txt) if k_txt else None
            if not 0.0 < f <= 1.0 or (k is not None and k < 1):
                raise ValueError(t)
            return "central", f, k
        raise ValueError(t)

    @property
    def id(self) -> str:
        """``all`` / ``K`` (as the earlier protocol ids spelled them), ``every3``, ``central0.4``, ``central0.4x16``."""
        kind, f, k = self._parts()
        if kind == "all":
            return "all"
        if kind == "count":
            return str(k)
        if kind == "every":
            return f"every{k}"
        return f"central{f:g}" + (f"x{k}" if k is not None else "")

    @property
    def meaning(self) -> str:
        """:attr:`id` in words (the protocol-id legend written with every run)."""
        kind, f, k = self._parts()
        if kind == "all":
            return "every axial slice"
        if kind == "count":
            return f"{k} evenly spaced axial slices (indices round(linspace(0, n - 1, {k})))"
        if kind == "every":
            return f"one axial slice in {k}, from the first (indices 0, {k}, {2 * k}, ...)"
        kept = f"{k} evenly spaced slices of " if k is not None else ""
        return f"{kept}the central {f:g} of the axial slices (floor(n (1 - {f:g}) / 2) dropped at each end)"

    @property
    def legacy_count(self) -> int | None | str:
        """The earlier ``k`` (None = all) when the spec is one of the earlier two forms, else the id."""
        kind, _, k = self._parts()
        return None if kind == "all" else (k if kind == "count" else self.id)

    def indices(self, n: int) -> np.ndarray:
        kind, f, k = self._parts()
        if n <= 0:
            return np.zeros(0, dtype=int)
        if kind == "all":
            return np.arange(n)
        if kind == "every":
            return np.arange(0, n, k)
        lo, hi = 0, n
        if kind == "central":
            cut = int(np.floor(n * (1.0 - f) / 2.0))
            lo, hi = cut, max(cut + 1, n - cut)
        m = hi - lo
        if k is None or k >= m:
            return np.arange(lo, hi)
        return lo + np.unique(np.round(np.linspace(0, m - 1, int(k))).astype(int))
