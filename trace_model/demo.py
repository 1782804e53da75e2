"""The TRACE part of the README demo: generate the two shipped chest CTs' masks into volumes with the committed
tiny checkpoint (``trace_model/checkpoints/demo/``), with overlapping-frame guidance ("TRACE") and without it
("TRACE-markovian"), so ``trace-bench run`` can score them against the references.

Masks: the ``threshold`` segmenter's 3-class label maps of ``trace_bench/data/demo/reference/lung{1,2}.nii.gz``;
the generated volumes have the references' slice count, spacing and orientation.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Callable

import torch

DEMO_CHECKPOINT = Path(__file__).parent / "checkpoints" / "demo"
DEMO_STEPS = 10  # DDIM steps per pass in the demo (paper: 100); keeps the CPU demo well under 2 minutes
METHODS = {"TRACE": "overlap", "TRACE-markovian": "markovian"}


def demo_reference_dir() -> Path:
    import trace_bench

    return Path(trace_bench.__file__).parent / "data" / "demo" / "reference"


def make_demo_methods(out_dir: Path, seed: int = 0, *, steps: int = DEMO_STEPS, device: str = "cpu",
                      threads: int | None = 1, log: Callable[[str], None] | None = None) -> dict[str, Path]:
    """Write ``out_dir/<method>/<case_id>.nii.gz`` for methods TRACE and TRACE-markovian; returns {method: folder}.

    ``threads``: torch CPU threads while generating (restored afterwards). 1 by default: the tiny network is
    too small to gain from a second thread, and on a shared 2-core machine two threads per process made
    the demo several times slower (oversubscription). ``None`` keeps torch's setting.
    """
    old_threads = torch.get_num_threads()
    if threads is not None and device == "cpu":
        torch.set_num_threads(threads)
    try:
        return _make(out_dir, seed, steps, device, log)
    finally:
        torch.set_num_threads(old_threads)


def _make(out_dir: Path, seed: int, steps: int, device: str, log: Callable[[str], None] | None) -> dict[str, Path]:
    from trace_bench.io import read_volume

    from .checkpoint import load_checkpoint
    from .data import segment_labels
    from .generate import GenerateJob, generate_jobs
    from .sampler import SamplerOptions

    log = log or (lambda s: print(s, file=sys.stderr, flush=True))
    model = load_checkpoint(DEMO_CHECKPOINT, torch.device(device))
    jobs = []
    for ref in sorted(demo_reference_dir().glob("*.nii.gz")):
        vol = read_volume(ref)
        jobs.append(GenerateJob(ref.name[: -len(".nii.gz")], segment_labels(vol, "threshold")))
    out: dict[str, Path] = {}
    for method, mode in METHODS.items():
        folder = Path(out_dir) / method
        generate_jobs(model, jobs, folder, seed=seed, options=SamplerOptions(steps=steps, mode=mode),
                      batch=len(jobs), log=log)
        out[method] = folder
    return out


if __name__ == "__main__":  # python -m trace_model.demo OUT_DIR
    print(make_demo_methods(Path(sys.argv[1] if len(sys.argv) > 1 else "demo-out/generated")))
