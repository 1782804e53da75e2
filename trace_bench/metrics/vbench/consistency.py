"""VBench ``subject_consistency`` (DINO ViT-B/16) and ``background_consistency`` (CLIP ViT-B/32).

Both follow Vchitect/VBench ``vbench/subject_consistency.py`` / ``vbench/background_consistency.py``
(same code in PyPI vbench 0.1.5). With L2-normalised per-frame features ``f_0..f_{T-1}``::

    s_i = (max(0, cos(f_{i-1}, f_i)) + max(0, cos(f_0, f_i))) / 2,   i = 1..T-1
    video score   = sum_i s_i / (T - 1)
    overall score = sum over all videos of sum_i s_i / number of pairs      (VBench's "sim / cnt")

Preprocessing (``vbench/utils.py``, the video path ``read_frame=False``), on uint8 RGB frames:

``load_video`` returns ``torch.Tensor(frames)``, i.e. float32 values 0..255 (not uint8), so the
resize below interpolates floats and nothing is rounded back to integers.

* DINO: ``Resize(224, antialias=False)`` of the shorter side (bilinear), no crop, ``/255``,
  ImageNet mean/std (``dino_transform``);
  the DINO network interpolates its position embedding for non-square inputs as DINO does.
* CLIP: ``Resize(224, bicubic, antialias=False)``, ``CenterCrop(224)``, ``/255``, CLIP mean/std
  (``clip_transform``). VBench loads CLIP with ``clip.load``, which is fp16 on CUDA and fp32 on
  CPU; trace-bench runs fp32 everywhere (differences of order 1e-3 against VBench's fp16 GPU runs).

The per-case value written by the runner is the video score; the streaming form of the metric
classes (``update`` / ``compute_result``) also gives VBench's pair-weighted overall score.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

import numpy as np

from ..backbone import Backbone
from ..base import UNIT_INTERVAL, CaseData, Metric, Output, Part, RunContext, register_metric
from ._common import frames_uint8_tchw, run_batched, transforms

if TYPE_CHECKING:  # torch is imported where features are computed
    import torch

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
VBENCH_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)  # vbench/utils.py clip_transform
VBENCH_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


# ----------------------------------------------------------------------------- functional twin
def _as_features(features: np.ndarray | torch.Tensor) -> np.ndarray:
    import torch

    if isinstance(features, torch.Tensor):
        features = features.detach().to("cpu", torch.float64).numpy()
    f = np.asarray(features, dtype=np.float64)
    if f.ndim != 2:
        raise ValueError(f"Expected features of shape (T, D), got {tuple(f.shape)}")
    if f.shape[0] < 2:
        raise ValueError(f"Expected at least 2 frames of features, got {f.shape[0]}")
    if not np.isfinite(f).all():
        raise ValueError("Expected finite features, got NaN or inf")
    return f


def consistency_pairs(features: np.ndarray | torch.Tensor) -> np.ndarray:
    """Per-pair scores ``s_i`` (length T-1) of VBench's first/previous-frame formula (float64;
    L2 normalisation with torch's ``F.normalize`` epsilon 1e-12, so an all-zero feature gives 0)."""
    f = _as_features(features)
    f = f / np.maximum(np.linalg.norm(f, axis=1, keepdims=True), 1e-12)
    sim_prev = np.maximum(np.einsum("ij,ij->i", f[:-1], f[1:]), 0.0)
    sim_first = np.maximum(f[1:] @ f[0], 0.0)
    return (sim_prev + sim_first) / 2


def subject_consistency(features: np.ndarray | torch.Tensor) -> float:
    """VBench video score on per-frame features (T, D): ``mean_i (max(0, cos(f_{i-1}, f_i)) +
    max(0, cos(f_0, f_i))) / 2``. Shared by subject (DINO) and background (CLIP) consistency."""
    return float(consistency_pairs(features).mean())


background_consistency = subject_consistency


# ----------------------------------------------------------------------------- preprocessing
def dino_preprocess(frames: np.ndarray, size: int = 224) -> torch.Tensor:
    """VBench ``dino_transform(224)`` on uint8 frames -> float (T, 3, h, w)."""
    TF, _ = transforms()
    x = TF.resize(frames_uint8_tchw(frames).float(), size, antialias=False)
    return TF.normalize(x.float().div(255.0), IMAGENET_MEAN, IMAGENET_STD)


def clip_preprocess(frames: np.ndarray, size: int = 224) -> torch.Tensor:
    """VBench ``clip_transform(224)`` on uint8 frames -> float (T, 3, 224, 224)."""
    TF, InterpolationMode = transforms()
    x = TF.resize(frames_uint8_tchw(frames).float(), size, interpolation=InterpolationMode.BICUBIC, antialias=False)
    x = TF.center_crop(x, size)
    return TF.normalize(x.float().div(255.0), VBENCH_CLIP_MEAN, VBENCH_CLIP_STD)


# ----------------------------------------------------------------------------- plug-ins
class _Consistency(Metric):
    """Per case: the video score (mean cosine of each frame with the first and the previous one).
    Streaming: ``update(data)`` (or ``update_features(features)``) per video; ``compute_result()`` =
    VBench's overall score (sum of pair scores over all videos / number of pairs, not the mean of
    video scores); ``video_scores`` keeps the per-video values."""

    weight_name: ClassVar[str]
    #: the module of trace_bench.networks
    network: ClassVar[str]
    preprocess_id: ClassVar[str]
    #: the two parts after the frame protocol, in words
    network_meaning: ClassVar[str]
    preprocess_meaning: ClassVar[str]

    def __init__(self, options=None) -> None:
        super().__init__(options)
        self.net = Backbone(self.network)

    def setup(self, ctx: RunContext) -> None:
        transforms()
        self.net.get(self.weight_name, ctx)

    def protocol_parts(self, ctx: RunContext) -> list[Part]:
        return [(ctx.protocol.id, ctx.protocol.meaning), (self.weight_name, self.network_meaning),
                (self.preprocess_id, self.preprocess_meaning + "; per volume the mean over slices i >= 1 of "
                 "(max(0, cos(f_i-1, f_i)) + max(0, cos(f_0, f_i))) / 2 (VBench)")]

    def features(self, frames: np.ndarray, ctx: RunContext) -> torch.Tensor:
        model = self.net.get(self.weight_name, ctx)
        x = self.preprocess(frames)
        return run_batched(lambda b: self.encode(model, b.to(ctx.device)).float().cpu(), x, ctx.batch_size)

    def case_values(self, data: CaseData, ctx: RunContext) -> dict[str, float]:
        return {self.name: subject_consistency(self.features(data.frames, ctx))}

    def preprocess(self, frames: np.ndarray) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def encode(self, model, x: torch.Tensor) -> torch.Tensor:
        return model(x)

    # streaming form with VBench's pair-weighted overall score
    def reset(self) -> None:
        super().reset()
        self.sim_sum, self.pair_count = 0.0, 0

    @property
    def video_scores(self) -> list[float]:
        return [v[self.name] for v in self._values]

    def update_features(self, features: np.ndarray | torch.Tensor) -> dict[str, float]:
        s = consistency_pairs(features)
        self.sim_sum += float(s.sum())
        self.pair_count += int(s.size)
        v = {self.name: float(s.mean())}
        self._values.append(v)
        return v

    def update(self, data: CaseData, ctx: RunContext | None = None) -> dict[str, float]:
        return self.update_features(self.features(data.frames, ctx or RunContext()))

    def merge_state(self, other: "Metric") -> "Metric":
        super().merge_state(other)
        self.sim_sum += other.sim_sum  # type: ignore[attr-defined]
        self.pair_count += other.pair_count  # type: ignore[attr-defined]
        return self

    def compute_result(self, ctx: RunContext | None = None, reference=None) -> dict[str, float]:
        if self.pair_count == 0:
            raise ValueError(f"{type(self).__name__}.compute_result() called before any update()")
        return {self.name: self.sim_sum / self.pair_count}


@register_metric
class SubjectConsistency(_Consistency):
    name = "subject_consistency"
    #: mean of (max(0, cos) + max(0, cos)) / 2: in [0, 1]
    outputs = {"subject_consistency": Output(True, "Subject Consistency", unit="fraction", rank=0, tolerance={"abs": 0.01},
                                             closest_to_reference=True, value_range=UNIT_INTERVAL)}
    weights = ("dino-vitb16",)
    weight_name = "dino-vitb16"
    network = "dino"
    preprocess_id = "vbench-dino-resize224-bilinear-noaa"
    network_meaning = "DINO ViT-B/16 CLS-token features per frame (VBench subject consistency; weights dino-vitb16)"
    preprocess_meaning = ("VBench's DINO transform: frames as float 0-255 in RGB, shorter side resized to 224 px "
                          "(bilinear, no anti-aliasing), no crop, / 255, ImageNet mean / std")
    description = "VBench subject consistency: DINO ViT-B/16 CLS features, first/previous-frame cosine"

    def preprocess(self, frames: np.ndarray) -> torch.Tensor:
        return dino_preprocess(frames)


@register_metric
class BackgroundConsistency(_Consistency):
    name = "background_consistency"
    outputs = {"background_consistency": Output(True, "Background Consistency", unit="fraction", rank=1,
                                                tolerance={"abs": 0.01}, closest_to_reference=True,
                                                value_range=UNIT_INTERVAL)}
    weights = ("clip-vit-b32",)
    weight_name = "clip-vit-b32"
    network = "clip"
    preprocess_id = "vbench-clip-resize224-bicubic-noaa-crop224"
    network_meaning = "CLIP ViT-B/32 image features per frame (VBench background consistency; weights clip-vit-b32)"
    preprocess_meaning = ("VBench's CLIP transform: frames as float 0-255 in RGB, shorter side resized to 224 px "
                          "(bicubic, no anti-aliasing), centre crop 224 x 224, / 255, CLIP mean / std")
    description = "VBench background consistency: CLIP ViT-B/32 image features, first/previous-frame cosine"

    def preprocess(self, frames: np.ndarray) -> torch.Tensor:
        return clip_preprocess(frames)

    def encode(self, model, x: torch.Tensor) -> torch.Tensor:
        return model.encode_image(x)
