"""`trace-bench run -j 1` vs `-j 2` on the same cases, side by side in one run (issue "Speed": workers
receive the Plan instead of re-planning; before, `-j 2` gave no gain on this 2-core machine).

Cases: N crops of the shipped demo CTs (distinct z ranges), a "generated" copy with seeded noise;
metrics: the weight-free set (temporal flickering + threshold segmentation), optionally `fid`.

    .venv/bin/python benchmarks/bench_workers.py [--cases 8] [--metrics weight-free] [--repeats 1]

Prints wall time of each setting and the ratio; each setting runs in a fresh output folder. The
machine has 2 cores: the best possible ratio is 2x, less when other work runs.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def make_cases(root: Path, n: int, slices: int | None = 24) -> tuple[Path, Path]:
    """N reference crops of the demo CTs (``slices`` slices from distinct z offsets; None = whole
    volumes) in ROOT/ref and noisy "generated" copies in ROOT/gen."""
    from trace_bench.io import read_volume, write_nifti
    from trace_bench.volume import Volume

    demo = Path(__file__).resolve().parents[1] / "trace_bench" / "data" / "demo" / "reference"
    vols = [read_volume(p) for p in sorted(demo.glob("*.nii.gz"))]
    rng = np.random.default_rng(0)
    for i in range(n):
        v = vols[i % len(vols)]
        z0 = (i // len(vols)) * 2 if slices else 0
        crop = Volume(v.array[z0:z0 + slices].copy() if slices else v.array, v.spacing, v.affine, {})
        write_nifti(crop, root / "ref" / f"c{i:03d}.nii.gz")
        noisy = crop.with_array(crop.array + rng.normal(0, 40, crop.shape).astype(np.float32))
        write_nifti(noisy, root / "gen" / f"c{i:03d}.nii.gz")
    return root / "ref", root / "gen"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--cases", type=int, default=8)
    ap.add_argument("--metrics", default="weight-free")
    ap.add_argument("--repeats", type=int, default=1)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        ref, gen = make_cases(Path(d), a.cases)
        times: dict[int, list[float]] = {1: [], 2: []}
        for r in range(a.repeats):
            for j in (1, 2):
                out = Path(d) / f"out-j{j}-{r}"
                cmd = [sys.executable, "-m", "trace_bench", "run", "--reference", str(ref), "--method", f"gen={gen}",
                       "--metrics", a.metrics, "--no-progress", "--no-plots", "--bootstrap", "100", "-j", str(j),
                       "--out", str(out)]
                t = time.perf_counter()
                subprocess.run(cmd, check=True, capture_output=True, env={"OMP_NUM_THREADS": "1", **dict(__import__("os").environ)})
                times[j].append(time.perf_counter() - t)
        t1, t2 = min(times[1]), min(times[2])
        print(f"{a.cases} cases x 2 volumes, metrics {a.metrics}")
        print(f"-j 1: {t1:7.1f} s")
        print(f"-j 2: {t2:7.1f} s")
        print(f"speed-up -j 2 / -j 1: {t1 / t2:5.2f}x (2 cores: at most 2x)")


if __name__ == "__main__":
    main()
