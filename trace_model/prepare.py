"""Prepared training sets: everything the trainer needs, computed once, outside the training process.

``prepare(...)`` turns a folder of CT volumes (read through a ``baselines`` adapter, e.g. ``nifti`` or
``ctrate``) plus label maps (a folder paired by case id, or a trace-bench segmenter such as ``threshold``
or ``vista3d``) into a folder::

    PREP/cases/<case_id>.safetensors   frames (D, S, S) float16 in [-1, 1] (HU window -> [-1, 1], resized to
                                       model.image_size), cond (D, S, S) float16 (mask channel M at
                                       conditioning.mask_granularity), flow (P, 2, S, S) float16 (f_{i->j} for
                                       every pair of eq. 3 in ``pair_indices`` order; absent when flow = none)
    PREP/manifest.json                 (``manifest-I-of-N.json`` for ``shard="I/N"``) format, config hash,
                                       the settings hashed, and per case: file, output sha256, input sha256
                                       (volume, mask, prompt), slices, pairs, prompt

Resumable: a case whose file exists with the recorded sha256, input hash and config hash (in any manifest of
the folder) is skipped; the manifest is rewritten after every finished case, so a killed run resumes.
Parallel: ``workers`` processes (spawned; one torch / OpenCV thread each). Shardable: ``shard="I/N"`` keeps the
cases :func:`trace_bench.sharding.select_cases` deals to shard I (sha256 of the case id, round robin), so
several machines can prepare into one shared folder. Outputs are byte-identical for any ``workers``.

Flows are estimated on the canonical frames (the resolution the model sees), as the in-process dataset
(``data.FramePairDataset``) does; the flow kind is ``conditioning.flow`` (RAFT weights via the registry).
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing as mp
import re
import sys
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
from torch.utils.data import Dataset

from trace_bench.atomic import atomic_path, atomic_write_bytes
from trace_bench.errors import ConfigError

from .config import TraceConfig
from .data import pair_indices

PREP_FORMAT = "trace-prepared-v1"
CASES_DIR = "cases"
_SAFE_ID = re.compile(r"^[A-Za-z0-9._+-][A-Za-z0-9._+ -]*$")


def file_sha256(path: str | Path) -> str:
    """sha256 (hex) of a file's bytes, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def prep_settings(cfg: TraceConfig, *, volume_format: str, masks: str) -> dict[str, Any]:
    """The settings a prepared file depends on (``masks``: ``"folder"`` or ``"segmenter:NAME"``)."""
    c, d = cfg.conditioning, cfg.data
    return {"format": PREP_FORMAT, "image_size": cfg.model.image_size, "hu_window": list(d.hu_window),
            "skips": list(d.skips), "mask_granularity": c.mask_granularity, "lung_labels": list(c.lung_labels),
            "max_label": c.max_label, "flow": c.flow, "volume_format": volume_format, "masks": masks}


def settings_hash(settings: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode("utf-8")).hexdigest()


def model_settings(settings: dict[str, Any]) -> dict[str, Any]:
    """The part of the settings a training config must agree with (not where the inputs came from)."""
    return {k: v for k, v in settings.items() if k not in ("volume_format", "masks")}


@dataclass(frozen=True)
class CaseJob:
    """One case to prepare (picklable: sent to a worker process)."""

    case_id: str
    volume: str
    volume_format: str
    mask: str | None  # label-map file, or None -> segmenter
    segmenter: str
    prompt: str
    input_sha256: str
    out_file: str
    cfg_json: str
    device: str


def case_input_hash(volume_sha: str, mask_sha: str | None, segmenter: str, prompt: str) -> str:
    """sha256 over the case's inputs: the volume's and mask's content hashes (or segmenter name) and the prompt."""
    text = f"volume {volume_sha}\nmask {mask_sha or 'segmenter:' + segmenter}\nprompt {hashlib.sha256(prompt.encode()).hexdigest()}\n"
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def prepare_case(job: CaseJob) -> dict[str, Any]:
    """Compute and write one case's file (atomically); return its manifest record."""
    from safetensors.torch import save_file

    from baselines.base import get_adapter
    from trace_bench.io import read_label_map

    from .data import (
        compute_flows,
        hu_to_model,
        labels_to_cond,
        resize_slices,
        segment_labels,
    )
    from .flow import FlowEstimator

    cfg = TraceConfig.from_dict(json.loads(job.cfg_json))
    vol = get_adapter(job.volume_format).read(Path(job.volume))
    if job.mask is not None:
        lab = read_label_map(job.mask)
        if lab.shape != vol.shape:
            raise ConfigError(f"{job.mask}: label map shape {lab.shape} differs from volume {job.volume} shape {vol.shape}")
    else:
        lab = segment_labels(vol, job.segmenter)
    frames = resize_slices(hu_to_model(vol.array, cfg.data.hu_window), cfg.model.image_size)
    if frames.shape[0] < 2:
        raise ConfigError(f"{job.volume}: {frames.shape[0]} slice(s); a frame pair needs at least 2")
    cond = labels_to_cond(lab, cfg)
    pairs = pair_indices(frames.shape[0], cfg.data.skips)
    tensors = {"frames": frames.half().contiguous(), "cond": cond.half().contiguous()}
    if cfg.conditioning.flow != "none":
        est = FlowEstimator(cfg.conditioning.flow, device=job.device)
        tensors["flow"] = compute_flows(frames.to(est.device), pairs, est).contiguous()
    out = Path(job.out_file)
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out, ".safetensors") as tmp:
        save_file(tensors, str(tmp), metadata={"format": PREP_FORMAT})  # one key: a map is not ordered
    return {"file": f"{CASES_DIR}/{out.name}", "sha256": file_sha256(out), "input_sha256": job.input_sha256,
            "slices": int(frames.shape[0]), "pairs": len(pairs), "prompt": job.prompt,
            "volume": Path(job.volume).name, "mask": Path(job.mask).name if job.mask else None}


def _worker_init() -> None:
    torch.set_num_threads(1)
    try:
        import cv2

        cv2.setNumThreads(1)
    except ImportError:
        pass


def manifest_name(shard: str | None) -> str:
    if shard is None:
        return "manifest.json"
    from trace_bench.sharding import parse_shard

    i, n = parse_shard(shard)
    return f"manifest-{i}-of-{n}.json"


def read_manifests(prep: str | Path) -> list[tuple[Path, dict[str, Any]]]:
    """Every ``manifest*.json`` of a prepared folder, parsed (sorted by name)."""
    out = []
    for p in sorted(Path(prep).glob("manifest*.json")):
        try:
            m = json.loads(p.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ConfigError(f"{p}: not a prepared-set manifest ({e})") from None
        if not isinstance(m, dict) or m.get("format") != PREP_FORMAT:
            raise ConfigError(f"{p}: not a {PREP_FORMAT} manifest")
        out.append((p, m))
    return out


def _write_manifest(path: Path, settings: dict[str, Any], cases: dict[str, dict[str, Any]], shard: str | None) -> None:
    doc = {"format": PREP_FORMAT, "config_hash": settings_hash(settings), "settings": settings, "shard": shard,
           "cases": {k: cases[k] for k in sorted(cases)}}
    atomic_write_bytes(path, (json.dumps(doc, indent=1, sort_keys=True) + "\n").encode("utf-8"))


def _list_cases(volumes: Path, volume_format: str, masks: Path | None,
                recursive: bool) -> tuple[dict[str, Path], dict[str, Path], Any]:
    from baselines.base import get_adapter

    from .data import list_volumes

    if not volumes.is_dir():
        raise ConfigError(f"{volumes} is not a folder of volumes")
    adapter = get_adapter(volume_format)
    vols: dict[str, Path] = {}
    if recursive:  # e.g. CT-RATE's dataset/train/train_1/train_1_a/train_1_a_1.nii.gz
        files = sorted(p for p in volumes.rglob("*") if p.is_file() and not any(
            part.startswith(".") for part in p.relative_to(volumes).parts) and adapter.is_candidate(p))
    else:
        files = adapter.list_files(volumes)
    for p in files:
        cid = adapter.case_id(p)
        if cid in vols:
            raise ConfigError(f"{p}: case id {cid!r} also names {vols[cid]}")
        if not _SAFE_ID.match(cid):
            raise ConfigError(f"{p}: case id {cid!r} cannot be a file name")
        vols[cid] = p
    if not vols:
        raise ConfigError(f"{volumes}: no volumes for format {volume_format!r} (--recursive searches sub-folders)")
    labs: dict[str, Path] = {}
    if masks is not None:
        labs = list_volumes(masks)
        missing = sorted(set(vols) - set(labs))
        if missing:
            raise ConfigError(f"{masks}: no label map for case(s) {missing[:5]}")
    return vols, labs, adapter


def prepare(cfg: TraceConfig, out: str | Path, *, volumes: str | Path | None = None, volume_format: str = "nifti",
            masks: str | Path | None = None, segmenter: str | None = None, prompts: str | Path | None = None,
            workers: int = 1, shard: str | None = None, device: str = "cpu", recursive: bool = False,
            log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Prepare (or finish preparing) the training set in ``out``; returns a summary
    ``{"done": [...], "skipped": [...], "manifest": path, "cases": n}``.

    Defaults come from ``cfg.data`` (volumes, labels, segmenter, prompts). Prompts: the CSV/JSON ``prompts``
    (case_id -> text) when given, else the adapter's ``prompt()`` hook (e.g. ``ctrate`` builds
    ``"{age} years old {sex}: {impression}"``), else empty. ``recursive``: find volumes in every sub-folder
    (the official CT-RATE layout) instead of the folder's own entries.
    """
    from trace_bench.inputs import input_hash
    from trace_bench.sharding import select_cases

    log = log or (lambda s: print(s, file=sys.stderr, flush=True))
    d = cfg.data
    if not (volumes or d.volumes):
        raise ConfigError("prepare needs --volumes (or data.volumes in the config)")
    volumes = Path(volumes or d.volumes)
    masks = Path(masks) if masks else (Path(d.labels) if (d.labels and not segmenter) else None)
    segmenter = segmenter or ("" if masks is not None else d.segmenter)
    if masks is None and not segmenter:
        raise ConfigError("prepare needs --masks DIR (label maps paired by case id) or --segmenter NAME (e.g. threshold)")
    if workers < 1:
        raise ConfigError(f"--workers must be >= 1, got {workers}")
    prompts = prompts or d.prompts or None
    out = Path(out)
    settings = prep_settings(cfg, volume_format=volume_format,
                             masks="folder" if masks is not None else f"segmenter:{segmenter}")
    chash = settings_hash(settings)
    vols, labs, adapter = _list_cases(volumes, volume_format, masks, recursive)
    texts: dict[str, str] = {}
    if prompts:
        from trace_bench.cases import load_prompts

        texts = load_prompts(prompts)
    own = select_cases(list(vols), shard)
    known: dict[str, dict[str, Any]] = {}
    for p, m in read_manifests(out):
        if m.get("config_hash") == chash:
            known.update(m.get("cases", {}))
    cfg_json = cfg.to_json()
    mpath = out / manifest_name(shard)
    records: dict[str, dict[str, Any]] = {}
    jobs: list[CaseJob] = []
    skipped: list[str] = []
    no_prompt = [cid for cid in own if prompts and not texts.get(cid)]
    if no_prompt:
        log(f"prepare: {prompts}: no prompt for {len(no_prompt)} case(s) (trained with the empty prompt), e.g. "
            f"{', '.join(no_prompt[:5])}")
    for cid in own:
        vp = vols[cid]
        text = (texts.get(cid) if prompts else adapter.prompt(vp)) or ""
        mp_ = labs.get(cid)
        ih = case_input_hash(input_hash(vp), input_hash(mp_) if mp_ is not None else None, segmenter, text)
        f = out / CASES_DIR / f"{cid}.safetensors"
        rec = known.get(cid)
        if rec is not None and rec.get("input_sha256") == ih and f.is_file() and file_sha256(f) == rec.get("sha256"):
            records[cid] = rec
            skipped.append(cid)
            continue
        jobs.append(CaseJob(cid, str(vp), volume_format, str(mp_) if mp_ is not None else None, segmenter, text, ih,
                            str(f), cfg_json, device))
    out.mkdir(parents=True, exist_ok=True)
    _write_manifest(mpath, settings, records, shard)
    log(f"prepare: {len(own)} case(s){f' in shard {shard}' if shard else ''}: {len(skipped)} up to date, "
        f"{len(jobs)} to prepare with {min(workers, max(1, len(jobs)))} worker(s)")
    done: list[str] = []
    if jobs:
        if workers == 1:
            from .runtime import torch_threads

            with torch_threads(1, "cpu"):
                _cv2_threads(1)
                for job in jobs:
                    records[job.case_id] = prepare_case(job)
                    done.append(job.case_id)
                    _write_manifest(mpath, settings, records, shard)
                    log(f"prepare: {job.case_id} ({len(done)}/{len(jobs)})")
        else:
            with ProcessPoolExecutor(max_workers=min(workers, len(jobs)), mp_context=mp.get_context("spawn"),
                                     initializer=_worker_init) as pool:
                futs = {pool.submit(prepare_case, job): job for job in jobs}
                for fut in as_completed(futs):
                    job = futs[fut]
                    records[job.case_id] = fut.result()
                    done.append(job.case_id)
                    _write_manifest(mpath, settings, records, shard)
                    log(f"prepare: {job.case_id} ({len(done)}/{len(jobs)})")
    return {"done": sorted(done), "skipped": skipped, "manifest": str(mpath), "cases": len(own)}


def _cv2_threads(n: int) -> None:
    try:
        import cv2

        cv2.setNumThreads(n)
    except ImportError:
        pass


@dataclass(frozen=True)
class PreparedCase:
    """One case of a prepared set, as the manifest describes it."""

    case_id: str
    path: Path
    slices: int
    pairs: int
    prompt: str
    sha256: str


def load_prepared(prep: str | Path, cfg: TraceConfig) -> list[PreparedCase]:
    """The cases of a prepared folder (all its manifests), checked against ``cfg`` (image size, HU window, skips,
    granularity, flow kind must match) and against the files on disk (present, same size as written)."""
    prep = Path(prep)
    ms = read_manifests(prep)
    if not ms:
        raise ConfigError(f"{prep}: no manifest.json (run `trace-bench prepare --out {prep}` first)")
    want = model_settings(prep_settings(cfg, volume_format="", masks=""))
    cases: dict[str, PreparedCase] = {}
    for p, m in ms:
        have = model_settings(m.get("settings", {}))
        if have != want:
            diff = sorted(k for k in set(want) | set(have) if want.get(k) != have.get(k))
            raise ConfigError(f"{p}: prepared with different settings than the training config ({', '.join(diff)})")
        for cid, r in m.get("cases", {}).items():
            f = prep / r["file"]
            if not f.is_file():
                raise ConfigError(f"{f}: listed in {p.name} but missing (rerun trace-bench prepare to redo it)")
            pc = PreparedCase(cid, f, int(r["slices"]), int(r["pairs"]), str(r.get("prompt", "")), r["sha256"])
            if cid in cases and cases[cid].sha256 != pc.sha256:
                raise ConfigError(f"{p}: case {cid} differs from the same case in another manifest")
            cases[cid] = pc
    if not cases:
        raise ConfigError(f"{prep}: the prepared set has no cases")
    return [cases[k] for k in sorted(cases)]


def verify_prepared(prep: str | Path, cfg: TraceConfig) -> list[str]:
    """Case ids whose file's sha256 differs from the manifest (reads every file)."""
    return [c.case_id for c in load_prepared(prep, cfg) if file_sha256(c.path) != c.sha256]


class PreparedPairDataset(Dataset):
    """Frame pairs of eq. 3 read from a prepared folder (``trace_model.prepare``): no segmentation and no flow
    estimation in the training process. Files are opened lazily (memory-mapped safetensors) in each DataLoader
    worker; an item is the same dict as :class:`FramePairDataset`'s (float32 tensors)."""

    def __init__(self, prep: str | Path, cfg: TraceConfig):
        self.cfg, self.prep = cfg, Path(prep)
        self.cases = load_prepared(prep, cfg)
        self.pairs: list[tuple[int, int, int, int]] = []
        for c, case in enumerate(self.cases):
            pp = pair_indices(case.slices, cfg.data.skips)
            if len(pp) != case.pairs:
                raise ConfigError(f"{case.path}: {case.pairs} pairs recorded, {len(pp)} expected for {case.slices} slices")
            self.pairs += [(c, i, j, q) for q, (i, j) in enumerate(pp)]
        self._open: dict[int, object] = {}

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_open"] = {}  # file handles stay in their process
        return state

    def _handle(self, c: int):
        from safetensors import safe_open

        h = self._open.get(c)
        if h is None:
            if len(self._open) >= 64:
                self._open.pop(next(iter(self._open)))
            h = self._open[c] = safe_open(str(self.cases[c].path), framework="pt")
        return h

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, idx: int) -> dict:
        c, i, j, q = self.pairs[idx]
        case, h = self.cases[c], self._handle(c)
        S = self.cfg.model.image_size
        fr, co = h.get_slice("frames"), h.get_slice("cond")
        flow = h.get_slice("flow")[q].float() if self.cfg.conditioning.flow != "none" else torch.zeros(2, S, S)
        d = case.slices
        return {"frames": torch.stack([fr[i], fr[j]]).float(), "masks": torch.stack([co[i], co[j]]).float(),
                "flow": flow, "positions": torch.tensor([i / (d - 1), j / (d - 1)], dtype=torch.float32),
                "prompt": case.prompt}
