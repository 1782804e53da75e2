"""The report stage against the per-case stage, and a warm rerun against the cold run, side by side in one
run (issue 34: "report stage <= 2 s fixed cost plus linear in plotted cases", "warm rerun <= 5% of the cold
run's CPU and rewrites no unchanged file").

Cases: ``--cases`` 512 x 512 chest CTs of 44-61 slices and their noisy copies (``bench_case_cost.make_cases``,
kept in ``--data``), and the first case alone. Command: ``python -m trace_bench run --metrics
temporal_flickering,dice,jaccard,hd95 --segmenter threshold`` with plots (report.html with its slice viewer,
PNG figures), ``OMP_NUM_THREADS=1``; each round (``--repeats``, medians reported) runs, in this order:

* ``cold``: fresh output folder and fresh ``TRACE_BENCH_CACHE``;
* ``warm``: the same command again (every record cached): CPU, and the files it rewrote (modification
  times of every file under OUT before and after, the lock file excepted);
* ``report``: ``python -m trace_bench report OUT`` (the run's plot case: nothing decoded or segmented);
* ``report +2``: the same with ``--plot-case`` for the plot case and two other cases (their volumes read
  again, label maps from the cache the cold run filled): the cost per extra plotted case;
* the same ``cold`` run on the first case alone: the report stage of a 1-case run (its fixed cost).

CPU = user + system of the whole process tree (``RUSAGE_CHILDREN``); ``per-case s`` / ``report s`` are
the stages' wall times the run records (``provenance.json`` ``per_case_s`` / ``report_s``). On a shared
machine read the ratios, not the absolute times; the load average is printed.

    .venv/bin/python benchmarks/bench_stages.py [--cases 16] [--repeats 3] [--data DIR]
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
LOCK = ".trace-bench/lock"


def timed(cmd: list[str], env: dict[str, str]) -> tuple[float, float]:
    """(wall s, CPU s of the process tree) of ``cmd``."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    r = subprocess.run(cmd, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if r.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{r.stderr.decode(errors='replace')[-2000:]}")
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def mtimes(out: Path) -> dict[str, int]:
    return {p.relative_to(out).as_posix(): p.stat().st_mtime_ns for p in out.rglob("*")
            if p.is_file() and p.relative_to(out).as_posix() != LOCK}


def timings(out: Path) -> dict[str, float]:
    return json.loads((out / "provenance.json").read_text(encoding="utf-8"))["timings_s"]


def one_round(ref: Path, gen: Path, ref1: Path, gen1: Path, work: Path, others: list[str]) -> dict[str, float]:
    out, cache = work / "out", work / "cache"
    out1, cache1 = work / "out1", work / "cache1"
    for p in (out, cache, out1, cache1):
        shutil.rmtree(p, ignore_errors=True)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
           "PYTHONPATH": str(ROOT)}

    def run_cmd(r: Path, g: Path, o: Path) -> list[str]:
        return [sys.executable, "-m", "trace_bench", "run", "--reference", str(r), "--method", f"gen={g}",
                "--metrics", METRICS, "--segmenter", "threshold", "--no-progress", "--out", str(o)]

    res: dict[str, float] = {}
    e = {**env, "TRACE_BENCH_CACHE": str(cache)}
    res["cold_wall"], res["cold_cpu"] = timed(run_cmd(ref, gen, out), e)
    t = timings(out)
    res["per_case_s"], res["report_s"] = float(t["per_case_s"]), float(t["report_s"])
    before = mtimes(out)
    res["warm_wall"], res["warm_cpu"] = timed(run_cmd(ref, gen, out), e)
    after = mtimes(out)
    res["rewritten"] = float(sum(1 for k in set(before) | set(after) if before.get(k) != after.get(k)))
    res["files"] = float(len(after))
    plot_case = json.loads((out / "metrics.json").read_text(encoding="utf-8"))["plot_case"]
    rep = [sys.executable, "-m", "trace_bench", "report", str(out)]
    res["report_wall"], res["report_cpu"] = timed(rep, e)
    extra = [x for c in [plot_case, *others] for x in ("--plot-case", c)]
    res["report2_wall"], res["report2_cpu"] = timed(rep + extra, e)
    e1 = {**env, "TRACE_BENCH_CACHE": str(cache1)}
    res["one_wall"], res["one_cpu"] = timed(run_cmd(ref1, gen1, out1), e1)
    t1 = timings(out1)
    res["one_per_case_s"], res["one_report_s"] = float(t1["per_case_s"]), float(t1["report_s"])
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cases", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--data", type=Path, default=None, help="folder for the generated cases (kept)")
    a = ap.parse_args()
    data = a.data or Path(tempfile.gettempdir()) / f"trace-bench-bench-{a.cases}"
    ref, gen = make_cases(data, a.cases)
    work = Path(tempfile.mkdtemp(prefix="bench-stages-"))
    first = sorted(ref.glob("*.nii.gz"))[0].name
    ref1, gen1 = work / "one" / "ref", work / "one" / "gen"
    for d, src in ((ref1, ref), (gen1, gen)):
        d.mkdir(parents=True)
        (d / first).symlink_to(src / first)
    others = [p.name.split(".")[0] for p in sorted(ref.glob("*.nii.gz"))[1:3]]
    print(f"{a.cases} cases of 512 x 512 chest CT (2 volumes each), metrics {METRICS}, plots on; "
          f"load average before {os.getloadavg()[0]:.2f}")
    rounds = []
    try:
        for r in range(a.repeats):
            rounds.append(one_round(ref, gen, ref1, gen1, work, others))
            x = rounds[-1]
            print(f"  round {r + 1}: cold {x['cold_cpu']:.1f} s CPU, warm {x['warm_cpu']:.2f} s CPU, "
                  f"report stage {x['report_s']:.2f} s, load {os.getloadavg()[0]:.2f}", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    m = {k: statistics.median(x[k] for x in rounds) for k in rounds[0]}
    print(f"\nmedians of {a.repeats} round(s); load average after {os.getloadavg()[0]:.2f}")
    rows = [
        ("per-case stage, N cases (wall)", f"{m['per_case_s']:.1f} s", ""),
        ("report stage in the run, N cases (wall)", f"{m['report_s']:.2f} s",
         f"report / per-case {m['report_s'] / m['per_case_s']:.3f}"),
        ("report stage in the run, 1 case (wall)", f"{m['one_report_s']:.2f} s",
         f"report / per-case {m['one_report_s'] / m['one_per_case_s']:.2f}"),
        ("`trace-bench report OUT` (CPU, whole process)", f"{m['report_cpu']:.2f} s", ""),
        ("  + 2 more --plot-case (CPU)", f"{m['report2_cpu']:.2f} s",
         f"per extra plotted case {(m['report2_cpu'] - m['report_cpu']) / 2:.2f} s"),
        ("cold run, N cases (CPU)", f"{m['cold_cpu']:.1f} s", ""),
        ("warm rerun, N cases (CPU)", f"{m['warm_cpu']:.2f} s", f"warm / cold {m['warm_cpu'] / m['cold_cpu']:.3f}"),
        ("files rewritten by the warm rerun", f"{m['rewritten']:.0f} of {m['files']:.0f}", ""),
    ]
    w = max(len(r[0]) for r in rows)
    for name, val, ratio in rows:
        print(f"{name:<{w}}  {val:>12}  {ratio}")


if __name__ == "__main__":
    main()
