"""``run_utility``: the one lifecycle of ``trace-bench utility`` (plain process or torchrun ranks).

1. resolve the device (``--device``, else the run's; ``auto`` = a GPU when one is visible), join the
   torchrun job when there is one (:func:`trace_model.distributed.init_distributed`: NCCL on
   ``cuda:LOCAL_RANK``, gloo on the CPU), take the lock of ``OUT/utility`` (rank 0), set torch's CPU
   threads (:func:`trace_model.runtime.torch_threads`) and the deterministic settings (:func:`deterministic`);
2. seg-tstr: assemble the pairs (:mod:`trace_bench.utility.data`), prepare them on the protocol grid
   (:mod:`.arrays`; rank 0 first, the other ranks then read the cache), then for every seed the real arm and
   per method its arm and the real + METHOD arm (:mod:`.seg`; finished jobs are skipped, an interrupted one continues
   from its checkpoint), then the statistics (:mod:`.summary`);
3. probe (rank 0 only): features of every set (:mod:`.probe`, through the feature cache), the probes,
   AUROC and intervals;
4. write ``OUT/utility/`` (:mod:`trace_bench.utility.results`) and the plot (:mod:`reports.utility`).

Bad inputs become rows of ``problems.csv`` and the other cases run; a missing backbone, an unknown
method or no test set stop the run before any training, with one line saying what to do.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import pandas as pd

from ..cases import Problem
from ..config import RunConfig
from ..errors import ConfigError, TraceBenchError
from ..results import utility_layout as layout
from .config import UtilityConfig
from .protocol import CHECKPOINT_EVERY, ProbeProtocol, SegProtocol, probe_protocol, seg_protocol

Log = Callable[[str], None]


@dataclass
class UtilityResult:
    """What a utility run produced: the folder, the files, per protocol the summary data, the problems."""

    out_dir: Path
    files: list[Path] = field(default_factory=list)
    seg: dict[str, Any] | None = None
    probe: dict[str, Any] | None = None
    problems: list[Problem] = field(default_factory=list)


@contextlib.contextmanager
def deterministic(device) -> Iterator[None]:
    """On CUDA: cuDNN deterministic algorithms, no benchmark autotuning, no TF32, torch's deterministic-algorithm
    mode (warn only: an op without a deterministic kernel warns instead of failing) and cuBLAS's fixed workspace;
    restored afterwards. The CPU kernels used here are deterministic already: every seg-tstr number is then
    bit-identical for a seed and a thread count on the CPU, and on one GPU model, driver and torch build up to
    the ops that warn."""
    import torch

    if getattr(device, "type", str(device)) != "cuda":
        yield
        return
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # cuBLAS reproducibility (read at CUDA init)
    old = (torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark, torch.backends.cudnn.allow_tf32,
           torch.backends.cuda.matmul.allow_tf32, torch.are_deterministic_algorithms_enabled(),
           torch.is_deterministic_algorithms_warn_only_enabled())
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        yield
    finally:
        (torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark, torch.backends.cudnn.allow_tf32,
         torch.backends.cuda.matmul.allow_tf32) = old[:4]
        torch.use_deterministic_algorithms(old[4], warn_only=old[5])


class Progress:
    """Steps done of all jobs, with elapsed time and ETA (:class:`trace_bench.run.console.PlainProgress`
    on stderr, one line every ``interval`` seconds and at each job's end); silent when disabled."""

    def __init__(self, label: str, total: int, enabled: bool, interval: float = 10.0) -> None:
        self.total, self.done, self.enabled = total, 0, enabled
        self.bar = None
        if enabled and total > 0:
            from ..run.console import PlainProgress, stderr_console

            self.bar = PlainProgress(stderr_console(), label, interval)

    def advance(self, n: int, what: str, force: bool = False) -> None:
        self.done += n
        if self.bar is not None:
            self.bar.tick(self.done, self.total, what, force=force)


# ============================================================================= seg-tstr
def _prepare(store, pairs, label: str, problems: list[Problem]) -> list[tuple[Any, Any]]:
    out = []
    for p in pairs:
        try:
            out.append((p, store.prepared(p)))
        except (TraceBenchError, OSError, ValueError) as e:
            problems.append(Problem(label, p.case_id, str(p.volume.path), f"{' '.join(str(e).split())} (skipped)"))
    return out


def run_seg(run: RunConfig, cfg: UtilityConfig, proto: SegProtocol, device, dist, out_dir: Path, *,
            progress: bool, log: Log, on_step: Callable[[Any, int], None] | None = None) -> dict[str, Any]:
    """Every seg-tstr job and the statistics; on rank 0 the frames and info for :mod:`trace_bench.utility.results`."""
    from trace_model.distributed import barrier

    from .arrays import PairStore, cache_root
    from .data import assemble
    from .resume import JobStore
    from .seg import Job, job_key, run_job
    from .summary import arm_name, arm_summary, case_rows, paired_rows

    main = dist is None or dist.rank == 0
    inputs = assemble(run, cfg, masks=True)
    store = PairStore(proto, cache_root(cfg.cache_dir))
    problems = list(inputs.problems)
    prepared: dict[str, list[tuple[Any, Any]]] = {}
    for turn in (True, False):  # rank 0 fills the cache, then the other ranks read it
        if main == turn:
            prepared["real"] = _prepare(store, inputs.real, "utility:real", problems)
            prepared["test"] = _prepare(store, inputs.test, "utility:test", problems)
            for m, pairs in inputs.methods.items():
                prepared[m] = _prepare(store, pairs, m, problems)
        barrier(dist)
    if not prepared["real"]:
        raise ConfigError("utility: no usable real training pair (see the problems above)")
    if not prepared["test"]:
        raise ConfigError("utility: no usable real test pair (see the problems above)")
    classes = list(cfg.seg_labels) or sorted({int(v) for _, pr in prepared["real"] for v in pr.present})
    if not classes:
        raise ConfigError("utility: the real training label maps hold no non-zero label: nothing to segment")

    identity: dict[tuple[str, str], tuple[str, ...]] = {}

    def ident(pairs: list[tuple[Any, Any]]) -> list[tuple[str, ...]]:
        """(case id, input sha256s, reading options, grid) per pair: what a job's key depends on (memoised)."""
        out = []
        for p, _ in pairs:
            k = (p.case_id, str(p.volume.path))
            if k not in identity:
                identity[k] = (p.case_id, *store.key_parts(p)[1:])
            out.append(identity[k])
        return out

    test_ids = ident(prepared["test"])
    test = [(p.case_id, pr.image, (lambda p=p: store.native(p))) for p, pr in prepared["test"]]
    seeds = [proto.seed + i for i in range(cfg.n_seeds)]
    jobs: list[tuple[Job, list[tuple[Any, Any]]]] = []
    for seed in seeds:
        jobs.append((Job("real", None, seed), prepared["real"]))
        for m in inputs.methods:
            if not prepared[m]:
                continue
            if "method" in cfg.arms:
                jobs.append((Job("method", m, seed), prepared[m]))
            if "real+method" in cfg.arms:
                jobs.append((Job("real+method", m, seed), prepared["real"] + prepared[m]))
    for m in inputs.methods:
        if not prepared[m]:
            problems.append(Problem(m, "", "", "no usable (generated volume, conditioning mask) pair: arm skipped"))
    log(f"utility: {proto.id}: {len(prepared['real'])} real training pairs, "
        + ", ".join(f"{m} {len(prepared[m])}" for m in inputs.methods)
        + f"; {len(test)} real test cases ({inputs.test_rule}); labels {classes}; {len(jobs)} training job(s) of "
        f"{proto.iterations} steps on {device}")
    every = cfg.checkpoint_every or CHECKPOINT_EVERY[cfg.variant]
    bar = Progress(f"utility {proto.id}", len(jobs) * proto.iterations, progress and main)
    results, timing = [], []
    for job, sets in jobs:
        key = job_key(proto, job, classes, ident(sets), test_ids)
        js = JobStore(out_dir / layout.JOBS / key[:20], key)
        if main and not cfg.resume:
            for f in (js.checkpoint_path, js.result_path):
                f.unlink(missing_ok=True)
        barrier(dist)
        last = [0]

        def step_hook(step: int, job=job, last=last) -> None:
            bar.advance(step - last[0], f"{job.name} seed {job.seed}", force=step == proto.iterations)
            last[0] = step
            if on_step is not None:
                on_step(job, step)

        if js.result() is not None:
            bar.advance(proto.iterations, f"{job.name} seed {job.seed} (done earlier)")
        else:
            state = js.checkpoint_state()
            state_step = int(state.get("step", 0)) if state else 0
            last[0] = state_step
            bar.advance(state_step, f"{job.name} seed {job.seed} (resumed at step {state_step})")
        rec = run_job(job, key, [pr for _, pr in sets], test, classes, proto, device, js, dist=dist,
                      checkpoint_every=every, on_step=step_hook)
        if rec is not None:
            results.append(rec)
            timing.append({"arm": job.arm, "method": job.method, "seed": job.seed, "folder": key[:20],
                           "train_seconds": rec.get("train_seconds"), "test_seconds": rec.get("test_seconds"),
                           "final_loss": rec["loss_log"][-1]["loss"] if rec.get("loss_log") else None,
                           "device": rec.get("device"), "world_size": rec.get("world_size")})
    if not main:
        return {}
    df = case_rows(results)
    arms_seen = [("real", "")] + [(a.arm, a.method) for a, _ in jobs if a.arm != "real" and a.seed == seeds[0]]
    n_train = {("real", ""): len(prepared["real"])}
    for j, sets in jobs:
        n_train[(j.arm, j.method or "")] = len(sets)
    info = {"protocol": proto.id, "sha256": proto.sha256, "declaration": proto.declaration(),
            "legend": [list(x) for x in proto.legend()], "variant": cfg.variant,
            "network": f"MONAI UNet (channels {list(proto.channels)}, strides {list(proto.strides)}, "
                       f"{proto.res_units} residual unit(s) per level)",
            "classes": classes, "seeds": seeds, "test_rule": inputs.test_rule, "n_test": len(test),
            "test_cases": [t[0] for t in test],
            "arms": [{"arm": a, "method": m or "", "name": arm_name(a, m or ""), "n_train": n_train[(a, m or "")]}
                     for a, m in arms_seen],
            "device": str(device), "world_size": 1 if dist is None else dist.world, "jobs": timing}
    return {"per_case": df, "summary": arm_summary(df, proto), "paired": paired_rows(df, proto), "info": info,
            "problems": problems, "excluded": inputs.excluded}


# ============================================================================= probe
def run_probe(run: RunConfig, cfg: UtilityConfig, proto: ProbeProtocol, device: str, *, progress: bool, log: Log,
              space=None, net=None) -> dict[str, Any]:
    """Features, probes, AUROC and intervals of every arm (module docstring of :mod:`.probe`)."""
    from ..metrics.backbone import Backbone
    from ..results.files import stable_seed
    from ..run.plan import make_context
    from .data import assemble
    from .labels import read_labels
    from .probe import PROBE_COLUMNS, evaluate_arm, preflight, space_of, space_options, volume_vectors
    from .summary import arm_name

    space = space if space is not None else space_of(cfg.feature_space)
    opts = space_options(space, cfg.feature_options)
    ctx = make_context(run, device)
    if cfg.cache_dir:
        ctx.cache_dir = str(Path(cfg.cache_dir).expanduser() / "features")
    weights = preflight(space, opts, ctx) if net is None else list(space.weights(opts))
    net = net if net is not None else Backbone(space.network)
    labels = read_labels(cfg.labels, cfg.label_columns or None)  # type: ignore[arg-type]
    inputs = assemble(run, cfg, masks=False)
    problems = list(inputs.problems)
    sets = {"test": [p.volume for p in inputs.test], "real": [p.volume for p in inputs.real],
            **{m: [p.volume for p in ps] for m, ps in inputs.methods.items()}}
    bar = Progress(f"utility {proto.id} features", sum(len(v) for v in sets.values()), progress)
    feats: dict[str, tuple[list[str], np.ndarray, np.ndarray]] = {}
    for name, items in sets.items():
        ids, x = volume_vectors(space, opts, items, ctx, net, "utility:" + name if name in ("test", "real") else name,
                                problems, on_item=lambda name=name: bar.advance(1, name))
        keep = [i for i, c in enumerate(ids) if c in labels.values]
        for c in ids:
            if c not in labels.values:
                problems.append(Problem(name, c, "", f"no row in the labels CSV {labels.path.name} (skipped)"))
        ids = [ids[i] for i in keep]
        feats[name] = (ids, x[keep], labels.matrix(ids))
    _, x_test, y_test = feats["test"]
    if x_test.shape[0] == 0:
        raise ConfigError("utility: probe: no usable real test volume with labels (see the problems above)")
    space_protocol = space.protocol(opts, ctx)
    seed_of = lambda arm, method: (lambda label: stable_seed(proto.id, space_protocol, arm, method, label) % 2**32)
    columns = list(labels.columns)
    arms = [("real", "", feats["real"][1], feats["real"][2])]
    for m in inputs.methods:
        _, xm, ym = feats[m]
        if xm.shape[0] == 0:
            continue
        if "method" in cfg.arms:
            arms.append(("method", m, xm, ym))
        if "real+method" in cfg.arms:
            arms.append(("real+method", m, np.concatenate([feats["real"][1], xm]),
                         np.concatenate([feats["real"][2], ym])))
    rows, macro, real_scores = [], [], None
    for arm, method, x, y in arms:
        if x.shape[0] == 0:
            problems.append(Problem(arm_name(arm, method), "", "", "no training volume with labels: arm skipped"))
            continue
        r, scores = evaluate_arm(x, y, x_test, y_test, columns, proto, seed_of(arm, method),
                                 None if arm == "real" else real_scores)
        if arm == "real":
            real_scores = scores
        for row in r:
            rows.append({"protocol": proto.id, "features": space_protocol, "arm": arm, "method": method, **row})
        au = np.array([x["auroc"] for x in r], dtype=np.float64)
        de = np.array([x["delta_vs_real"] for x in r], dtype=np.float64)
        lo = np.array([x["delta_ci_low"] for x in r], dtype=np.float64)
        hi = np.array([x["delta_ci_high"] for x in r], dtype=np.float64)
        macro.append({"arm": arm, "method": method, "name": arm_name(arm, method), "n_train": int(x.shape[0]),
                      "n_labels": int(np.isfinite(au).sum()),
                      "mean_auroc": float(np.nanmean(au)) if np.isfinite(au).any() else None,
                      "mean_delta": float(np.nanmean(de)) if np.isfinite(de).any() else None,
                      "n_better": int(np.sum(lo > 0)), "n_worse": int(np.sum(hi < 0))})
    info = {"protocol": proto.id, "sha256": proto.sha256, "declaration": proto.declaration(),
            "legend": [list(x) for x in proto.legend()], "variant": cfg.variant,
            "features": {"space": space.name, "protocol": space_protocol, "options": opts, "weights": weights},
            "labels": columns, "labels_csv": str(labels.path), "test_rule": inputs.test_rule,
            "n_test": int(x_test.shape[0]), "test_cases": feats["test"][0]}
    log(f"utility: {proto.id}: {len(columns)} labels, {x_test.shape[0]} real test volumes, {len(arms)} arm(s)")
    return {"rows": pd.DataFrame(rows, columns=PROBE_COLUMNS), "macro": macro, "info": info, "problems": problems,
            "excluded": inputs.excluded}


# ============================================================================= the lifecycle
def run_utility(run: RunConfig, cfg: UtilityConfig, *, out: str | Path | None = None, progress: bool = True,
                log: Log | None = None, on_step: Callable[[Any, int], None] | None = None, space=None,
                net=None) -> UtilityResult:
    """Run the configured protocols and write ``OUT/utility/`` (module docstring). ``on_step(job, step)``
    is called after every training step (tests interrupt a job there); ``space`` / ``net`` replace the
    catalogue feature space and its network (tests with small random networks)."""
    from trace_model.distributed import init_distributed, shutdown
    from trace_model.runtime import torch_threads

    from ..device import check_device
    from ..run.lock import OutputLock
    from reports.utility import load_utility, utility_plot
    from .results import write_results

    log = log or (lambda s: print(s, file=sys.stderr, flush=True))
    device = check_device(cfg.device or run.device)
    if device.startswith("cuda"):
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # before CUDA is initialised
    dist, dev = init_distributed(device)
    main = dist is None or dist.rank == 0
    if not main:
        log = lambda s: None  # noqa: E731
    out_dir = Path(out or run.out).expanduser() / layout.FOLDER
    res = UtilityResult(out_dir)
    t0 = time.perf_counter()
    try:
        with (OutputLock(out_dir) if main else contextlib.nullcontext()), torch_threads(cfg.threads, dev), \
                deterministic(dev):
            seg = probe = None
            problems: list[Problem] = []
            excluded: list[tuple[str, str, str]] = []
            if "seg-tstr" in cfg.protocols:
                seg = run_seg(run, cfg, seg_protocol(cfg.variant), dev, dist, out_dir, progress=progress, log=log,
                              on_step=on_step)
                problems += seg.get("problems", [])
                excluded += seg.get("excluded", [])
            if "probe" in cfg.protocols and main:
                probe = run_probe(run, cfg, probe_protocol(cfg.variant), str(dev), progress=progress, log=log,
                                  space=space, net=net)
                problems += [p for p in probe["problems"] if p not in problems]
                excluded += [e for e in probe["excluded"] if e not in excluded]
            if main:
                extra = {"device": str(dev), "seconds": round(time.perf_counter() - t0, 3),
                         "command_config": {"out": str(out or run.out)}}
                res.files = write_results(out_dir, config=cfg.to_dict(), seg=seg or None, probe=probe,
                                          problems=problems, excluded=excluded, extra=extra)
                doc = load_utility(out_dir.parent)
                if doc is not None and run.plots:
                    png = utility_plot(doc, out_dir / layout.PLOT)
                    if png is not None:
                        res.files.append(png)
                res.seg, res.probe, res.problems = seg or None, probe, problems
    finally:
        shutdown(dist)
    return res
