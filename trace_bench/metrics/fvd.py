"""FVD of CT volumes: 16-slice clips as videos, I3D (Kinetics-400) features, Frechet distance.

Protocol (StyleGAN-V, universome/stylegan-v ``src/metrics/frechet_video_distance.py``, which the
TRACE authors say they followed; unpaired, frames in order):

* frames: axial slices through ``ctx.protocol`` (default 256 px, HU [-1000, 1000] -> uint8),
  inferior to superior, grey replicated to RGB;
* clips: 16 consecutive slices (``fvd_frames``). A volume of T slices gives
  ``floor((T - o) / 16)`` non-overlapping clips starting at offset ``o``; ``o`` is drawn uniformly
  from ``0 .. (T mod 16)`` by ``numpy.random.default_rng([seed, volume content hash])`` so the tail
  left out varies between volumes but is reproducible (``ctx.seed``) and independent of case order.
  ``fvd_clips = k`` keeps k evenly spaced clips. Volumes shorter than 16 slices are refused (as
  StyleGAN-V's ``discard_short_videos``);
* features: I3D 400-d pre-softmax (:mod:`trace_bench.extractors.i3d`; ``fvd_weights`` =
  ``i3d-torchscript`` (default) or ``i3d-tats``);
* statistics: float64 sums; covariance with ``n`` (``ddof=0``) as StyleGAN-V's
  ``FeatureStats.get_mean_cov``; Frechet distance by :func:`~trace_bench.metrics.frechet.frechet_distance`.

Per-case state memory: n_clips x 400 x 8 bytes (3 clips: 9.4 KiB); merged: 400^2 x 8 = 1.25 MiB.
"""

from __future__ import annotations

from typing import Iterable

import numpy as np

from ..cache import FeatureCache, volume_hash
from ..errors import InvalidVolumeError
from . import frechet
from .base import CaseData, MetricSpec, RunContext, State, register_metric

FVD_DDOF = 0


def clip_starts(n_frames: int, clip_len: int = 16, seed: int = 0, key: str = "", max_clips: int | None = None) -> np.ndarray:
    """Start indices of non-overlapping ``clip_len`` clips (see module doc for the seeded offset)."""
    if n_frames < clip_len:
        return np.zeros(0, dtype=int)
    rng = np.random.default_rng([int(seed), int(key[:8] or "0", 16)])
    offset = int(rng.integers(0, n_frames % clip_len + 1))
    starts = np.arange(offset, n_frames - clip_len + 1, clip_len)
    if max_clips is not None and len(starts) > max_clips:
        starts = starts[np.unique(np.round(np.linspace(0, len(starts) - 1, max_clips)).astype(int))]
    return starts


def make_clips(frames: np.ndarray, starts: np.ndarray, clip_len: int = 16) -> np.ndarray:
    """(T, H, W) -> (n_clips, clip_len, H, W)."""
    return np.stack([frames[s:s + clip_len] for s in starts]) if len(starts) else frames[:0][None][:0]


def fvd_from_features(gen: np.ndarray, ref: np.ndarray) -> float:
    """Functional twin: FVD of two I3D feature matrices (n, 400), StyleGAN-V covariance (ddof 0)."""
    return frechet.frechet_distance_from_states(frechet.features_state(gen), frechet.features_state(ref), FVD_DDOF)


@register_metric
class FVDSpec(MetricSpec):
    name = "fvd"
    kind = "distribution"
    columns = {"fvd": False}
    table = "table2"
    weights = ("i3d-torchscript",)
    description = "Frechet Video Distance of 16-slice clips, I3D Kinetics-400 features (StyleGAN-V protocol)"

    def __init__(self) -> None:
        self._extractor = None
        self._key = None
        self._cache: FeatureCache | None = None

    def _weights_name(self, ctx: RunContext | None) -> str:
        return (ctx.options.get("fvd_weights") if ctx is not None else None) or "i3d-torchscript"

    def required_weights(self, ctx: RunContext | None = None) -> tuple[str, ...]:
        return (self._weights_name(ctx),)

    def _opts(self, ctx: RunContext) -> tuple[int, int | None]:
        k = ctx.options.get("fvd_clips")
        return int(ctx.options.get("fvd_frames", 16)), (None if k in (None, "all") else int(k))

    def protocol_id(self, ctx: RunContext) -> str:
        n, k = self._opts(ctx)
        return (f"{ctx.protocol.id}|{self._weights_name(ctx)}|clips{n}:nonoverlap:offset-seed{ctx.seed}"
                f":max{'all' if k is None else k}|ddof=0")

    def setup(self, ctx: RunContext) -> None:
        from ..extractors.i3d import load_i3d

        name = self._weights_name(ctx)
        key = (name, ctx.weights.get(name), ctx.device)
        if self._key != key:
            self._extractor = load_i3d(ctx.weights.get(name), ctx.device, weights=name)
            self._key = key
        self._cache = FeatureCache(ctx.cache_dir if ctx.cache_dir else None,
                                   enabled=bool(ctx.options.get("feature_cache", True)))

    def case_state(self, data: CaseData, ctx: RunContext) -> State:
        if self._extractor is None or self._cache is None:
            self.setup(ctx)
        n, k = self._opts(ctx)
        vh = volume_hash(data.volume)
        n_frames = int(data.volume.array.shape[0])
        if n_frames < n:
            raise InvalidVolumeError(data.case_id, f"FVD needs at least {n} slices per volume, got {n_frames}")
        starts = clip_starts(n_frames, n, ctx.seed, vh, k)
        ext = self._extractor
        parts = (vh, data.protocol.id, ext.id, ext.weights_sha256, f"clips{n}:" + ",".join(map(str, starts)))
        feats = self._cache.get_or_compute(parts, lambda: ext.features(make_clips(data.frames, starts, n)))
        return frechet.features_state(feats)

    def merge(self, states: Iterable[State]) -> State:
        return frechet.merge_states(states)

    def compute(self, generated: State, reference: State, ctx: RunContext) -> dict[str, float]:
        return {"fvd": frechet.frechet_distance_from_states(generated, reference, ddof=FVD_DDOF)}

    def export_stats(self, state: State) -> dict[str, np.ndarray]:
        return frechet.export_stats(state, ddof=FVD_DDOF)
