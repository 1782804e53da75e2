"""Run a command as a black box and measure it: wall time, host RSS of its process tree, GPU memory
through NVML, and (for generation) the slices it writes into its output folder.

:func:`profile_command` is the API behind ``trace-bench profile-command``; its JSON has the keys of
``trace-bench profile`` (``fps``, ``inference_peak_bytes``, ``train_peak_bytes``, ``device``,
``seconds``, ``slices``) so ``trace-bench run --profile NAME=FILE`` reads it as it reads TRACE's.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from ..errors import TraceBenchError
from .fps import WarmupRule, fps_from_outputs, parse_warmup
from .gpu import NvmlSampler, NvmlUnavailable
from .process import ProcessTree
from .watcher import OutputWatcher

#: the timeline kept in the JSON is thinned to at most this many samples (the peaks use every sample)
TIMELINE_MAX = 2000
#: seconds between SIGTERM and SIGKILL when a command is stopped (``--train-seconds``)
STOP_GRACE_S = 10.0


class ProfileError(TraceBenchError):
    """The profiled command could not be started or failed."""


@dataclass
class Measurement:
    """What :func:`run_measured` saw of one command."""

    returncode: int | None
    stopped: bool  # stopped by us after ``max_seconds``
    start: float  # time.time() at launch
    wall_seconds: float
    samples: int
    rss_peak_bytes: int
    gpu_device_baseline_bytes: int | None
    gpu_device_peak_bytes: int | None  # peak device-wide used memory
    gpu_process_peak_bytes: int | None  # peak per-process sum over the tree (None: never reported)
    timeline: dict[str, list[Any]] = field(default_factory=dict)

    @property
    def gpu_peak_bytes(self) -> int | None:
        """The command's GPU memory: the per-process figure when NVML reported one, else the device's
        peak minus its use before the command started."""
        if self.gpu_process_peak_bytes is not None:
            return self.gpu_process_peak_bytes
        if self.gpu_device_peak_bytes is None or self.gpu_device_baseline_bytes is None:
            return None
        return max(0, self.gpu_device_peak_bytes - self.gpu_device_baseline_bytes)

    @property
    def gpu_memory_kind(self) -> str:
        if self.gpu_process_peak_bytes is not None:
            return "NVML per-process used GPU memory, summed over the process tree (peak)"
        if self.gpu_device_peak_bytes is not None:
            return ("NVML device used memory, peak minus the reading before the command started (NVML "
                    "reported no per-process figure for the tree)")
        return "unavailable"


def split_command(command: str | list[str], shell: bool) -> list[str] | str:
    """``shell=False``: ``shlex.split`` (one-line error for unbalanced quotes); ``shell=True``: the string."""
    if isinstance(command, list):
        return " ".join(shlex.quote(c) for c in command) if shell else list(command)
    if shell:
        return command
    try:
        argv = shlex.split(command)
    except ValueError as e:
        raise ProfileError(f"--command {command!r}: cannot split ({e})") from None
    if not argv:
        raise ProfileError("--command is empty")
    return argv


def _stop(proc: subprocess.Popen) -> None:
    """SIGTERM to the command's process group, SIGKILL after :data:`STOP_GRACE_S`."""
    for sig, wait in ((signal.SIGTERM, STOP_GRACE_S), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            return
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def run_measured(command: str | list[str], *, shell: bool = False, interval: float = 0.2,
                 gpu: NvmlSampler | None = None, watcher: OutputWatcher | None = None,
                 max_seconds: float | None = None, cwd: str | Path | None = None,
                 env: dict[str, str] | None = None) -> Measurement:
    """Start ``command`` in its own session (its stdout goes to our stderr), sample it every ``interval``
    seconds until it exits (or ``max_seconds`` passed: then stop it), and return the measurement."""
    if interval <= 0:
        raise ProfileError(f"--interval {interval}: expected a positive number of seconds")
    argv = split_command(command, shell)
    baseline = gpu.sample(set()).device_used if gpu is not None else None
    start = time.time()
    t0 = time.perf_counter()
    try:
        stdout = sys.stderr.fileno()
    except (AttributeError, OSError, ValueError):  # a captured stderr (tests): the process's fd 2
        stdout = 2
    try:
        proc = subprocess.Popen(argv, shell=shell, cwd=cwd, env=env, stdout=stdout,
                                stdin=subprocess.DEVNULL, start_new_session=True)
    except OSError as e:
        prog = argv if isinstance(argv, str) else argv[0]
        raise ProfileError(f"cannot start {prog!r}: {e.strerror or e}") from None
    tree = ProcessTree(proc.pid)
    rss_peak = 0
    dev_peak: int | None = None
    proc_peak: int | None = None
    tl: dict[str, list[Any]] = {"t": [], "rss": [], "gpu_device": [], "gpu_process": [], "files": []}
    n = 0
    stopped = False
    try:
        while True:
            now = time.perf_counter()
            ts = tree.sample()
            g = gpu.sample(tree.seen_pids) if gpu is not None else None
            files = watcher.poll() if watcher is not None else 0
            n += 1
            rss_peak = max(rss_peak, ts.rss_bytes)
            if g is not None:
                dev_peak = g.device_used if dev_peak is None else max(dev_peak, g.device_used)
                if g.process_used is not None:
                    proc_peak = g.process_used if proc_peak is None else max(proc_peak, g.process_used)
            for k, v in zip(tl, (round(now - t0, 3), ts.rss_bytes, g.device_used if g else None,
                                 g.process_used if g else None, files)):
                tl[k].append(v)
            if proc.poll() is not None:
                break
            if max_seconds is not None and now - t0 >= max_seconds:
                stopped = True
                _stop(proc)
                break
            time.sleep(max(0.0, interval - (time.perf_counter() - now)))
    except BaseException:
        _stop(proc)  # Ctrl-C or an error of ours: never leave the command running
        raise
    wall = time.perf_counter() - t0
    if len(tl["t"]) > TIMELINE_MAX:
        step = -(-len(tl["t"]) // TIMELINE_MAX)
        tl = {k: v[::step] for k, v in tl.items()}
    return Measurement(proc.returncode, stopped, start, wall, n, rss_peak, baseline, dev_peak, proc_peak, tl)


def open_gpu(device: int) -> tuple[NvmlSampler | None, str]:
    """(sampler, note): the sampler, or None and why GPU figures are unavailable."""
    try:
        s = NvmlSampler(device)
        return s, f"NVML device {device}: {s.name}"
    except NvmlUnavailable as e:
        return None, f"GPU figures unavailable: {e}"


def profile_command(command: str | list[str] | None, output_dir: str | Path | None = None, *,
                    fmt: str = "nifti", device: int = 0, interval: float = 0.2,
                    warmup: str | WarmupRule = "first-output", shell: bool = False,
                    train_command: str | list[str] | None = None, train_seconds: float | None = None,
                    out: str | Path | None = None, use_gpu: bool = True,
                    log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Profile a generator's command (and optionally its training command); write the JSON to ``out``.

    Keys (bytes and seconds; None where not measured): ``fps`` (slices per second at volume level under
    the warm-up rule, see :mod:`.fps`), ``inference_peak_bytes`` (GPU: see :class:`Measurement`;
    None without a GPU), ``train_peak_bytes`` (GPU peak of the training command, or its tree's peak
    RSS without a GPU), ``device``, ``gpu_available``, ``rss_peak_bytes``, ``seconds`` (fps
    denominator), ``wall_seconds``, ``slices``, ``volumes``, ``warmup`` ..., ``samples``,
    ``timeline``."""
    log = log or (lambda s: print(s, file=sys.stderr, flush=True))
    rule = warmup if isinstance(warmup, WarmupRule) else parse_warmup(warmup)
    if command is None and train_command is None:
        raise ProfileError("nothing to profile: give --command and/or --train-command")
    if command is not None and output_dir is None:
        raise ProfileError("--command needs --output-dir DIR (the folder the generator writes its volumes to)")
    if train_seconds is not None and train_seconds <= 0:
        raise ProfileError(f"--train-seconds {train_seconds}: expected a positive number of seconds")
    gpu, gpu_note = open_gpu(device) if use_gpu else (None, "GPU figures unavailable: disabled (--no-gpu)")
    res: dict[str, Any] = {
        "fps": None, "inference_peak_bytes": None, "train_peak_bytes": None,
        "device": gpu.name if gpu is not None else "cpu (no GPU measured)",
        "gpu_available": gpu is not None, "gpu_note": gpu_note, "gpu_index": device if gpu is not None else None,
        "gpu_total_bytes": gpu.total if gpu is not None else None,
        "profiler": "trace-bench profile-command (black box)", "interval_s": interval,
    }
    try:
        if command is not None:
            res.update(_profile_generation(command, Path(output_dir), fmt, gpu, interval, rule, shell, log))  # type: ignore[arg-type]
        if train_command is not None:
            res.update(_profile_training(train_command, gpu, interval, shell, train_seconds, log))
    finally:
        if gpu is not None:
            gpu.close()
    if out is not None:
        from ..results.files import atomic_write_text

        atomic_write_text(out, json.dumps(res, indent=2) + "\n")
    return res


def _profile_generation(command: str | list[str], output_dir: Path, fmt: str, gpu: NvmlSampler | None,
                        interval: float, rule: WarmupRule, shell: bool, log: Callable[[str], None]) -> dict[str, Any]:
    watcher = OutputWatcher(output_dir, fmt)
    log(f"profile-command: running {command if isinstance(command, str) else shlex.join(command)}")
    m = run_measured(command, shell=shell, interval=interval, gpu=gpu, watcher=watcher)
    files = watcher.finish()
    end = m.start + m.wall_seconds
    if m.returncode not in (0, None):
        raise ProfileError(f"--command exited with status {m.returncode} after {m.wall_seconds:.1f} s "
                           "(its output is above); nothing written")
    vols, completions, unreadable = [], [], []
    for f in files:
        t, src = f.completion_time(m.start, end)
        vols.append({"file": str(f.path), "slices": f.slices, "completed_s": round(t - m.start, 4), "time_source": src,
                     **({"error": f.error} if f.error else {})})
        if f.slices is None:
            unreadable.append(f"{f.path.name}: {f.error}")
        else:
            completions.append((t - m.start, f.slices))
    r = fps_from_outputs(completions, rule)
    notes = [x for x in (r.note, f"{len(unreadable)} output file(s) unreadable with adapter {fmt!r}, not counted: "
                         + "; ".join(unreadable[:3]) if unreadable else "") if x]
    if watcher.before:
        notes.append(f"{len(watcher.before)} volume(s) already in {output_dir} before the command were ignored "
                     "unless rewritten")
    out = {
        "fps": r.fps,
        "inference_peak_bytes": m.gpu_peak_bytes,
        "memory_kind": m.gpu_memory_kind,
        "rss_peak_bytes": m.rss_peak_bytes,
        "rss_kind": "host RSS summed over the process tree (psutil), peak over the samples",
        "gpu_device_baseline_bytes": m.gpu_device_baseline_bytes,
        "gpu_device_peak_bytes": m.gpu_device_peak_bytes,
        "gpu_process_peak_bytes": m.gpu_process_peak_bytes,
        "seconds": r.seconds,
        "wall_seconds": m.wall_seconds,
        "warmup": rule.name,
        "warmup_applied": r.applied.name,
        "warmup_rule": r.applied.describe(),
        "warmup_seconds": r.warmup_seconds,
        "slices": r.slices_total,
        "slices_counted": r.slices_counted,
        "volumes": len(completions),
        "outputs": vols,
        "command": command,
        "shell": shell,
        "output_dir": str(output_dir),
        "format": fmt,
        "returncode": m.returncode,
        "samples": m.samples,
        "timeline": m.timeline,
        "notes": notes,
    }
    fps = f"{r.fps:.3f}" if r.fps is not None else "unavailable"
    log(f"profile-command: {r.slices_total} slices in {len(completions)} volume(s), fps {fps} "
        f"(warm-up {r.applied.name}), wall {m.wall_seconds:.1f} s")
    return out


def _profile_training(command: str | list[str], gpu: NvmlSampler | None, interval: float, shell: bool,
                      seconds: float | None, log: Callable[[str], None]) -> dict[str, Any]:
    log("profile-command: running the training command"
        + (f" for {seconds:g} s" if seconds is not None else " until it exits"))
    m = run_measured(command, shell=shell, interval=interval, gpu=gpu, max_seconds=seconds)
    if not m.stopped and m.returncode not in (0, None):
        raise ProfileError(f"--train-command exited with status {m.returncode} after {m.wall_seconds:.1f} s "
                           "(its output is above); nothing written")
    peak = m.gpu_peak_bytes if gpu is not None else m.rss_peak_bytes
    return {
        "train_peak_bytes": peak,
        "train_memory_kind": m.gpu_memory_kind if gpu is not None else
        "host RSS summed over the process tree (no GPU measured)",
        "train_rss_peak_bytes": m.rss_peak_bytes,
        "train_gpu_device_peak_bytes": m.gpu_device_peak_bytes,
        "train_gpu_process_peak_bytes": m.gpu_process_peak_bytes,
        "train_command": command,
        "train_seconds": m.wall_seconds,
        "train_stopped": m.stopped,
        "train_returncode": m.returncode,
        "train_samples": m.samples,
    }
