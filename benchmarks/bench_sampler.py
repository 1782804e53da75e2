"""Throughput of the TRACE sampler (Algorithm 1): slices per second and peak memory, side by side.

    python benchmarks/bench_sampler.py [--device cuda] [--slices 16] [--steps 100] [--batches 1,8,32]
                                       [--configs tiny_cpu,paper] [--out FILE.json]

Networks are randomly initialised (timing only: the cost of a forward pass does not depend on the weight
values); the paper config is profiled with a zero text context (cross-attention cost kept, the once-per-volume
CLIP encoder left out) and null inference flow (no RAFT weights offline). Paper reference: 3.45 FPS on an H20,
6 GB inference memory at 256 x 256, batch 1. Prints one row per (config, batch, mode) and the ratios
FPS(batch B) / FPS(batch 1) and markovian / overlap.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from trace_model.config import CONFIG_DIR, load_config  # noqa: E402
from trace_model.network import TraceUNet  # noqa: E402
from trace_model.profile import profile_model  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--slices", type=int, default=16)
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--batches", default="1,8")
    ap.add_argument("--configs", default="tiny_cpu,paper")
    ap.add_argument("--modes", default="overlap,markovian")
    ap.add_argument("--image-size", type=int, default=256, help="in-plane size for every config (paper: 256)")
    ap.add_argument("--train-batch", type=int, default=28)
    ap.add_argument("--flash", action="store_true", help="model.flash_attention = true (torch SDPA)")
    ap.add_argument("--out", default=None)
    a = ap.parse_args()
    torch.manual_seed(0)
    rows = []
    for name in a.configs.split(","):
        cfg = load_config(CONFIG_DIR / f"{name}.toml")
        cfg = cfg.replace(model={"image_size": a.image_size, "flash_attention": a.flash},
                          conditioning={"inference_flow": "zero"})
        model = TraceUNet(cfg).to(a.device)
        base: dict[str, float] = {}
        for mode in a.modes.split(","):
            for b in (int(x) for x in a.batches.split(",")):
                r = profile_model(model, slices=a.slices, batch=b, steps=a.steps, mode=mode,
                                  train_batch=a.train_batch, text="zeros")
                r["config"] = name + ("+flash" if a.flash else "")
                base.setdefault(mode, r["fps"])
                r["speedup_vs_batch1"] = r["fps"] / base[mode]
                rows.append(r)
                print(f"{r['config']:9s} {mode:9s} batch {b:3d}: {r['fps']:8.2f} slices/s  x{r['speedup_vs_batch1']:.2f} vs batch 1  "
                      f"infer peak {r['inference_peak_bytes'] / 2**30:6.2f} GiB  train peak (batch {r['train_batch']}) "
                      f"{r['train_peak_bytes'] / 2**30:6.2f} GiB  params {r['parameters'] / 1e6:.1f} M  "
                      f"({r['device']}, {r['dtype']}, {a.steps} steps, {a.slices} slices)", flush=True)
        for b in (int(x) for x in a.batches.split(",")):
            o = [r for r in rows if r["config"].startswith(name) and r["batch"] == b and r["mode"] == "overlap"]
            m = [r for r in rows if r["config"].startswith(name) and r["batch"] == b and r["mode"] == "markovian"]
            if o and m:
                print(f"{name:9s} batch {b:3d}: markovian / overlap FPS = {m[0]['fps'] / o[0]['fps']:.2f}")
        del model
        if a.device == "cuda":
            torch.cuda.empty_cache()
    if a.out:
        Path(a.out).write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
