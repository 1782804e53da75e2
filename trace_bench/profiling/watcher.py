"""Output-folder watcher: which volumes appear in the generator's output folder, when each one is
complete, and how many slices it holds.

A file (or a DICOM / PNG folder, as the adapter lists them) counts when it was not there before the
command started, or changed since. It is complete when its size (and modification time) read the
same at two consecutive samples, or when the command has exited. Its completion time is its
modification time (the last write; exact for writers that rename a finished temporary file) when
that lies within the run, else the sample at which its final size was first seen. Complete files are
read with the adapter (``baselines.get_adapter(fmt).read(path)``, slice count = ``volume.shape[0]``;
a file whose intensity convention is ambiguous is read as stored, ``convention="hu"``, since only its
shape matters) on a reader thread so that sampling keeps its pace; a file that cannot be read yet (a writer that
paused mid-file) is read again when it changes, and once more after the command has exited.
"""

from __future__ import annotations

import os
import queue
import threading
import time
from dataclasses import dataclass
from pathlib import Path


@dataclass
class OutputFile:
    """One output volume as seen by the watcher."""

    path: Path
    signature: tuple[int, float]  # (bytes, newest mtime)
    first_seen: float  # time.time() of the sample that first saw it
    final_seen: float  # time.time() of the sample that first saw the current signature
    stable: bool = False
    slices: int | None = None
    error: str | None = None
    read_signature: tuple[int, float] | None = None  # the signature last read (or tried)

    def completion_time(self, start: float, end: float) -> tuple[float, str]:
        """(time.time() of completion, source: 'mtime' or 'sample')."""
        mtime = self.signature[1]
        if start - 1.0 <= mtime <= max(self.final_seen, end) + 1.0:
            return max(mtime, start), "mtime"
        return self.final_seen, "sample"


def _signature(path: Path) -> tuple[int, float] | None:
    try:
        if path.is_dir():
            size, newest = 0, path.stat().st_mtime
            with os.scandir(path) as it:
                for e in it:
                    if e.is_file(follow_symlinks=False):
                        st = e.stat(follow_symlinks=False)
                        size += st.st_size
                        newest = max(newest, st.st_mtime)
            return size, newest
        st = path.stat()
        return st.st_size, st.st_mtime
    except OSError:
        return None


class OutputWatcher:
    """Watches ``folder`` (which may not exist yet) with the adapter ``fmt``."""

    def __init__(self, folder: str | Path, fmt: str = "nifti"):
        from baselines.base import get_adapter

        self.folder = Path(folder)
        self.fmt = fmt
        self.adapter = get_adapter(fmt)
        self.files: dict[Path, OutputFile] = {}
        self.before: dict[Path, tuple[int, float]] = self._scan()
        self._queue: "queue.Queue[OutputFile | None]" = queue.Queue()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._reader, name="trace-bench-output-reader", daemon=True)
        self._thread.start()

    def _scan(self) -> dict[Path, tuple[int, float]]:
        if not self.folder.is_dir():
            return {}
        try:
            paths = self.adapter.list_files(self.folder)
        except OSError:
            return {}
        out = {}
        for p in paths:
            sig = _signature(p)
            if sig is not None:
                out[p] = sig
        return out

    def poll(self, now: float | None = None) -> int:
        """One sample: record new / changed files, queue the ones whose size held still. Returns the number
        of output files seen so far."""
        now = time.time() if now is None else now
        for p, sig in self._scan().items():
            if self.before.get(p) == sig:
                continue  # there before the command, unchanged
            with self._lock:
                f = self.files.get(p)
                if f is None:
                    self.files[p] = OutputFile(p, sig, now, now)
                    continue
                if f.signature != sig:
                    f.signature, f.final_seen, f.stable = sig, now, False
                    continue
                if not f.stable and sig[0] > 0:
                    f.stable = True
                    if f.read_signature != sig:
                        f.read_signature = sig
                        self._queue.put(f)
        return len(self.files)

    def _reader(self) -> None:
        while True:
            f = self._queue.get()
            if f is None:
                return
            self._read(f)

    def _read(self, f: OutputFile) -> None:
        from ..errors import ConventionError

        try:
            try:
                n = int(self.adapter.read(f.path).shape[0])
            except ConventionError:  # intensities do not matter for a slice count: read them as stored
                n = int(self.adapter.read(f.path, convention="hu").shape[0])
            with self._lock:
                f.slices, f.error = n, None
        except Exception as e:  # noqa: BLE001 - any reader error is recorded, and retried at the end
            with self._lock:
                f.slices, f.error = None, f"{type(e).__name__}: {' '.join(str(e).split())}"

    def finish(self) -> list[OutputFile]:
        """After the command exited: a last scan, then every file not yet read (or changed since) is read
        here. Returns the output files sorted by path."""
        self.poll()
        self._queue.put(None)
        self._thread.join()
        for f in self.files.values():
            sig = _signature(f.path)
            if sig is not None and sig != f.signature:
                f.signature, f.final_seen = sig, time.time()
            if f.slices is None or f.read_signature != f.signature:
                f.read_signature = f.signature
                self._read(f)
        return sorted(self.files.values(), key=lambda f: str(f.path))
