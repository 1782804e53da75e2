"""``trace-bench weights import NAME FILE``: check what a weights file IS, then copy it into the cache.

Kept apart from :mod:`trace_bench.weights` (the registry and resolution) because it reads the file's
content through the one loader, :func:`trace_bench.weights_load.load_state_dict` (tensors only), which
itself looks entries up in the registry.

Checks (:func:`check_importable`), after the registry's size and hash checks (:func:`trace_bench.weights.verify`):
a file matching the entry's pinned hash is accepted as is; otherwise an unpinned TorchScript entry is
refused (TorchScript carries code: it is only loaded when its sha256 is the published one), and a state
dict must read tensors-only (a pickle asking for objects, a truncated zip, a safetensors file with an
impossible header length are refused with the loader's reason and conversion hint) and fit the entry's
shape contract (``WeightSpec.contract``: container key, tensor count, key prefix).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from .errors import WeightsError
from .weights import (WEIGHTS, Resolved, WeightSpec, cache_dir, file_sha256, fix_hint, hash_matches, mkdir,
                      not_a_file, verify)
from .weights_load import load_state_dict

__all__ = ["check_importable", "import_weights"]


def _copy_verified(spec: WeightSpec, src: Path, dest: Path) -> Path:
    """Copy ``src`` to ``dest`` through a temporary file in the same folder, verify, then rename."""
    from .atomic import atomic_path

    with atomic_path(dest, ".part") as tmp:
        shutil.copyfile(src, tmp)
        verify(spec, tmp)
    return dest


def check_importable(spec: WeightSpec, path: Path, digest: str) -> None:
    """Refuse a file whose content cannot be trusted for ``spec`` (module docstring): accepted when it matches
    the pinned hash; else an unpinned TorchScript entry is refused, and a state dict must read tensors-only
    and fit ``spec.contract``. One-line :class:`WeightsError` naming the file and the reason."""
    if spec.pinned and hash_matches(spec, digest):
        return
    if spec.format in ("torchscript", "openai-clip"):
        raise WeightsError(f"weights {spec.name!r}: {path}: refused, a TorchScript file carries code and trace-bench "
                           f"loads one only when its sha256 is the published one, which entry {spec.name!r} does "
                           "not pin (or this file does not match)")
    obj = load_state_dict(path, spec.name)  # tensors only; raises WeightsError with the reason and the fix
    import torch

    c = spec.contract
    sd = obj
    if c.get("container"):
        if not isinstance(obj, dict) or not isinstance(obj.get(c["container"]), dict):
            keys = sorted(obj)[:5] if isinstance(obj, dict) else type(obj).__name__
            raise WeightsError(f"weights {spec.name!r}: {path}: expected a checkpoint with the state dict under "
                               f"{c['container']!r}, found {keys}")
        sd = obj[c["container"]]
    if not isinstance(sd, dict):
        raise WeightsError(f"weights {spec.name!r}: {path}: expected a dict of tensors, found {type(sd).__name__}")
    tensors = {str(k): v for k, v in sd.items() if torch.is_tensor(v)}
    if not tensors and not any(isinstance(v, dict) for v in sd.values()):
        raise WeightsError(f"weights {spec.name!r}: {path}: holds no tensors")
    if "tensors" in c and len(tensors) != c["tensors"]:
        raise WeightsError(f"weights {spec.name!r}: {path}: holds {len(tensors)} tensors, the published file "
                           f"{c['tensors']} (another network or a truncated export)")
    if "min_tensors" in c and len(tensors) < c["min_tensors"]:
        raise WeightsError(f"weights {spec.name!r}: {path}: holds {len(tensors)} tensors, expected at least "
                           f"{c['min_tensors']}")
    bad = [k for k in tensors if not k.startswith(c.get("prefix", ""))]
    if bad:
        raise WeightsError(f"weights {spec.name!r}: {path}: tensor {bad[0]!r} lacks the prefix {c['prefix']!r} of "
                           "the published file")


def import_weights(name: str, file: str | Path) -> Resolved:
    """Verify a file obtained elsewhere against the registry, then copy it atomically into the cache.

    Refused (:class:`WeightsError`) when the file is missing, not a regular file, has the wrong size or
    sha256, or (without a pinned hash to match) fails :func:`check_importable`. Entries without a
    published hash are recorded with the file's own sha256. Bundle folders (``vista3d``) are copied as
    a tree (their contents are read tensors-only when a run loads them).
    """
    spec = WEIGHTS.get(name)
    src = Path(file).expanduser()
    why = not_a_file(spec, src)
    if why is not None:
        raise WeightsError(f"weights {name!r}: {src} {why}; " + fix_hint(spec))
    if not src.exists():
        raise WeightsError(f"weights {name!r}: {src} does not exist; " + fix_hint(spec))
    dest = cache_dir() / spec.filename
    if spec.is_dir:
        verify(spec, src)
        tmp = Path(tempfile.mkdtemp(prefix=f".{spec.filename}.", dir=mkdir(dest.parent)))
        try:
            shutil.copytree(src, tmp, dirs_exist_ok=True)
            if dest.exists():
                shutil.rmtree(dest)
            os.replace(tmp, dest)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp)
        return Resolved(name, dest, "dir", "cache")
    digest = verify(spec, src)  # before copying: refuse early with the source path in the message
    check_importable(spec, src, digest)
    _copy_verified(spec, src, dest)
    return Resolved(name, dest, file_sha256(dest), "cache", pinned=spec.pinned)
