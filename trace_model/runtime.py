"""CPU threads and progress for the TRACE commands (``generate``, ``profile``, ``train``).

Thread rule (CPU only; CUDA runs are left alone unless ``threads`` is given):

* ``threads=N`` (``--threads N``, N >= 1): torch uses N intra-op threads while the call runs;
* ``threads=0``: keep torch's own setting (its default is one thread per core, or ``OMP_NUM_THREADS``);
* ``threads=None`` (the default): 1 thread, unless the environment sets ``OMP_NUM_THREADS`` or
  ``TRACE_BENCH_THREADS`` (then that number; ``TRACE_BENCH_THREADS`` wins).

Why 1 by default: the TRACE networks run many small convolutions (the demo network at 64 px spends
~0.5 ms per conv); with one thread per core and other processes on the machine, threads fight for
cores and each call waits for the slowest (measured several times slower on a loaded 2-core machine,
``benchmarks/bench_generate_cpu.py``). Several volumes at once: run several processes (or ``--batch``).
The previous setting is restored when the call returns, so library callers keep theirs.

Note: the thread count changes the order of floating-point sums inside convolutions, so outputs are
bit-identical for a fixed seed *and* a fixed thread count (the default of 1 makes files reproducible
across machines with the same torch build).
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Callable, Iterator
from typing import TextIO

import torch

THREADS_ENV = "TRACE_BENCH_THREADS"


def default_threads() -> int:
    """The thread count used when none is given: ``TRACE_BENCH_THREADS``, else ``OMP_NUM_THREADS``, else 1."""
    for var in (THREADS_ENV, "OMP_NUM_THREADS"):
        v = os.environ.get(var, "").strip()
        if v.isdigit() and int(v) >= 1:
            return int(v)
    return 1


@contextlib.contextmanager
def torch_threads(threads: int | None, device: torch.device | str | None = "cpu") -> Iterator[int]:
    """Set torch's intra-op threads by the rule in the module docstring for the ``with`` block, then
    restore the previous value. Yields the thread count in effect."""
    old = torch.get_num_threads()
    dev = torch.device(device) if device is not None else torch.device("cpu")
    if threads is not None and threads < 0:
        raise ValueError(f"threads must be >= 0, got {threads}")
    want: int | None
    if threads == 0:
        want = None
    elif threads is not None:
        want = threads
    else:
        want = default_threads() if dev.type == "cpu" else None
    if want is not None and want != old:
        torch.set_num_threads(want)
    try:
        yield torch.get_num_threads()
    finally:
        if torch.get_num_threads() != old:
            torch.set_num_threads(old)


class Progress:
    """Progress of DDIM passes on a text stream (stderr by default).

    On a terminal one line is rewritten in place; otherwise (logs, CI) a line is printed at most every
    ``every`` seconds and at the end of each batch. ``enabled=False`` prints nothing.
    """

    def __init__(self, total_volumes: int, *, enabled: bool = True, stream: TextIO | None = None,
                 every: float = 5.0, clock: Callable[[], float] = time.monotonic):
        self.total_volumes, self.enabled, self.every, self.clock = total_volumes, enabled, every, clock
        self.stream = stream if stream is not None else sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.start = clock()
        self.last = -1e30
        self.done_volumes = 0
        self.batch_volumes = 0
        self.lines = 0

    def begin_batch(self, volumes: int) -> None:
        """A batch of ``volumes`` volumes starts."""
        self.batch_volumes = volumes

    def passes(self, done: int, total: int) -> None:
        """Callback of :func:`trace_model.sampler.sample_volumes`: ``done`` of ``total`` DDIM passes."""
        if not self.enabled:
            return
        now = self.clock()
        final = done >= total
        if not (self.tty or final or now - self.last >= self.every):
            return
        self.last = now
        elapsed = now - self.start
        first, last = self.done_volumes + 1, self.done_volumes + self.batch_volumes
        frac = (self.done_volumes + self.batch_volumes * done / max(total, 1)) / max(self.total_volumes, 1)
        eta = f", ~{elapsed * (1 - frac) / frac:.0f} s left" if frac > 0 else ""
        vols = f"volume {first}" if first == last else f"volumes {first}-{last}"
        msg = (f"generate: {vols} of {self.total_volumes}: pass {done}/{total} "
               f"({100 * frac:.0f}%, {elapsed:.0f} s{eta})")
        if self.tty:
            self.stream.write("\r" + msg + ("\n" if final else ""))
        else:
            self.stream.write(msg + "\n")
        self.stream.flush()
        self.lines += 1
        if final:
            self.done_volumes += self.batch_volumes
