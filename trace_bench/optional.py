"""Optional dependencies: import one, or stop with one line naming the extra that installs it.

The core install (``pip install trace-bench``) leaves out what only some metrics and commands need (see the
extras in ``pyproject.toml``). Such imports go through :func:`require`, so a missing package is a
:class:`MissingDependency` (a :class:`~trace_bench.errors.TraceBenchError`: one line at the command line,
exit status 2) that says ``pip install 'trace-bench[EXTRA]'``, never a bare ``ModuleNotFoundError``. A
package that is installed but fails to import (a torchvision built for another torch) is named as such.
:data:`EXTRAS` agrees with ``pyproject.toml`` (checked by ``tests/test_packaging.py``).
"""

from __future__ import annotations

import importlib
from types import ModuleType

from .errors import TraceBenchError

#: top-level import name -> (distribution on PyPI, the extra of trace-bench that installs it)
EXTRAS: dict[str, tuple[str, str]] = {
    "torchvision": ("torchvision", "vbench"),
    "timm": ("timm", "vbench"),
    "open_clip": ("open_clip_torch", "vbench"),
    "pytorch_fid": ("pytorch-fid", "fid-pth"),
    "sklearn": ("scikit-learn", "study"),
    "radiomics": ("pyradiomics-bhklab", "radiomics"),
}


class MissingDependency(TraceBenchError):
    """An optional package that a metric or command needs is not installed (or does not import)."""


def install_hint(module: str) -> str:
    """The command that installs the package of ``module`` (its trace-bench extra where there is one)."""
    dist, extra = EXTRAS.get(module.split(".")[0], (module.split(".")[0], ""))
    return f"pip install 'trace-bench[{extra}]'" if extra else f"pip install {dist}"


def require(module: str, purpose: str) -> ModuleType:
    """``importlib.import_module(module)``, or :class:`MissingDependency` saying that ``purpose`` (e.g.
    ``"RAFT optical flow"``) needs it and how to install it."""
    top = module.split(".")[0]
    dist = EXTRAS.get(top, (top, ""))[0]
    try:
        return importlib.import_module(module)
    except ImportError as e:
        if e.name is not None and e.name.split(".")[0] != top:  # the package is there; one of ITS imports failed
            raise MissingDependency(f"{purpose} needs {dist}, which is installed but cannot import {e.name!r} "
                                    f"({e}); reinstall it: {install_hint(module)}") from None
        raise MissingDependency(f"{purpose} needs the optional package {dist}, which is not installed: "
                                f"{install_hint(module)}") from None
    except Exception as e:  # noqa: BLE001 - e.g. torchvision built for another torch: RuntimeError at import
        raise MissingDependency(f"{purpose} needs {dist}, which is installed but fails to import "
                                f"({type(e).__name__}: {' '.join(str(e).split())[:200]}); install the {dist} "
                                f"release built for your torch") from None
