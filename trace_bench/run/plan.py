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
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from .. import __version__
from ..cases import Case, Pairing, Problem, pair_cases
from ..config import SETTINGS, RunConfig, RunFolders
from ..errors import ConfigError, TraceBenchError, WeightsError
from ..folders import InputFolder
from ..metrics.base import METRICS, Metric, RunContext
from ..profiling.profile_json import read_profile
from ..protocol import FrameProtocol
from ..results.layout import PLOT_ARTIFACT, Entry
from ..results.stamp import check_out_folder
from ..results.tables import GT, MetricInfo
from .assign import case_listing, select_cases, shard_info
from .select import load_metric_registry, resolve_metric_names, segmenter_choices

#: version of the per-case key layout; 2: keys derived from config.SETTINGS (geometry policy,
#: reading options, adapter inputs such as CT-RATE metadata rows; segmenter / classes through the
#: segmentation protocol id), records carry a checksum and their key data
CACHE_VERSION = 2
#: the key routes of config.SETTINGS this module builds (a test checks that every declared route is one)
KEY_ROUTES = ("inputs", "protocol", "weights", "entry")


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
    #: the generated folders (name -> folder with its reading options) and the reference folder
    methods: dict[str, InputFolder]
    reference: InputFolder | None
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

    def folder(self, method: str) -> InputFolder:
        """The folder ``method``'s volumes come from (``GT``: the reference folder)."""
        f = self.reference if method == GT else self.methods[method]
        assert f is not None
        return f

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


def hash_json(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def _check_folder(path: str | Path | None, what: str) -> Path | None:
    if path is None:
        return None
    p = Path(path).expanduser()
    if not p.is_dir():
        raise ConfigError(f"{what}: {p} is not a folder")
    return p


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


# ============================================================================= stage 1a: inputs
@dataclass(frozen=True)
class PlanInputs:
    """The checked input folders and files of a run."""

    folders: RunFolders
    reference_masks: Path | None
    method_masks: dict[str, Path]
    profiles: dict[str, dict[str, Any]]


def check_inputs(config: RunConfig) -> PlanInputs:
    """The readers' environment settings are valid (:func:`trace_bench.io.check_reader_environment`:
    ``TRACE_BENCH_MAX_VOLUME_BYTES``), every named folder exists, ``--reference`` is given (and not empty)
    when methods are, mask and profile names match methods, and ``--out`` is safe to write
    (:func:`check_out_folder`)."""
    from ..io import check_reader_environment

    check_reader_environment()  # a bad setting is one line now, not an error on every volume
    folders = config.folders()
    if folders.reference is None and not folders.methods:
        raise ConfigError("nothing to score: give --reference and/or --method NAME=DIR (or run `trace-bench demo`)")
    if folders.methods and folders.reference is None:
        raise ConfigError("--reference is missing: every --method is scored against a reference folder of real "
                          "volumes paired by case id; give --reference DIR")
    if folders.train_reference is not None:
        optioned = [f.name for f in folders.all() if len(f.read.key()) > 1]
        if optioned:  # trace_bench.audit reads (folder, adapter) pairs with the adapters' defaults
            raise ConfigError(f"--train-reference: the memorization audit reads folders with their adapter's defaults "
                              f"and cannot apply the reading options of {', '.join(optioned)}; run the audit "
                              "separately (`trace-bench audit`) on folders that need none")
    for f in folders.all():
        label = "--reference" if f.name == "reference" else (
            "--train-reference" if f.name == "train_reference" else f"--method {f.name}")
        _check_folder(f.path, label)
    ref_masks = _check_folder(config.reference_masks, "--reference-masks")
    m_masks = {m: _check_folder(d, f"--method-masks {m}") for m, d in config.method_masks.items()}
    for m in m_masks:
        if m not in folders.methods:
            known = ", ".join(folders.methods) or "none"
            raise ConfigError(f"--method-masks {m}=...: no --method named {m!r} (methods: {known})")
    if config.prompts is not None and not Path(config.prompts).is_file():
        raise ConfigError(f"--prompts: {config.prompts} does not exist")
    profiles = {m: read_profile(p, m) for m, p in config.profiles.items()}
    check_out(config, folders)
    return PlanInputs(folders, ref_masks, m_masks, profiles)  # type: ignore[arg-type]


def check_out(config: RunConfig, folders: RunFolders | None = None) -> None:
    """``--out`` is safe to write: not among the inputs, not a folder of someone else's files
    (:func:`trace_bench.results.stamp.check_out_folder`). Runs before the output lock is taken."""
    folders = folders or config.folders()
    named = [f.path for f in folders.all()] + [Path(p) for p in [config.reference_masks, *config.method_masks.values()]
                                                if p is not None]
    check_out_folder(config.out, inputs=named, force=config.force)


# ============================================================================= stage 1b: metrics
@dataclass
class MetricChoice:
    usable: list[Metric]
    skipped: dict[str, str]
    weights: dict[str, dict[str, str]]


def choose_metrics(config: RunConfig, ctx: RunContext, has_reference: bool) -> MetricChoice:
    """The chosen metrics whose weights resolve (preflight; missing weights stop the run unless the
    metric set is lenient: ``available`` or ``--skip-unavailable``)."""
    check_metric_options(config)
    chosen = instantiate_metrics(config)
    if config.segmenter not in segmenter_choices():
        raise ConfigError(f"unknown segmenter {config.segmenter!r}. Expected one of: {', '.join(segmenter_choices())}")
    from ..weights import resolve_weights

    choice = MetricChoice([], {}, {})
    for m in chosen:
        problem = "needs a reference set (--reference)" if m.needs_reference and not has_reference else None
        for wname in m.required_weights(ctx) if problem is None else ():
            try:
                r = resolve_weights(wname, config.weights.get(wname))
                choice.weights[wname] = {"sha256": r.sha256, "path": str(r.path), "source": r.source}
            except TraceBenchError as e:
                problem = str(e)
                break
        if problem is not None:
            choice.skipped[m.name] = problem
        else:
            choice.usable.append(m)
    if choice.skipped and not lenient(config):
        raise WeightsError("preflight: cannot compute " + "; ".join(f"{k}: {v.rstrip('. ')}" for k, v in
                                                                  choice.skipped.items()) +
                           ". Install what is missing, choose other --metrics, or pass --skip-unavailable to run the rest.")
    return choice


def lenient(config: RunConfig) -> bool:
    """Whether a metric that cannot run is skipped (listed in the report) rather than stopping the run."""
    return bool(config.skip_unavailable) or "available" in config.metrics


def drop_unprompted(choice: MetricChoice, pairing: Pairing, config: RunConfig) -> None:
    """Text metrics need prompts: without any, they are skipped (lenient) or the run stops."""
    if any(c.prompt for c in pairing.cases):
        return
    for m in [m for m in choice.usable if m.needs_prompt]:
        msg = "needs text prompts (--prompts FILE or <case_id>.txt beside the volumes); none found"
        if not lenient(config):
            raise ConfigError(f"preflight: {m.name} {msg}. Pass --skip-unavailable to run the rest.")
        choice.skipped[m.name] = msg
        choice.usable.remove(m)


def setup_metrics(choice: MetricChoice, ctx: RunContext, config: RunConfig) -> None:
    """Load what each metric needs (networks); a metric that cannot load is skipped when lenient."""
    for m in list(choice.usable):
        try:
            m.setup(ctx)
        except (WeightsError, ImportError) as e:
            if not lenient(config):
                raise
            choice.skipped[m.name] = str(e)
            choice.usable.remove(m)


# ============================================================================= stage 1c: cases
def choose_plot_case(config: RunConfig, pairing: Pairing) -> str | None:
    """``--plot-case`` (checked) or the first case with the most volumes."""
    if config.plot_case is None:
        paired = sorted(pairing.cases, key=lambda c: (-(len(c.generated) + (c.reference is not None)), c.case_id))
        return paired[0].case_id if paired else None
    if config.plot_case not in {c.case_id for c in pairing.cases}:
        raise ConfigError(f"--plot-case {config.plot_case!r}: no such case "
                          f"(cases: {', '.join(c.case_id for c in pairing.cases[:10])})")
    return config.plot_case


def pair(inputs: PlanInputs, config: RunConfig) -> Pairing:
    """Pair the folders' volumes by case id; an empty reference folder is refused."""
    f = inputs.folders
    pairing = pair_cases(f.reference.path if f.reference else None,
                         {k: (str(v.path), v.format) for k, v in f.methods.items()},
                         reference_adapter=f.reference.format if f.reference else "nifti",
                         reference_masks=inputs.reference_masks,
                         method_masks={k: str(v) for k, v in inputs.method_masks.items()}, prompts=config.prompts)
    if f.reference is not None and not any(c.reference is not None for c in pairing.cases):
        raise ConfigError(f"--reference {f.reference.path}: no volume the '{f.reference.format}' adapter reads "
                          "(an empty folder, or give the folder's format)")
    return pairing


def plan_run(config: RunConfig, *, setup: bool = True, part: tuple[int, int] | None = None,
             notes: Iterable[str] = (), extra_skipped: dict[str, str] | None = None) -> Plan:
    """Preflight + planning (stage 1). Fast: no volume is decoded here, only files hashed.

    Stages: :func:`check_inputs` -> device -> :func:`choose_metrics` -> :func:`pair` ->
    :func:`drop_unprompted` -> :func:`setup_metrics` -> cases of this shard / rank -> :func:`plan_entries`.
    With ``config.shard = "I/N"`` only the cases of shard I are planned (and only their files hashed);
    ``part = (r, W)`` splits those cases once more (torchrun rank r of W, 1-based). Assignment: see
    :func:`trace_bench.run.assign.select_cases`."""
    t0 = time.perf_counter()
    config.validate()
    inputs = check_inputs(config)
    from ..device import check_device

    ctx = make_context(config, check_device(config.device))  # a missing GPU is refused here, in preflight
    choice = choose_metrics(config, ctx, inputs.folders.reference is not None)
    pairing = pair(inputs, config)
    drop_unprompted(choice, pairing, config)
    if setup:
        setup_metrics(choice, ctx, config)
    if not choice.usable:
        raise ConfigError("no metric can be computed: " + "; ".join(f"{k}: {v}" for k, v in choice.skipped.items()))
    for k, v in (extra_skipped or {}).items():
        choice.skipped.setdefault(k, v)

    all_ids = [c.case_id for c in pairing.cases]
    sharded = config.shard is not None or part is not None
    own = set(select_cases(all_ids, config.shard, part)) if sharded else set(all_ids)
    plot_case = choose_plot_case(config, pairing)
    keys = KeyBuilder(config, ctx, inputs.folders, choice.weights)
    hashes, entries, problems = plan_entries(pairing, own, choice.usable, keys, config.plots, plot_case)
    if problems:
        pairing = Pairing(pairing.cases, list(pairing.problems) + problems)
    f = inputs.folders
    return Plan(config=config, ctx=ctx, out=Path(config.out), metrics=tuple(choice.usable), skipped=choice.skipped,
                weights=choice.weights, pairing=pairing, methods=dict(f.methods), reference=f.reference,
                entries=tuple(entries), input_hashes=hashes, profiles=inputs.profiles,
                plot_case=plot_case if config.plots else None, notes=tuple(notes),
                shard=shard_info(all_ids, sorted(own), config.shard, part) if sharded else None,
                listing=case_listing(pairing), plan_s=time.perf_counter() - t0)


# ============================================================================= stage 1d: entries and keys
def entry_settings(config: RunConfig, applies: str) -> dict[str, Any]:
    """The ``entry``-route settings of :data:`trace_bench.config.SETTINGS` that apply to an entry kind."""
    return {n: getattr(config, n) for n, s in SETTINGS.items() if s.route == "entry" and s.applies == applies}


class KeyBuilder:
    """Builds every entry's key from the declaration of :data:`trace_bench.config.SETTINGS`, one
    route at a time (see :data:`trace_bench.config.ROUTES`):

    * ``inputs``: the volume's input hash (``trace_bench.inputs.input_hash``: header and detached data
      files), its folder's reading options and adapter, what else the adapter reads for it (a CT-RATE
      metadata row), its label map; an entry that compares the volume with its reference case (a
      reference-based metric, the plot artifact) adds the same of the reference volume and its label
      map; a folder read with ``spacing`` / ``layout = reference`` adds the reference volume to every
      entry of the volume; a text metric adds the prompt;
    * ``protocol``: the metric's class, kind and protocol id;
    * ``weights``: the sha256 of the weights files the metric uses;
    * ``entry``: the settings themselves (``geometry``), for the entries they apply to (``paired``).
    """

    def __init__(self, config: RunConfig, ctx: RunContext, folders: RunFolders,
                 weights: dict[str, dict[str, str]]) -> None:
        self.ctx, self.folders, self.weights = ctx, folders, weights
        self.paired = entry_settings(config, "paired")
        self._adapters: dict[str, Any] = {}

    def folder(self, method: str) -> InputFolder:
        f = self.folders.reference if method == GT else self.folders.methods[method]
        assert f is not None
        return f

    def source(self, method: str, path: Path, volume_hash: str) -> dict[str, Any]:
        """What a volume's values depend on besides the metric: file content, reading options, adapter inputs."""
        f = self.folder(method)
        out: dict[str, Any] = {"hash": volume_hash, "read": f.read.key()}
        extra = self.adapter_inputs(f, path)
        if extra:
            out["adapter_inputs"] = extra
        return out

    def adapter_inputs(self, folder: InputFolder, path: Path) -> dict[str, Any] | None:
        """What the adapter reads for this file besides the file (``Adapter.input_key(path)``: CT-RATE's
        metadata row and CSV), or None when it reads nothing else (the key then holds no such part)."""
        ad = self._adapters.get(folder.format)
        if ad is None:
            from baselines import get_adapter

            ad = self._adapters[folder.format] = get_adapter(folder.format)
        try:
            extra = ad.input_key(path)
        except Exception as e:  # noqa: BLE001 - the read reports it; the key records that it was missing
            return {"unavailable": f"{type(e).__name__}: {e}"}
        return dict(extra) if extra else None

    def volume_key(self, method: str, source: dict[str, Any], mask_h: str | None,
                   ref_source: dict[str, Any] | None) -> dict[str, Any]:
        """What every entry of one volume depends on: the volume (and its label map); for a folder read
        with ``spacing`` / ``layout = reference``, the reference case too."""
        key = {"v": CACHE_VERSION, "volume": source, "mask": mask_h}
        if method != GT and self.folder(method).read.uses_reference:
            key["grid_from_reference"] = ref_source
        return key

    def paired_inputs(self, ref_source: dict[str, Any] | None, rmask_h: str | None) -> dict[str, Any]:
        """What an entry comparing a generated volume with its reference adds: the reference volume, its
        label map and the ``paired`` entry settings (the geometry policy)."""
        return {"reference": ref_source, "reference_mask": rmask_h, "settings": self.paired}

    def metric_key(self, base: dict[str, Any], method: str, m: Metric, case: Case,
                   paired: dict[str, Any] | None) -> dict[str, Any]:
        return dict(base, metric=m.name, cls=f"{type(m).__module__}.{type(m).__qualname__}", kind=m.kind,
                    protocol=m.protocol_id(self.ctx),
                    weights={w: self.weights[w]["sha256"] for w in m.required_weights(self.ctx)},
                    prompt=case.prompt if m.needs_prompt else None,
                    paired=paired if (m.needs_reference and method != GT) else None)

    def plot_key(self, base: dict[str, Any], method: str, usable: list[Metric],
                 paired: dict[str, Any] | None) -> dict[str, Any]:
        from .artifacts import ARTIFACT_VERSION  # the viewer's label maps: segmenter and classes

        return dict(base, metric=PLOT_ARTIFACT, protocol=self.ctx.protocol.id, specs=sorted(m.name for m in usable),
                    paired=paired if method != GT else None, arrays=ARTIFACT_VERSION,
                    labels=[self.ctx.segmenter, self.ctx.classes])


def _safe_hash(path: Path, what: str, case_id: str, problems: list[Problem]) -> str | None:
    """The input hash, or None with a problem row (the file cannot be read: one bad entry never stops the run)."""
    from ..inputs import input_hash

    try:
        return input_hash(path)
    except (OSError, TraceBenchError) as e:
        reason = str(e) if isinstance(e, TraceBenchError) else f"{type(e).__name__}: {e.strerror or e}"
        problems.append(Problem(what, case_id, str(path), reason))
        return None


def plan_entries(pairing: Pairing, own: set[str], usable: list[Metric], keys: KeyBuilder, plots: bool,
                 plot_case: str | None) -> tuple[dict[str, dict[str, str]], list[Entry], list[Problem]]:
    """Every (method, case, metric) entry of this plan's cases with its key, the input hashes, and
    the files that could not be hashed (problem rows)."""
    hashes: dict[str, dict[str, str]] = {}
    entries: list[Entry] = []
    problems: list[Problem] = []
    for case in pairing.cases:
        if case.case_id in own:
            entries.extend(case_entries(case, usable, keys, plots and case.case_id == plot_case, hashes, problems))
    names = ([GT] if keys.folders.reference is not None else []) + list(keys.folders.methods)
    order = {m: i for i, m in enumerate(names)}
    entries.sort(key=lambda e: (e.case_id, order[e.method], e.metric))
    return hashes, entries, problems


def case_entries(case: Case, usable: list[Metric], keys: KeyBuilder, plot: bool,
                 hashes: dict[str, dict[str, str]], problems: list[Problem]) -> list[Entry]:
    """The entries of one case: each readable volume x each metric that applies to it (+ the plot artifact)."""
    ref_h = _safe_hash(case.reference.path, "reference", case.case_id, problems) if case.reference is not None else None
    ref_source = keys.source(GT, case.reference.path, ref_h) if ref_h is not None and case.reference else None
    if ref_h:
        hashes.setdefault(GT, {})[case.case_id] = ref_h
    rmask_h = (_safe_hash(case.reference_mask, "reference:masks", case.case_id, problems)
               if case.reference_mask is not None else None)
    vols: list[tuple[str, dict[str, Any], str | None]] = []
    if ref_source is not None:
        vols.append((GT, ref_source, rmask_h))
    for m in keys.folders.methods:
        if m not in case.generated:
            continue
        h = _safe_hash(case.generated[m].path, m, case.case_id, problems)
        if h is None:
            continue
        hashes.setdefault(m, {})[case.case_id] = h
        mm = case.method_masks.get(m)
        mh = _safe_hash(mm, f"{m}:masks", case.case_id, problems) if mm is not None else None
        vols.append((m, keys.source(m, case.generated[m].path, h), mh))
    paired = keys.paired_inputs(ref_source, rmask_h) if ref_source is not None else None
    out: list[Entry] = []
    for method, source, mask_h in vols:
        if method != GT and keys.folder(method).read.uses_reference and ref_source is None:
            continue  # its grid comes from a reference case it does not have (listed as a pairing problem)
        base = keys.volume_key(method, source, mask_h, ref_source)
        for m in usable:
            if method == GT and m.kind == "case" and m.needs_reference:
                continue
            if method != GT and m.needs_reference and ref_source is None:
                continue  # unpaired (or unreadable reference): listed as a pairing problem
            k = keys.metric_key(base, method, m, case, paired)
            out.append(Entry(method, case.case_id, m.name, m.kind, hash_json(k), k))
        if plot:
            k = keys.plot_key(base, method, usable, paired)
            out.append(Entry(method, case.case_id, PLOT_ARTIFACT, "artifact", hash_json(k), k))
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
        "reading": {m: plan.folder(m).read.key() for m in plan.method_order},
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
