"""CLIP image/text model loaded from a local weights file (never random weights).

Shared API (used by the VBench ``background_consistency`` metric, ``clip_score`` and the TRACE
text conditioning)::

    model = load_clip_model("clip-vit-b32", path=None, device="cpu")
    img = model.encode_image(x)              # x float (N, 3, S, S), already CLIP-normalised -> (N, D)
    txt = model.encode_text(["a chest CT"])  # (N, D), unnormalised (project and L2-normalise yourself)
    hid = model.encode_text_hidden(texts)    # (N, L, W) final hidden states after ln_final

``S`` is ``model.image_size`` (224 for ViT-B/32). ``CLIP_MEAN`` / ``CLIP_STD`` are OpenAI's
normalisation constants (``openai/CLIP`` ``clip/clip.py: _transform``);
:meth:`ClipModel.preprocess_frames` applies the OpenAI/VBench preprocessing to uint8 frames:
bicubic resize of the shorter side to ``S``, centre crop ``S`` x ``S``, ``/255``, mean/std.

Formats read (detected from the file's content, not its name):

* OpenAI ``.pt`` as published (a TorchScript archive: run only when its sha256 is the pinned published
  one, :func:`trace_bench.weights_load.load_torchscript`) or as a plain state dict
  (``openai/CLIP`` ``clip/model.py: build_model`` layout; QuickGELU);
* open_clip checkpoints (``.pt``/``.bin``/``.safetensors``, optionally ``{"state_dict": ...}``
  with ``module.`` prefixes); the architecture comes from an ``open_clip_config.json`` beside the
  file (Hugging Face hub layout), from ``arch=`` (an open_clip model name such as ``ViT-B-32``),
  or is inferred from the tensor shapes (OpenAI layout; then ``quick_gelu`` defaults to True, the
  OpenAI definition: pass ``quick_gelu=False`` for LAION-trained open_clip weights);
* Hugging Face ``transformers`` ``CLIPModel`` weights (``model.safetensors`` or
  ``pytorch_model.bin``, ``text_model.*`` / ``vision_model.*`` keys), converted to the OpenAI
  layout; ``hidden_act`` read from ``config.json`` beside the file when present.

A folder may be given instead of a file; it is searched for the files named above. Every load is
strict (all tensors present, shapes equal); a file that is not a CLIP checkpoint raises
:class:`~trace_bench.errors.WeightsError` naming the file.

Text is tokenised with open_clip's copy of OpenAI's BPE (``bpe_simple_vocab_16e6.txt.gz``, shipped
in the wheel), lower-cased, truncated to the context length (77) with the end token kept.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ..errors import WeightsError
from ..optional import require
from ..weights import resolve_weights
from ..weights_load import is_torchscript, load_state_dict, load_torchscript, torchscript_convert_command

CLIP_MEAN: tuple[float, float, float] = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD: tuple[float, float, float] = (0.26862954, 0.26130258, 0.27577711)

_STATE_FILES = (
    "open_clip_model.safetensors", "open_clip_pytorch_model.bin", "model.safetensors", "pytorch_model.bin",
)


class ClipModel(nn.Module):
    """A loaded CLIP with the three encoders trace-bench uses. Inference only (``eval``)."""

    name = "clip"

    def __init__(self, model: nn.Module, *, weights_name: str, path: Path, sha256: str, fmt: str,
                 quick_gelu: bool | None, device: str = "cpu") -> None:
        super().__init__()
        open_clip = require("open_clip", "the CLIP network")

        self.model = model.eval().to(device)
        self.weights_name = weights_name
        self.path = Path(path)
        self.weights_sha256 = sha256
        self.format = fmt
        self.quick_gelu = quick_gelu
        self.device = torch.device(device)
        text = self._text_tower()
        self.context_length = int(text["positional_embedding"].shape[0])
        self.width = int(text["ln_final"].weight.shape[0])
        self.tokenizer = open_clip.tokenizer.SimpleTokenizer(context_length=self.context_length)
        size = getattr(model.visual, "image_size", 224)
        self.image_size = int(size[0] if isinstance(size, (tuple, list)) else size)
        with torch.no_grad():
            self.dim = int(self.encode_text([""]).shape[-1])
        for p in self.parameters():
            p.requires_grad_(False)

    # ---------------------------------------------------------------- identity
    @property
    def id(self) -> str:
        return f"clip:{self.weights_name}@{self.weights_sha256[:16]}"

    # ---------------------------------------------------------------- internals
    def _text_tower(self) -> dict[str, Any]:
        """The modules of the text transformer (CLIP keeps them on the model, CustomTextCLIP on ``.text``)."""
        m = self.model
        owner = m if hasattr(m, "token_embedding") else getattr(m, "text", None)
        if owner is None or not hasattr(owner, "token_embedding") or not hasattr(owner, "ln_final"):
            raise WeightsError(f"{self.path}: CLIP text tower without a token embedding is not supported")
        return {
            "owner": owner, "token_embedding": owner.token_embedding,
            "positional_embedding": owner.positional_embedding, "transformer": owner.transformer,
            "ln_final": owner.ln_final, "attn_mask": getattr(owner, "attn_mask", None),
        }

    def tokenize(self, texts: Sequence[str]) -> torch.Tensor:
        """(N, context_length) int64 token ids on the model's device."""
        if isinstance(texts, str):
            raise TypeError("Expected a list of strings, got a single str (wrap it in a list)")
        return self.tokenizer(list(texts)).to(self.device)

    # ---------------------------------------------------------------- encoders
    @torch.no_grad()
    def encode_image(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 3, S, S) CLIP-normalised float -> (N, D) image features (projected, not normalised)."""
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"Expected images (N, 3, {self.image_size}, {self.image_size}), got {tuple(x.shape)}")
        if x.shape[-2:] != (self.image_size, self.image_size):
            raise ValueError(f"Expected images of {self.image_size}x{self.image_size}, got {tuple(x.shape[-2:])}; "
                             "use ClipModel.preprocess_frames")
        return self.model.encode_image(x.to(self.device, torch.float32)).float()

    @torch.no_grad()
    def encode_text(self, texts: Sequence[str]) -> torch.Tensor:
        """list of N strings -> (N, D) text features (end-token pooled, projected, not normalised)."""
        return self.model.encode_text(self.tokenize(texts)).float()

    @torch.no_grad()
    def encode_text_hidden(self, texts: Sequence[str]) -> torch.Tensor:
        """list of N strings -> (N, L, W): the text transformer's final hidden states after ``ln_final``.

        Same computation as open_clip ``CLIP.encode_text`` up to (and including) ``ln_final``, before
        pooling and projection (the ``last_hidden_state`` of HF ``CLIPTextModel``). L = 77, W = 512
        for ViT-B/32. Positions after the end token are computed but carry no meaning (causal mask).
        """
        t = self._text_tower()
        tokens = self.tokenize(texts)
        x = t["token_embedding"](tokens).float() + t["positional_embedding"].float()
        x = t["transformer"](x, attn_mask=t["attn_mask"])
        return t["ln_final"](x).float()

    # ---------------------------------------------------------------- preprocessing
    def preprocess_frames(self, frames: np.ndarray | torch.Tensor) -> torch.Tensor:
        """uint8 frames (T, H, W) or (T, H, W, 3) -> (T, 3, S, S) CLIP-normalised float32.

        OpenAI's transform (and VBench's ``clip_transform``): bicubic resize of the shorter side to
        S (torch ``antialias=True``), centre crop, ``/255``, ``(x - CLIP_MEAN) / CLIP_STD``. Grey
        frames are replicated to RGB.
        """
        return clip_preprocess(frames, self.image_size, device=self.device)


def clip_preprocess(frames: np.ndarray | torch.Tensor, size: int = 224, device: str | torch.device = "cpu") -> torch.Tensor:
    """Functional form of :meth:`ClipModel.preprocess_frames`."""
    t = torch.as_tensor(np.asarray(frames)) if not isinstance(frames, torch.Tensor) else frames
    if t.ndim == 3:
        t = t[:, None].expand(-1, 3, -1, -1)
    elif t.ndim == 4 and t.shape[-1] == 3:
        t = t.permute(0, 3, 1, 2)
    else:
        raise ValueError(f"Expected frames (T, H, W) or (T, H, W, 3), got {tuple(t.shape)}")
    t = t.to(device, torch.float32)
    h, w = t.shape[-2:]
    scale = size / min(h, w)
    nh, nw = max(size, round(h * scale)), max(size, round(w * scale))
    if (nh, nw) != (h, w):
        t = F.interpolate(t, size=(nh, nw), mode="bicubic", align_corners=False, antialias=True)
    top, left = int(round((nh - size) / 2.0)), int(round((nw - size) / 2.0))
    t = t[..., top:top + size, left:left + size] / 255.0
    mean = torch.tensor(CLIP_MEAN, device=t.device).view(1, 3, 1, 1)
    std = torch.tensor(CLIP_STD, device=t.device).view(1, 3, 1, 1)
    return (t - mean) / std


# -------------------------------------------------------------------- loading
def _read_tensors(path: Path, name: str) -> tuple[dict[str, torch.Tensor], str]:
    """Read a checkpoint file into a flat ``{key: tensor}`` dict; returns (state, format). A TorchScript
    archive (OpenAI's published format) is run only when it is entry ``name``'s pinned published file."""
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(path)), "safetensors"
        except Exception as e:  # noqa: BLE001 - any decoding failure is a bad file
            raise WeightsError(f"{path}: not a readable safetensors file ({e})") from None
    if is_torchscript(path):  # OpenAI publishes TorchScript archives
        jit = load_torchscript(path, name, instead=f"pass a state dict instead (open_clip / Hugging Face files, or "
                                                   f"this file's tensors: `{torchscript_convert_command(path)}`)")
        return {k: v for k, v in jit.state_dict().items()}, "openai-jit"
    obj = load_state_dict(path)
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict):
        raise WeightsError(f"{path}: expected a state dict, got {type(obj).__name__}")
    sd = {(k[7:] if k.startswith("module.") else k): v for k, v in obj.items()}
    return sd, ("openai-state-dict" if "input_resolution" in sd else "state-dict")


_HF_LAYER = {
    "self_attn.out_proj": "attn.out_proj", "layer_norm1": "ln_1", "layer_norm2": "ln_2",
    "mlp.fc1": "mlp.c_fc", "mlp.fc2": "mlp.c_proj",
}


def hf_to_openai_state_dict(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Convert HF ``transformers`` ``CLIPModel`` keys to the OpenAI/open_clip layout.

    q/k/v projections are concatenated into ``in_proj`` (OpenAI's ``nn.MultiheadAttention``), the
    bias-free projection ``Linear`` weights are transposed into ``text_projection`` / ``visual.proj``.
    """
    out: dict[str, torch.Tensor] = {}
    qkv: dict[str, dict[str, torch.Tensor]] = {}
    for k, v in sd.items():
        if k.endswith("position_ids"):
            continue
        for tower, prefix in (("text_model.", ""), ("vision_model.", "visual.")):
            if not k.startswith(tower):
                continue
            rest = k[len(tower):]
            if rest.startswith("encoder.layers."):
                i, sub = rest[len("encoder.layers."):].split(".", 1)
                base = f"{prefix}transformer.resblocks.{i}."
                for src in ("q_proj", "k_proj", "v_proj"):
                    if sub.startswith(f"self_attn.{src}."):
                        qkv.setdefault(base + "attn.in_proj_" + sub.rsplit(".", 1)[1], {})[src] = v
                        break
                else:
                    for a, b in _HF_LAYER.items():
                        if sub.startswith(a + "."):
                            out[base + b + sub[len(a):]] = v
                            break
                    else:
                        raise WeightsError(f"unexpected HF CLIP key {k!r}")
            else:
                m = {
                    "embeddings.token_embedding.weight": "token_embedding.weight",
                    "embeddings.position_embedding.weight": "positional_embedding",
                    "final_layer_norm.weight": "ln_final.weight", "final_layer_norm.bias": "ln_final.bias",
                    "embeddings.class_embedding": "visual.class_embedding",
                    "embeddings.patch_embedding.weight": "visual.conv1.weight",
                    "pre_layrnorm.weight": "visual.ln_pre.weight", "pre_layrnorm.bias": "visual.ln_pre.bias",
                    "post_layernorm.weight": "visual.ln_post.weight", "post_layernorm.bias": "visual.ln_post.bias",
                }
                key = m.get(rest) if tower == "text_model." or rest != "embeddings.position_embedding.weight" \
                    else "visual.positional_embedding"
                if key is None:
                    raise WeightsError(f"unexpected HF CLIP key {k!r}")
                out[key] = v
            break
        else:
            if k == "text_projection.weight":
                out["text_projection"] = v.t().contiguous()
            elif k == "visual_projection.weight":
                out["visual.proj"] = v.t().contiguous()
            elif k == "logit_scale":
                out["logit_scale"] = v
            else:
                raise WeightsError(f"unexpected HF CLIP key {k!r}")
    for key, parts in qkv.items():
        out[key] = torch.cat([parts["q_proj"], parts["k_proj"], parts["v_proj"]], dim=0)
    return out


def _find_in_dir(folder: Path) -> Path:
    for fn in _STATE_FILES:
        if (folder / fn).is_file():
            return folder / fn
    pts = sorted(folder.glob("*.pt")) + sorted(folder.glob("*.pth"))
    if len(pts) == 1:
        return pts[0]
    raise WeightsError(f"{folder}: no CLIP weights found (expected one of {', '.join(_STATE_FILES)} or a single .pt)")


def _build(sd: dict[str, torch.Tensor], path: Path, fmt: str, arch: str | None, quick_gelu: bool | None,
           cfg_json: dict | None) -> tuple[nn.Module, bool | None]:
    open_clip = require("open_clip", "the CLIP network")
    oc_model = require("open_clip.model", "the CLIP network")
    CLIP, CustomTextCLIP = oc_model.CLIP, oc_model.CustomTextCLIP  # noqa: N806 - open_clip's class names

    model_cfg = None
    if arch is not None:
        model_cfg = open_clip.get_model_config(arch)
        if model_cfg is None:
            raise WeightsError(f"{path}: unknown open_clip architecture {arch!r}")
    elif cfg_json is not None and "model_cfg" in cfg_json:
        model_cfg = dict(cfg_json["model_cfg"])
    # drop OpenAI's metadata scalars and traced non-persistent buffers (TorchScript archives keep attn_mask)
    sd = {k: v for k, v in sd.items() if k.rsplit(".", 1)[-1] != "attn_mask"}
    strict_sd = {k: v for k, v in sd.items() if k not in ("input_resolution", "context_length", "vocab_size")}
    try:
        if model_cfg is not None:
            model_cfg = dict(model_cfg)
            if quick_gelu is not None:
                model_cfg["quick_gelu"] = quick_gelu
            custom = any(k.startswith("text.") for k in strict_sd)
            model = (CustomTextCLIP if custom else CLIP)(**model_cfg)
            qg = bool(model_cfg.get("quick_gelu", False))
        else:
            if "visual.conv1.weight" not in sd or "token_embedding.weight" not in sd:
                raise WeightsError(
                    f"{path}: not a CLIP checkpoint in OpenAI / open_clip / HF layout "
                    f"(no visual.conv1.weight or token_embedding.weight; first keys: {list(sd)[:5]}); "
                    "for other open_clip architectures pass arch='<open_clip model name>'")
            qg = True if quick_gelu is None else quick_gelu
            model = oc_model.build_model_from_openai_state_dict(dict(sd), quick_gelu=qg, cast_dtype=torch.float32)
        model.float()
        # strict fp32 load (build_model_from_openai_state_dict loads into fp16 params first)
        missing, unexpected = model.load_state_dict(strict_sd, strict=False)
        transient = {n for n, _ in model.named_buffers()} - set(model.state_dict())  # e.g. attn_mask
        unexpected = [k for k in unexpected if k not in transient and k != "logit_bias"]
        if missing or unexpected:
            raise WeightsError(f"{path}: CLIP weights do not match the architecture: missing {missing[:5]}, "
                               f"unexpected {unexpected[:5]}")
    except WeightsError:
        raise
    except (RuntimeError, KeyError, ValueError, AssertionError, TypeError) as e:
        raise WeightsError(f"{path}: CLIP weights could not be loaded ({fmt}): {e}") from None
    return model, qg


def load_clip_model(name: str = "clip-vit-b32", path: str | Path | None = None, device: str = "cpu", *,
                    arch: str | None = None, quick_gelu: bool | None = None) -> ClipModel:
    """Load CLIP from a verified local file (weights registry entry ``name``, or ``path``).

    ``path`` may be a file or a folder (HF / open_clip hub layout). A file in the cache must be the
    published one (sha256 checked); an explicit file of another provenance (open_clip, HF, fine-tuned)
    is accepted and its own sha256 recorded in :attr:`ClipModel.id`. Missing weights raise :class:`~trace_bench.errors.WeightsError` with the fix command.
    """
    resolved = _resolve(name, path)
    p = resolved.path
    sd, fmt = _read_tensors(p, name)
    cfg_json = None
    for cfg_name in ("open_clip_config.json", "config.json"):
        if (p.parent / cfg_name).is_file():
            try:
                cfg_json = json.loads((p.parent / cfg_name).read_text(encoding="utf-8"))
            except (OSError, json.JSONDecodeError):
                cfg_json = None
            break
    if any(k.startswith("text_model.") for k in sd):
        if quick_gelu is None and cfg_json is not None:
            act = (cfg_json.get("text_config") or {}).get("hidden_act", "quick_gelu")
            quick_gelu = act == "quick_gelu"
        sd, fmt = hf_to_openai_state_dict(sd), "hf-transformers"
        cfg_json = None
    elif fmt.startswith("openai"):
        quick_gelu = True if quick_gelu is None else quick_gelu
    model, qg = _build(sd, p, fmt, arch, quick_gelu, cfg_json)
    return ClipModel(model, weights_name=name, path=p, sha256=resolved.sha256, fmt=fmt, quick_gelu=qg, device=device)


def _resolve(name: str, path: str | Path | None):
    """A folder given as ``path`` is searched for the checkpoint file first (HF / open_clip layouts)."""
    if path is not None and Path(path).expanduser().is_dir():
        path = _find_in_dir(Path(path).expanduser())
    return resolve_weights(name, path)


def load_backbone(path: str, device: str, name: str, ctx: Any) -> ClipModel:
    """:class:`~trace_bench.metrics.backbone.Backbone` loader (``clip-vit-b32``)."""
    return load_clip_model(name, path=path, device=device)
