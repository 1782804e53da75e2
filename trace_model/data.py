"""Frame-pair dataset (section 3.2.1, eq. 3) over a folder of CT volumes + label maps (+ prompts).

P = {(i, j) | j = i + k, i mod k = 0, k in skips}    (eq. 3, skips = (1, 2, 4) in the paper)

Each item is one pair: frames (2, S, S) in [-1, 1] (HU window -> [-1, 1]), the two mask channels
(2, S, S) at the configured granularity, the flow f_{i->j} (2, S, S) (precomputed once per volume and
cached on disk, keyed by the content hash of the frames and the flow kind), the relative positions
(r_i, r_j) = (i, j) / (D - 1) and the prompt.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch.utils.data import Dataset

from trace_bench.errors import ConfigError
from trace_bench.io import VOLUME_SUFFIXES, read_label_map, read_volume
from trace_bench.volume import Volume

from .conditioning import encode_labels
from .config import TraceConfig
from .flow import FlowEstimator


def hu_to_model(hu: np.ndarray | torch.Tensor, window: tuple[float, float]) -> torch.Tensor:
    """HU -> [-1, 1] on the window (lo, hi), clipped."""
    lo, hi = window
    t = torch.as_tensor(np.asarray(hu, dtype=np.float32)) if not isinstance(hu, torch.Tensor) else hu.float()
    return (2.0 * (t - lo) / (hi - lo) - 1.0).clamp(-1.0, 1.0)


def model_to_hu(x: torch.Tensor, window: tuple[float, float]) -> torch.Tensor:
    lo, hi = window
    return (x.float().clamp(-1.0, 1.0) + 1.0) * 0.5 * (hi - lo) + lo


def resize_slices(a: torch.Tensor, size: int, labels: bool = False) -> torch.Tensor:
    """(D, Y, X) -> (D, size, size): antialiased bilinear for images, nearest for label maps."""
    if a.shape[-2:] == (size, size):
        return a
    x = a[:, None].float()
    if labels:
        return F.interpolate(x, size=(size, size), mode="nearest")[:, 0]
    return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)[:, 0]


def labels_to_cond(labels: Volume | np.ndarray, cfg: TraceConfig) -> torch.Tensor:
    """Label map (D, Y, X) -> mask channels M (D, S, S) in [0, 1] at ``model.image_size``."""
    arr = labels.array if isinstance(labels, Volume) else np.asarray(labels)
    lab = resize_slices(torch.from_numpy(np.rint(arr).astype(np.int64)).float(), cfg.model.image_size, labels=True)
    return encode_labels(lab.long(), cfg.conditioning)


def segment_labels(volume: Volume, segmenter: str = "threshold") -> Volume:
    """Label map of ``volume`` from a trace-bench segmenter (3-class map: 0 bg, 1 lungs, 2 other)."""
    from trace_bench.segmenters import get_segmenter

    return get_segmenter(segmenter).segment(volume, classes="3").to_volume()


def pair_indices(depth: int, skips: tuple[int, ...]) -> list[tuple[int, int]]:
    """Eq. 3: every (i, i + k) with i mod k == 0 and i + k < depth."""
    return [(i, i + k) for k in skips for i in range(0, depth - k, k)]


def case_id_of(p: Path) -> str:
    from baselines.base import generic_case_id

    return generic_case_id(p)


def list_volumes(folder: Path) -> dict[str, Path]:
    if not folder.is_dir():
        raise ConfigError(f"{folder} is not a folder of volumes")
    out = {}
    for p in sorted(folder.iterdir()):
        if p.name.startswith("."):
            continue
        if p.is_dir() or p.name.lower().endswith(VOLUME_SUFFIXES):
            out[case_id_of(p)] = p
    return out


@dataclass
class CaseTensors:
    case_id: str
    frames: torch.Tensor  # (D, S, S) in [-1, 1]
    cond: torch.Tensor  # (D, S, S) mask channel M
    prompt: str
    flows: torch.Tensor | None = None  # (P_case, 2, S, S) float16, ordered like pairs


def _cache_dir(cfg: TraceConfig) -> Path:
    if cfg.data.cache_dir:
        return Path(cfg.data.cache_dir)
    root = os.environ.get("TRACE_BENCH_CACHE") or str(Path.home() / ".cache" / "trace-bench")
    return Path(root) / "trace_flow"


def compute_flows(frames: torch.Tensor, pairs: list[tuple[int, int]], estimator: FlowEstimator,
                  batch: int = 32) -> torch.Tensor:
    out = []
    for s in range(0, len(pairs), batch):
        chunk = pairs[s:s + batch]
        a = torch.stack([frames[i] for i, _ in chunk])[:, None]
        b = torch.stack([frames[j] for _, j in chunk])[:, None]
        out.append(estimator(a, b).half().cpu())
    return torch.cat(out) if out else torch.zeros(0, 2, *frames.shape[-2:], dtype=torch.float16)


class FramePairDataset(Dataset):
    """Frame pairs of eq. 3 over in-memory cases; build from folders with :meth:`from_folders`."""

    def __init__(self, cases: list[CaseTensors], cfg: TraceConfig, flow: FlowEstimator | None = None,
                 cache: bool = True):
        if not cases:
            raise ConfigError("the frame-pair dataset has no volumes")
        self.cfg, self.cases = cfg, cases
        self.pairs: list[tuple[int, int, int, int]] = []  # (case, i, j, index into the case's flows)
        for c, case in enumerate(cases):
            d = case.frames.shape[0]
            if d < 2:
                raise ConfigError(f"case {case.case_id}: {d} slice(s); a pair needs at least 2")
            pp = pair_indices(d, cfg.data.skips)
            self.pairs += [(c, i, j, q) for q, (i, j) in enumerate(pp)]
            if cfg.conditioning.flow != "none" and case.flows is None:
                case.flows = self._flows(case, pp, flow, cache)

    def _flows(self, case: CaseTensors, pp: list[tuple[int, int]], flow: FlowEstimator | None,
               cache: bool) -> torch.Tensor:
        cfg = self.cfg
        h = hashlib.sha256()
        h.update(case.frames.numpy().tobytes())
        h.update(f"{cfg.conditioning.flow}|{cfg.model.image_size}|{sorted(set(cfg.data.skips))}|{pp[:1]}|{len(pp)}".encode())
        path = _cache_dir(cfg) / f"{h.hexdigest()[:32]}.safetensors"
        if cache and path.is_file():
            return load_file(str(path))["flow"]
        if flow is None:
            flow = FlowEstimator(cfg.conditioning.flow)
        flows = compute_flows(case.frames, pp, flow)
        if cache:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".tmp{os.getpid()}")
            save_file({"flow": flows.contiguous()}, str(tmp))
            os.replace(tmp, path)
        return flows

    @classmethod
    def from_folders(cls, cfg: TraceConfig, flow: FlowEstimator | None = None, cache: bool = True) -> "FramePairDataset":
        d = cfg.data
        if not d.volumes or not (d.labels or d.segmenter):
            raise ConfigError("data.volumes must name a folder of volumes, and data.labels a folder of label maps with "
                              "the same case ids (or data.segmenter a segmenter, e.g. 'threshold')")
        vols = list_volumes(Path(d.volumes))
        labs = list_volumes(Path(d.labels)) if d.labels else {}
        prompts: dict[str, str] = {}
        if d.prompts:
            from trace_bench.cases import load_prompts

            prompts = load_prompts(d.prompts)
        missing = sorted(set(vols) - set(labs))
        if d.labels and missing:
            raise ConfigError(f"{d.labels}: no label map for case(s) {missing[:5]}")
        cases = []
        for cid, vp in vols.items():
            vol = read_volume(vp)
            lab = read_label_map(labs[cid]) if d.labels else segment_labels(vol, d.segmenter)
            if vol.shape != lab.shape:
                raise ConfigError(f"{labs[cid]}: label map shape {lab.shape} differs from volume {vp} shape {vol.shape}")
            frames = resize_slices(hu_to_model(vol.array, d.hu_window), cfg.model.image_size)
            cases.append(CaseTensors(cid, frames, labels_to_cond(lab, cfg), prompts.get(cid, "")))
        return cls(cases, cfg, flow, cache)

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, idx: int) -> dict:
        c, i, j, q = self.pairs[idx]
        case = self.cases[c]
        d = case.frames.shape[0]
        S = self.cfg.model.image_size
        flow = case.flows[q].float() if case.flows is not None else torch.zeros(2, S, S)
        return {"frames": torch.stack([case.frames[i], case.frames[j]]),  # (2C, S, S), C = 1
                "masks": torch.stack([case.cond[i], case.cond[j]]),  # (2, S, S): M(i), M(j)
                "flow": flow,  # f_{i->j}, (2, S, S), units of image width
                "positions": torch.tensor([i / (d - 1), j / (d - 1)], dtype=torch.float32),  # r_i, r_j
                "prompt": case.prompt}
