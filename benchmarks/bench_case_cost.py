"""Per-case cost of the weight-free metrics vs decoding the case's two files, before and after the speed
work, side by side in one run (issue 34: "per-case weight-free cost <= 5x decode", was 17x).

Cases (:func:`make_cases`): ``--cases`` chest CTs of 512 x 512 (the shipped ``lung1`` / ``lung2`` repeated
2x in-plane, spacing halved) cropped to 44-61 axial slices at distinct z offsets; the "generated" volume
is the same crop + Gaussian noise of 25 HU (float32 NIfTI, so it decodes slower than the reference).

Part 1, in this process, per case, interleaved (CPU seconds, ``time.process_time``, all threads):

* ``decode``: both files read by the ``nifti`` adapter, as ``trace-bench run`` reads them;
* ``before``: ``temporal_flickering`` of both volumes + the segmentation metric as it was before: the
  frozen ``threshold`` segmenter (:func:`bench_threshold_seg.frozen_threshold_segment`) on both volumes,
  Dice and Jaccard each from their own joint ``np.bincount`` in int64 (:func:`frozen_dice_jaccard`),
  HD95 (unchanged);
* ``cold``: ``temporal_flickering`` of both + ``Segmentation().case_values`` now, empty label-map cache;
* ``warm``: the same with the label maps already in the disk cache (a new metric instance, so nothing
  comes from memory): what a rerun, another method on the same reference, or the report stage pays.

The label maps and the Dice / Jaccard values of ``before`` and ``cold`` must be equal (exactly), or
the script stops. Each ratio is cost / decode; medians over cases.

Part 2 (``--command``, default on): the whole command ``python -m trace_bench run --metrics
temporal_flickering,dice,jaccard,hd95 --segmenter threshold -j 1`` on all cases and on 1 case, fresh
output folder and fresh ``TRACE_BENCH_CACHE`` each, CPU over the process tree (``RUSAGE_CHILDREN``);
marginal cost per case = (CPU(N cases) - CPU(1 case)) / (N - 1), which includes decoding; weight-free
per case = marginal - decode (part 1's median). ``--before DIR`` runs the same commands from another
checkout (e.g. one at the commit before the speed work), interleaved with this one. ``warm labels``:
this checkout again on all cases, fresh output folder, the label cache of its cold run kept. Run:

    .venv/bin/python benchmarks/bench_case_cost.py [--cases 16] [--data DIR] [--before DIR] [--no-command]
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_threshold_seg import frozen_threshold_segment  # noqa: E402

METRICS = "temporal_flickering,dice,jaccard,hd95"


def make_cases(root: Path, n: int) -> tuple[Path, Path]:
    """``n`` 512 x 512 chest CT crops (44-61 slices) in ROOT/ref and their noisy copies in ROOT/gen
    (kept when already there with ``n`` files each)."""
    from trace_bench.io import read_volume, write_nifti
    from trace_bench.volume import Volume, lps_affine

    ref_dir, gen_dir = root / "ref", root / "gen"
    if len(list(ref_dir.glob("*.nii.gz"))) == n and len(list(gen_dir.glob("*.nii.gz"))) == n:
        return ref_dir, gen_dir
    demo = ROOT / "trace_bench" / "data" / "demo" / "reference"
    vols = [read_volume(p) for p in sorted(demo.glob("*.nii.gz"))]
    rng = np.random.default_rng(0)
    for i in range(n):
        v = vols[i % len(vols)]
        nz = v.shape[0]
        k = 44 + (i * 5) % (min(nz, 61) - 44 + 1)
        z0 = (i // len(vols)) % (nz - k + 1)
        a = np.ascontiguousarray(np.repeat(np.repeat(v.array[z0:z0 + k], 2, axis=1), 2, axis=2))
        sp = (v.spacing[0], v.spacing[1] / 2, v.spacing[2] / 2)
        aff = lps_affine(sp, tuple(v.affine[:3, 3]))
        write_nifti(Volume(a, sp, aff, {}), ref_dir / f"c{i:03d}.nii.gz")
        noisy = a + rng.normal(0, 25, a.shape).astype(np.float32)
        write_nifti(Volume(noisy, sp, aff, {}), gen_dir / f"c{i:03d}.nii.gz")
    return ref_dir, gen_dir


def frozen_dice_jaccard(pred: np.ndarray, ref: np.ndarray, labels) -> tuple[dict, dict]:
    """Dice and Jaccard as computed before (main at 0a3977d): each its own joint ``np.bincount`` of
    ``p * top + r`` in int64 (two passes over the pair)."""
    out = []
    for metric in ("dice", "jaccard"):
        p, r = pred.ravel().astype(np.int64), ref.ravel().astype(np.int64)
        top = int(max(p.max(initial=0), r.max(initial=0), max(labels))) + 1
        joint = np.bincount(p * top + r, minlength=top * top).reshape(top, top)
        vals = {}
        for l in labels:
            i, a, b = int(joint[l, l]), int(joint[l].sum()), int(joint[:, l].sum())
            vals[l] = (2.0 * i / (a + b) if a + b else float("nan")) if metric == "dice" else \
                (i / (a + b - i) if a + b - i else float("nan"))
        out.append(vals)
    return out[0], out[1]


def _cpu(fn):
    t = time.process_time()
    out = fn()
    return time.process_time() - t, out


def in_process(ref_dir: Path, gen_dir: Path, cache_root: Path) -> dict[str, list[float]]:
    from baselines import get_adapter
    from trace_bench.metrics import CaseData, RunContext
    from trace_bench.metrics.hausdorff import hd95
    from trace_bench.metrics.segmentation import Segmentation
    from trace_bench.metrics.temporal import TemporalFlickering
    from trace_bench.segmenters.threshold import threshold_segment

    reader = get_adapter("nifti")
    ctx = RunContext(device="cpu", cache_dir=str(cache_root))
    tf = TemporalFlickering()
    cols: dict[str, list[float]] = {k: [] for k in ("decode", "before", "cold", "warm", "seg_before", "seg_now")}
    print(f"{'case':<6} {'shape':<16} {'decode s':>8} {'before s':>8} {'cold s':>7} {'warm s':>7} "
          f"{'before/dec':>10} {'cold/dec':>8} {'warm/dec':>8} {'seg bef s':>9} {'seg now s':>9}")
    for ref_p in sorted(ref_dir.glob("*.nii.gz")):
        gen_p = gen_dir / ref_p.name
        t_dec, (ref, gen) = _cpu(lambda: (reader.read(ref_p), reader.read(gen_p)))

        def both_tf() -> None:
            for v in (ref, gen):
                tf.case_values(CaseData("m", "c", v), ctx)

        def before():
            both_tf()
            lr = frozen_threshold_segment(ref.array, ref.spacing)
            lg = frozen_threshold_segment(gen.array, gen.spacing)
            d, j = frozen_dice_jaccard(lg, lr, (1, 2))
            h = hd95(lg, lr, ref.spacing, (1, 2))
            return lr, lg, d, j, h

        def now():
            for v in (ref, gen):  # hash each volume again, as a new process would
                vars(v).pop("_trace_bench_content_hash", None)
            both_tf()
            data = CaseData("m", "c", gen, reference=ref)
            vals = Segmentation().case_values(data, ctx)
            return data.shared["segmentation"], vals

        shutil.rmtree(cache_root, ignore_errors=True)
        t_before, (lr, lg, d, j, h) = _cpu(before)
        t_cold, (sh, vals) = _cpu(now)
        t_warm, (sh2, vals2) = _cpu(now)
        if not (np.array_equal(sh["reference"].labels, lr) and np.array_equal(sh["generated"].labels, lg)):
            raise SystemExit(f"{ref_p.name}: label maps differ from the frozen segmenter's")
        if [vals[f"dice[{c}]"] for c in ("lungs", "other")] != [d[1], d[2]] or \
                [vals[f"jaccard[{c}]"] for c in ("lungs", "other")] != [j[1], j[2]] or vals2 != vals:
            raise SystemExit(f"{ref_p.name}: Dice / Jaccard differ from the two-pass values")
        t_sb, _ = _cpu(lambda: frozen_threshold_segment(ref.array, ref.spacing))
        t_sn, _ = _cpu(lambda: threshold_segment(ref.array, ref.spacing))
        for k, v in zip(cols, (t_dec, t_before, t_cold, t_warm, t_sb, t_sn)):
            cols[k].append(v)
        case = ref_p.name.split(".")[0]
        print(f"{case:<6} {ref.shape!s:<16} {t_dec:8.2f} {t_before:8.2f} {t_cold:7.2f} {t_warm:7.2f} "
              f"{t_before / t_dec:9.1f}x {t_cold / t_dec:7.1f}x {t_warm / t_dec:7.1f}x {t_sb:9.2f} {t_sn:9.2f}")
    med = {k: statistics.median(v) for k, v in cols.items()}
    print(f"{'median':<23} {med['decode']:8.2f} {med['before']:8.2f} {med['cold']:7.2f} {med['warm']:7.2f} "
          f"{med['before'] / med['decode']:9.1f}x {med['cold'] / med['decode']:7.1f}x "
          f"{med['warm'] / med['decode']:7.1f}x {med['seg_before']:9.2f} {med['seg_now']:9.2f}")
    print(f"segmenter, one volume: before / now {med['seg_before'] / med['seg_now']:.2f}x (median); "
          f"weight-free per case before / cold {med['before'] / med['cold']:.2f}x, before / warm "
          f"{med['before'] / med['warm']:.2f}x")
    return cols


def _run_cpu(code_root: Path, ref_dir: Path, gen_dir: Path, out: Path, cache: Path) -> float:
    """CPU seconds (user + sys) of one ``trace_bench run`` from ``code_root`` over the process tree."""
    env = {**os.environ, "PYTHONPATH": str(code_root), "OMP_NUM_THREADS": "1", "TRACE_BENCH_CACHE": str(cache)}
    cmd = [sys.executable, "-m", "trace_bench", "run", "--reference", str(ref_dir), "--method", f"gen={gen_dir}",
           "--metrics", METRICS, "--segmenter", "threshold", "--device", "cpu", "-j", "1", "--no-progress",
           "--no-plots", "--bootstrap", "100", "--out", str(out)]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    r = subprocess.run(cmd, cwd=code_root, env=env, capture_output=True, text=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if r.returncode != 0:
        raise SystemExit(f"run from {code_root} failed ({r.returncode}): {r.stderr.strip()[-400:]}")
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def command(work: Path, ref_dir: Path, gen_dir: Path, before: Path | None, decode: float, n: int) -> None:
    one = work / "one"
    for sub in ("ref", "gen"):
        (one / sub).mkdir(parents=True, exist_ok=True)
        src = sorted((ref_dir if sub == "ref" else gen_dir).glob("*.nii.gz"))[0]
        if not (one / sub / src.name).exists():
            os.link(src, one / sub / src.name)
    codes = [("before", before)] if before is not None else []
    codes.append(("now", ROOT))
    res: dict[str, dict[str, float]] = {}
    for name, code in codes:  # interleaved: before N, before 1, now N, now 1
        res[name] = {}
        for label, (r, g) in (("all", (ref_dir, gen_dir)), ("one", (one / "ref", one / "gen"))):
            tag = f"{name}-{label}"
            res[name][label] = _run_cpu(code, r, g, work / f"out-{tag}", work / f"cache-{tag}")
    res["now"]["warm"] = _run_cpu(ROOT, ref_dir, gen_dir, work / "out-now-warm", work / "cache-now-all")
    print(f"\nwhole command, {METRICS}, -j 1, CPU over the process tree (decode per case {decode:.2f} s):")
    print(f"{'code':<14} {f'{n} cases s':>11} {'1 case s':>9} {'per case s':>10} {'weight-free s':>13} {'/ decode':>9}")
    for name, r in res.items():
        per = (r["all"] - r["one"]) / (n - 1)
        print(f"{name:<14} {r['all']:11.1f} {r['one']:9.1f} {per:10.2f} {per - decode:13.2f} "
              f"{(per - decode) / decode:8.1f}x")
    w = res["now"]
    per_w = (w["warm"] - w["one"]) / (n - 1)
    print(f"{'now, warm lab.':<14} {w['warm']:11.1f} {'':>9} {per_w:10.2f} {per_w - decode:13.2f} "
          f"{(per_w - decode) / decode:8.1f}x   (label maps from the disk cache; 1-case run: cold)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", type=int, default=16)
    ap.add_argument("--data", type=Path, default=None, help="folder to keep the generated cases in (default: temp)")
    ap.add_argument("--before", type=Path, default=None, help="another checkout to run the whole command from")
    ap.add_argument("--command", action=argparse.BooleanOptionalAction, default=True)
    a = ap.parse_args()
    os.environ["OMP_NUM_THREADS"] = "1"
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        data = a.data or work / "cases"
        ref_dir, gen_dir = make_cases(data, a.cases)
        print(f"{a.cases} cases, 512 x 512, 44-61 slices; generated = crop + 25 HU noise; cores {os.cpu_count()}; "
              "CPU seconds per case")
        cols = in_process(ref_dir, gen_dir, work / "labels-cache")
        if a.command and a.cases > 1:
            command(work, ref_dir, gen_dir, a.before, statistics.median(cols["decode"]), a.cases)


if __name__ == "__main__":
    main()
