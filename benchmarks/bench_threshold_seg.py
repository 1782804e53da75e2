"""``threshold`` segmenter speed: the scipy path before and after the speed work, and the torch path, on
the same volumes, side by side.

Volumes: the shipped chest CTs ``lung1`` (48 x 256 x 256, 5 x 1.14 x 1.14 mm) and ``lung2``
(61 x 256 x 256), and with ``--upsample 2`` the same volumes repeated 2x in-plane (512 x 512, spacing
halved: the in-plane size of most clinical chest CT; the opening disc doubles in voxels).

Each row: the scipy path as it was before the speed work (:func:`frozen_threshold_segment`, a frozen
copy kept in this file: ``binary_opening`` with the disc, largest component of the whole volume,
``binary_fill_holes`` slice by slice, ``np.isin``), the scipy path now
(:func:`trace_bench.segmenters.threshold.threshold_segment`, single-threaded, same maps bit for bit:
the script stops otherwise) with the ratio before / now, the torch path
(:func:`trace_bench.segmenters.threshold_torch.threshold_segment_torch`)
on the CPU (``--torch-threads`` threads, default 1 like scipy; ``--torch-cpu-repeat 0`` skips it) and
on CUDA when a GPU is present, with the ratio scipy / torch (> 1: torch is faster). Times are
end to end from a numpy HU array to a numpy label map (host -> device -> host transfers included),
best of ``--repeat`` runs after one warm-up. Every torch label map must equal the scipy one bit for
bit, or the script stops. Torch on the CPU is expected to be slower than scipy: scipy labels in one
sequential union-find pass (hole filling too: one labelling of the background), while the torch path
makes several whole-volume sweeps (hooking and pointer jumping), which pay off on a GPU only. Run:

    .venv/bin/python benchmarks/bench_threshold_seg.py [--repeat 3] [--upsample 1 2] [--torch-threads 1]

Times are CPU seconds of this process (``time.process_time``; the machine may be shared) for the
scipy columns, wall seconds for torch (GPU work is not CPU time).
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


def _frozen_largest(mask: np.ndarray) -> np.ndarray:
    from scipy import ndimage as ndi

    lab, n = ndi.label(mask)
    if n == 0:
        return mask
    sizes = np.bincount(lab.ravel())
    sizes[0] = 0
    return lab == int(sizes.argmax())


def _frozen_fill_axial(mask: np.ndarray) -> np.ndarray:
    from scipy import ndimage as ndi

    out = np.empty_like(mask)
    for k in range(mask.shape[0]):
        out[k] = ndi.binary_fill_holes(mask[k])
    return out


def frozen_threshold_segment(hu: np.ndarray, spacing) -> np.ndarray:
    """FROZEN COPY of ``threshold_segment`` (threshold-v1) before the speed work (main at 0a3977d), the
    "before" column; ``tests/segmenters/test_seg_threshold_identity.py`` holds the same copy as its reference."""
    from scipy import ndimage as ndi

    a = np.asarray(hu, dtype=np.float32)
    _, sy, sx = (float(s) for s in spacing)
    ry, rx = max(1, int(round(3.0 / sy))), max(1, int(round(3.0 / sx)))
    yy, xx = np.mgrid[-ry:ry + 1, -rx:rx + 1]
    st = ((yy / max(ry, 1)) ** 2 + (xx / max(rx, 1)) ** 2 <= 1.0)[None]
    body = ndi.binary_opening(a > -500.0, structure=st)
    body = _frozen_fill_axial(_frozen_largest(body))
    air = body & (a < -400.0)
    lab, n = ndi.label(air)
    lungs = np.zeros_like(air)
    if n:
        sizes = np.bincount(lab.ravel())
        sizes[0] = 0
        keep = np.flatnonzero(sizes >= 0.10 * sizes.max())
        lungs = _frozen_fill_axial(np.isin(lab, keep)) & body
    out = np.zeros(a.shape, dtype=np.uint8)
    out[body] = 2
    out[lungs] = 1
    return out


def _best(fn, repeat: int, clock=time.perf_counter) -> tuple[float, np.ndarray]:
    out = fn()  # warm-up (CUDA context and kernels; caches)
    times = []
    for _ in range(repeat):
        t = clock()
        out = fn()
        times.append(clock() - t)
    return min(times), out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--upsample", type=int, nargs="+", default=[1],
                    help="in-plane repeat factors (1: native 256 x 256)")
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
    print(f"{'volume':<10} {'shape':<16} {'before s':>8} {'scipy s':>8} {'bef/now':>8} {'torch cpu s':>12} "
          f"{'scipy/it':>9} {'torch cuda s':>13} {'scipy/it':>9}  equal  lungs / body voxels")
    for name in ("lung1", "lung2"):
        v = read_volume(demo / f"{name}.nii.gz")
        for f in args.upsample:
            hu = np.ascontiguousarray(np.repeat(np.repeat(v.array, f, axis=1), f, axis=2))
            sp = (v.spacing[0], v.spacing[1] / f, v.spacing[2] / f)
            t_old, old = _best(functools.partial(frozen_threshold_segment, hu, sp), args.repeat, time.process_time)
            t_sc, ref = _best(functools.partial(threshold_segment, hu, sp), args.repeat, time.process_time)
            if not np.array_equal(old, ref):
                raise SystemExit(f"{name} x{f}: the scipy path differs from the frozen one in "
                                 f"{int(np.count_nonzero(old != ref))} voxels")
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
            print(f"{name + (f' x{f}' if f > 1 else ''):<10} {hu.shape!s:<16} {t_old:8.3f} {t_sc:8.3f} "
                  f"{t_old / t_sc:7.2f}x {cells[0]:>12} "
                  f"{cells[1]:>9} {cells[2]:>13} {cells[3]:>9}  yes    {counts[1]} / {counts[2]}")
    if not cuda:
        print("no CUDA device here: the GPU column is empty (the torch path is meant for GPUs)")


if __name__ == "__main__":
    main()
