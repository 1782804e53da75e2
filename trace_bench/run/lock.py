"""One output folder belongs to one run at a time: an exclusive lock on ``OUT/.trace-bench/lock``.

The lock is an ``flock`` held for the whole run, so it is released when the process ends, however
it ends (a killed run never leaves a stale lock). The file records the holder (pid, host, start
time, command) so a refused second run can say who holds the folder.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from pathlib import Path

from ..errors import ConfigError
from ..results.stamp import STATE_DIR


class OutputLock:
    """``with OutputLock(out): ...`` -- refuses at once (ConfigError) when another process holds ``out``."""

    def __init__(self, out: str | Path) -> None:
        self.out = Path(out)
        self.path = self.out / STATE_DIR / "lock"
        self._fd: int | None = None

    def acquire(self) -> "OutputLock":
        import fcntl

        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
        except OSError as e:
            raise ConfigError(f"--out {self.out}: cannot create the output folder ({e.strerror or e}); "
                              "choose a writable folder") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            try:
                holder = json.loads(os.pread(fd, 4096, 0).decode("utf-8", "replace") or "{}")
            except ValueError:
                holder = {}
            os.close(fd)
            who = (f"pid {holder.get('pid', '?')} on {holder.get('host', '?')} since {holder.get('started_utc', '?')}"
                   if holder else "another process")
            raise ConfigError(f"--out {self.out} is in use by another trace-bench run ({who}); wait for it to "
                              "finish or choose another --out") from None
        info = {"pid": os.getpid(), "host": socket.gethostname(),
                "started_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "command": sys.argv}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(info).encode("utf-8"), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            import fcntl

            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> "OutputLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
