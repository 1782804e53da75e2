#!/usr/bin/env bash
# Every CUDA path and GPU speed target of trace-bench in one prepared run (issue "Speed": record the
# figures in the README). Needs a CUDA GPU and `make env`; about 5-8 minutes on one H100 / H200.
#
#     bash benchmarks/gpu_check.sh [OUT_DIR]      # default gpu-check-out/
#
# 1. CUDA == CPU equality tests: HD95, ct-frames-v1 frames, threshold segmenter (bitwise), TRACE on CUDA;
# 2. HD95: numpy vs torch on CUDA (bench_hd95.py), threshold segmenter: scipy vs torch on CUDA at 256^2
#    and 512^2 in-plane (bench_threshold_seg.py);
# 3. TRACE sampling throughput and peak memory, tiny and paper-sized networks, batch 1 / 8 / 32
#    (bench_sampler.py; target for the paper network: >= 34.5 slices/s at <= 6 GB);
# 4. `trace-bench profile` of the demo checkpoint on CUDA (the FPS / VRAM a run reports).
# Each step's output goes to OUT_DIR/<step>.txt; a failing step is reported and the others still run.
set -u
OUT=${1:-gpu-check-out}
PY=${PYTHON:-.venv/bin/python}
mkdir -p "$OUT"
export PYTHONUTF8=1
nvidia-smi > "$OUT/nvidia-smi.txt" 2>&1 || echo "nvidia-smi failed" >&2
step() {  # step NAME COMMAND...
    local name=$1; shift
    echo "== $name: $*"
    if "$@" > "$OUT/$name.txt" 2>&1; then echo "   ok"; else echo "   FAILED (rc=$?, see $OUT/$name.txt)"; fi
    tail -n 15 "$OUT/$name.txt"
}
step tests "$PY" -m pytest -p no:cacheprovider -o addopts="" -q tests/metrics/test_gpu_paths.py \
    tests/segmenters/test_threshold_torch.py tests/trace_model/test_trace_cuda.py
step hd95 "$PY" benchmarks/bench_hd95.py --repeat 3 --torch-cpu-repeat 0
step threshold_seg "$PY" benchmarks/bench_threshold_seg.py --repeat 3 --upsample 1 2 --torch-cpu-repeat 0
step sampler "$PY" benchmarks/bench_sampler.py --device cuda --configs tiny_cpu,paper --batches 1,8,32 --out "$OUT/sampler.json"
step profile "$PY" -m trace_bench profile --checkpoint trace_model/checkpoints/demo --device cuda --out "$OUT/profile.json"
