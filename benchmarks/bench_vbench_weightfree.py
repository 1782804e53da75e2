"""Time per volume of the weight-free VBench parts vs the time to load and decode the volume.

Target (issue 5): weight-free work <= 1x load+decode. Measured side by side on the shipped chest
CTs (``trace_bench/data/demo/reference``), median of ``--repeat`` runs, in one process.

* load+decode: ``trace_bench.io.read_volume`` (gzip NIfTI -> canonical float32 HU volume);
* weight-free: frames (``ct-frames-v1``: resize + HU window, once per volume), temporal flickering,
  and the formula stages of the backboned dimensions on stand-in inputs of the real sizes
  (consistency on (T, 768) features, motion smoothness on uint8 predictions, ViCLIP frame sampling);
* for information: the backbone preprocessing (DINO / CLIP / MUSIQ / ViCLIP resizes), which runs
  only when the backbones run and is small next to them.

Usage: ``python benchmarks/bench_vbench_weightfree.py [--repeat 5]``
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np

import trace_bench
from trace_bench.io import read_volume
from trace_bench.metrics import subject_consistency, temporal_flickering
from trace_bench.metrics.vbench.consistency import clip_preprocess, dino_preprocess
from trace_bench.metrics.vbench.imaging_quality import musiq_preprocess
from trace_bench.metrics.vbench.motion_smoothness import motion_smoothness_from_predictions
from trace_bench.metrics.vbench.overall_consistency import middle_frame_indices, viclip_preprocess
from trace_bench.protocol import DEFAULT_PROTOCOL

DEMO = Path(trace_bench.__file__).parent / "data" / "demo" / "reference"


def median_time(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    print(f"{'volume':<8} {'slices':>6} {'load+decode s':>14} {'weight-free s':>14} {'ratio':>6} {'bb-preproc s':>13}")
    ratios = []
    for path in sorted(DEMO.glob("*.nii.gz")):
        vol = read_volume(path)
        frames = DEFAULT_PROTOCOL.frames(vol)
        t_n = frames.shape[0]
        feats = rng.normal(size=(t_n, 768)).astype(np.float32)
        preds = np.repeat(frames[1::2][: (t_n + 1) // 2 - 1, ..., None], 3, axis=-1)

        def weight_free() -> None:
            f = DEFAULT_PROTOCOL.frames(vol)
            temporal_flickering(f)
            subject_consistency(feats)  # subject + background share the formula
            subject_consistency(feats)
            motion_smoothness_from_predictions(f, preds)
            middle_frame_indices(8, t_n)

        def preprocessing() -> None:
            dino_preprocess(frames)
            clip_preprocess(frames)
            musiq_preprocess(frames)
            viclip_preprocess(frames)

        t_load = median_time(lambda: read_volume(path), args.repeat)
        t_free = median_time(weight_free, args.repeat)
        t_pre = median_time(preprocessing, args.repeat)
        ratios.append(t_free / t_load)
        print(f"{path.name.split('.')[0]:<8} {t_n:>6} {t_load:>14.4f} {t_free:>14.4f} {t_free / t_load:>6.2f} {t_pre:>13.4f}")
    worst = max(ratios)
    print(f"worst ratio weight-free / load+decode = {worst:.2f} (target <= 1.00): {'OK' if worst <= 1.0 else 'MISSED'}")


if __name__ == "__main__":
    main()
