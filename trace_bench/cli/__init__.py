"""The ``trace-bench`` command line. Each sub-command lives in its own module and only parses,
calls the Python API and prints (results to stdout/files, logs and progress to stderr)."""

from __future__ import annotations

import sys

import typer

from ..errors import TraceBenchError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Reproducible benchmark of 3D CT generators (and the TRACE model).")

@app.callback()
def _root() -> None:
    """trace-bench: reproducible benchmark of 3D CT generators (and the TRACE model)."""


# Sub-command modules register themselves on ``app`` when imported. One line per module.
from . import inspect as _inspect  # noqa: E402,F401
from . import convert as _convert  # noqa: E402,F401
from . import weights as _weights  # noqa: E402,F401
from . import run as _run  # noqa: E402,F401
from . import report as _report  # noqa: E402,F401
from . import compare as _compare  # noqa: E402,F401
from . import demo as _demo  # noqa: E402,F401
from . import segment as _segment  # noqa: E402,F401
from . import train as _train  # noqa: E402,F401
from . import generate as _generate  # noqa: E402,F401
from . import profile as _profile  # noqa: E402,F401
from . import merge as _merge  # noqa: E402,F401


def main(argv: list[str] | None = None) -> None:
    try:
        app(args=argv, prog_name="trace-bench")
    except TraceBenchError as e:  # expected failures: one line, no traceback
        print(f"trace-bench: error: {e}", file=sys.stderr)
        sys.exit(2)
