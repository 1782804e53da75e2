"""Checkpoints and finished results of the seg-tstr arms: what makes a killed run continue exactly.

One folder per training job (arm x method x seed) under ``OUT/utility/seg/``, named by the job key
(sha256 of the protocol declaration, the arm, the seed, the label classes and the training pairs'
input hashes: :func:`trace_bench.utility.seg.job_key`):

* ``checkpoint.safetensors``: the network's weights (``model.*``), the optimiser's state tensors
  (``optim.<param>.<name>``) and, in the file's metadata, the JSON train state (job key, next step,
  the optimiser's param groups, the loss log). One file, written atomically
  (:func:`trace_bench.atomic.atomic_path`), so weights, optimiser and step always belong together;
  reading it never unpickles (safetensors);
* ``result.json``: the finished job's per-case scores (written once, atomically); its presence with the
  same key means "done": a rerun skips the job.

Every random draw of a step is keyed by (seed, step, sample) (:mod:`.seg`), so nothing else (no RNG
state) is needed: resuming at step k computes the same steps k, k+1, ... as the uninterrupted run.
A checkpoint or result with another key (other protocol, inputs or seed) is ignored and replaced.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from ..atomic import atomic_path
from ..results.files import atomic_write_json

CHECKPOINT = "checkpoint.safetensors"
RESULT = "result.json"


def optimizer_tensors(opt: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], list[dict[str, Any]]]:
    """The optimiser's state as flat tensors ``optim.<param id>.<name>`` and its param groups (JSON-able)."""
    sd = opt.state_dict()
    flat = {}
    for pid, st in sd["state"].items():
        for k, v in st.items():
            flat[f"optim.{pid}.{k}"] = v if isinstance(v, torch.Tensor) else torch.tensor(v)
    return flat, json.loads(json.dumps(sd["param_groups"]))


class JobStore:
    """The files of one training job (module docstring)."""

    def __init__(self, folder: str | Path, key: str) -> None:
        self.folder = Path(folder)
        self.key = key

    @property
    def checkpoint_path(self) -> Path:
        return self.folder / CHECKPOINT

    @property
    def result_path(self) -> Path:
        return self.folder / RESULT

    # ------------------------------------------------------------------ results
    def result(self) -> dict[str, Any] | None:
        """The finished job's record when it carries this job's key, else None."""
        try:
            rec = json.loads(self.result_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return rec if isinstance(rec, dict) and rec.get("key") == self.key else None

    def save_result(self, record: dict[str, Any]) -> None:
        atomic_write_json(self.result_path, {**record, "key": self.key})

    # ------------------------------------------------------------------ checkpoints
    def save_checkpoint(self, model: torch.nn.Module, opt: torch.optim.Optimizer, state: dict[str, Any]) -> None:
        """Weights + optimiser + ``state`` (JSON) in one atomically written safetensors file."""
        from safetensors.torch import save_file

        tensors = {f"model.{k}": v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
        flat, groups = optimizer_tensors(opt)
        tensors.update({k: v.detach().contiguous().cpu() for k, v in flat.items()})
        meta = {"format": "trace-bench-utility-checkpoint-v1",
                "state": json.dumps({**state, "key": self.key, "param_groups": groups})}
        with atomic_path(self.checkpoint_path, ".safetensors") as tmp:
            save_file(tensors, str(tmp), metadata=meta)

    def checkpoint_state(self) -> dict[str, Any] | None:
        """The train state in this job's checkpoint (without loading its tensors), or None."""
        from safetensors import SafetensorError, safe_open

        if not self.checkpoint_path.is_file():
            return None
        try:
            with safe_open(str(self.checkpoint_path), framework="pt") as fh:
                state = json.loads((fh.metadata() or {}).get("state", "{}"))
        except (SafetensorError, OSError, ValueError):
            return None
        return state if isinstance(state, dict) and state.get("key") == self.key else None

    def load_checkpoint(self, model: torch.nn.Module, opt: torch.optim.Optimizer) -> dict[str, Any] | None:
        """Restore weights and optimiser from this job's checkpoint; its state, or None when there is
        none with this key (or it cannot be read: then training starts again from step 0)."""
        from safetensors import SafetensorError, safe_open
        from safetensors.torch import load_file

        p = self.checkpoint_path
        if not p.is_file():
            return None
        try:
            with safe_open(str(p), framework="pt") as fh:
                meta = fh.metadata() or {}
            state = json.loads(meta.get("state", "{}"))
            if state.get("key") != self.key:
                return None
            tensors = load_file(str(p), device="cpu")
        except (SafetensorError, OSError, ValueError):
            return None
        weights = {k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")}
        model.load_state_dict(weights, strict=True)
        per: dict[int, dict[str, torch.Tensor]] = {}
        for k, v in tensors.items():
            if k.startswith("optim."):
                pid, name = k[len("optim."):].split(".", 1)
                per.setdefault(int(pid), {})[name] = v
        opt.load_state_dict({"state": per, "param_groups": state.pop("param_groups")})
        return state
