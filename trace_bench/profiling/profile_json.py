"""A profile JSON given to ``trace-bench run --profile NAME=FILE`` (written by ``trace-bench profile`` or
``trace-bench profile-command``), read and checked before it can reach Table 1.

Accepted values (``None`` / ``null`` = not measured; at least one of the three keys present):

* ``fps``: slices per second, a finite number > 0;
* ``inference_peak_bytes``, ``train_peak_bytes``: bytes, whole numbers in [0, 2**60];
* ``device``: a string (what measured it), optional.

Anything else (``-1``, ``NaN``, ``Infinity``, ``1e400`` which JSON readers turn into infinity, a
string, ``true``) is refused in one line naming the method, the file and the key. Other keys (the
profilers' details) are kept as they are.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..inputs import input_problem

#: the keys Table 1 reads
PROFILE_KEYS = ("fps", "inference_peak_bytes", "train_peak_bytes")
#: largest plausible byte count (1 EiB): a bigger one is a unit mistake or a corrupt file
MAX_BYTES = 2 ** 60
#: largest profile file read (the profilers' timelines are far smaller)
MAX_FILE_BYTES = 64 * 2 ** 20


def _number(value: Any) -> float | None:
    """The float of a JSON number (bool is not a number), else None."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        return float(value)
    except OverflowError:  # an integer literal beyond the float range
        return math.inf


def check_profile(data: Any, where: str) -> dict[str, Any]:
    """``data`` when it is a valid profile object (see the module docstring), else :class:`ConfigError`
    starting with ``where``."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a JSON object with {', '.join(PROFILE_KEYS)}, "
                          f"got {type(data).__name__}")
    if not any(k in data for k in PROFILE_KEYS):
        raise ConfigError(f"{where}: expected a JSON object with 'fps', 'inference_peak_bytes' or 'train_peak_bytes', "
                          f"got keys {sorted(data)}")
    for key in PROFILE_KEYS:
        v = data.get(key)
        if v is None:
            continue
        x = _number(v)
        if key == "fps":
            if x is None or not math.isfinite(x) or x <= 0:
                raise ConfigError(f"{where}: 'fps' must be a finite number of slices per second > 0, got {v!r}")
        elif x is None or not math.isfinite(x) or x < 0 or x != math.floor(x) or x > MAX_BYTES:
            raise ConfigError(f"{where}: {key!r} must be a whole number of bytes in [0, 2^60], got {v!r}")
    if "device" in data and data["device"] is not None and not isinstance(data["device"], str):
        raise ConfigError(f"{where}: 'device' must be a string, got {data['device']!r}")
    return data


def read_profile(path: str | Path, method: str) -> dict[str, Any]:
    """The checked profile of ``method`` from ``path`` (one-line :class:`ConfigError` otherwise)."""
    p = Path(path)
    where = f"--profile {method}={p}"
    if not p.exists() and not p.is_symlink():
        raise ConfigError(f"{where}: file does not exist (write it with `trace-bench profile`)")
    problem = input_problem(p)  # never opens a FIFO or device; a folder is not a profile either
    if problem is None and p.is_dir():
        problem = "a folder, not a JSON file"
    if problem is not None:
        raise ConfigError(f"{where}: {problem}")
    if p.stat().st_size > MAX_FILE_BYTES:
        raise ConfigError(f"{where}: {p.stat().st_size} bytes, larger than any profile ({MAX_FILE_BYTES} at most)")
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as e:
        raise ConfigError(f"{where}: not valid JSON ({' '.join(str(e).split())})") from None
    return check_profile(data, where)
