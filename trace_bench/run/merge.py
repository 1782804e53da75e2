"""Sharded runs and their exact merge .

A large benchmark is split by **case id**: ``trace-bench run ... --shard I/N`` scores only the cases of
shard I (1-based) and writes their per-case files and a manifest into its own ``--out`` folder;
``trace-bench merge SHARD_DIR... --out OUT`` checks that the shards belong together and are complete,
combines their ``cases/`` folders and manifests, and calls :func:`trace_bench.run.aggregate.aggregate` on the
result. Because the per-case files and their cache keys do not depend on the sharding, and the
aggregate stage sorts everything it reads, the merged ``per_case.csv`` / ``summary.csv`` are
byte-identical to those of one unsharded run (distribution metrics are recomputed from the same
per-case states, merged in the same order).

Assignment (:func:`select_cases`): all paired case ids are sorted by ``sha256(case_id)`` (a stable
hash: same on every machine, unlike Python's ``hash``) and dealt round robin, so shards differ by at
most one case and a case always lands in the same shard for the same case list. Every volume of a
case (reference, generated, masks) is in the same shard.

Consistency (:func:`combine_manifests`): shards must agree on the trace-bench version, the run
settings (all but the local ones of :data:`trace_bench.config.SETTINGS`, the device index and the
weights *paths*), the metric protocols, the weights sha256, the pairing problems, the input listing (name and
size of every paired file) and the full case list; their cases must be disjoint and cover it; an
input scored by two shards must have the same sha256. Completeness: every manifest entry of every
shard has a result (or a recorded error) with its key. Otherwise :class:`MergeError` names the shard
folder and the difference.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from ..config import LOCAL, SETTINGS, RunConfig, parse_shard
from ..errors import ConfigError
from ..results.layout import Entry, entry_done, entry_path, error_done, error_path
from .lock import OutputLock
from .pipeline import finish
from .provenance import git_commit, package_versions

#: settings that may differ between the shards of one benchmark: the local ones (no number changes) and
#: the weights paths (their sha256 must agree: manifest ``weights``)
LOCAL_SETTINGS = tuple(k for k, s in SETTINGS.items() if s.scope == LOCAL or s.route == "weights")
#: manifest fields that must be equal in every shard
SHARED_FIELDS = ("version", "cache_version", "methods", "reference", "metrics", "columns", "skipped", "weights",
                 "problems", "profiles", "plot_case", "listing")


class MergeError(ConfigError):
    """Shards that cannot be merged: incomplete, missing, duplicated or inconsistent."""


# ============================================================================= consistency
def _diff(a: Any, b: Any, path: str, out: list[str], limit: int = 5) -> None:
    """First differences between two JSON values as 'path: a != b'."""
    if len(out) >= limit:
        return
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b)):
            if k not in a or k not in b:
                out.append(f"{path}.{k}: {'missing' if k not in a else _short(a[k])} != {'missing' if k not in b else _short(b[k])}")
            else:
                _diff(a[k], b[k], f"{path}.{k}", out, limit)
            if len(out) >= limit:
                return
    elif a != b:
        out.append(f"{path}: {_short(a)} != {_short(b)}")


def _short(v: Any) -> str:
    t = json.dumps(v, sort_keys=True)
    return t if len(t) <= 120 else t[:117] + "..."


def _shared_config(cfg: dict[str, Any]) -> dict[str, Any]:
    c = {k: v for k, v in cfg.items() if k not in LOCAL_SETTINGS}
    c["device_type"] = str(cfg.get("device", "cpu")).split(":", 1)[0]
    return c


def _unit(man: dict[str, Any], level: str, label: str) -> tuple[int, int]:
    sh = man.get("shard")
    if level == "part":
        if not sh or not sh.get("part"):
            raise MergeError(f"{label}: its manifest has no rank part")
        return int(sh["part"][0]), int(sh["part"][1])
    if not sh or not sh.get("spec"):
        raise MergeError(f"{label}: not a shard (its manifest.json has no shard; run it with --shard I/N)")
    if sh.get("part"):
        raise MergeError(f"{label}: an unfinished torchrun rank folder, not a shard")
    return parse_shard(sh["spec"])


def combine_manifests(items: Sequence[tuple[str, dict[str, Any]]], *, level: str = "shard") -> dict[str, Any]:
    """Check that the manifests (label, manifest) are the shards (``level="shard"``) or torchrun ranks
    (``level="part"``) of one run and return the combined manifest (entries in the unsharded order).

    Raises :class:`MergeError` naming the shard and the difference."""
    if not items:
        raise MergeError("no shards given")
    units = [(_unit(m, level, lab), lab) for lab, m in items]
    counts = {n for (_, n), _ in units}
    if len(counts) > 1:
        raise MergeError("shards of different splits: " + ", ".join(f"{lab} is {i}/{n}" for (i, n), lab in units))
    n = counts.pop()
    seen: dict[int, str] = {}
    for (i, _), lab in units:
        if i in seen:
            raise MergeError(f"shard {i}/{n} given twice: {seen[i]} and {lab}")
        seen[i] = lab
    missing = [i for i in range(1, n + 1) if i not in seen]
    if missing:
        raise MergeError(f"shard(s) {', '.join(f'{i}/{n}' for i in missing)} missing (given: "
                         f"{', '.join(f'{lab} = {i}/{n}' for (i, _), lab in sorted(units))}); run them, then merge all {n}")
    lab0, m0 = items[0]
    for lab, m in items[1:]:
        diffs: list[str] = []
        _diff(_shared_config(m0["config"]), _shared_config(m["config"]), "config", diffs)  # the cause first
        for f in SHARED_FIELDS:
            _diff(m0.get(f), m.get(f), f, diffs)
        s0, s1 = m0["shard"], m["shard"]
        for f in ("n_cases", "all_cases_sha256") + (("spec",) if level == "part" else ()):
            _diff(s0.get(f), s1.get(f), f"case list.{f}" if f != "spec" else "shard", diffs)
        if diffs:
            hint = ""
            if any(d.startswith("listing") or d.startswith("case list") for d in diffs):
                hint = " (the input folders changed between the shards' runs: rerun the shards on the same inputs)"
            raise MergeError(f"{lab} is inconsistent with {lab0}: " + "; ".join(diffs) + hint)
    owner: dict[str, str] = {}
    for lab, m in items:
        for c in m["shard"]["cases"]:
            if c in owner:
                raise MergeError(f"case {c!r} is in two shards: {owner[c]} and {lab}")
            owner[c] = lab
    expected = int(m0["shard"]["n_shard_cases" if level == "part" else "n_cases"])
    if len(owner) != expected:
        raise MergeError(f"the {'ranks' if level == 'part' else 'shards'} cover {len(owner)} of {expected} cases")
    inputs: dict[str, dict[str, str]] = {}
    for lab, m in items:
        for meth, hs in m.get("inputs", {}).items():
            for c, h in hs.items():
                old = inputs.setdefault(meth, {}).setdefault(c, h)
                if old != h:
                    raise MergeError(f"{lab}: input {meth}/{c} has sha256 {h[:12]}..., another shard read {old[:12]}...")
    order = {mm: i for i, mm in enumerate(m0["methods"])}
    entries = sorted((e for _, m in items for e in m["entries"]),
                     key=lambda e: (e["case_id"], order.get(e["method"], len(order)), e["metric"]))
    merged = dict(m0)
    merged["entries"] = entries
    merged["integrity"] = [r for _, m in items for r in m.get("integrity", [])]
    merged["inputs"] = {k: dict(sorted(v.items())) for k, v in sorted(inputs.items())}
    if level == "part" and m0["shard"].get("spec"):
        merged["shard"] = dict(m0["shard"], part=None, cases=sorted(owner))  # a shard folder for merge
    else:
        merged["shard"] = None
    return merged


# ============================================================================= completeness
def missing_entries(folder: Path, man: dict[str, Any]) -> list[str]:
    """Entries of ``man`` with neither a result nor a recorded error carrying the entry's key."""
    out: list[str] = []
    for d in man["entries"]:
        e = Entry(**d)
        if entry_done(folder, e) or error_done(folder, e):
            continue
        out.append(f"{e.method}/{e.case_id}/{e.metric}")
    return out


def load_shard(folder: str | Path) -> dict[str, Any]:
    p = Path(folder)
    mp = p / "manifest.json"
    if not mp.is_file():
        raise MergeError(f"{p}: no manifest.json; is this the --out folder of a `trace-bench run --shard I/N`? "
                         "(a shard killed before planning finished: rerun it)")
    try:
        return json.loads(mp.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise MergeError(f"{mp}: not valid JSON ({e}); rerun that shard") from None


# ============================================================================= merge
@dataclass
class MergeResult:
    out: Path
    shards: list[Path]
    stats: dict[str, Any]


def _place(src: Path, dst: Path) -> None:
    """Hard link (case files are never modified in place: they are replaced atomically), else copy."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(f".tmp-merge-{os.getpid()}-{dst.name}")
    if tmp.exists():
        tmp.unlink()
    try:
        os.link(src, tmp)
    except OSError:
        shutil.copy2(src, tmp)
    os.replace(tmp, dst)


def merge_shards(shards: Sequence[str | Path], out: str | Path, *, report: bool = True, console=None,
                 plugins: Sequence[str] = (), allow_plugins: bool = False, force: bool = False) -> MergeResult:
    """Check, combine and aggregate shard folders into ``out`` (see the module docstring).

    The shards' metric plug-ins are imported only when the caller names them (``plugins``, the
    command line's ``--plugins``) or allows those the manifests name (``allow_plugins``)."""
    out = Path(out)
    with OutputLock(out):
        return _merge(shards, out, report=report, console=console, plugins=list(plugins), allow_plugins=allow_plugins,
                      force=force)


def _merge(shards: Sequence[str | Path], out: Path, *, report: bool, console, plugins: list[str],
           allow_plugins: bool, force: bool) -> MergeResult:
    t0 = time.perf_counter()
    folders = [Path(s) for s in shards]
    if not folders:
        raise MergeError("merge: give the shard folders (the --out folders of `trace-bench run --shard I/N`)")
    for f in folders:
        if not f.is_dir():
            raise MergeError(f"{f}: no such shard folder")
        if f.resolve() == out.resolve():
            raise MergeError(f"--out {out} is one of the shard folders; merge into a new folder")
    mans = [load_shard(f) for f in folders]
    from ..results.stamp import check_out_folder

    check_out_folder(out, inputs=folders, force=force)
    labels = []
    for f, m in zip(folders, mans):
        spec = (m.get("shard") or {}).get("spec")
        labels.append(f"shard folder {f}" + (f" (shard {spec})" if spec else ""))
    for f, m, lab in zip(folders, mans, labels):
        miss = missing_entries(f, m) if m.get("shard") else []
        if miss:
            cfg = f / "config.toml"
            raise MergeError(f"{lab} is incomplete: {len(miss)} of {len(m['entries'])} entries not computed "
                             f"(e.g. {', '.join(miss[:3])}); resume it with `trace-bench run --config {cfg}`")
    merged = combine_manifests(list(zip(labels, mans)), level="shard")
    cfg = RunConfig(**merged["config"]).replace(out=str(out))
    cfg.shard = None
    unnamed = [p for p in cfg.plugins if p not in plugins]
    if unnamed and not allow_plugins:
        raise MergeError(f"the shards were scored with the plug-in(s) {', '.join(unnamed)}: plug-ins are Python code; "
                         "name them with --plugins, or pass --allow-plugins to load those the shards name")
    merged["config"] = cfg.to_dict()

    out.mkdir(parents=True, exist_ok=True)
    n_files = 0
    for f, m in zip(folders, mans):
        for d in m["entries"]:
            e = Entry(**d)
            if entry_done(f, e):
                src, dst, stale = entry_path(f, e), entry_path(out, e), error_path(out, e)
            else:
                src, dst, stale = error_path(f, e), error_path(out, e), entry_path(out, e)
            if not (dst.is_file() and entry_done(out, e) and src.read_bytes() == dst.read_bytes()):
                _place(src, dst)
            if stale.exists():
                stale.unlink()
            n_files += 1
    timings = {"merge_s": time.perf_counter() - t0}

    def provenance(t: dict[str, float]) -> dict[str, Any]:
        prov = _merged_provenance(folders, mans, merged, cfg)
        prov["timings_s"].update({k: round(v, 3) for k, v in t.items()})
        return prov

    agg = finish(out, cfg, merged, provenance, report=report, console=console, t0=t0, timings=timings)
    stats = {"shards": len(folders), "entries": len(merged["entries"]), "files": n_files, **agg}
    return MergeResult(out, folders, stats)


def _merged_provenance(folders: Sequence[Path], mans: Sequence[dict[str, Any]], merged: dict[str, Any],
                       cfg) -> dict[str, Any]:
    """The first shard's provenance (toolkit, packages, device ...) with the merged inputs and a
    ``shards`` list (folder, spec, device, commit, finish time, timings of each shard)."""
    provs = []
    for f in folders:
        p = f / "provenance.json"
        provs.append(json.loads(p.read_text(encoding="utf-8")) if p.is_file() else {})
    base = dict(provs[0]) if provs[0] else {}
    secs: dict[str, float] = {}
    for p in provs:
        for k, v in p.get("timings_s", {}).get("metric_compute_s", {}).items():
            secs[k] = secs.get(k, 0.0) + float(v)
    base.update({
        "command": sys.argv,
        "config": cfg.to_dict(),
        "inputs": merged["inputs"],
        "merged_by": {"git_commit": git_commit(), "packages": package_versions()},
        "shards": [{"folder": str(f), "shard": (m.get("shard") or {}).get("spec"),
                    "cases": len((m.get("shard") or {}).get("cases", [])),
                    "device": p.get("device"), "git_commit": p.get("toolkit", {}).get("git_commit"),
                    "finished_utc": p.get("finished_utc"), "timings_s": p.get("timings_s")}
                   for f, m, p in zip(folders, mans, provs)],
        "timings_s": {"metric_compute_s": {k: round(v, 3) for k, v in sorted(secs.items())}},
        "finished_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    })
    base.pop("shard", None)
    commits = {s["git_commit"] for s in base["shards"]}
    if len(commits) > 1:
        base.setdefault("notes", [])
        base["notes"] = list(base["notes"]) + [f"shards ran from different git commits: {', '.join(sorted(map(str, commits)))}"]
    return base
