"""`trace-bench run -j 1` vs `-j 2` (threads, the default) vs `-j 2` with worker processes, side by side in
one run (issue 34: "-j 2 >= 1.6x on 16 cases with peak memory <= 1.3x -j 1").

Cases: ``--cases`` 512 x 512 chest CTs of 44-61 slices and their noisy copies (``bench_case_cost.make_cases``,
kept in ``--data`` between runs). Command: ``python -m trace_bench run --metrics
temporal_flickering,dice,jaccard,hd95 --segmenter threshold --no-plots -j J`` with ``TRACE_BENCH_WORKERS=threads``
or ``processes``; every run gets a fresh output folder and a fresh ``TRACE_BENCH_CACHE`` (cold: nothing
cached, label maps computed), ``OMP_NUM_THREADS=1``. Settings are interleaved round by round (``--repeats``),
medians reported. Per setting:

* ``wall``: the whole command; ``per-case``: the per-case stage's wall time (``provenance.json``
  ``per_case_s``), what ``-j`` parallelises;
* ``CPU``: user + system of the whole process tree (``RUSAGE_CHILDREN``);
* ``peak RSS``: the largest sum of the resident set sizes of the command's process tree, sampled every
  50 ms (:class:`trace_bench.profiling.process.ProcessTree`, what ``trace-bench profile`` measures);
* ``cores``: CPU / wall, the cores the command kept busy on average.

The load average before and after is printed: on a shared machine a ratio is only as good as the cores that
were free while it ran (``os.sched_getaffinity`` cores; at most 2x on 2 cores). The per-case tables of
every setting are checked to be byte-identical.

Part 2 (``--gil``, default on), what threads can gain whatever the machine's load: the share of the
per-case work during which the GIL is held, measured in this process on the first cases' tasks
(:func:`process_task`, label-map cache off) by a sampler thread that sleeps 0.5 ms and records how late it
wakes (it waits for the GIL while the work holds it). The same probe on pure-Python code (holds the GIL)
and on ``numpy.sort`` (releases it) at the same time calibrates it: ``held = (x - numpy) / (python -
numpy)``. Amdahl's bound for N threads is ``1 / (held + (1 - held) / N)``.

    .venv/bin/python benchmarks/bench_workers.py [--cases 16] [--repeats 3] [--data DIR] [--keep] [--no-gil]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_case_cost import make_cases  # noqa: E402

METRICS = "temporal_flickering,dice,jaccard,hd95"
SETTINGS = (("-j 1", 1, "threads"), ("-j 2 threads", 2, "threads"), ("-j 2 processes", 2, "processes"))


def measured(cmd: list[str], env: dict[str, str], interval: float = 0.05) -> dict[str, float]:
    """Wall, CPU of the process tree and its peak summed RSS while ``cmd`` runs."""
    from trace_bench.profiling.process import ProcessTree

    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=ROOT)
    tree, peak = ProcessTree(proc.pid), 0
    while proc.poll() is None:
        peak = max(peak, tree.sample().rss_bytes)
        time.sleep(interval)
    err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{err[-2000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"wall": wall, "cpu": cpu, "rss": peak / 2**30}


def run_setting(ref: Path, gen: Path, work: Path, name: str, j: int, kind: str) -> dict[str, float]:
    out, cache = work / f"out-{name.replace(' ', '_')}", work / f"cache-{name.replace(' ', '_')}"
    for p in (out, cache):
        shutil.rmtree(p, ignore_errors=True)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
           "TRACE_BENCH_CACHE": str(cache), "TRACE_BENCH_WORKERS": kind, "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "trace_bench", "run", "--reference", str(ref), "--method", f"gen={gen}",
           "--metrics", METRICS, "--segmenter", "threshold", "--no-plots", "--no-progress", "--bootstrap", "200",
           "-j", str(j), "--out", str(out)]
    m = measured(cmd, env)
    m["per_case"] = float(json.loads((out / "provenance.json").read_text())["timings_s"]["per_case_s"])
    m["tables"] = (out / "per_case.csv").read_bytes() + (out / "summary.csv").read_bytes()
    return m


def unavailable_share(fn) -> tuple[float, float]:
    """(wall s, share of the wall a sleeping 0.5 ms sampler thread waited beyond its sleep) while ``fn`` runs."""
    import threading

    done, late = threading.Event(), []

    def sampler() -> None:
        while not done.is_set():
            t = time.perf_counter()
            time.sleep(0.0005)
            late.append(time.perf_counter() - t - 0.0005)

    th = threading.Thread(target=sampler)
    t0 = time.perf_counter()
    th.start()
    fn()
    done.set()
    th.join()
    wall = time.perf_counter() - t0
    return wall, sum(late) / wall


def gil_part(ref: Path, gen: Path, work: Path, n_tasks: int = 4) -> None:
    import numpy as np

    from trace_bench.config import RunConfig
    from trace_bench.run.execute import Reader, process_task
    from trace_bench.run.plan import plan_run

    os.environ["TRACE_BENCH_LABEL_CACHE"] = "0"  # every label map computed, as in a cold run
    out = work / "out-gil"
    plan = plan_run(RunConfig(out=str(out), reference=str(ref), methods={"gen": str(gen)},
                              metrics=METRICS.split(","), segmenter="threshold", plots=False, progress=False))
    out.mkdir(parents=True, exist_ok=True)
    tasks: dict[tuple[str, str], list] = {}
    for e in plan.entries:
        tasks.setdefault(e.task, []).append(e)
    items = list(tasks.items())[: n_tasks + 2]
    (m0, c0), es0 = items[0]
    process_task(plan, m0, plan.pairing.case(c0), es0, Reader())  # imports and first-use costs, not measured

    def python_loop() -> None:
        s = 0
        for i in range(15_000_000):
            s += i

    a = np.random.default_rng(0).random((3000, 3000))
    cal_py = unavailable_share(python_loop)[1]
    cal_np = unavailable_share(lambda: [np.sort(a, axis=1) for _ in range(4)])[1]
    walls, shares = [], []
    for (m, c), es in items[2:]:
        w, x = unavailable_share(lambda: process_task(plan, m, plan.pairing.case(c), es, Reader()))
        walls.append(w)
        shares.append(x)
    x = sum(w * s for w, s in zip(walls, shares)) / sum(walls)
    held = min(1.0, max(0.0, (x - cal_np) / max(cal_py - cal_np, 1e-9)))
    print(f"\nGIL probe ({len(walls)} tasks, {sum(walls):.1f} s): sampler late {100 * x:.0f}% of the time "
          f"(pure Python {100 * cal_py:.0f}%, numpy.sort {100 * cal_np:.0f}%) -> GIL held {100 * held:.0f}% of the "
          f"per-case work; Amdahl bound for 2 threads {1 / (held + (1 - held) / 2):.2f}x")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cases", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--data", type=Path, default=None, help="folder for the generated cases (kept)")
    ap.add_argument("--keep", action="store_true", help="keep the output folders")
    ap.add_argument("--no-gil", dest="gil", action="store_false", help="skip the GIL probe")
    a = ap.parse_args()
    data = a.data or Path(tempfile.gettempdir()) / f"trace-bench-bench-{a.cases}"
    ref, gen = make_cases(data, a.cases)
    work = Path(tempfile.mkdtemp(prefix="bench-workers-"))
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    print(f"{a.cases} cases of 512 x 512 chest CT (2 volumes each), metrics {METRICS}, cold caches; "
          f"{cores} cores; load average before {os.getloadavg()[0]:.2f}")
    res: dict[str, list[dict[str, float]]] = {name: [] for name, _, _ in SETTINGS}
    try:
        for r in range(a.repeats):
            for name, j, kind in SETTINGS:
                res[name].append(run_setting(ref, gen, work, name, j, kind))
                print(f"  round {r + 1} {name:<15} wall {res[name][-1]['wall']:6.1f} s  load {os.getloadavg()[0]:.2f}",
                      flush=True)
    finally:
        if not a.keep and not a.gil:
            shutil.rmtree(work, ignore_errors=True)
    tables = {name: rows[0]["tables"] for name, rows in res.items()}
    same = len(set(tables.values())) == 1
    med = {name: {k: statistics.median(x[k] for x in rows) for k in ("wall", "per_case", "cpu", "rss")}
           for name, rows in res.items()}
    base = med["-j 1"]
    print(f"\nmedians of {a.repeats} round(s); load average after {os.getloadavg()[0]:.2f}; "
          f"tables identical across settings: {same}")
    print(f"{'setting':<16}{'wall s':>8}{'per-case s':>11}{'CPU s':>8}{'cores':>7}{'peak RSS GB':>12}"
          f"{'wall x':>9}{'per-case x':>11}{'RSS x':>8}")
    for name, m in med.items():
        print(f"{name:<16}{m['wall']:8.1f}{m['per_case']:11.1f}{m['cpu']:8.1f}{m['cpu'] / m['wall']:7.2f}"
              f"{m['rss']:12.2f}{base['wall'] / m['wall']:8.2f}x{base['per_case'] / m['per_case']:10.2f}x"
              f"{m['rss'] / base['rss']:7.2f}x")
    if a.gil:
        gil_part(ref, gen, work)
        if not a.keep:
            shutil.rmtree(work, ignore_errors=True)
    if not same:
        raise SystemExit("per_case.csv / summary.csv differ between settings")


if __name__ == "__main__":
    main()
