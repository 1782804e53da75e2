"""Host memory of a whole process tree (psutil): the resident set size of the root and every
descendant, summed, at one instant.

RSS counts shared pages once per process (forked data-loader workers sharing their parent's pages
are counted in each), so the sum is an upper bound of the tree's physical memory; it is what
``top`` / ``ps`` show and what an out-of-memory killer compares, which is why it is used here."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class TreeSample:
    """One reading: the tree's pids and their summed RSS in bytes."""

    pids: set[int] = field(default_factory=set)
    rss_bytes: int = 0


class ProcessTree:
    """Reads the live process tree under ``pid`` (children found afresh at every reading)."""

    def __init__(self, pid: int):
        import psutil

        self._psutil = psutil
        self.pid = pid
        try:
            self._root: "psutil.Process | None" = psutil.Process(pid)
        except psutil.NoSuchProcess:
            self._root = None
        self.seen_pids: set[int] = set()

    def sample(self) -> TreeSample:
        """The tree now (empty once the root has exited and been reaped)."""
        ps = self._psutil
        out = TreeSample()
        if self._root is None:
            return out
        try:
            procs = [self._root, *self._root.children(recursive=True)]
        except (ps.NoSuchProcess, ps.ZombieProcess, ps.AccessDenied):
            return out
        for p in procs:
            try:
                out.rss_bytes += int(p.memory_info().rss)
                out.pids.add(p.pid)
            except (ps.NoSuchProcess, ps.ZombieProcess, ps.AccessDenied):
                continue
        self.seen_pids |= out.pids
        return out
