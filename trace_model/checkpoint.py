"""Checkpoints without pickles: a folder with ``config.json`` (the frozen :class:`TraceConfig`),
``model.safetensors`` (weights), and for resuming ``optimizer.safetensors`` + ``train_state.json``.
Loading reads JSON and safetensors only, so it never executes code from the file.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from trace_bench.atomic import atomic_path, atomic_write_bytes
from trace_bench.errors import ConfigError

from .config import TraceConfig, load_config
from .network import TraceUNet

CONFIG_NAME, WEIGHTS_NAME = "config.json", "model.safetensors"
OPTIM_NAME, STATE_NAME = "optimizer.safetensors", "train_state.json"


def _atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def _atomic_save_tensors(tensors: dict[str, torch.Tensor], path: Path, metadata: dict[str, str] | None = None) -> None:
    with atomic_path(path, ".safetensors") as tmp:
        save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, str(tmp), metadata=metadata)


def save_checkpoint(folder: str | Path, model: TraceUNet, optimizer: torch.optim.Optimizer | None = None,
                    train_state: dict[str, Any] | None = None) -> Path:
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    _atomic_write_text(out / CONFIG_NAME, model.cfg.to_json())
    _atomic_save_tensors(model.state_dict(), out / WEIGHTS_NAME, {"format": "trace-model-v1"})
    if optimizer is not None:
        sd = optimizer.state_dict()
        flat: dict[str, torch.Tensor] = {}
        for pid, st in sd["state"].items():
            for k, v in st.items():
                flat[f"{pid}.{k}"] = v if isinstance(v, torch.Tensor) else torch.tensor(v)
        _atomic_save_tensors(flat, out / OPTIM_NAME)
        state = dict(train_state or {})
        state["param_groups"] = sd["param_groups"]
        _atomic_write_text(out / STATE_NAME, json.dumps(state, indent=2))
    return out


def _folder(path: str | Path) -> Path:
    p = Path(path)
    if p.is_file() and p.name.endswith(".safetensors"):
        p = p.parent
    if not (p / CONFIG_NAME).is_file() or not (p / WEIGHTS_NAME).is_file():
        raise ConfigError(f"{p}: not a TRACE checkpoint (expected {CONFIG_NAME} and {WEIGHTS_NAME} in the folder)")
    return p


def load_checkpoint(path: str | Path, device: str | torch.device = "cpu") -> TraceUNet:
    """Rebuild the network from ``config.json`` and load ``model.safetensors`` strictly."""
    p = _folder(path)
    cfg = load_config(p / CONFIG_NAME)
    model = TraceUNet(cfg)
    try:
        state = load_file(str(p / WEIGHTS_NAME), device="cpu")
    except (SafetensorError, OSError) as e:
        raise ConfigError(f"{p / WEIGHTS_NAME}: cannot read safetensors ({e})") from None
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ConfigError(f"{p / WEIGHTS_NAME}: weights do not match {CONFIG_NAME} "
                          f"(missing {missing[:3]}, unexpected {unexpected[:3]})")
    return model.to(device).eval()


def load_train_state(path: str | Path, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """Restore the optimizer from ``optimizer.safetensors`` + ``train_state.json``; returns the train state."""
    p = _folder(path)
    if not (p / OPTIM_NAME).is_file() or not (p / STATE_NAME).is_file():
        raise ConfigError(f"{p}: cannot resume: {OPTIM_NAME} / {STATE_NAME} missing (an inference-only checkpoint)")
    state = json.loads((p / STATE_NAME).read_text(encoding="utf-8"))
    flat = load_file(str(p / OPTIM_NAME), device="cpu")
    per: dict[int, dict[str, torch.Tensor]] = {}
    for key, v in flat.items():
        pid, name = key.split(".", 1)
        per.setdefault(int(pid), {})[name] = v
    optimizer.load_state_dict({"state": per, "param_groups": state.pop("param_groups")})
    return state


def checkpoint_config(path: str | Path) -> TraceConfig:
    return load_config(_folder(path) / CONFIG_NAME)
