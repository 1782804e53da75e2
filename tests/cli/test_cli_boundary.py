"""The CLI boundary: one stderr line per error (exit 2 user error, 1 internal, 130 interrupted),
tracebacks only with --debug / TRACE_BENCH_DEBUG=1, --version, and a torch-free --help."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from trace_bench import __version__
from trace_bench.cli import app, describe_error, main
from trace_bench.errors import ConfigError

from helpers.paths import ROOT

runner = CliRunner()


def _cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    e = {**os.environ, "OMP_NUM_THREADS": "1"}
    e.pop("TRACE_BENCH_DEBUG", None)
    e.update(env or {})
    return subprocess.run([sys.executable, "-m", "trace_bench", *args], capture_output=True, text=True, encoding="utf-8", errors="replace", cwd=ROOT,
                          env=e, timeout=300)


def _lines(text: str) -> list[str]:
    return [ln for ln in text.splitlines() if ln.strip()]


# ------------------------------------------------------------------------------ subprocess
@pytest.fixture()
def bad_toml(tmp_path) -> Path:
    p = tmp_path / "bench.toml"
    p.write_text("frame_size = 100000\n", encoding="utf-8")
    return p


def test_bad_config_is_one_line_exit_2(bad_toml):
    r = _cli("run", "--config", str(bad_toml))
    assert r.returncode == 2, r.stderr
    err = _lines(r.stderr)
    assert len(err) == 1, r.stderr
    assert err[0].startswith("trace-bench: error: ") and str(bad_toml) in err[0] and "frame_size" in err[0]
    assert "Traceback" not in r.stderr


def test_debug_shows_the_traceback(bad_toml):
    for args, env in ((["--debug", "run", "--config", str(bad_toml)], None),
                      (["run", "--config", str(bad_toml), "--debug"], None),  # after the sub-command too
                      (["run", "--config", str(bad_toml)], {"TRACE_BENCH_DEBUG": "1"})):
        r = _cli(*args, env=env)
        assert r.returncode == 2, r.stderr
        assert "Traceback (most recent call last)" in r.stderr and "ConfigError" in r.stderr
        assert _lines(r.stderr)[-1].startswith("trace-bench: error: ")


def test_version():
    r = _cli("--version")
    assert r.returncode == 0 and r.stdout.strip() == f"trace-bench {__version__}"
    assert "torch" not in r.stderr


def _modules_after(args: list[str]) -> dict:
    code = ("import sys, json\n"
            f"sys.argv = ['trace-bench'] + {args!r}\n"
            "from trace_bench.cli import main\n"
            "try:\n    main()\nexcept SystemExit as e:\n    code = e.code\n"
            "mods = sorted(sys.modules)\n"
            "print(json.dumps({'code': code, 'torch': 'torch' in sys.modules,\n"
            "                  'metrics': [m for m in mods if m.startswith('trace_bench.metrics')],\n"
            "                  'runner': 'trace_bench.runner' in sys.modules}), file=sys.stderr)\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, encoding="utf-8", errors="replace", cwd=ROOT, timeout=300)
    return json.loads(_lines(r.stderr)[-1])


@pytest.mark.parametrize("args", [["--help"], ["inspect", "--help"], ["--version"]])
def test_help_does_not_import_torch(args):
    info = _modules_after(args)
    assert info["code"] in (0, None)
    assert not info["torch"], f"`trace-bench {' '.join(args)}` imported torch"
    assert not info["metrics"], f"`trace-bench {' '.join(args)}` imported {info['metrics'][:3]}"
    assert not info["runner"]


def test_every_subcommand_is_registered_with_help():
    r = runner.invoke(app, ["--help"])
    assert r.exit_code == 0
    for name in ("inspect", "convert", "adapters", "run", "report", "compare", "demo", "segment", "train",
                 "generate", "profile", "merge", "weights", "--debug", "--version"):
        assert name in r.stdout, name


def test_usage_errors_keep_their_format():
    r = _cli("inspect", "--no-such-flag")
    assert r.returncode == 2 and "No such option" in r.stderr and "Traceback" not in r.stderr


# ------------------------------------------------------------------------------ in process
def _fail_with(monkeypatch, exc: BaseException | type) -> None:
    """Make `trace-bench compare A B` raise ``exc`` inside the command (at loading the tolerances)."""
    import trace_bench.results as results

    def boom(*a, **k):
        if callable(exc) and not isinstance(exc, BaseException):
            exc()
        raise exc

    monkeypatch.setattr(results, "load_tolerances", boom)


def _invoke(*args: str):
    return runner.invoke(app, ["compare", "a", "b", *args])


def test_internal_error_is_one_line_exit_1(monkeypatch):
    _fail_with(monkeypatch, RuntimeError("kaboom\nsecond line"))
    r = _invoke()
    assert r.exit_code == 1
    err = _lines(r.stderr)
    assert err == ["trace-bench: internal error: RuntimeError: kaboom second line (rerun with --debug for the traceback)"]
    assert "Traceback" not in r.output


def test_internal_error_with_debug(monkeypatch):
    _fail_with(monkeypatch, RuntimeError("kaboom"))
    r = runner.invoke(app, ["--debug", "compare", "a", "b"])
    assert r.exit_code == 1
    assert "Traceback (most recent call last)" in r.stderr and "kaboom" in r.stderr
    assert _lines(r.stderr)[-1].startswith("trace-bench: internal error: RuntimeError: kaboom")


def test_trace_bench_error_is_exit_2(monkeypatch):
    _fail_with(monkeypatch, ConfigError("tolerance file x.toml: bad\nthing"))
    r = _invoke()
    assert r.exit_code == 2 and _lines(r.stderr) == ["trace-bench: error: tolerance file x.toml: bad thing"]


@pytest.mark.parametrize("exc,needle", [
    (PermissionError(errno.EACCES, "Permission denied", "/data/out/x.csv"), "/data/out/x.csv: Permission denied"),
    (IsADirectoryError(errno.EISDIR, "Is a directory", "/data/dir"), "/data/dir: Is a directory"),
    (NotADirectoryError(errno.ENOTDIR, "Not a directory", "/data/f/x"), "/data/f/x: Not a directory"),
    (FileNotFoundError(errno.ENOENT, "No such file or directory", "/nope.json"), "/nope.json: No such file"),
    (OSError(errno.ENOSPC, "No space left on device", "/full/disk.npz"), "/full/disk.npz: No space left"),
])
def test_user_os_errors_are_exit_2_naming_the_path(monkeypatch, exc, needle):
    _fail_with(monkeypatch, exc)
    r = _invoke()
    assert r.exit_code == 2, r.output
    err = _lines(r.stderr)
    assert len(err) == 1 and err[0].startswith("trace-bench: error: ") and needle in err[0], err


def test_disk_full_without_filename_names_the_path(monkeypatch, tmp_path):
    target = tmp_path / "out" / "per_case.csv"

    def write(path):
        raise OSError(errno.ENOSPC, "No space left on device")

    _fail_with(monkeypatch, lambda: write(target))
    r = _invoke()
    assert r.exit_code == 2
    (line,) = _lines(r.stderr)
    assert str(target) in line and "No space left on device" in line and "--out" in line


def test_decode_errors_are_exit_2_naming_the_file(monkeypatch, tmp_path):
    bad_text = tmp_path / "latin1.csv"
    bad_text.write_bytes("caf\xe9\n".encode("latin-1"))
    _fail_with(monkeypatch, lambda: bad_text.read_text(encoding="utf-8"))
    r = _invoke()
    assert r.exit_code == 2
    (line,) = _lines(r.stderr)
    assert str(bad_text) in line and "not utf-8 text" in line

    bad_json = tmp_path / "tol.json"
    bad_json.write_text("{oops", encoding="utf-8")

    def load(path):
        return json.loads(path.read_text(encoding="utf-8"))

    _fail_with(monkeypatch, lambda: load(bad_json))
    r = _invoke()
    assert r.exit_code == 2
    (line,) = _lines(r.stderr)
    assert str(bad_json) in line and "invalid JSON" in line and "line 1" in line


def test_keyboard_interrupt_is_130(monkeypatch):
    _fail_with(monkeypatch, KeyboardInterrupt())
    r = _invoke()
    assert r.exit_code == 130 and _lines(r.stderr) == ["trace-bench: interrupted"]


def test_main_argv(monkeypatch, capsys):
    with pytest.raises(SystemExit) as ei:
        main(["--version"])
    assert ei.value.code in (0, None) and capsys.readouterr().out.strip() == f"trace-bench {__version__}"
    _fail_with(monkeypatch, ValueError("odd"))
    with pytest.raises(SystemExit) as ei:
        main(["compare", "a", "b"])
    assert ei.value.code == 1
    assert _lines(capsys.readouterr().err) == [
        "trace-bench: internal error: ValueError: odd (rerun with --debug for the traceback)"]


def test_describe_error_table():
    assert describe_error(KeyboardInterrupt())[0] == 130
    assert describe_error(ConfigError("x"))[0] == 2
    assert describe_error(OSError(errno.EIO, "I/O error", "/x"))[0] == 1  # hardware fault: not the user's
    assert describe_error(ZeroDivisionError("division by zero")) == (
        1, "internal error: ZeroDivisionError: division by zero (rerun with --debug for the traceback)")


def test_closed_pipe_is_silent():
    """`trace-bench metrics | head -1`: the reader closes the pipe; no traceback, no "internal error".
    The read end is closed before the child writes anything, so every write fails with EPIPE."""
    p = subprocess.Popen([sys.executable, "-m", "trace_bench", "metrics"], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, env={**os.environ, "PYTHONUTF8": "1"})
    p.stdout.close()
    err = p.stderr.read().decode()
    p.wait(timeout=120)
    assert err == "" and p.returncode in (141, 1)
