"""``trace-bench weights list | fetch NAME | import NAME FILE | verify [NAME...]``."""

from __future__ import annotations

import shutil
import sys
import textwrap
from pathlib import Path
from typing import Optional

import typer

from . import app

weights_app = typer.Typer(no_args_is_help=True, help="Pretrained weights: list, fetch, import, verify.")
app.add_typer(weights_app, name="weights")


def _size(n: int | None) -> str:
    return "?" if n is None else f"{n / 2**20:.1f} MiB"


@weights_app.command("list")
def list_cmd(hash_files: bool = typer.Option(False, "--hash", help="Also hash present files (slow for large ones).")) -> None:
    """What is registered, where each file resolves, and what is missing."""
    from ..weights import WEIGHTS, cache_dir, weights_status

    print(f"cache: {cache_dir()}")
    rows = []
    for name, spec in WEIGHTS.items():
        st = weights_status(name, check_hash=hash_files)
        where = f"{st.path} ({st.source})" if st.present else f"MISSING -> trace-bench weights fetch {name}"
        state = "present" if st.present else "missing"
        if st.present and st.verified is not None:
            state = "ok" if st.verified else "unverified"
        rows.append((name, state, _size(spec.size), spec.filename, ", ".join(spec.used_by), where))
    for line in weights_table(rows, shutil.get_terminal_size((100, 24)).columns):
        print(line)


def weights_table(rows: list[tuple[str, str, str, str, str, str]], width: int) -> list[str]:
    """``weights list`` lines for rows ``(name, state, size, file, used by, where)``: one line per entry with
    columns as wide as their longest value (a long name never shifts the others), then the users and the
    location on indented lines wrapped to ``width`` (paths are never broken, so they stay copyable)."""
    w_name = max((len(r[0]) for r in rows), default=4)
    w_state = max((len(r[1]) for r in rows), default=5)
    w_size = max((len(r[2]) for r in rows), default=4)
    indent = " " * 4
    out = []
    for name, state, size, filename, used_by, where in rows:
        out.append(f"{name:<{w_name}}  {state:<{w_state}}  {size:>{w_size}}  {filename}")
        for label, text in (("used by: ", used_by or "-"), ("", where)):
            out += textwrap.wrap(label + text, width=max(width, 40), initial_indent=indent, subsequent_indent=indent * 2,
                                 break_long_words=False, break_on_hyphens=False)
    return out


@weights_app.command("fetch")
def fetch_cmd(name: str = typer.Argument(..., help="Registry name (see `trace-bench weights list`)."),
              force: bool = typer.Option(False, "--force", help="Download again even if a verified copy exists.")) -> None:
    """Download NAME into the cache (needs a network), verify it, write atomically."""
    from ..weights import fetch_weights

    r = fetch_weights(name, force=force)
    print(f"{name}: {r.path} sha256 {r.sha256} ({r.source})")


@weights_app.command("import")
def import_cmd(name: str = typer.Argument(..., help="Registry name."),
               file: Path = typer.Argument(..., help="The file (or bundle folder) obtained elsewhere.")) -> None:
    """Verify FILE against the registry entry NAME, then copy it atomically into the cache."""
    from ..weights_import import import_weights

    r = import_weights(name, file)
    print(f"{name}: imported {file} -> {r.path} (sha256 {r.sha256})")


@weights_app.command("verify")
def verify_cmd(names: Optional[list[str]] = typer.Argument(None, help="Entries to check (default: every present one).")) -> None:
    """Hash every present file and compare with the registry; exit 1 if one is corrupt or broken (an
    environment variable or path that names no usable file), or if an entry named here is missing."""
    from ..weights import WEIGHTS, weights_status

    bad = 0
    for name in names or WEIGHTS.names():
        WEIGHTS.get(name)
        st = weights_status(name, check_hash=True)
        if not st.present and st.verified is None:
            print(f"{name:<18} missing")
            bad += 1 if names else 0  # asked for by name: its absence is a failure
            continue
        if st.present:  # "ok" only for a file matching a pinned hash (weights_status)
            print(f"{name:<18} {st.message}  {st.path}")
        else:
            bad += 1
            corrupt = "sha256 mismatch" in st.message or "bytes, expected" in st.message
            print(f"{name:<18} {'CORRUPT' if corrupt else 'REFUSED'}  {st.message}")
    if bad:
        sys.exit(1)
