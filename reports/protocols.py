"""Plain-language legend of protocol ids.

A protocol id says how the numbers of a metric were made; it goes into every cache key and result
row. Its parts are separated by ``|``: for the slice metrics the frame protocol first
(``ct-frames-v1:256px:hu[-1000,1000]:bilinear-aa:round-half-up``), then the backbone / preprocessing /
sampling / statistic of the metric, then ``opt:`` with the options changed from their defaults.

Every metric declares the meaning of each part it emits (``Metric.protocol_legend``), and a run records
it in ``metrics.json`` beside each column (:attr:`trace_bench.results.MetricInfo.legend`):
:func:`describe_protocol` renders that record. Runs written before legends were recorded fall back to
reading the parts against :data:`KNOWN_PARTS` and a few patterns; a part not known there is shown as
written ("not decoded"), never guessed.
"""

from __future__ import annotations

import re
from typing import Mapping

from trace_bench.results import MetricInfo

#: what a part of an old run (no recorded legend) is shown with when nothing below decodes it
NOT_RECORDED = "not decoded: no legend recorded with this run (written before protocol legends); shown as written"

#: backbones and preprocessing ids of runs without a recorded legend
KNOWN_PARTS = {
    "dino-vitb16": "DINO ViT-B/16 features (VBench subject consistency)",
    "clip-vit-b32": "CLIP ViT-B/32 image features",
    "vbench-dino-resize224-bilinear-noaa": "VBench preprocessing: frames resized to 224 px, bilinear, no anti-aliasing",
    "vbench-clip-resize224-bicubic-noaa-crop224": "VBench preprocessing: resized to 224 px, bicubic, no anti-aliasing, "
                                                 "centre crop 224 px",
    "musiq-spaq": "MUSIQ image-quality network trained on SPAQ",
    "vbench-longer512": "VBench preprocessing: longer side resized to 512 px",
    "amt-s": "AMT-S frame-interpolation network",
    "vbench-vfi-even-odd": "VBench protocol: odd frames interpolated from even ones and compared with the real ones",
    "viclip-l14": "ViCLIP ViT-L/14 video-text network",
    "vbench-8-middle-clip224": "VBench protocol: 8 frames from the middle of the volume, 224 px",
    "inception-fid": "Inception-v3 FID weights (pytorch-fid port of the TF graph)",
    "inception-fid-pth": "Inception-v3 FID weights (PyTorch checkpoint)",
    "inc299-nvbilinear-tf": "Inception preprocessing: resized to 299 px, bilinear, TF-style normalisation",
    "i3d-tats": "I3D video network (TATS / StyleGAN-V FVD weights)",
    "clip-vit-b32:openai-preprocess-224": "CLIP ViT-B/32 with OpenAI's preprocessing at 224 px",
    "ddof=1": "covariance with the unbiased (n - 1) denominator",
    "ddof=0": "covariance with the biased (n) denominator",
}


def describe_frame_protocol(part: str) -> str | None:
    """``ct-frames-v1:256px:hu[-1000,1000]:bilinear-aa:round-half-up`` in words (None if not one)."""
    m = re.fullmatch(r"ct-frames-v(\d+):(\d+)px:hu\[([-\d.e+]+),([-\d.e+]+)\]:([\w-]+):([\w-]+)", part)
    if not m:
        return None
    ver, size, lo, hi, interp, rounding = m.groups()
    how = {"bilinear-aa": "bilinear interpolation, anti-aliased when shrinking",
           "bilinear": "bilinear interpolation"}.get(interp, interp)
    rnd = {"round-half-up": "rounded half up"}.get(rounding, rounding)
    return (f"CT frames, protocol version {ver}: every axial slice (inferior to superior) resized to {size} x {size} "
            f"px ({how}); HU clipped to [{lo}, {hi}] and mapped linearly to grey levels 0-255, {rnd}")


def _sampling(spec: str) -> str | None:
    """A slice-sampling id of an old run (``all``, ``40``, ``every3``, ``central0.4``, ``central0.4x16``)."""
    if spec == "all":
        return "every axial slice"
    if spec.isdigit():
        return f"{spec} evenly spaced axial slices"
    m = re.fullmatch(r"every(\d+)", spec)
    if m:
        return f"one axial slice in {m.group(1)}, from the first"
    m = re.fullmatch(r"central([\d.]+)(?:x(\d+))?", spec)
    if m:
        kept = f"{m.group(2)} evenly spaced slices of " if m.group(2) else ""
        return f"{kept}the central {m.group(1)} of the axial slices"
    return None


def _describe_old_part(part: str) -> str:
    """A part of a run without a recorded legend (see the module doc)."""
    if part in KNOWN_PARTS:
        return KNOWN_PARTS[part]
    frame = describe_frame_protocol(part)
    if frame:
        return frame
    if part.startswith("opt:"):
        return "options changed from their defaults: " + ", ".join(part[4:].split(","))
    m = re.fullmatch(r"slices=(\w+(?:\.\w+)?)(?::linspace)?", part)
    if m and _sampling(m.group(1)):
        return str(_sampling(m.group(1)))
    m = re.fullmatch(r"2\.5d:iso([\d.]+)mm:pad(-?\d+):every(\d+)", part)
    if m:
        return (f"2.5D: volume resampled to {m.group(1)} mm isotropic, padded with {m.group(2)} HU, every "
                f"{m.group(3)}. slice of the axial, coronal and sagittal planes")
    m = re.fullmatch(r"clips(\d+):nonoverlap:offset-seed(\d+):max(\w+)", part)
    if m:
        k = "all" if m.group(3) == "all" else f"at most {m.group(3)}"
        return (f"clips of {m.group(1)} frames, non-overlapping, start offset seeded ({m.group(2)}), {k} clips per "
                "volume")
    m = re.fullmatch(r"seg-v(\d+):(.+):classes=(\w+):grid=(\w+)", part)
    if m:
        grid = "reference grid (resampled by extent)" if m.group(4) == "extent" else m.group(4) + " grid"
        return (f"segmentation protocol v{m.group(1)}: segmenter {m.group(2)}, {m.group(3)} label classes, label maps "
                f"compared on the {grid}")
    if ":" in part:  # backbone:preprocess pairs
        subs = part.split(":")
        if all(s in KNOWN_PARTS for s in subs):
            return "; ".join(KNOWN_PARTS[s] for s in subs)
    return NOT_RECORDED


def describe_protocol(protocol: str, infos: Mapping[str, MetricInfo] | None = None) -> list[tuple[str, str]]:
    """``[(part, meaning), ...]`` for every ``|``-separated part of a protocol id: the legend recorded with
    the run (``infos``: ``Results.metrics``) for that id, else for each part the meaning any recorded
    legend gives it, else (a run written before legends) the fallback of the module doc."""
    parts = [p for p in protocol.split("|") if p]
    recorded: dict[str, str] = {}
    for info in (infos or {}).values():
        if info.legend and info.protocol == protocol and [p for p, _ in info.legend] == parts:
            return [(p, m) for p, m in info.legend]
        for p, m in info.legend:
            recorded.setdefault(p, m)
    return [(p, recorded.get(p) or _describe_old_part(p)) for p in parts]
