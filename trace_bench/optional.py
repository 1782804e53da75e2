"""Optional dependencies: import one, or stop with one line naming the extra that installs it.

The core install (``pip install trace-bench``) leaves out what only some metrics and commands need (see the
extras in ``pyproject.toml``). Such imports go through :func:`require`, so a missing package is a
:class:`MissingDependency` (a :class:`~trace_bench.errors.TraceBenchError`: one line at the command line,
exit status 2) that says ``pip install 'trace-bench[EXTRA]'``, never a bare ``ModuleNotFoundError``. A
package that is installed but fails to import (a torchvision built for another torch) is named as such.

A metric that needs an optional package calls :func:`require` in its ``setup`` (directly, or through the
network loader it calls there), so ``run`` meets a missing package in the preflight, where a missing weights
file is met too: with ``--metrics available`` (the default) or ``--skip-unavailable`` the metric is listed as
not computed with this message, otherwise the run stops before any volume is read
(:func:`trace_bench.run.plan.setup_metrics` catches :class:`ImportError`, which :class:`MissingDependency` is).
No module of trace-bench imports an optional package at module level (``tests/project/test_packaging.py``).

:data:`EXTRAS` agrees with ``pyproject.toml`` (checked by ``tests/project/test_packaging.py``).
"""

from __future__ import annotations

import builtins
import sys
from types import ModuleType

from .errors import TraceBenchError

#: top-level import name -> (distribution on PyPI, the extra of trace-bench that installs it)
EXTRAS: dict[str, tuple[str, str]] = {
    "torchvision": ("torchvision", "vbench"),
    "timm": ("timm", "vbench"),
    "open_clip": ("open_clip_torch", "vbench"),
    "pytorch_fid": ("pytorch-fid", "fid-pth"),
    "skimage": ("scikit-image", "fidelity"),
    "radiomics": ("pyradiomics-bhklab", "radiomics"),
}


class MissingDependency(TraceBenchError, ImportError):
    """An optional package that a metric or command needs is not installed (or does not import).

    An :class:`ImportError` too, so the preflight (and any caller that handles a failed import) treats it as
    one."""


def install_hint(module: str, extra: str | None = None) -> str:
    """The command that installs the package of ``module``: its trace-bench extra (``extra`` when given, for a
    package that several extras install, else the one :data:`EXTRAS` names), or the package itself."""
    dist, default = EXTRAS.get(module.split(".")[0], (module.split(".")[0], ""))
    extra = extra or default
    return f"pip install 'trace-bench[{extra}]'" if extra else f"pip install {dist}"


def require(module: str, purpose: str, *, extra: str | None = None) -> ModuleType:
    """The imported ``module`` (``import module``, through :func:`builtins.__import__` like an import
    statement), or :class:`MissingDependency` saying that ``purpose`` (e.g. ``"RAFT optical flow"``) needs it
    and how to install it (``extra``: the extra to name when it is not the package's usual one, e.g. ``ct3d``
    for torchvision in CT-Net)."""
    top = module.split(".")[0]
    dist = EXTRAS.get(top, (top, ""))[0]
    try:
        builtins.__import__(module)
        return sys.modules[module]
    except ImportError as e:
        if e.name is not None and e.name.split(".")[0] != top:  # the package is there; one of ITS imports failed
            raise MissingDependency(f"{purpose} needs {dist}, which is installed but cannot import {e.name!r} "
                                    f"({e}); reinstall it: {install_hint(module, extra)}") from None
        if top in sys.modules:  # the package imports, but has no such module: another release
            raise MissingDependency(f"{purpose} needs {module} of {dist}, which the installed release lacks; "
                                    f"install a supported release: {install_hint(module, extra)}") from None
        raise MissingDependency(f"{purpose} needs the optional package {dist}, which is not installed: "
                                f"{install_hint(module, extra)}") from None
    except Exception as e:  # noqa: BLE001 - e.g. torchvision built for another torch: RuntimeError at import
        raise MissingDependency(f"{purpose} needs {dist}, which is installed but fails to import "
                                f"({type(e).__name__}: {' '.join(str(e).split())[:200]}); install the {dist} "
                                f"release built for your torch") from None
