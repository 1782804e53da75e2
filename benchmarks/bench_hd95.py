"""HD95 speed: trace_bench.metrics.hd95 vs MONAI HausdorffDistanceMetric(percentile=95), side by side.

Inputs: 3-class label maps (``threshold`` segmenter: 1 lungs, 2 other body) of the shipped chest
CT ``lung1`` at full resolution (48 x 256 x 256, 5 x 1.14 x 1.14 mm), scored against two
"generated" maps on the same grid:

* ``shifted``: lung1's own map moved by 2 slices and 3 rows with the lungs eroded by 2 voxels
  (a near miss, the common case of a good generator);
* ``lung2``: the map of the other patient (lung2, 61 slices) mapped onto lung1's grid with the
  ``extent`` rule (a different anatomy).

Both implementations get the same one-hot classes and spacing; values must agree to 1e-3 mm.
The torch path (``hd95(..., device=...)``, :mod:`trace_bench.metrics.hausdorff_torch`) is timed
too: on the CPU for the record (``--torch-cpu-repeat`` runs, 0 to skip; it is brute force in
float32 with an exact float64 re-check, ~100-200x slower than the KD-trees there: minutes per
case on 2 cores) and on CUDA when a GPU is present; its values must equal ours exactly.
Timing: best of ``--repeat`` runs each (after one warm-up), interleaved; "ours" uses all cores
(threads across classes, parallel KD-tree queries), "1-thread" shows the single-core gain. Run:

    .venv/bin/python benchmarks/bench_hd95.py [--repeat 5] [--threads N] [--torch-cpu-repeat 1]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _cases():
    from scipy import ndimage as ndi

    from trace_bench.io import read_volume
    from trace_bench.metrics.segmentation import resample_labels
    from trace_bench.segmenters import threshold_segment

    demo = ROOT / "trace_bench" / "data" / "demo" / "reference"
    v1, v2 = read_volume(demo / "lung1.nii.gz"), read_volume(demo / "lung2.nii.gz")
    ref = threshold_segment(v1.array, v1.spacing)
    shifted = np.roll(ref, (2, 3), axis=(0, 1))
    shifted[(shifted == 1) & ~ndi.binary_erosion(shifted == 1, iterations=2)] = 2
    other = resample_labels(threshold_segment(v2.array, v2.spacing), ref.shape, "extent")
    return v1.spacing, ref, {"shifted": shifted, "lung2": other}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--threads", type=int, default=None, help="trace-bench worker threads (default: all cores)")
    ap.add_argument("--torch-cpu-repeat", type=int, default=1, help="runs of the torch path on the CPU (0: skip)")
    args = ap.parse_args()

    import torch
    from monai.metrics import HausdorffDistanceMetric

    from trace_bench.metrics import hd95
    from trace_bench.metrics.hausdorff import hd95_torch

    cuda = torch.cuda.is_available()

    spacing, ref, cases = _cases()
    labels = [1, 2]
    print(f"grid {ref.shape} spacing {tuple(round(s, 4) for s in spacing)} mm, classes {labels}, "
          f"cores {os.cpu_count()}, torch threads {torch.get_num_threads()}")
    print(f"{'case':<8} {'monai s':>9} {'ours s':>9} {'ratio':>7} {'ours 1-thread s':>16} {'ratio':>7}   max |diff| mm   hd95 per class (ours)")
    ratios = []
    torch_rows = []
    for name, pred in cases.items():
        y_pred = torch.from_numpy(np.stack([pred == l for l in labels])[None].astype(np.float32))
        y = torch.from_numpy(np.stack([ref == l for l in labels])[None].astype(np.float32))
        metric = HausdorffDistanceMetric(include_background=True, percentile=95, reduction="none")

        def run_monai():
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                return metric(y_pred, y, spacing=list(spacing))[0].numpy()

        def run_ours():
            return hd95(pred, ref, spacing, labels=labels, threads=args.threads)

        def run_ours1():
            return hd95(pred, ref, spacing, labels=labels, threads=1)

        run_monai(), run_ours()  # warm-up
        tm, to, t1 = [], [], []
        for _ in range(args.repeat):
            t = time.perf_counter()
            vm = run_monai()
            tm.append(time.perf_counter() - t)
            t = time.perf_counter()
            vo = run_ours()
            to.append(time.perf_counter() - t)
            t = time.perf_counter()
            run_ours1()
            t1.append(time.perf_counter() - t)
        diff = float(np.max(np.abs(np.array([vo[l] for l in labels]) - vm)))
        r = min(tm) / min(to)
        ratios.append(r)
        print(f"{name:<8} {min(tm):9.3f} {min(to):9.3f} {r:6.2f}x {min(t1):16.3f} {min(tm) / min(t1):6.2f}x   {diff:.2e}        "
              + ", ".join(f"{l}: {vo[l]:.3f}" for l in labels))
        if diff > 1e-3:
            raise SystemExit(f"values differ from MONAI by {diff} mm")
        row = [name, min(to)]
        for dev, rep in (("cpu", args.torch_cpu_repeat), ("cuda", args.repeat if cuda else 0)):
            if rep <= 0:
                row += [None]
                continue

            def run_torch():
                out = hd95_torch(pred, ref, spacing, labels=labels, device=dev)
                if dev == "cuda":
                    torch.cuda.synchronize()
                return out

            if dev == "cuda":
                run_torch()  # warm-up (CUDA context, kernels)
            tt = []
            for _ in range(rep):
                t = time.perf_counter()
                vt = run_torch()
                tt.append(time.perf_counter() - t)
            if vt != vo:
                raise SystemExit(f"torch path on {dev} differs from the numpy path: {vt} vs {vo}")
            row += [min(tt)]
        torch_rows.append(row)
    print(f"speed-up vs MONAI (geometric mean): {float(np.exp(np.mean(np.log(ratios)))):.2f}x")
    print(f"\ntorch path (values equal to ours exactly){'' if cuda else '; no CUDA device: GPU column empty'}")
    print(f"{'case':<8} {'ours s':>9} {'torch cpu s':>12} {'ours/it':>8} {'torch cuda s':>13} {'ours/it':>8}")
    for name, t_ours, t_cpu, t_cuda in torch_rows:
        cells = []
        for v in (t_cpu, t_cuda):
            cells += ["-", "-"] if v is None else [f"{v:.3f}", f"{t_ours / v:.2f}x"]
        print(f"{name:<8} {t_ours:9.3f} {cells[0]:>12} {cells[1]:>8} {cells[2]:>13} {cells[3]:>8}")


if __name__ == "__main__":
    main()
