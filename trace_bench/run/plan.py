"""Stage 1, the plan (preflight): check the inputs, choose and set up the metrics, pair the cases,
hash every input file and compute the cache key of every (method, case, metric) entry.

The result is a frozen :class:`Plan`: nothing changes it afterwards. Worker processes and torchrun
ranks receive it (pickled without loaded networks) and never plan again. The plan is written to
``OUT/manifest.json`` (:func:`manifest_dict`), which is all the aggregate stage reads besides the
per-case records.

Planning never stops on one bad input: a file that cannot be hashed (dangling or looping symlink,
FIFO, unreadable) becomes a pairing problem (an ``errors.csv`` row) and the other cases run.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from .. import __version__
from ..cases import Case, Pairing, Problem, pair_cases
from ..config import RunConfig, split_method
from ..errors import ConfigError, TraceBenchError, WeightsError
from ..metrics.base import METRICS, Metric, RunContext
from ..protocol import FrameProtocol
from ..results.layout import PLOT_ARTIFACT, Entry
from ..results.tables import GT, MetricInfo
from .assign import case_listing, select_cases, shard_info
from .select import load_metric_registry, resolve_metric_names, segmenter_choices

CACHE_VERSION = 1


@dataclass(frozen=True)
class Plan:
    """Everything the per-case and aggregate stages need; never mutated after :func:`plan_run`."""

    config: RunConfig
    ctx: RunContext
    out: Path
    metrics: tuple[Metric, ...]
    skipped: dict[str, str]
    weights: dict[str, dict[str, str]]
    pairing: Pairing
    methods: dict[str, tuple[Path, str]]
    reference: Path | None
    entries: tuple[Entry, ...]
    input_hashes: dict[str, dict[str, str]]
    profiles: dict[str, dict[str, Any]]
    plot_case: str | None
    notes: tuple[str, ...] = ()
    #: which cases this plan covers when sharded / split by torchrun rank (see .assign), else None
    shard: dict[str, Any] | None = None
    #: fingerprint of every paired input file (name, size): shards of one benchmark must agree on it
    listing: str = ""
    plan_s: float = 0.0

    @property
    def method_order(self) -> list[str]:
        return ([GT] if self.reference is not None else []) + list(self.methods)

    def metric(self, name: str) -> Metric:
        for m in self.metrics:
            if m.name == name:
                return m
        raise KeyError(name)

    def replace(self, **changes: Any) -> "Plan":
        return dataclasses.replace(self, **changes)


def make_context(config: RunConfig, device: str | None = None) -> RunContext:
    """The run-wide settings metrics read. ``device``: the resolved device (default: the config's
    spelling with ``auto`` taken as the CPU, for stages that never touch a network)."""
    if device is None:
        device = "cpu" if config.device == "auto" else config.device
    return RunContext(device=device,
                      protocol=FrameProtocol(size=int(config.frame_size), window=(config.hu_window[0], config.hu_window[1])),
                      weights=dict(config.weights), cache_dir=None, segmenter=config.segmenter,
                      classes=config.classes, batch_size=int(config.batch_size), seed=int(config.seed))


def input_hash(path: Path) -> str:
    """sha256 of a file, or of the sorted (name, sha256) list of a folder's files (DICOM, PNG stacks)."""
    from ..inputs import input_hash as _hash

    return _hash(path)


def hash_json(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


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
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ConfigError(f"--profile {method}={p}: not valid JSON ({e})") from None
    if not isinstance(data, dict) or not any(k in data for k in ("fps", "inference_peak_bytes", "train_peak_bytes")):
        raise ConfigError(f"--profile {method}={p}: expected a JSON object with 'fps', 'inference_peak_bytes' "
                          f"or 'train_peak_bytes', got keys {sorted(data) if isinstance(data, dict) else type(data).__name__}")
    return data


def instantiate_metrics(config: RunConfig) -> list[Metric]:
    """The chosen metric classes, each with its options from ``config.options`` (validated)."""
    names = resolve_metric_names(config.metrics, config.plugins, make_context(config))
    opts = dict(getattr(config, "options", {}) or {})
    for metric in opts:
        if metric not in METRICS:
            METRICS.get(metric)  # raises with the list of metrics and a suggestion
    out = []
    for n in names:
        cls = METRICS.get(n)
        given = dict(opts.get(n, {}))
        if getattr(config, "fast", False):  # --fast: the declared fast values, unless the user set the option
            given = {**cls.fast_options(), **given}
        out.append(cls(given))
    return out


def check_metric_options(config: RunConfig) -> None:
    """Validate ``config.options`` against every named metric's declaration (even unselected ones)."""
    load_metric_registry(config.plugins)
    for metric, given in (getattr(config, "options", {}) or {}).items():
        METRICS.get(metric).resolve_options(dict(given))


def plan_run(config: RunConfig, *, setup: bool = True, part: tuple[int, int] | None = None,
             notes: Iterable[str] = (), extra_skipped: dict[str, str] | None = None) -> Plan:
    """Preflight + planning (stage 1). Fast: no volume is decoded here, only files hashed.

    With ``config.shard = "I/N"`` only the cases of shard I are planned (and only their files hashed);
    ``part = (r, W)`` splits those cases once more (torchrun rank r of W, 1-based). Assignment: see
    :func:`trace_bench.run.assign.select_cases`."""
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

    from ..device import check_device

    ctx = make_context(config, check_device(config.device))  # a missing GPU is refused here, in preflight
    check_metric_options(config)
    chosen = instantiate_metrics(config)
    if config.segmenter not in segmenter_choices():
        raise ConfigError(f"unknown segmenter {config.segmenter!r}. Expected one of: {', '.join(segmenter_choices())}")
    lenient = bool(config.skip_unavailable) or "available" in config.metrics
    skipped: dict[str, str] = {}
    weights: dict[str, dict[str, str]] = {}
    missing: list[str] = []
    from ..weights import resolve_weights

    usable: list[Metric] = []
    for m in chosen:
        problem = None
        if m.needs_reference and ref_dir is None:
            problem = "needs a reference set (--reference)"
        for wname in m.required_weights(ctx) if problem is None else ():
            try:
                r = resolve_weights(wname, config.weights.get(wname))
                weights[wname] = {"sha256": r.sha256, "path": str(r.path), "source": r.source}
            except TraceBenchError as e:
                problem = str(e)
                break
        if problem is not None:
            skipped[m.name] = problem
            missing.append(f"{m.name}: {problem}")
        else:
            usable.append(m)
    if missing and not lenient:
        raise WeightsError("preflight: cannot compute " + "; ".join(missing) +
                           ". Install what is missing, choose other --metrics, or pass --skip-unavailable to run the rest.")
    pairing = pair_cases(ref_dir, {k: (str(v[0]), v[1]) for k, v in methods.items()}, reference_adapter=config.reference_format,
                         reference_masks=ref_masks, method_masks={k: str(v) for k, v in m_masks.items()}, prompts=config.prompts)
    if any(m.needs_prompt for m in usable) and not any(c.prompt for c in pairing.cases):
        for m in [m for m in usable if m.needs_prompt]:
            msg = "needs text prompts (--prompts FILE or <case_id>.txt beside the volumes); none found"
            if not lenient:
                raise ConfigError(f"preflight: {m.name} {msg}. Pass --skip-unavailable to run the rest.")
            skipped[m.name] = msg
            usable.remove(m)
    if setup:
        for m in list(usable):
            try:
                m.setup(ctx)
            except (WeightsError, ImportError) as e:
                if not lenient:
                    raise
                skipped[m.name] = str(e)
                usable.remove(m)
    if not usable:
        raise ConfigError("no metric can be computed: " + "; ".join(f"{k}: {v}" for k, v in skipped.items()))
    for k, v in (extra_skipped or {}).items():
        skipped.setdefault(k, v)

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
    hashes, entries, problems = _entries(pairing, own, methods, usable, weights, ctx, config.plots, plot_case)
    if problems:
        pairing = Pairing(pairing.cases, list(pairing.problems) + problems)
    order = {m: i for i, m in enumerate(([GT] if ref_dir is not None else []) + list(methods))}
    entries.sort(key=lambda e: (e.case_id, order[e.method], e.metric))
    shard = shard_info(all_ids, sorted(own), config.shard, part) if (config.shard is not None or part is not None) else None
    return Plan(config=config, ctx=ctx, out=out, metrics=tuple(usable), skipped=skipped, weights=weights, pairing=pairing,
                methods=methods, reference=ref_dir, entries=tuple(entries), input_hashes=hashes, profiles=profiles,
                plot_case=plot_case if config.plots else None, notes=tuple(notes), shard=shard,
                listing=case_listing(pairing), plan_s=time.perf_counter() - t0)


def _safe_hash(path: Path, what: str, case_id: str, problems: list[Problem]) -> str | None:
    """The input hash, or None with a problem row (the file cannot be read: one bad entry never stops the run)."""
    try:
        return input_hash(path)
    except (OSError, TraceBenchError) as e:
        reason = str(e) if isinstance(e, TraceBenchError) else f"{type(e).__name__}: {e.strerror or e}"
        problems.append(Problem(what, case_id, str(path), reason))
        return None


def _entries(pairing: Pairing, own: set[str], methods: dict[str, tuple[Path, str]], usable: list[Metric],
             weights: dict[str, dict[str, str]], ctx: RunContext, plots: bool, plot_case: str | None
             ) -> tuple[dict[str, dict[str, str]], list[Entry], list[Problem]]:
    hashes: dict[str, dict[str, str]] = {}
    entries: list[Entry] = []
    problems: list[Problem] = []
    for case in pairing.cases:
        if case.case_id not in own:
            continue
        entries_of_case = _case_entries(case, methods, usable, weights, ctx, plots and case.case_id == plot_case,
                                        hashes, problems)
        entries.extend(entries_of_case)
    return hashes, entries, problems


def _case_entries(case: Case, methods: dict[str, tuple[Path, str]], usable: list[Metric],
                  weights: dict[str, dict[str, str]], ctx: RunContext, plot: bool,
                  hashes: dict[str, dict[str, str]], problems: list[Problem]) -> list[Entry]:
    out: list[Entry] = []
    ref_h = _safe_hash(case.reference.path, "reference", case.case_id, problems) if case.reference is not None else None
    if ref_h:
        hashes.setdefault(GT, {})[case.case_id] = ref_h
    rmask_h = (_safe_hash(case.reference_mask, "reference:masks", case.case_id, problems)
               if case.reference_mask is not None else None)
    vols: list[tuple[str, str, str, str | None]] = []
    if case.reference is not None and ref_h is not None:
        vols.append((GT, ref_h, case.reference.adapter, rmask_h))
    for m in methods:
        if m in case.generated:
            h = _safe_hash(case.generated[m].path, m, case.case_id, problems)
            if h is None:
                continue
            hashes.setdefault(m, {})[case.case_id] = h
            mm = case.method_masks.get(m)
            mh = _safe_hash(mm, f"{m}:masks", case.case_id, problems) if mm is not None else None
            vols.append((m, h, case.generated[m].adapter, mh))
    for method, vh, adapter, mask_h in vols:
        base = {"v": CACHE_VERSION, "volume": vh, "adapter": adapter, "mask": mask_h,
                "reference_mask": rmask_h, "segmenter": ctx.segmenter, "classes": ctx.classes}
        for m in usable:
            if method == GT and m.kind == "case" and m.needs_reference:
                continue
            if method != GT and m.needs_reference and ref_h is None:
                continue  # unpaired (or unreadable reference): listed as a pairing problem
            k = dict(base, metric=m.name, cls=f"{type(m).__module__}.{type(m).__qualname__}",
                     kind=m.kind, protocol=m.protocol_id(ctx),
                     weights={w: weights[w]["sha256"] for w in m.required_weights(ctx)},
                     reference=ref_h if (m.needs_reference and method != GT) else None,
                     prompt=case.prompt if m.needs_prompt else None)
            out.append(Entry(method, case.case_id, m.name, m.kind, hash_json(k)))
        if plot:
            k = dict(base, metric=PLOT_ARTIFACT, protocol=ctx.protocol.id, reference=ref_h,
                     specs=sorted(m.name for m in usable))
            out.append(Entry(method, case.case_id, PLOT_ARTIFACT, "artifact", hash_json(k)))
    return out


# ============================================================================= manifest
def column_infos(metrics: Iterable[Metric], ctx: RunContext) -> dict[str, MetricInfo]:
    """The display / direction information of every column the metrics write (metrics.json)."""
    out: dict[str, MetricInfo] = {}
    for m in metrics:
        for col, o in m.output_columns(ctx).items():
            out[col] = MetricInfo.of(o, table=m.table, kind=m.kind, protocol=m.protocol_id(ctx), spec=m.name,
                                     legend=tuple(m.protocol_legend(ctx)))
    return out


def manifest_dict(plan: Plan) -> dict[str, Any]:
    """The manifest: everything the aggregate stage needs besides the case files, and what ``merge``
    checks (toolkit version, weights sha256, input hashes, the input listing and the shard)."""
    infos = column_infos(plan.metrics, plan.ctx)
    return {
        "version": __version__,
        "cache_version": CACHE_VERSION,
        "methods": plan.method_order,
        "reference": plan.reference is not None,
        "metrics": {m.name: {"kind": m.kind, "needs_reference": m.needs_reference, "table": m.table,
                             "columns": dict(m.columns), "protocol": m.protocol_id(plan.ctx), "options": dict(m.opts)}
                    for m in plan.metrics},
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
        "notes": list(plan.notes),
    }
