"""The ``trace-bench`` command line. Each sub-command lives in its own module and only parses,
calls the Python API and prints (results to stdout/files, logs and progress to stderr).

Start-up stays cheap: sub-command modules import only typer and the standard library at module
level; torch, the metric registry and the model code are imported inside the command functions,
so ``trace-bench --help`` and ``trace-bench inspect --help`` never load torch.

The boundary (:func:`report_error`, used by :class:`BoundaryGroup`): every error is one line on
stderr, ``trace-bench: error: ...`` with exit status 2 for user errors (:class:`TraceBenchError`,
files that are missing / unreadable / not text / not JSON, a full disk), ``trace-bench: internal
error: Type: message (...)`` with status 1 for anything else, ``trace-bench: interrupted`` with
status 130 for Ctrl-C. ``--debug`` (or ``TRACE_BENCH_DEBUG=1``) prints the traceback first.
Usage errors keep click's own format (status 2).
"""

from __future__ import annotations

import errno
import json
import os
import sys
import traceback
from inspect import cleandoc  # (not `import inspect`: the sub-command module cli/inspect.py has that name)
from pathlib import PurePath
from types import TracebackType
from typing import Any, Optional

import typer
from typer.core import TyperGroup
from typer.exceptions import TyperException

from ..errors import TraceBenchError

DEBUG_ENV = "TRACE_BENCH_DEBUG"
#: OSError numbers caused by the user's files or machine (answered as user errors, exit 2)
USER_ERRNOS = {errno.ENOENT, errno.EACCES, errno.EPERM, errno.EISDIR, errno.ENOTDIR, errno.ENOSPC,
               errno.EDQUOT, errno.EROFS, errno.ENAMETOOLONG, errno.EEXIST, errno.ENOTEMPTY, errno.EXDEV,
               errno.ELOOP, errno.EMFILE}
EXIT_USER, EXIT_INTERNAL, EXIT_INTERRUPT = 2, 1, 130
#: the shell's status of a process killed by SIGPIPE (128 + 13): what `cmd | head` normally reports
EXIT_BROKEN_PIPE = 141


def _env_debug() -> bool:
    return os.environ.get(DEBUG_ENV, "").strip().lower() in ("1", "true", "yes", "on")


def _one_line(text: Any) -> str:
    return " ".join(str(text).split())


def _path_in_traceback(tb: TracebackType | None) -> str | None:
    """Best guess of the file an OSError / decode error without a filename was about: the innermost
    frame holding an open file object, a ``pathlib`` path (``self`` of ``Path.read_text``) or a local
    called path / file / filename / dst / src / tmp."""
    frames = []
    while tb is not None:
        frames.append(tb.tb_frame)
        tb = tb.tb_next
    for frame in reversed(frames[-8:]):
        loc = frame.f_locals
        for v in loc.values():
            name = getattr(v, "name", None)
            if hasattr(v, "read") and hasattr(v, "close") and isinstance(name, str) and name:
                return name
        if isinstance(loc.get("self"), PurePath):
            return str(loc["self"])
        for key in ("path", "file", "filename", "dst", "src", "tmp", "p"):
            v = loc.get(key)
            if isinstance(v, (str, PurePath)) and str(v):
                return str(v)
    return None


def describe_error(exc: BaseException) -> tuple[int, str]:
    """(exit status, one-line message without the ``trace-bench:`` prefix) for an exception that
    reached the CLI boundary."""
    if isinstance(exc, KeyboardInterrupt):
        return EXIT_INTERRUPT, "interrupted"
    if isinstance(exc, TraceBenchError):
        return EXIT_USER, f"error: {_one_line(exc)}"
    if isinstance(exc, OSError) and exc.errno in USER_ERRNOS:
        path = exc.filename if exc.filename is not None else _path_in_traceback(exc.__traceback__)
        what = exc.strerror or _one_line(exc)
        where = f"{os.fsdecode(path)}: " if path is not None else ""
        extra = f" -> {os.fsdecode(exc.filename2)}" if getattr(exc, "filename2", None) else ""
        hint = " (free some space or choose another --out)" if exc.errno in (errno.ENOSPC, errno.EDQUOT) else ""
        return EXIT_USER, f"error: {where}{what}{extra}{hint}"
    if isinstance(exc, UnicodeDecodeError):
        path = _path_in_traceback(exc.__traceback__)
        where = f"{path}: " if path else ""
        return EXIT_USER, (f"error: {where}not {exc.encoding} text (byte 0x{exc.object[exc.start]:02x} at offset "
                           f"{exc.start}: {exc.reason})")
    if isinstance(exc, json.JSONDecodeError):
        path = _path_in_traceback(exc.__traceback__)
        where = f"{path}: " if path else ""
        return EXIT_USER, f"error: {where}invalid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})"
    return EXIT_INTERNAL, (f"internal error: {type(exc).__name__}: {_one_line(exc)} "
                           "(rerun with --debug for the traceback)")


def quiet_stdout() -> None:
    """Point stdout at /dev/null after a broken pipe, so that the interpreter's final flush does not
    raise (and print) a second BrokenPipeError (the recipe of Python's ``signal`` documentation)."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):
        pass


def report_error(exc: BaseException, *, debug: bool = False) -> int:
    """Print ``exc`` as one line on stderr (after its traceback when ``debug``); return the exit status."""
    code, message = describe_error(exc)
    try:
        if debug:
            traceback.print_exception(type(exc), exc, exc.__traceback__, file=sys.stderr)
        print(f"trace-bench: {message}", file=sys.stderr)
        sys.stderr.flush()
    except (OSError, ValueError):  # stderr closed: the exit status still tells
        pass
    return code


def _help_paragraphs(text: str) -> str:
    """Help text as paragraphs of one line each (the terminal wraps them), so that the line breaks of a
    docstring do not show as ragged lines; paragraphs that are lists or start with click's ``\\b`` (no
    rewrap) are kept as written."""
    out = []
    for para in cleandoc(text).split("\n\n"):
        lines = para.splitlines()
        keep = para.startswith("\b") or any(ln.lstrip().startswith(("- ", "* ")) for ln in lines[1:])
        out.append(para if keep else " ".join(ln.strip() for ln in lines))
    return "\n\n".join(out)


def tidy_help(cmd: Any) -> Any:
    """Make ``cmd``'s help (and its sub-commands' and parameters') render as written under typer's rich
    help: square brackets that rich would take for markup tags (``[options.METRIC]``, ``[metric]``) are
    escaped (``rich.markup.escape``), docstring line breaks inside a paragraph are joined, and a command
    without a short help gets its first sentence as one (the one-line entry in its group's list).
    Idempotent; applied by :class:`BoundaryGroup` to every command it hands out."""
    if getattr(cmd, "tb_help_tidy", False):
        return cmd
    cmd.tb_help_tidy = True
    rich = getattr(cmd, "rich_markup_mode", "rich") == "rich"
    from rich.markup import escape

    def fix(text: str | None) -> str | None:
        return None if text is None else (escape(text) if rich else text)

    if cmd.help:
        full = _help_paragraphs(cmd.help)
        if not cmd.short_help:
            first = full.split("\n\n")[0]
            cut = first.find(". ")
            cmd.short_help = fix(first if cut < 0 else first[:cut + 1])
        cmd.help = fix(full)
    for p in cmd.params:
        if getattr(p, "help", None):
            p.help = fix(" ".join(p.help.split()))
    for sub in getattr(cmd, "commands", {}).values():
        tidy_help(sub)
    return cmd


class BoundaryGroup(TyperGroup):
    """The root group: accepts ``--debug`` anywhere before ``--`` and turns any exception raised by a
    sub-command into one line on stderr and an exit status (see the module docstring). Its commands'
    help is tidied for the terminal (:func:`tidy_help`)."""

    def get_command(self, ctx: typer.Context, cmd_name: str) -> Any:
        cmd = super().get_command(ctx, cmd_name)
        return None if cmd is None else tidy_help(cmd)

    def format_help(self, ctx: typer.Context, formatter: Any) -> None:
        for p in self.params:
            if getattr(p, "help", None) and not getattr(p, "tb_help_tidy", False):
                p.tb_help_tidy = True
                from rich.markup import escape

                p.help = escape(" ".join(p.help.split()))
        return super().format_help(ctx, formatter)

    def parse_args(self, ctx: typer.Context, args: list[str]) -> list[str]:
        args = list(args)
        cut = args.index("--") if "--" in args else len(args)
        if "--debug" in args[1:cut]:  # `trace-bench run ... --debug` means the root flag
            del args[args.index("--debug", 1, cut)]
            args.insert(0, "--debug")
        return super().parse_args(ctx, args)

    def invoke(self, ctx: typer.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (TyperException, typer.Exit, typer.Abort, SystemExit):  # usage errors, --help, exit statuses
            raise
        except BrokenPipeError:  # the reader went away (`trace-bench ... | head`): not an error of ours
            quiet_stdout()
            raise typer.Exit(EXIT_BROKEN_PIPE) from None
        except (Exception, KeyboardInterrupt) as e:  # noqa: BLE001 - the boundary
            debug = bool(ctx.params.get("debug")) or _env_debug()
            raise typer.Exit(report_error(e, debug=debug)) from None


app = typer.Typer(cls=BoundaryGroup, add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Reproducible benchmark of 3D CT generators (and the TRACE model).")


def _version(value: bool) -> None:
    if value:
        from .. import __version__

        print(f"trace-bench {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    debug: bool = typer.Option(False, "--debug", envvar=DEBUG_ENV,
                               help=f"Show the Python traceback of an error (also {DEBUG_ENV}=1)."),
    version: Optional[bool] = typer.Option(None, "--version", callback=_version, is_eager=True,
                                           help="Print the version and exit."),
) -> None:
    """trace-bench: reproducible benchmark of 3D CT generators (and the TRACE model)."""


# Sub-command modules register themselves on ``app`` when imported. One line per module. They must
# stay light at import (typer + standard library): heavy imports go inside the command functions.
from . import inspect as _inspect  # noqa: E402,F401
from . import convert as _convert  # noqa: E402,F401
from . import weights as _weights  # noqa: E402,F401
from . import run as _run  # noqa: E402,F401
from . import report as _report  # noqa: E402,F401
from . import compare as _compare  # noqa: E402,F401
from . import demo as _demo  # noqa: E402,F401
from . import segment as _segment  # noqa: E402,F401
from . import train as _train  # noqa: E402,F401
from . import prepare as _prepare  # noqa: E402,F401
from . import generate as _generate  # noqa: E402,F401
from . import profile as _profile  # noqa: E402,F401
from . import merge as _merge  # noqa: E402,F401
from . import metrics as _metrics  # noqa: E402,F401
from . import audit as _audit  # noqa: E402,F401
from . import study as _study  # noqa: E402,F401
from . import prompts as _prompts  # noqa: E402,F401
from . import profile_command as _profile_command  # noqa: E402,F401
from . import regress as _regress  # noqa: E402,F401
from . import doctor as _doctor  # noqa: E402,F401
from . import board as _board  # noqa: E402,F401
from . import utility as _utility  # noqa: E402,F401


def main(argv: list[str] | None = None) -> None:
    """Console entry point: run the app; errors outside a sub-command (the root's own options) get
    the same one-line treatment as those inside."""
    try:
        app(args=argv, prog_name="trace-bench")
    except (Exception, KeyboardInterrupt) as e:  # noqa: BLE001 - the boundary
        args = sys.argv[1:] if argv is None else argv
        sys.exit(report_error(e, debug=_env_debug() or "--debug" in args))
