"""Frozen configuration of a TRACE model: one source of defaults for the Python API, the CLI and the
TOML files in ``trace_model/configs/``. A checkpoint folder holds ``config.json`` (this dataclass)
beside ``model.safetensors``, so a checkpoint is self-describing and loads without pickles.
"""

from __future__ import annotations

import dataclasses
import json
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from trace_bench.errors import ConfigError

FLOW_KINDS = ("raft-small", "raft-large", "farneback", "none")
TEXT_KINDS = ("clip-vit-b32", "none")
GRANULARITIES = ("2", "3", "full")
INFERENCE_FLOWS = ("zero", "previous", "refine")


@dataclass(frozen=True)
class ModelConfig:
    """2-D denoiser (MONAI ``DiffusionModelUNet``) on frame pairs: (2C + 2) -> 2C channels (eq. 6), C = 1."""

    image_size: int = 256
    channels: tuple[int, ...] = (64, 128, 256, 256)
    attention_levels: tuple[bool, ...] = (False, False, True, True)
    num_res_blocks: int = 2
    num_head_channels: int = 32
    norm_num_groups: int = 32
    pos_dim: int = 64  # d of eq. 7 (paper 4.1: "frame embedding dimension of 64")
    pos_lambda: float = 1000.0  # lambda of eq. 7 (see conditioning.relative_position_embedding)
    flash_attention: bool = False  # MONAI's use_flash_attention (torch scaled_dot_product_attention); same weights


@dataclass(frozen=True)
class ConditioningConfig:
    """The four conditioning modalities of section 3.2 plus the guidance-map parameters of 3.3."""

    mask_granularity: str = "3"  # "2": body/background, "3": background/lungs/other (paper's best), "full": every label
    lung_labels: tuple[int, ...] = (1,)  # labels mapped to "lungs" at granularity 3 (threshold segmenter: 1)
    max_label: int = 2  # largest label id, the divisor at granularity "full"
    flow: str = "raft-small"  # optical flow f_{i->j} between the training pair: raft-small|raft-large|farneback|none
    flow_dropout: float = 0.2  # training: probability of a null flow (the first pair at inference has none)
    inference_flow: str = "previous"  # zero|previous|refine, see sampler.py
    text: str = "clip-vit-b32"  # frozen CLIP text encoder + trainable adapter, or "none"
    text_dim: int = 512  # width W of the text encoder's hidden states
    text_dropout: float = 0.1  # training: probability of an empty prompt
    guidance_gamma: float = 2.0  # gamma of G(n) = M + (1 - M) * F(H(x^gamma))
    guidance_sigma: float = 1.5  # H: Gaussian sigma (pixels at image_size) smoothing the background only
    guidance_norm: str = "minmax"  # F: per-slice min-max to [0, 1] ("minmax") or identity ("none")
    guidance_train_prob: float = 0.5  # training: probability that a mask channel is replaced by its guidance map


@dataclass(frozen=True)
class DiffusionConfig:
    """Noise schedule (eq. 1) shared by training and the DDIM sampler (eq. 2)."""

    num_train_timesteps: int = 1000
    schedule: str = "linear_beta"
    beta_start: float = 1e-4
    beta_end: float = 2e-2
    clip_sample: bool = True
    prediction_type: str = "epsilon"  # eq. 5 predicts the noise; "v_prediction" (v = sqrt(abar) eps - sqrt(1-abar) x0)
    # is our option for tiny models: eps-prediction divides by sqrt(abar_T) ~ 6e-3 at the first DDIM step, which
    # a small network cannot afford with few steps (the demo checkpoint uses v_prediction)


@dataclass(frozen=True)
class DataConfig:
    """Frame-pair dataset (eq. 3)."""

    volumes: str = ""  # folder of CT volumes (any trace_bench.io format, HU)
    labels: str = ""  # folder of label maps with the same case ids ("" -> computed with ``segmenter``)
    segmenter: str = ""  # trace_bench segmenter computing label maps when ``labels`` is "" (e.g. "threshold")
    prompts: str = ""  # optional CSV/JSON case_id -> "{age} years old {sex}: {impression}"
    skips: tuple[int, ...] = (1, 2, 4)  # k of eq. 3
    hu_window: tuple[float, float] = (-1000.0, 1000.0)  # HU -> [-1, 1]
    cache_dir: str = ""  # flow cache ("" -> $TRACE_BENCH_CACHE/trace_flow or ~/.cache/trace-bench/trace_flow)


@dataclass(frozen=True)
class TrainConfig:
    """Section 4.1: AdamW, cosine schedule with linear warmup to a minimum LR."""

    lr: float = 1e-5
    min_lr: float = 1e-6
    warmup_steps: int = 35_000
    steps: int = 1_000_000
    batch_size: int = 28
    weight_decay: float = 1e-2
    grad_clip: float = 1.0
    bf16: bool = True  # autocast on CUDA only
    grad_checkpointing: bool = True  # on CUDA only
    seed: int = 0
    log_every: int = 50
    save_every: int = 5000
    out: str = "runs/trace"


@dataclass(frozen=True)
class TraceConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    conditioning: ConditioningConfig = field(default_factory=ConditioningConfig)
    diffusion: DiffusionConfig = field(default_factory=DiffusionConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def __post_init__(self) -> None:
        c, m = self.conditioning, self.model
        _choice("conditioning.flow", c.flow, FLOW_KINDS)
        _choice("conditioning.text", c.text, TEXT_KINDS)
        _choice("conditioning.mask_granularity", c.mask_granularity, GRANULARITIES)
        _choice("conditioning.inference_flow", c.inference_flow, INFERENCE_FLOWS)
        _choice("conditioning.guidance_norm", c.guidance_norm, ("minmax", "none"))
        _choice("diffusion.prediction_type", self.diffusion.prediction_type, ("epsilon", "v_prediction"))
        if len(m.channels) != len(m.attention_levels):
            raise ConfigError(f"model.channels {m.channels} and model.attention_levels {m.attention_levels} differ in length")
        if any(ch % m.norm_num_groups for ch in m.channels):
            raise ConfigError(f"every model.channels entry must be divisible by norm_num_groups={m.norm_num_groups}")
        down = 2 ** (len(m.channels) - 1)
        if m.image_size % down:
            raise ConfigError(f"model.image_size {m.image_size} must be divisible by {down} (2^(levels-1))")
        if m.pos_dim % 2:
            raise ConfigError(f"model.pos_dim must be even, got {m.pos_dim}")
        if not self.data.skips or any(k < 1 for k in self.data.skips):
            raise ConfigError(f"data.skips must be positive integers, got {self.data.skips}")
        if c.guidance_gamma <= 0:
            raise ConfigError(f"conditioning.guidance_gamma must be > 0, got {c.guidance_gamma}")

    # ------------------------------------------------------------------ (de)serialisation
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict[str, Any], source: str = "config") -> "TraceConfig":
        sections = {f.name: f.type for f in dataclasses.fields(cls)}
        unknown = set(d) - set(sections)
        if unknown:
            raise ConfigError(f"{source}: unknown section(s) {sorted(unknown)}; expected {sorted(sections)}")
        kw = {}
        for f in dataclasses.fields(cls):
            sub_cls = _SECTION_TYPES[f.name]
            kw[f.name] = _build(sub_cls, d.get(f.name, {}), f"{source} [{f.name}]")
        return cls(**kw)

    def replace(self, **sections: dict[str, Any]) -> "TraceConfig":
        """Copy with some fields of some sections changed: ``cfg.replace(train={"steps": 10})``."""
        d = self.to_dict()
        for sec, vals in sections.items():
            if sec not in d:
                raise ConfigError(f"unknown config section {sec!r}")
            d[sec].update(vals)
        return TraceConfig.from_dict(d)


_SECTION_TYPES = {"model": ModelConfig, "conditioning": ConditioningConfig, "diffusion": DiffusionConfig,
                  "data": DataConfig, "train": TrainConfig}


def _choice(name: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ConfigError(f"{name} = {value!r} is not one of {', '.join(allowed)}")


def _build(cls: type, values: dict[str, Any], where: str) -> Any:
    if not isinstance(values, dict):
        raise ConfigError(f"{where}: expected a table, got {type(values).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = set(values) - set(fields)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {sorted(unknown)}; expected some of {sorted(fields)}")
    kw = {}
    for k, v in values.items():
        default = getattr(cls(), k)
        if isinstance(default, tuple):
            v = tuple(v)
        elif isinstance(default, bool):
            if not isinstance(v, bool):
                raise ConfigError(f"{where}: {k} must be true/false, got {v!r}")
        elif isinstance(default, float):
            v = float(v)
        elif isinstance(default, int) and not isinstance(v, int):
            raise ConfigError(f"{where}: {k} must be an integer, got {v!r}")
        elif isinstance(default, str):
            v = str(v)
        kw[k] = v
    return cls(**kw)


def load_config(path: str | Path) -> TraceConfig:
    """Read a TOML (``trace_model/configs/*.toml``) or JSON (``config.json`` of a checkpoint) config."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file {p} does not exist")
    try:
        if p.suffix.lower() == ".json":
            d = json.loads(p.read_text(encoding="utf-8"))
        else:
            d = tomllib.loads(p.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, json.JSONDecodeError) as e:
        raise ConfigError(f"{p}: cannot parse ({e})") from None
    return TraceConfig.from_dict(d, source=str(p))


CONFIG_DIR = Path(__file__).parent / "configs"
