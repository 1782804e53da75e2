"""CPU seconds and peak RSS of CLI start-up, side by side (optionally against another checkout).

    python benchmarks/bench_cli_startup.py [--repeat 5] [--baseline /path/to/older/checkout]

Commands: ``trace-bench --help``, ``trace-bench inspect --help``, ``trace-bench inspect FILE`` (the shipped
demo CT) and ``python -c "import trace_bench"``. Each runs as a child process with its checkout as the
working directory (so that checkout's package is imported); CPU = user + system seconds from
``resource.getrusage(RUSAGE_CHILDREN)`` deltas around the child, RSS = the child's ``ru_maxrss`` from
``os.wait4``. Repeats are interleaved (all commands, all checkouts, then again); medians are printed with
the target verdict (< 0.5 s CPU for ``--help`` and ``inspect --help``) and, with ``--baseline``, the ratio
baseline / this checkout.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEMO_CT = ROOT / "trace_bench" / "data" / "demo" / "reference" / "lung1.nii.gz"
TARGET_S = 0.5
COMMANDS = {
    "--help": ["-m", "trace_bench", "--help"],
    "inspect --help": ["-m", "trace_bench", "inspect", "--help"],
    "inspect FILE": ["-m", "trace_bench", "inspect", str(DEMO_CT)],
    "import trace_bench": ["-c", "import trace_bench"],
}


def measure(args: list[str], cwd: Path) -> tuple[float, float]:
    """(CPU seconds, peak RSS MiB) of ``python ARGS`` run in ``cwd``."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    p = subprocess.Popen([sys.executable, *args], cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, ru = os.wait4(p.pid, 0)
    p.returncode = os.waitstatus_to_exitcode(status)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if p.returncode != 0:
        raise SystemExit(f"{args} in {cwd} failed with status {p.returncode}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return cpu, ru.ru_maxrss / 1024  # Linux: KiB


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--baseline", type=Path, default=None, help="another checkout of trace-bench to compare with")
    a = ap.parse_args()
    trees = {"this": ROOT} | ({"baseline": a.baseline.resolve()} if a.baseline else {})
    res: dict[tuple[str, str], list[tuple[float, float]]] = {(t, c): [] for t in trees for c in COMMANDS}
    for _ in range(a.repeat):
        for c, args in COMMANDS.items():
            for t, root in trees.items():
                res[(t, c)].append(measure(args, root))
    print(f"python {sys.version.split()[0]}; median of {a.repeat} interleaved runs; CPU = user + sys of the child")
    head = f"{'command':<20} {'CPU s':>7} {'RSS MiB':>8}"
    if a.baseline:
        head += f" {'base CPU s':>10} {'base RSS':>9} {'CPU ratio':>10}"
    print(head + "  verdict")
    for c in COMMANDS:
        cpu = statistics.median(x[0] for x in res[("this", c)])
        rss = statistics.median(x[1] for x in res[("this", c)])
        line = f"{c:<20} {cpu:7.2f} {rss:8.0f}"
        if a.baseline:
            bcpu = statistics.median(x[0] for x in res[("baseline", c)])
            brss = statistics.median(x[1] for x in res[("baseline", c)])
            line += f" {bcpu:10.2f} {brss:9.0f} {bcpu / cpu:9.2f}x"
        verdict = (f"{'OK' if cpu < TARGET_S else 'OVER'} (target < {TARGET_S} s)" if c.endswith("--help") else "")
        print(line + "  " + verdict)


if __name__ == "__main__":
    main()
