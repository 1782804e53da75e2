"""``python -m trace_bench``: the command line, without importing modules from the working directory.

``python -m`` puts the working directory first on ``sys.path``; a file there named like a module we
import (``numpy.py``, ``baselines.py``, a plug-in name) would then run as that module. Code runs only
from what the user named, so that entry is dropped, unless the working directory is the project root
(a source checkout run in place, where the package itself is found that way). ``PYTHONPATH`` entries
and installed packages are kept.
"""

import os
import sys
from pathlib import Path


def drop_cwd_from_path() -> None:
    """Remove the working-directory entry ``python -m`` added, unless it is the folder holding this package."""
    root = Path(__file__).resolve().parent.parent
    cwd = Path.cwd().resolve()
    if cwd == root:
        return
    for entry in list(sys.path):
        if entry in ("", ".") or (entry and Path(entry).resolve() == cwd and entry not in _pythonpath()):
            sys.path.remove(entry)


def _pythonpath() -> list[str]:
    return [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]


drop_cwd_from_path()

from .cli import main  # noqa: E402

main()
