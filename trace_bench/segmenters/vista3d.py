"""``vista3d``: NVIDIA VISTA3D (MONAI bundle ``vista3d``) in "segment everything" mode.

Follows the bundle's ``configs/inference.json`` (MONAI model zoo, ``models/vista3d``) and its
``scripts/inferer.py`` / ``scripts/evaluator.py``:

* network ``monai.networks.nets.vista3d132`` loaded from ``<bundle>/models/model.pt`` (strict);
* preprocessing (MONAI transforms, in this order): ``Spacingd`` to ``resample_spacing`` 1.5 mm
  (bilinear), ``CropForegroundd`` (HU > 0, margin 10, ``allow_smaller=True``),
  ``ScaleIntensityRanged`` a_min -963.8247715525971, a_max 1053.678477684517 -> [0, 1] clipped,
  ``Orientationd`` RAS, float32;
* ``sliding_window_inference`` with ``roi_size`` = ``patch_size`` 128^3, overlap 0.3, Gaussian
  blending, ``sw_batch_size`` 1, ``class_vector`` = the bundle's ``everything_labels`` (117 ids),
  automatic mixed precision on CUDA (the bundle's evaluator uses ``amp: true``);
* post-processing as ``monai.apps.vista3d.transforms.VistaPostTransformd`` (argmax over the
  class logits, background where all logits <= 0, mapped to the prompted ids), then ``Invertd``
  (nearest) back to the input grid; NaN -> 255 -> background.

``resample_spacing``, ``patch_size`` and the intensity window are read from the bundle's own
``configs/inference.json`` when it states them, so a bundle folder fully describes its pipeline.
GPU when present (``cuda``), CPU otherwise. The bundle is resolved by
:func:`trace_bench.weights.resolve_weights` (``--weights vista3d=DIR``, ``$TRACE_BENCH_WEIGHTS_VISTA3D``,
or the cache dir); a missing bundle or ``models/model.pt`` raises :class:`~trace_bench.errors.WeightsError`.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import WeightsError
from ..volume import Volume
from ..weights_load import load_state_dict
from .base import LabelMap, Segmenter, register_segmenter
from .labels import VISTA3D_EVERYTHING_LABELS, VISTA3D_LABELS, collapse_vista3d

RESAMPLE_SPACING = (1.5, 1.5, 1.5)
PATCH_SIZE = (128, 128, 128)
A_MIN, A_MAX = -963.8247715525971, 1053.678477684517
OVERLAP = 0.3


def read_bundle_config(bundle: Path) -> dict[str, Any]:
    """Preprocessing values stated in ``<bundle>/configs/inference.json`` (defaults where absent)."""
    cfg: dict[str, Any] = {"resample_spacing": RESAMPLE_SPACING, "patch_size": PATCH_SIZE,
                           "a_min": A_MIN, "a_max": A_MAX, "overlap": OVERLAP}
    path = bundle / "configs" / "inference.json"
    if not path.is_file():
        return cfg
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise WeightsError(f"weights 'vista3d': cannot parse {path} ({e})") from None
    for key in ("resample_spacing", "patch_size"):
        v = raw.get(key)
        if isinstance(v, list) and len(v) == 3 and all(isinstance(x, (int, float)) for x in v):
            cfg[key] = tuple(v)
    for t in raw.get("preprocessing_transforms", []) or []:
        if isinstance(t, dict) and str(t.get("_target_", "")).endswith("ScaleIntensityRanged"):
            if isinstance(t.get("a_min"), (int, float)) and isinstance(t.get("a_max"), (int, float)):
                cfg["a_min"], cfg["a_max"] = float(t["a_min"]), float(t["a_max"])
    inf = raw.get("inferer")
    if isinstance(inf, dict) and isinstance(inf.get("overlap"), (int, float)):
        cfg["overlap"] = float(inf["overlap"])
    return cfg


def load_vista3d_network(model_pt: Path):
    """``vista3d132`` with the checkpoint's weights (encoder width read from the checkpoint)."""
    from monai.networks.nets import vista3d132

    ckpt = load_state_dict(model_pt, "vista3d")
    state = ckpt.get("model", ckpt) if isinstance(ckpt, dict) else None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or "image_encoder.encoder.conv_init.weight" not in {k.removeprefix("module.") for k in state}:
        raise WeightsError(f"weights 'vista3d': {model_pt} is not a VISTA3D state dict "
                           "(no 'image_encoder.encoder.conv_init.weight')")
    state = {k.removeprefix("module."): v for k, v in state.items()}
    width = int(state["image_encoder.encoder.conv_init.weight"].shape[0])
    net = vista3d132(encoder_embed_dim=width, in_channels=1)
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise WeightsError(f"weights 'vista3d': {model_pt} does not fit monai.networks.nets.vista3d132 "
                           f"({str(e).splitlines()[0][:300]})") from None
    return net.eval(), width


@register_segmenter
class Vista3DSegmenter(Segmenter):
    name = "vista3d"
    weights = ("vista3d",)
    description = "NVIDIA VISTA3D (MONAI bundle vista3d, 'segment everything', 1.5 mm, sliding window 128^3)"

    def __init__(self, device: str | None = None, weights: dict[str, str] | None = None,
                 sw_batch_size: int = 1, amp: bool = True, **options: Any) -> None:
        super().__init__(device, weights, **options)
        self.sw_batch_size = int(sw_batch_size)
        self.amp = amp
        self._net = None
        self._id: str | None = None
        self.config: dict[str, Any] = {}

    # ------------------------------------------------------------------ loading
    def load(self) -> None:
        """Resolve the bundle folder, read its config and load the network (once)."""
        if self._net is not None:
            return
        import torch

        from ..weights import file_sha256, resolve_weights

        res = resolve_weights("vista3d", self.weights_paths.get("vista3d"))
        bundle = Path(res.path)
        model_pt = bundle / "models" / "model.pt"
        if not model_pt.is_file():
            raise WeightsError(
                f"weights 'vista3d': bundle folder {bundle} has no models/model.pt (the 872 MB checkpoint). "
                "Fix: `python -m monai.bundle download vista3d --bundle_dir DIR` where a network exists, then "
                "`trace-bench weights import vista3d DIR/vista3d` or --weights vista3d=DIR/vista3d")
        self.config = read_bundle_config(bundle)
        net, width = load_vista3d_network(model_pt)
        dev = self.device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.device = dev
        self._net = net.to(dev)
        self._id = f"vista3d@{file_sha256(model_pt)[:12]}" + ("" if width == 48 else f"-w{width}")
        self.bundle = bundle

    @property
    def id(self) -> str:
        if self._id is None:
            self.load()
        return self._id  # type: ignore[return-value]

    # ---------------------------------------------------------------- inference
    def _pipeline(self):
        from monai.transforms import (CastToTyped, Compose, CropForegroundd, EnsureTyped, Orientationd,
                                      ScaleIntensityRanged, Spacingd)

        c = self.config
        with warnings.catch_warnings():  # Orientationd's notice about its `labels` default (RAS either way)
            warnings.simplefilter("ignore", FutureWarning)
            orient = Orientationd(keys="image", axcodes="RAS")
        return Compose([
            EnsureTyped(keys="image", device=self.device, track_meta=True),
            Spacingd(keys="image", pixdim=list(c["resample_spacing"]), mode="bilinear"),
            CropForegroundd(keys="image", source_key="image", margin=10, allow_smaller=True),
            ScaleIntensityRanged(keys="image", a_min=c["a_min"], a_max=c["a_max"], b_min=0.0, b_max=1.0, clip=True),
            orient,
            CastToTyped(keys="image", dtype=np.float32),
        ])

    def predict_ids(self, volume: Volume) -> np.ndarray:
        """VISTA3D label ids (uint8, (z, y, x), 0 = background) on ``volume``'s grid."""
        import torch
        from monai.apps.vista3d.transforms import VistaPostTransformd
        from monai.data import MetaTensor
        from monai.inferers import sliding_window_inference
        from monai.transforms import Invertd

        self.load()
        pre = self._pipeline()
        xyz = np.ascontiguousarray(volume.array.transpose(2, 1, 0))
        img = MetaTensor(torch.from_numpy(xyz)[None], affine=torch.as_tensor(volume.affine, dtype=torch.float64))
        data = pre({"image": img})
        dev = torch.device(self.device)
        inputs = data["image"][None].to(dev)
        prompt = torch.as_tensor(VISTA3D_EVERYTHING_LABELS, device=dev)[:, None]
        use_amp = self.amp and dev.type == "cuda"
        with torch.no_grad(), torch.autocast(device_type=dev.type, enabled=use_amp):
            logits = sliding_window_inference(
                inputs, roi_size=list(self.config["patch_size"]), sw_batch_size=self.sw_batch_size,
                predictor=self._net, mode="gaussian", overlap=self.config["overlap"], sw_device=dev, device=dev,
                transpose=True, point_coords=None, point_labels=None, class_vector=prompt, prompt_class=prompt,
                prev_mask=None, labels=None, label_set=None)
        data["pred"] = logits[0].float()
        data["label_prompt"] = prompt
        data = VistaPostTransformd(keys="pred")(data)
        data = Invertd(keys="pred", transform=pre, orig_keys="image", nearest_interp=True, to_tensor=True)(data)
        pred = torch.nan_to_num(torch.as_tensor(data["pred"]), nan=255.0)[0].cpu().numpy()
        ids = np.rint(pred).astype(np.int64)
        if ids.shape != xyz.shape:
            raise RuntimeError(f"VISTA3D inverse transform returned shape {ids.shape}, expected {xyz.shape}")
        ids[(ids < 0) | (ids > 132)] = 0
        return np.ascontiguousarray(ids.transpose(2, 1, 0)).astype(np.uint8)

    def segment(self, volume: Volume, classes: str = "3") -> LabelMap:
        c = self._check(volume, classes)
        ids = self.predict_ids(volume)
        return LabelMap(collapse_vista3d(ids, c), volume.spacing, volume.affine, c, self.id,
                        names=dict(VISTA3D_LABELS) if c == "full" else {},
                        meta={"source": volume.meta.get("path"), "bundle": str(self.bundle),
                              "preprocessing": {k: list(v) if isinstance(v, tuple) else v for k, v in self.config.items()}})
