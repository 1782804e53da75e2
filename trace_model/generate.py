"""Generate CT volumes with a TRACE checkpoint from label maps (+ prompts): NIfTI in HU with the spacing and
orientation of the mask volume, named ``<case_id>.nii.gz``, ready for ``trace-bench run``.

Same checkpoint + masks + prompts + seed -> identical files: each volume's noise seed is derived from
``seed`` and its case id (not from its position in the batch).
"""

from __future__ import annotations

import hashlib
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from trace_bench.errors import ConfigError
from trace_bench.io import read_label_map, write_nifti
from trace_bench.volume import Volume

from .checkpoint import load_checkpoint
from .data import case_id_of, labels_to_cond, list_volumes, model_to_hu
from .network import TextEncoder, TraceUNet, encode_prompts, load_text_encoder
from .runtime import Progress, torch_threads
from .sampler import SamplerOptions, sample_volumes


def volume_seed(seed: int, case_id: str) -> int:
    return int.from_bytes(hashlib.sha256(f"{seed}:{case_id}".encode()).digest()[:7], "big")


def resample_length(labels: Volume, length: int) -> Volume:
    """Nearest-neighbour resampling of a label map to ``length`` slices over the same z extent."""
    D = labels.shape[0]
    if length == D:
        return labels
    if length < 2:
        raise ConfigError(f"length must be >= 2, got {length}")
    idx = np.rint(np.linspace(0, D - 1, length)).astype(int)
    aff = labels.affine.copy()
    scale = (D - 1) / (length - 1)
    aff[:3, 2] *= scale  # the z index column (index (x, y, z) -> RAS)
    sz, sy, sx = labels.spacing
    return Volume(labels.array[idx], (sz * scale, sy, sx), aff, {**labels.meta, "resampled_from_slices": D})


@dataclass
class GenerateJob:
    case_id: str
    labels: Volume
    prompt: str = ""


def _to_volume(frames: torch.Tensor, labels: Volume, model: TraceUNet, meta: dict) -> Volume:
    """(N, S, S) in [-1, 1] -> HU at the mask volume's in-plane size and geometry."""
    Y, X = labels.shape[1:]
    up = F.interpolate(frames[:, None].float(), size=(Y, X), mode="bilinear", align_corners=False)[:, 0]
    hu = model_to_hu(up, model.cfg.data.hu_window).numpy().astype(np.float32)
    return Volume(hu, labels.spacing, labels.affine.copy(), {"generator": "TRACE", **meta})


def generate_jobs(model: TraceUNet, jobs: list[GenerateJob], out: str | Path, *, seed: int = 0,
                  options: SamplerOptions = SamplerOptions(), batch: int = 4, text_encoder: TextEncoder | None = None,
                  log: Callable[[str], None] | None = None, progress: Progress | bool = False) -> list[Path]:
    """Run Algorithm 1 on ``jobs`` in batches of ``batch`` volumes and write ``out/<case_id>.nii.gz``.

    ``progress``: True prints DDIM-pass progress to stderr (:class:`trace_model.runtime.Progress`), or pass
    your own ``Progress``; False (default) prints only the "wrote" lines. Threads are the caller's business
    (:func:`generate` applies the thread rule of :mod:`trace_model.runtime`)."""
    log = log or (lambda s: print(s, file=sys.stderr, flush=True))
    if isinstance(progress, bool):
        progress = Progress(len(jobs), enabled=progress)
    out = Path(out)
    dev = next(model.parameters()).device
    if text_encoder is None and model.use_text:
        text_encoder = load_text_encoder(model.cfg, dev)
    written = []
    jobs = sorted(jobs, key=lambda j: (j.labels.shape[0], j.case_id))  # similar lengths share a batch
    for s in range(0, len(jobs), batch):
        chunk = jobs[s:s + batch]
        conds = [labels_to_cond(j.labels, model.cfg) for j in chunk]
        lengths = [c.shape[0] for c in conds]
        Nmax = max(lengths)
        masks = torch.stack([torch.cat([c, c[-1:].expand(Nmax - c.shape[0], -1, -1)]) for c in conds])
        text = encode_prompts(text_encoder, [j.prompt for j in chunk], dev) if model.use_text else None
        progress.begin_batch(len(chunk))
        res = sample_volumes(model, masks, lengths=lengths, seeds=[volume_seed(seed, j.case_id) for j in chunk],
                             text=text, options=options, progress=progress.passes)
        for b, j in enumerate(chunk):
            vol = _to_volume(res.frames[b, :lengths[b]], j.labels, model,
                             {"case_id": j.case_id, "seed": seed, "steps": options.steps, "mode": options.mode,
                              "prompt": j.prompt})
            written.append(write_nifti(vol, out / f"{j.case_id}.nii.gz"))
            log(f"wrote {written[-1]} ({lengths[b]} slices, {options.mode})")
    return written


def generate(checkpoint: str | Path, masks: str | Path, out: str | Path, *, prompts: str | Path | None = None,
             length: int | None = None, steps: int = 100, seed: int = 0, mode: str = "overlap", batch: int = 4,
             device: str | None = None, inference_flow: str | None = None, threads: int | None = None,
             progress: bool = True) -> list[Path]:
    """Load a checkpoint and generate one volume per label map in ``masks`` (a file or a folder).

    ``threads``: torch CPU threads while generating, by the rule of :mod:`trace_model.runtime` (default: 1 on
    CPU; 0 keeps torch's setting); the caller's setting is restored afterwards. ``progress``: DDIM-pass
    progress lines on stderr."""
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    with torch_threads(threads, dev):
        return _generate(checkpoint, masks, out, prompts=prompts, length=length, steps=steps, seed=seed, mode=mode,
                         batch=batch, dev=dev, inference_flow=inference_flow, progress=progress)


def _generate(checkpoint: str | Path, masks: str | Path, out: str | Path, *, prompts: str | Path | None,
              length: int | None, steps: int, seed: int, mode: str, batch: int, dev: torch.device,
              inference_flow: str | None, progress: bool) -> list[Path]:
    model = load_checkpoint(checkpoint, dev)
    mp = Path(masks)
    files = {case_id_of(mp): mp} if mp.is_file() else list_volumes(mp)
    if not files:
        raise ConfigError(f"{mp}: no label maps found")
    table: dict[str, str] = {}
    if prompts:
        from trace_bench.cases import load_prompts

        table = load_prompts(prompts)
    if model.use_text and not table:
        raise ConfigError(f"{checkpoint}: this model is text-conditioned; pass --prompts FILE (case_id,prompt)")
    jobs = []
    for cid, p in files.items():
        lab = read_label_map(p)
        if length is not None:
            lab = resample_length(lab, length)
        jobs.append(GenerateJob(cid, lab, table.get(cid, "")))
    opts = SamplerOptions(steps=steps, mode=mode, inference_flow=inference_flow)
    return generate_jobs(model, jobs, out, seed=seed, options=opts, batch=batch, progress=progress)
