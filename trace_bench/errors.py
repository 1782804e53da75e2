"""Typed errors raised at the boundaries of trace-bench.

Every error that concerns an input file names the file and the reason, so the CLI can print one
line and move on to the next case (STYLE.md, principle 6: errors teach).
"""

from __future__ import annotations

from pathlib import Path


def option_hint(key: str, value: str, name: str | None = None) -> str:
    """How to set reading option ``key`` to ``value`` (:mod:`trace_bench.read_options`): ``--read NAME.key=value``
    for ``run`` (``NAME`` the folder's method name, ``reference`` or ``train_reference``; spelled ``NAME`` when
    unknown; shell-quoted when the name needs it), and the flag of the single-file commands. The one wording
    every reader message uses."""
    if name:
        import shlex

        return f"--read {shlex.quote(f'{name}.{key}={value}')}"
    return f"--read NAME.{key}={value} (`run`; `inspect`/`convert`/`segment`: --{key} {value})"


def did_you_mean(word: str, choices, *, n: int = 2, quote: bool = False) -> str:
    """``" Did you mean a, b?"`` with the closest of ``choices`` to a mistyped ``word`` (difflib), or ``""``:
    the one wording of the suggestion every "unknown ..." message ends with (``quote``: names as repr)."""
    import difflib

    close = difflib.get_close_matches(str(word), [str(c) for c in choices], n=n)
    return f" Did you mean {', '.join(repr(c) if quote else c for c in close)}?" if close else ""


class TraceBenchError(Exception):
    """Base class of every error trace-bench raises on purpose."""


class VolumeError(TraceBenchError):
    """A volume file could not be turned into a canonical :class:`~trace_bench.volume.Volume`."""

    def __init__(self, path: str | Path | None, reason: str):
        self.path = None if path is None else str(path)
        self.reason = " ".join(str(reason).split())  # always one line
        super().__init__(f"{self.path}: {self.reason}" if self.path else self.reason)


class CorruptFileError(VolumeError):
    """The file exists but cannot be decoded (truncated, bad header, not the format it claims)."""


class UnknownFormatError(VolumeError):
    """No reader or adapter handles this file."""


class InvalidVolumeError(VolumeError):
    """The file decodes, but the array is not a usable volume (empty, non-finite, not 3-D)."""


class ConventionError(VolumeError):
    """The intensity convention is unknown, or ambiguous and must be settled with ``--convention``."""


class SpacingError(VolumeError):
    """The file carries no voxel spacing and none was given (``--spacing z,y,x``)."""


class GeometryError(VolumeError):
    """A generated volume's grid cannot be trusted against its reference's (see :mod:`trace_bench.geometry`);
    ``path`` is the generated file, ``reference`` the reference file, ``diff`` the
    :class:`~trace_bench.geometry.GridDiff` that was refused."""

    def __init__(self, path: str | Path | None, reason: str, *, reference: str | Path | None = None,
                 diff: object = None):
        self.reference = None if reference is None else str(reference)
        self.diff = diff
        super().__init__(path, reason)


class ConfigError(TraceBenchError):
    """A user setting (CLI flag, config file, registry name) is invalid."""


class WeightsError(TraceBenchError):
    """Pretrained weights are missing, corrupt or of the wrong kind."""


class PairingError(TraceBenchError):
    """Generated and reference cases could not be paired."""
