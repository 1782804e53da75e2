"""trace-bench: reproducible comparison of 3D CT generators.

The top level is lazy (PEP 562): ``import trace_bench`` loads only the standard library, so
``trace-bench --help`` starts fast. ``from trace_bench import read_volume`` (and the other names in
``__all__``) imports the module that defines the name on first use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

#: public name -> submodule that defines it (imported on first access)
_LAZY = {
    "TraceBenchError": "errors",
    "VolumeError": "errors",
    "Volume": "volume",
    "read_volume": "io",
    "write_nifti": "io",
}

__all__ = ["TraceBenchError", "Volume", "VolumeError", "__version__", "read_volume", "write_nifti"]

if TYPE_CHECKING:  # for type checkers and IDEs; never executed
    from .errors import TraceBenchError, VolumeError
    from .io import read_volume, write_nifti
    from .volume import Volume


def __getattr__(name: str) -> Any:
    """Import the submodule that defines ``name`` on first access and cache the value here."""
    mod = _LAZY.get(name)
    if mod is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{mod}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
