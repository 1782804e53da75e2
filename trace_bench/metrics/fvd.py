"""FVD of CT volumes: 16-slice clips as videos, I3D (Kinetics-400) features, Frechet distance.

Protocol (StyleGAN-V, universome/stylegan-v ``src/metrics/frechet_video_distance.py``, which the
TRACE authors say they followed; unpaired, frames in order):

* frames: axial slices through ``ctx.protocol`` (default 256 px, HU [-1000, 1000] -> uint8),
  inferior to superior, grey replicated to RGB;
* clips: 16 consecutive slices (option ``fvd.frames``). A volume of T slices gives
  ``floor((T - o) / 16)`` non-overlapping clips starting at offset ``o``; ``o`` is drawn uniformly
  from ``0 .. (T mod 16)`` by ``numpy.random.default_rng([seed, volume content hash])`` so the tail
  left out varies between volumes but is reproducible (``ctx.seed``) and independent of case order.
  ``fvd.clips = k`` keeps k evenly spaced clips. Volumes shorter than 16 slices are refused (as
  StyleGAN-V's ``discard_short_videos``);
* features: I3D 400-d pre-softmax (:mod:`trace_bench.extractors.i3d`; option ``fvd.weights`` =
  ``i3d-torchscript`` (default) or ``i3d-tats``);
* statistics: float64 sums; covariance with ``n`` (``ddof=0``) as StyleGAN-V's
  ``FeatureStats.get_mean_cov``; Frechet distance by :func:`~trace_bench.metrics.frechet.frechet_distance`.

Per-case state memory: n_clips x 400 x 8 bytes (3 clips: 9.4 KiB); merged: 400^2 x 8 = 1.25 MiB.
"""

from __future__ import annotations

from typing import Iterable

import numpy as np

from . import frechet
from .backbone import Backbone
from .base import CaseData, Metric, Option, Output, RunContext, State, register_metric
from .feature_spaces import clip_starts, make_clips  # noqa: F401  (re-exported: trace_bench.metrics.fvd.clip_starts)
from .feature_spaces import i3d_clip_features, load_i3d_backbone

FVD_DDOF = 0


def fvd_from_features(gen: np.ndarray, ref: np.ndarray) -> float:
    """Functional twin: FVD of two I3D feature matrices (n, 400), StyleGAN-V covariance (ddof 0)."""
    return frechet.frechet_distance_from_states(frechet.features_state(gen), frechet.features_state(ref), FVD_DDOF)


@register_metric
class FVD(Metric):
    name = "fvd"
    kind = "distribution"
    outputs = {"fvd": Output(False, "FVD (I3D)", digits=1, rank=2, tolerance={"abs": 5.0, "rel": 0.05})}
    table = "table2"
    weights = ("i3d-torchscript",)
    options = (
        Option("weights", "i3d-torchscript", "I3D weights: StyleGAN-V's TorchScript (i3d-torchscript) or the "
               "VideoGPT/TATS state dict (i3d-tats)", choices=("i3d-torchscript", "i3d-tats"), in_protocol_id=False),
        Option("frames", 16, "slices per clip", type=int, minimum=2, maximum=256, in_protocol_id=False),
        Option("clips", "all", "keep at most k clips per volume (seeded choice) instead of all", type=int, minimum=1,
               special=("all",), in_protocol_id=False, fast=2),
        Option("feature_cache", True, "cache I3D features on disk by content hash", type=bool, in_protocol_id=False),
    )
    description = "Frechet Video Distance of 16-slice clips, I3D Kinetics-400 features (StyleGAN-V protocol)"

    def __init__(self, options=None) -> None:
        super().__init__(options)
        self.net = Backbone(load_i3d_backbone)

    def required_weights(self, ctx: RunContext | None = None) -> tuple[str, ...]:
        return (self.opts["weights"],)

    def _opts(self) -> tuple[int, int | None]:
        k = self.opts["clips"]
        return int(self.opts["frames"]), (None if k == "all" else int(k))

    def base_protocol_id(self, ctx: RunContext) -> str:
        n, k = self._opts()
        return (f"{ctx.protocol.id}|{self.opts['weights']}|clips{n}:nonoverlap:offset-seed{ctx.seed}"
                f":max{'all' if k is None else k}|ddof=0")

    def setup(self, ctx: RunContext) -> None:
        self.net.get(self.opts["weights"], ctx)

    def case_state(self, data: CaseData, ctx: RunContext) -> State:
        n, k = self._opts()
        feats = i3d_clip_features(self.net, data, ctx, self.opts["weights"], n, k, self.opts["feature_cache"])
        return frechet.features_state(feats)

    def merge(self, states: Iterable[State]) -> State:
        return frechet.merge_states(states)

    def sample_info(self, state: State) -> dict[str, int]:
        """Feature vectors (clips) and their dimension."""
        return frechet.sample_info(state)

    def compute(self, generated: State, reference: State, ctx: RunContext) -> dict[str, float]:
        return {"fvd": frechet.frechet_distance_from_states(generated, reference, ddof=FVD_DDOF)}

    def export_stats(self, state: State) -> dict[str, np.ndarray]:
        return frechet.export_stats(state, ddof=FVD_DDOF)
