"""Planning's input hashes with and without the hash cache, side by side.

    python benchmarks/bench_hash_cache.py [--copies 20] [--rounds 3]

Makes ``copies`` copies of the shipped demo CT (``lung1.nii.gz``, 3.5 MB) in a temporary folder and times
``trace_bench.inputs.input_hash`` over all of them, each measurement in a fresh child process (so no
in-process memo helps):

* ``off``: ``TRACE_BENCH_HASH_CACHE=0`` (what every run paid before the cache);
* ``cold``: an empty cache folder (hash + write one entry per file);
* ``warm``: the cache filled by the cold run (stat + read one small JSON per file).

Rounds are interleaved (off, cold, warm, off, ...); medians are printed with the ratios off / warm and
cold / off. The files stay in the OS page cache, so "cold" means a cold hash cache, not a cold disk
(with files read from disk the warm run saves more).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DEMO_CT = ROOT / "trace_bench" / "data" / "demo" / "reference" / "lung1.nii.gz"
CHILD = ("import sys, time\n"
         "from pathlib import Path\n"
         "from trace_bench.inputs import input_hash\n"
         "files = sorted(Path(sys.argv[1]).glob('*.nii.gz'))\n"
         "t0 = time.perf_counter(); c0 = time.process_time()\n"
         "digests = {input_hash(f) for f in files}\n"
         "print(time.perf_counter() - t0, time.process_time() - c0, len(digests))\n")


def timed(folder: Path, cache: Path, enabled: bool) -> tuple[float, float]:
    """(wall s, CPU s) of hashing every file in ``folder`` in a child process."""
    env = {**os.environ, "TRACE_BENCH_CACHE": str(cache), "TRACE_BENCH_HASH_CACHE": "1" if enabled else "0"}
    r = subprocess.run([sys.executable, "-c", CHILD, str(folder)], cwd=ROOT, env=env, capture_output=True, text=True,
                       check=True)
    wall, cpu, n = r.stdout.split()
    assert int(n) == 1, "copies of one file must share one digest"
    return float(wall), float(cpu)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--copies", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args()
    from trace_bench.inputs import RACY_SECONDS

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "volumes"
        folder.mkdir()
        for i in range(a.copies):
            shutil.copy2(DEMO_CT, folder / f"case{i:03d}.nii.gz")
        time.sleep(RACY_SECONDS + 0.2)  # files changed this recently are never cached (see trace_bench.inputs)
        res: dict[str, list[tuple[float, float]]] = {"off": [], "cold": [], "warm": []}
        for r in range(a.rounds):
            cache = Path(tmp) / f"cache{r}"
            res["off"].append(timed(folder, cache, False))
            res["cold"].append(timed(folder, cache, True))
            res["warm"].append(timed(folder, cache, True))
        size = sum(f.stat().st_size for f in folder.iterdir()) / 2**20
    print(f"{a.copies} copies of {DEMO_CT.name} ({size:.0f} MiB in all); median of {a.rounds} interleaved rounds, "
          f"one child process per measurement")
    med = {k: (statistics.median(x[0] for x in v), statistics.median(x[1] for x in v)) for k, v in res.items()}
    print(f"{'hash cache':<12} {'wall s':>8} {'CPU s':>8}")
    for k, (w, c) in med.items():
        print(f"{k:<12} {w:8.3f} {c:8.3f}")
    print(f"off / warm (wall): {med['off'][0] / med['warm'][0]:.1f}x; cold / off (wall): "
          f"{med['cold'][0] / med['off'][0]:.2f}x")


if __name__ == "__main__":
    main()
