"""Forwards per minute of the demo TRACE network on CPU, side by side in one process.

    python benchmarks/bench_generate_cpu.py [--slices 7] [--steps 10] [--rounds 3] [--batch 1]

Rows (each is Algorithm 1 on ``batch`` phantom volumes of ``slices`` slices, ``steps`` DDIM steps per pass,
timed in a fresh child process after a warm-up; rounds interleaved so that load on a shared machine hits
every row alike; medians reported; the penalty of extra threads depends on how busy the other cores are):

* ``old default``: torch's default thread count at start-up (one per core) and no per-pass cache
  (what ``trace-bench generate`` did before the thread rule);
* ``2 threads`` / ``1 thread``: with the per-pass cache; ``1 thread, no pass cache`` isolates the cache;
* ``bare forwards, 1 thread``: the network alone called in a loop with fixed inputs and the same per-pass
  cache (no sampler); the ratio sampler / bare is the sampler's per-forward overhead.

A "forward" is one network call on a batch of ``batch`` frame pairs. Also checks that the cached and
uncached sampler give bit-identical frames at 1 thread.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from trace_model.checkpoint import load_checkpoint
from trace_model.conditioning import encode_labels
from trace_model.demo import DEMO_CHECKPOINT
from trace_model.network import TraceUNet
from trace_model.profile import phantom_labels
from trace_model.sampler import SamplerOptions, sample_volumes


def count_forwards(slices: int, steps: int, mode: str = "overlap") -> int:
    return (1 + (slices - 2) * (2 if mode == "overlap" else 1)) * steps


def sampler_run(model: TraceUNet, masks: torch.Tensor, steps: int, cached: bool) -> tuple[float, torch.Tensor]:
    """Seconds of one Algorithm-1 run (and its frames); ``cached=False`` drops the per-pass cache."""
    forward = model.forward
    if not cached:
        model.forward = lambda *a, pass_cache=None, **kw: forward(*a, **kw)  # type: ignore[method-assign]
    try:
        t0 = time.perf_counter()
        res = sample_volumes(model, masks, seeds=list(range(masks.shape[0])), options=SamplerOptions(steps=steps))
        return time.perf_counter() - t0, res.frames
    finally:
        if not cached:
            del model.forward


def bare_run(model: TraceUNet, batch: int, n: int) -> float:
    """Seconds of ``n`` network calls with fixed inputs (flow given and a pass cache, as in the sampler), no
    sampler around: the network's own cost."""
    S = model.cfg.model.image_size
    g = torch.Generator().manual_seed(0)
    x, cond = torch.randn(batch, 2, S, S, generator=g), torch.rand(batch, 2, S, S, generator=g)
    pos, flow = torch.rand(batch, 2, generator=g), torch.zeros(batch, 2, S, S)
    cache: dict[str, torch.Tensor] = {}
    with torch.no_grad():
        t0 = time.perf_counter()
        for i in range(n):
            model(x, torch.full((batch,), 999 - i % 1000, dtype=torch.long), cond, pos, flow=flow, pass_cache=cache)
        return time.perf_counter() - t0


ROWS = {  # name -> (threads, or None for torch's start-up default; what runs)
    "old default": (None, "uncached"),
    "2 threads, pass cache": (2, "cached"),
    "1 thread, no pass cache": (1, "uncached"),
    "1 thread, pass cache (new default)": (1, "cached"),
    "bare forwards, 1 thread": (1, "bare"),
}


def child(row: str, slices: int, steps: int, batch: int) -> None:
    """One measurement in this fresh process; prints the seconds (and the thread count) of one run."""
    threads, what = ROWS[row]
    if threads is not None:
        torch.set_num_threads(threads)
    model = load_checkpoint(DEMO_CHECKPOINT, torch.device("cpu"))
    masks = encode_labels(phantom_labels(slices, model.cfg.model.image_size), model.cfg.conditioning)
    masks = masks[None].expand(batch, -1, -1, -1).contiguous()
    sampler_run(model, masks[:, :3], 1, True)  # warm-up
    if what == "bare":
        sec = bare_run(model, batch, count_forwards(slices, steps))
    else:
        sec = sampler_run(model, masks, steps, what == "cached")[0]
    print(sec, torch.get_num_threads())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--slices", type=int, default=7)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        return child(a.child, a.slices, a.steps, a.batch)
    fwd = count_forwards(a.slices, a.steps)
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    times: dict[str, list[float]] = {k: [] for k in ROWS}
    threads_seen: dict[str, int] = {}
    for r in range(a.rounds):
        for row in ROWS:
            out = subprocess.run([sys.executable, __file__, "--child", row, "--slices", str(a.slices), "--steps",
                                  str(a.steps), "--batch", str(a.batch)], env=env, capture_output=True, text=True,
                                 check=True).stdout.split()
            times[row].append(float(out[0]))
            threads_seen[row] = int(out[1])
        print(f"round {r + 1}/{a.rounds} done", file=sys.stderr, flush=True)
    torch.set_num_threads(1)
    model = load_checkpoint(DEMO_CHECKPOINT, torch.device("cpu"))
    masks = encode_labels(phantom_labels(a.slices, model.cfg.model.image_size), model.cfg.conditioning)[None]
    same = torch.equal(sampler_run(model, masks, 2, True)[1], sampler_run(model, masks, 2, False)[1])

    print(f"demo network, {a.batch} volume(s) x {a.slices} slices x {a.steps} steps = {fwd} forwards per run "
          f"(batch {a.batch}); one fresh process per measurement (after a warm-up), median of {a.rounds} "
          f"interleaved rounds; torch {torch.__version__}; OMP_NUM_THREADS unset in the children")
    med = {k: statistics.median(v) for k, v in times.items()}
    new = med["1 thread, pass cache (new default)"]
    print(f"{'row':<40} {'threads':>7} {'s/run':>7} {'ms/forward':>11} {'forwards/min':>13} {'worst f/min':>12} "
          f"{'vs new':>7}  runs (s)")
    for k, s in med.items():
        runs = ", ".join(f"{x:.2f}" for x in times[k])
        print(f"{k:<40} {threads_seen[k]:>7} {s:7.2f} {1000 * s / fwd:11.1f} {60 * fwd / s:13.0f} "
              f"{60 * fwd / max(times[k]):12.0f} {s / new:6.2f}x  {runs}")
    print(f"speed-up new default vs old default: {med['old default'] / new:.2f}x")
    print(f"pass cache alone (1 thread): {med['1 thread, no pass cache'] / new:.3f}x")
    print(f"sampler overhead (sampler / bare forwards, 1 thread): {new / med['bare forwards, 1 thread']:.3f}x")
    print(f"cached == uncached frames (bitwise, 1 thread): {same}")


if __name__ == "__main__":
    main()
