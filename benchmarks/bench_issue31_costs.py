"""CPU cost per volume of the metrics of issue 31, on the shipped 48 x 256 x 256 demo chest CT (``lung1``), one
torch / BLAS thread, CPU seconds (``time.process_time``) of this process:

* ``anatomy_stats`` / ``anatomy_dist``: one volume, threshold segmenter, label cache off (the segmentation is part
  of the cost); then the same with the label map cached (what every further metric of the case pays);
* ``paired_fidelity``: one volume against a noisy copy of itself (body mask);
* ``ms_ssim_diversity`` / ``mmd``: the per-volume grid (64^3) and, for ``ms_ssim_diversity``, one MS-SSIM pair
  (the aggregate stage pays one per pair, up to ``max_pairs``);
* ``fid_vlm3d`` (SqueezeNet 1.1, random weights of the real architecture: the same arithmetic as the ImageNet
  file): the 512^3 cube and ``--slices`` slices of one plane, extrapolated to the preset's 3 x 512 slices;
* ``frd`` (``--frd``; ~2 minutes): pyradiomics with the FRD v1 settings on the whole volume, feature cache off;
  ``frd_labels`` (``--frd-labels``): the same per 3-class label group.

    OMP_NUM_THREADS=1 python benchmarks/bench_issue31_costs.py [--frd] [--frd-labels] [--slices 32]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from trace_bench.demo import demo_data_dir  # noqa: E402
from trace_bench.io import read_volume  # noqa: E402
from trace_bench.metrics.base import METRICS, CaseData, RunContext  # noqa: E402
from trace_bench.run.select import load_metric_registry  # noqa: E402


def cpu(fn):
    t = time.process_time()
    out = fn()
    return time.process_time() - t, out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--frd", action="store_true", help="time frd (about 2 CPU-minutes)")
    ap.add_argument("--frd-labels", action="store_true", help="time frd_labels at --classes 3")
    ap.add_argument("--slices", type=int, default=32, help="SqueezeNet slices timed (extrapolated to 1536)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    os.environ["TRACE_BENCH_LABEL_CACHE"] = "0"
    load_metric_registry()
    v = read_volume(demo_data_dir() / "reference" / "lung1.nii.gz")
    print(f"volume {v.shape} spacing {v.spacing}, one thread, CPU seconds")
    ctx = RunContext(cache_dir=None)
    gen = v.with_array(v.array + np.random.default_rng(0).normal(0, 30, v.shape).astype(np.float32))

    for name in ("anatomy_stats", "anatomy_dist"):
        m = METRICS.get(name)()
        run = (lambda: m.case_values(CaseData("m", "c", v), ctx)) if m.kind == "case" else \
            (lambda: m.case_state(CaseData("m", "c", v), ctx))
        s, _ = cpu(run)
        print(f"{name:20s} {s:8.2f} s (segmentation included)")
    data = CaseData("m", "c", v)
    METRICS.get("anatomy_stats")().case_values(data, ctx)
    s, _ = cpu(lambda: METRICS.get("anatomy_dist")().case_state(data, ctx))
    print(f"{'anatomy_dist':20s} {s:8.2f} s (labels already in the case)")
    s, _ = cpu(lambda: METRICS.get("paired_fidelity")().case_values(CaseData("m", "c", gen, reference=v), ctx))
    print(f"{'paired_fidelity':20s} {s:8.2f} s")
    div = METRICS.get("ms_ssim_diversity")()
    s, st = cpu(lambda: div.case_state(CaseData("m", "c", v), ctx))
    print(f"{'ms_ssim_diversity':20s} {s:8.2f} s per volume (64^3 grid)")
    s2, st2 = cpu(lambda: div.case_state(CaseData("m", "c", gen), ctx))
    from trace_bench.metrics.diversity import ms_ssim_pairs

    s, _ = cpu(lambda: ms_ssim_pairs(st["volume"], st2["volume"], 4))
    print(f"{'':20s} {s:8.2f} s per pair at the aggregate stage (k = 4)")
    s, _ = cpu(lambda: METRICS.get("mmd")().case_state(CaseData("m", "c", v), ctx))
    print(f"{'mmd':20s} {s:8.2f} s per volume (64^3 grid)")

    from trace_bench.metrics.fid_presets import VLM3D_SQUEEZENET, plane_slices, preprocess
    from trace_bench.networks.squeezenet import SqueezeNetExtractor, build_squeezenet

    s_cube, cube = cpu(lambda: preprocess(v, VLM3D_SQUEEZENET))
    ext = SqueezeNetExtractor(build_squeezenet().eval(), "cpu")
    sl = plane_slices(cube, "xy", None)[:args.slices]
    s_net, _ = cpu(lambda: ext.plane_features(sl))
    per = s_net / len(sl)
    print(f"{'fid_vlm3d':20s} {s_cube + per * 1536:8.1f} s per volume (cube {s_cube:.1f} s + 1536 slices x "
          f"{per:.3f} s)")

    if args.frd:
        from trace_bench.networks.radiomics import RadiomicsExtractor

        s, f = cpu(lambda: RadiomicsExtractor().features(v))
        print(f"{'frd':20s} {s:8.1f} s per volume ({f.shape[1]} numbers)")
    if args.frd_labels:
        m = METRICS.get("frd_labels")({"feature_cache": False})
        s, st = cpu(lambda: m.case_state(CaseData("m", "c", v), ctx))
        print(f"{'frd_labels':20s} {s:8.1f} s per volume ({', '.join(st)})")


if __name__ == "__main__":
    main()
