"""The compute device of a run: ``"auto"``, ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.

:func:`parse_device` checks the spelling only (no torch import: used by config validation);
:func:`check_device` also checks that the device exists here and resolves ``"auto"`` (called in the
run's preflight, so ``--device cuda`` on a machine without a GPU fails before any work, in one line).
"""

from __future__ import annotations

import glob
import os
import re
import sys

from .errors import ConfigError

#: the accepted spellings, for error messages and help texts
DEVICE_SYNTAX = "'auto', 'cpu', 'cuda' or 'cuda:N' (N = GPU index, 0-based)"

_DEVICE_RE = re.compile(r"(auto|cpu|cuda)(?::(\d+))?")


def parse_device(device: object, *, setting: str = "device") -> tuple[str, int | None]:
    """``"cuda:1"`` -> ``("cuda", 1)``; ``"cpu"`` -> ``("cpu", None)``. Refuses any other spelling
    (``"cudaX"``, ``"gpu"``, ``"cpu:0"``, ``"auto:1"``) with a one-line :class:`ConfigError`."""
    if not isinstance(device, str):
        raise ConfigError(f"{setting}: expected a string, {DEVICE_SYNTAX}; got {device!r} ({type(device).__name__})")
    m = _DEVICE_RE.fullmatch(device.strip())
    if m is None or (m.group(2) is not None and m.group(1) != "cuda"):
        raise ConfigError(f"{setting}: expected {DEVICE_SYNTAX}, got {device!r}")
    return m.group(1), None if m.group(2) is None else int(m.group(2))


#: device files without which a Linux process sees no GPU through torch's CUDA / ROCm builds (NVIDIA's
#: control device, WSL2's DirectX GPU device, AMD's KFD)
GPU_DEVICE_FILES = ("/dev/nvidiactl", "/dev/dxg", "/dev/kfd")


def no_gpu_here() -> bool:
    """True only when this is Linux and none of the GPU drivers' device files exist: then
    ``torch.cuda.is_available()`` is False for certain and ``"auto"`` resolves to the CPU without importing
    torch (about 2 s of CPU; a rerun that finds every result cached never needs it)."""
    if not sys.platform.startswith("linux") or "torch" in sys.modules:
        return False
    return not (any(os.path.exists(p) for p in GPU_DEVICE_FILES) or glob.glob("/dev/nvidia[0-9]*"))


def check_device(device: str) -> str:
    """The device a run will use: ``"auto"`` -> ``"cuda"`` when a GPU is visible, else ``"cpu"``;
    ``"cuda"`` / ``"cuda:N"`` only when that GPU exists (else a one-line :class:`ConfigError` listing
    the devices that do). torch is imported here, not at module level."""
    kind, index = parse_device(device)
    if kind == "cpu" or (kind == "auto" and no_gpu_here()):
        return "cpu"
    import torch

    available = torch.cuda.is_available()
    count = torch.cuda.device_count() if available else 0
    if kind == "auto":
        return "cuda" if available and count > 0 else "cpu"
    if count == 0:
        raise ConfigError(f"device {device!r}: no CUDA GPU is visible on this machine (torch {torch.__version__}, "
                          f"CUDA build {torch.version.cuda or 'none'}); available: cpu. Use --device cpu or --device auto")
    if index is not None and index >= count:
        have = ", ".join(["cpu"] + [f"cuda:{i}" for i in range(count)])
        raise ConfigError(f"device {device!r}: only {count} CUDA GPU(s) visible (CUDA_VISIBLE_DEVICES applies); "
                          f"available: {have}")
    return device.strip()
