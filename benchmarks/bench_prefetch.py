"""`trace-bench run --prefetch` vs `--no-prefetch` on the same cases, side by side in one run (issue
"Speed": decode the next volume on a background thread while the current one is scored).

Cases: N copies of the shipped demo CTs at full size (48-61 x 256 x 256, gzip NIfTI), each with a
"generated" copy with seeded noise (bench_workers.make_cases); metrics: the
weight-free set by default (temporal flickering + threshold segmentation with HD95), optionally others.

    .venv/bin/python benchmarks/bench_prefetch.py [--cases 8] [--metrics weight-free] [--repeats 2]

Prints the per-case stage time of each setting (from the run's provenance) and the ratio. The gain is
at most the decode share of a case: large when metrics are cheap (weight-free) or run on a GPU, small
when a CPU backbone dominates.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_workers import make_cases  # noqa: E402  (whole volumes: slices=None)


def per_case_seconds(out: Path) -> float:
    prov = json.loads((out / "provenance.json").read_text(encoding="utf-8"))
    return float(prov["timings_s"]["per_case_s"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cases", type=int, default=8)
    ap.add_argument("--metrics", default="weight-free")
    ap.add_argument("--repeats", type=int, default=2)
    a = ap.parse_args()
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    with tempfile.TemporaryDirectory() as d:
        ref, gen = make_cases(Path(d), a.cases, slices=None)
        times: dict[str, list[float]] = {"--prefetch": [], "--no-prefetch": []}
        for r in range(a.repeats):
            for flag in times:
                out = Path(d) / f"out{flag}-{r}"
                cmd = [sys.executable, "-m", "trace_bench", "run", "--reference", str(ref), "--method", f"gen={gen}",
                       "--metrics", a.metrics, "--no-progress", "--no-plots", "--bootstrap", "100", flag,
                       "--out", str(out)]
                subprocess.run(cmd, check=True, capture_output=True, env=env)
                times[flag].append(per_case_seconds(out))
        on, off = min(times["--prefetch"]), min(times["--no-prefetch"])
        print(f"cases: {a.cases} x 2 volumes, metrics: {a.metrics}, OMP_NUM_THREADS=1, best of {a.repeats}")
        print(f"per-case stage  --no-prefetch {off:7.2f} s   --prefetch {on:7.2f} s   speed-up {off / on:5.2f}x")


if __name__ == "__main__":
    main()
