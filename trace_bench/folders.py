"""The input folders of a run, parsed once: :class:`InputFolder` (name, path, :class:`ReadOptions`).

A folder is named in one of two forms (CLI, TOML, the Python API alike):

* ``"DIR[:FORMAT]"``: a folder and optionally the adapter that reads it (``gen/x:npy``); a ``:``
  that is part of the folder's own name is kept when no adapter of that name exists;
* a table ``{path = "DIR", format = "npy", convention = "unit", spacing = "5,1,1", layout = "SPL"}``
  (TOML ``[methods.NAME]``, ``[reference]``, ``[train_reference]``); the keys besides ``path`` are
  the reading options of :mod:`trace_bench.read_options`.

:func:`parse_folder` turns either form into an :class:`InputFolder`; :meth:`InputFolder.spec` gives
back the form to write into ``config.toml`` (the string form while no reading option is set, so a
plain run's configuration reads as before). Every other module takes the parsed value object.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from .errors import ConfigError
from .read_options import KEYS, REFERENCE, ReadOptions

#: keys of a folder table: the folder and its reading options
TABLE_KEYS = ("path",) + KEYS


def split_spec(spec: str) -> tuple[str, str | None]:
    """``"DIR[:FORMAT]"`` -> (DIR, FORMAT or None). FORMAT must be a registered adapter; a tail that
    is not one is part of the folder name when that folder exists, else refused with the adapter list."""
    from baselines.base import ADAPTERS
    import baselines  # noqa: F401  (fills the registry)

    if ":" in spec:
        head, tail = spec.rsplit(":", 1)
        if tail in ADAPTERS:
            return head, tail
        if "/" not in tail and "\\" not in tail and head and not Path(spec).exists():
            ADAPTERS.get(tail)  # raises with the list of adapters and a suggestion
    return spec, None


def normalise_table(value: Mapping[str, Any], where: str) -> dict[str, Any]:
    """A folder table checked and in canonical form: ``path`` plus :meth:`ReadOptions.key` (format
    always, the other options when set). No adapter lookup (that happens in :func:`parse_folder`)."""
    unknown = sorted(set(value) - set(TABLE_KEYS))
    if unknown:
        raise ConfigError(f"{where}: unknown key {unknown[0]!r} (expected {', '.join(TABLE_KEYS)})")
    path = value.get("path")
    if not isinstance(path, str) or not path.strip():
        raise ConfigError(f"{where}: path: expected the folder as a non-empty string, got {path!r}")
    opts = ReadOptions.parse({k: v for k, v in value.items() if k != "path" and v is not None}, where)
    return {"path": path, **opts.key()}


@dataclass(frozen=True)
class InputFolder:
    """One input folder of a run: ``name`` (a method, ``reference`` or ``train_reference``), its
    ``path`` and how its files are read."""

    name: str
    path: Path
    read: ReadOptions

    @property
    def format(self) -> str:
        """The adapter reading the folder."""
        return self.read.format

    def spec(self) -> str | dict[str, Any]:
        """The configuration form: ``"DIR"`` / ``"DIR:FORMAT"`` without reading options, else a table."""
        key = self.read.key()
        if len(key) == 1:
            return str(self.path) if self.format == "nifti" else f"{self.path}:{self.format}"
        return {"path": str(self.path), **key}

    def describe(self) -> str:
        """``gen/x (format=npy, spacing=5,1,1)`` for messages."""
        return f"{self.path} ({self.read.describe()})"


def parse_folder(name: str, spec: str | Mapping[str, Any], *, default_format: str = "nifti",
                 where: str | None = None, paired: bool = True) -> InputFolder:
    """Parse a folder spec (either form, see the module doc). ``default_format`` reads a string spec
    without ``:FORMAT`` (and a table without ``format``). ``paired=False`` refuses ``reference``
    spacing / layout (the reference set itself and the training set have no paired reference case)."""
    where = where or name
    if isinstance(spec, Mapping):
        table = dict(spec)
        if "format" not in table:
            table["format"] = default_format
        table = normalise_table(table, where)
        path = table.pop("path")
        fmt = table.get("format")
        if fmt is not None:
            _check_adapter(fmt, where)
        read = ReadOptions.parse(table, where)
    elif isinstance(spec, str) and spec.strip():
        path, fmt = split_spec(spec)
        read = ReadOptions(format=fmt or default_format)
        if fmt is None and default_format != "nifti":
            _check_adapter(default_format, where)
    else:
        raise ConfigError(f"{where}: expected \"DIR[:FORMAT]\" or a table with path = \"DIR\", got {spec!r}")
    if not paired and read.uses_reference:
        raise ConfigError(f"{where}: spacing / layout = '{REFERENCE}' takes the paired reference case's grid; "
                          f"the {name} folder has none: give the spacing (z,y,x mm) or layout code itself")
    return InputFolder(name, Path(path).expanduser(), read)


def _check_adapter(fmt: str, where: str) -> None:
    from baselines.base import ADAPTERS
    import baselines  # noqa: F401

    if fmt not in ADAPTERS:
        try:
            ADAPTERS.get(fmt)
        except ConfigError as e:
            raise ConfigError(f"{where}: format: {e}") from None
