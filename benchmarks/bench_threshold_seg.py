"""``threshold`` segmenter speed: the scipy path vs the torch path on the same volumes, side by side.

Volumes: the shipped chest CTs ``lung1`` (48 x 256 x 256, 5 x 1.14 x 1.14 mm) and ``lung2``
(61 x 256 x 256), and with ``--upsample 2`` the same volumes repeated 2x in-plane (512 x 512, spacing
halved: the in-plane size of most clinical chest CT; the opening disc doubles in voxels).

Each row: the scipy path (:func:`trace_bench.segmenters.threshold.threshold_segment`, single-threaded
``scipy.ndimage``), the torch path (:func:`trace_bench.segmenters.threshold_torch.threshold_segment_torch`)
on the CPU (``--torch-threads`` threads, default 1 like scipy; ``--torch-cpu-repeat 0`` skips it) and
on CUDA when a GPU is present, with the ratio scipy / torch (> 1: torch is faster). Times are
end to end from a numpy HU array to a numpy label map (host -> device -> host transfers included),
best of ``--repeat`` runs after one warm-up. Every torch label map must equal the scipy one bit for
bit, or the script stops. Torch on the CPU is expected to be slower than scipy: scipy labels in one
sequential union-find pass and fills holes with a frontier-driven flood fill, while the torch path
makes several whole-volume sweeps (hooking and pointer jumping), which pay off on a GPU only. Run:

    .venv/bin/python benchmarks/bench_threshold_seg.py [--repeat 3] [--upsample 1 2] [--torch-threads 1]
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _best(fn, repeat: int) -> tuple[float, np.ndarray]:
    out = fn()  # warm-up (CUDA context and kernels; caches)
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return min(times), out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--upsample", type=int, nargs="+", default=[1], help="in-plane repeat factors (1: native 256 x 256)")
    ap.add_argument("--torch-threads", type=int, default=1, help="torch CPU threads for the torch-on-CPU column")
    ap.add_argument("--torch-cpu-repeat", type=int, default=None, help="runs of the torch path on the CPU (0: skip)")
    args = ap.parse_args()

    import torch

    from trace_bench.io import read_volume
    from trace_bench.segmenters.threshold import threshold_segment
    from trace_bench.segmenters.threshold_torch import threshold_segment_torch

    torch.set_num_threads(args.torch_threads)
    cuda = torch.cuda.is_available()
    cpu_repeat = args.repeat if args.torch_cpu_repeat is None else args.torch_cpu_repeat
    demo = ROOT / "trace_bench" / "data" / "demo" / "reference"
    print(f"cores {os.cpu_count()}, torch {torch.__version__} threads {torch.get_num_threads()}, "
          f"CUDA {torch.cuda.get_device_name(0) if cuda else 'none'}; best of {args.repeat} after a warm-up")
    print(f"{'volume':<10} {'shape':<16} {'scipy s':>8} {'torch cpu s':>12} {'scipy/it':>9} {'torch cuda s':>13} "
          f"{'scipy/it':>9}  equal  lungs / body voxels")
    for name in ("lung1", "lung2"):
        v = read_volume(demo / f"{name}.nii.gz")
        for f in args.upsample:
            hu = np.ascontiguousarray(np.repeat(np.repeat(v.array, f, axis=1), f, axis=2))
            sp = (v.spacing[0], v.spacing[1] / f, v.spacing[2] / f)
            t_sc, ref = _best(functools.partial(threshold_segment, hu, sp), args.repeat)
            cells = []
            for dev, rep in (("cpu", cpu_repeat), ("cuda", args.repeat if cuda else 0)):
                if rep <= 0:
                    cells += ["-", "-"]
                    continue
                t_t, got = _best(functools.partial(threshold_segment_torch, hu, sp, dev), rep)
                if not np.array_equal(got, ref):
                    raise SystemExit(f"{name} x{f}: torch path on {dev} differs from scipy in "
                                     f"{int(np.count_nonzero(got != ref))} voxels")
                cells += [f"{t_t:.3f}", f"{t_sc / t_t:.2f}x"]
            counts = np.bincount(ref.ravel(), minlength=3)
            print(f"{name + (f' x{f}' if f > 1 else ''):<10} {hu.shape!s:<16} {t_sc:8.3f} {cells[0]:>12} "
                  f"{cells[1]:>9} {cells[2]:>13} {cells[3]:>9}  yes    {counts[1]} / {counts[2]}")
    if not cuda:
        print("no CUDA device here: the GPU column is empty (the torch path is meant for GPUs)")


if __name__ == "__main__":
    main()
