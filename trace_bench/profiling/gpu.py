"""GPU memory through NVML (``pynvml``, from the ``nvidia-ml-py`` package, NVIDIA's official binding).

Two figures per reading, both in bytes:

* ``device_used``: memory used on device N by everything (``nvmlDeviceGetMemoryInfo(h).used``);
  the profiler subtracts the reading taken before the command started, so other tenants' steady use
  and the driver's reserve are not charged to the command (other tenants' *changes* still would be);
* ``process_used``: the sum of ``usedGpuMemory`` over the compute and graphics processes NVML lists on
  device N whose pid belongs to the command's process tree. NVML leaves it unset on some drivers /
  Windows WDDM, and inside a container without the host's PID namespace the pids do not match: then
  it is None and the device figure is used. Both include the CUDA context (~300-500 MB), which
  ``torch.cuda.max_memory_allocated`` (what ``trace-bench profile`` reports for TRACE) does not.

Device N is NVML's index (``nvidia-smi`` numbering), not the CUDA index under
``CUDA_VISIBLE_DEVICES``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class GpuSample:
    device_used: int
    process_used: int | None  # None: NVML reports no per-process figure for this tree


class NvmlUnavailable(Exception):
    """NVML cannot be used (package missing, no driver, no such device): the message says why."""


class NvmlSampler:
    """Opens device ``index`` through NVML; :meth:`sample` reads it; :meth:`close` shuts NVML down."""

    def __init__(self, index: int = 0):
        try:
            import pynvml
        except ImportError:
            raise NvmlUnavailable("nvidia-ml-py (pynvml) is not installed") from None
        self._nv: Any = pynvml
        try:
            pynvml.nvmlInit()
        except Exception as e:  # noqa: BLE001 - NVMLError_LibraryNotFound / DriverNotLoaded / ...
            raise NvmlUnavailable(f"NVML cannot start ({_msg(e)}): no NVIDIA driver on this machine") from None
        try:
            count = int(pynvml.nvmlDeviceGetCount())
            if not 0 <= index < count:
                raise NvmlUnavailable(f"--device {index}: NVML sees {count} GPU(s) (indices 0..{count - 1})")
            self.handle = pynvml.nvmlDeviceGetHandleByIndex(index)
            name = pynvml.nvmlDeviceGetName(self.handle)
            self.name = name.decode() if isinstance(name, bytes) else str(name)
            self.total = int(pynvml.nvmlDeviceGetMemoryInfo(self.handle).total)
        except NvmlUnavailable:
            self.close()
            raise
        except Exception as e:  # noqa: BLE001
            self.close()
            raise NvmlUnavailable(f"NVML device {index}: {_msg(e)}") from None
        self.index = index
        self.process_reported = False  # became True once a tree pid appeared with a memory figure

    def sample(self, pids: set[int]) -> GpuSample:
        """Device-wide used memory and the per-process memory of ``pids`` on this device."""
        nv = self._nv
        used = int(nv.nvmlDeviceGetMemoryInfo(self.handle).used)
        per_pid: dict[int, int] = {}
        for fn in ("nvmlDeviceGetComputeRunningProcesses", "nvmlDeviceGetGraphicsRunningProcesses"):
            try:
                procs = getattr(nv, fn)(self.handle)
            except Exception:  # noqa: BLE001 - not supported on this device / driver
                continue
            for p in procs:
                mem = getattr(p, "usedGpuMemory", None)
                pid = int(getattr(p, "pid", -1))
                if pid in pids and mem is not None:
                    per_pid[pid] = max(per_pid.get(pid, 0), int(mem))  # a process listed as both counts once
        proc = sum(per_pid.values()) if per_pid else None
        if proc is not None:
            self.process_reported = True
        return GpuSample(used, proc)

    def close(self) -> None:
        try:
            self._nv.nvmlShutdown()
        except Exception:  # noqa: BLE001
            pass


def _msg(e: BaseException) -> str:
    return " ".join(str(e).split()) or type(e).__name__
