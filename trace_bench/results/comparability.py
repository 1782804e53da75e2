"""Can two runs be compared? Same protocol ids and weights for the metrics they share, and methods that
correspond (by name, or renamed with ``--map OLD=NEW``).

* Protocol ids come from each run's ``metrics.json`` (one per result column); two ids are compared
  part by part (``|`` separates the stages of an id, ``:`` the parts of a stage), and a difference is
  named by the parts that differ, e.g. ``ct-frames-v1 256px vs 128px``.
* Weights: the sha256 of every weights entry both runs resolved (``manifest.json`` ``weights``, else
  ``provenance.json``).
* Methods: ``GT`` (the reference set scored as a method) never counts as a shared method.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pandas as pd

from ..errors import ConfigError
from .tables import GT, Results, base_metric


class ProtocolChanged(ConfigError):
    """The two runs measured with different protocols or weights (numbers not comparable)."""


# ----------------------------------------------------------------------------- protocols and weights
def _stage_change(sa: str, sb: str) -> str:
    ta, tb = sa.split(":"), sb.split(":")
    if len(ta) != len(tb) or ta[0] != tb[0] or len(ta) == 1:
        return f"{sa} vs {sb}"
    return f"{ta[0]} " + ", ".join(f"{x} vs {y}" for x, y in zip(ta[1:], tb[1:]) if x != y)


def describe_id_change(old: str, new: str) -> str:
    """The parts of two protocol ids that differ: ``"<stage head> <old part> vs <new part>"`` for each
    differing part of a stage with the same layout, the whole stages otherwise, ``(none)`` for a stage
    only one id has (stages aligned with :class:`difflib.SequenceMatcher`)."""
    from difflib import SequenceMatcher

    a, b = old.split("|"), new.split("|")
    out = []
    for op, i1, i2, j1, j2 in SequenceMatcher(None, a, b, autojunk=False).get_opcodes():
        if op == "equal":
            continue
        if op == "replace" and i2 - i1 == j2 - j1:
            out += [_stage_change(x, y) for x, y in zip(a[i1:i2], b[j1:j2])]
        else:
            out.append(f"{'|'.join(a[i1:i2]) or '(none)'} vs {'|'.join(b[j1:j2]) or '(none)'}")
    return "; ".join(out)


def protocol_differences(baseline: Results, candidate: Results) -> list[str]:
    """One entry per distinct change, naming the metrics it concerns, e.g.
    ``"ct-frames-v1 256px vs 128px (fid, temporal_flickering)"``; empty when every column both runs
    declare has the same protocol id."""
    changes: dict[str, list[str]] = {}
    for col in sorted(set(baseline.metrics) & set(candidate.metrics)):
        old, new = baseline.metrics[col].protocol, candidate.metrics[col].protocol
        if old and new and old != new:
            name = baseline.metrics[col].spec or base_metric(col)
            metrics = changes.setdefault(describe_id_change(old, new), [])
            if name not in metrics:
                metrics.append(name)
    return [f"{change} ({', '.join(names)})" for change, names in changes.items()]


def run_weights(results: Results) -> dict[str, str]:
    """Weights entry -> sha256 of a run (``manifest.json``, else ``provenance.json``; empty if neither)."""
    path = Path(results.out) / "manifest.json"
    man: dict[str, Any] = {}
    if path.is_file():
        try:
            man = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as err:
            raise ConfigError(f"{path}: cannot read ({type(err).__name__}: {err}); is this a finished run?") from None
    if isinstance(man.get("weights"), dict):
        return {str(k): str(v) for k, v in man["weights"].items()}
    prov = results.provenance.get("weights") or {}
    return {str(k): str(v.get("sha256")) for k, v in prov.items() if isinstance(v, dict) and v.get("sha256")}


def weights_differences(baseline: Results, candidate: Results) -> list[str]:
    """``"weights NAME sha256 0123456789ab vs ba9876543210"`` for every entry both runs used with other bytes."""
    wb, wc = run_weights(baseline), run_weights(candidate)
    return [f"weights {k} sha256 {wb[k][:12]} vs {wc[k][:12]}" for k in sorted(set(wb) & set(wc)) if wb[k] != wc[k]]


def comparability_changes(baseline: Results, candidate: Results, *, allow: bool = False) -> list[str]:
    """Protocol and weights differences between two runs. Raises :class:`ProtocolChanged` (one line,
    naming each differing part) unless ``allow`` (``--allow-protocol-change``): then returns them."""
    changes = protocol_differences(baseline, candidate) + weights_differences(baseline, candidate)
    if changes and not allow:
        raise ProtocolChanged(f"compare {baseline.out} {candidate.out}: the runs measured with different protocols "
                              f"or weights, so their numbers are not comparable: {'; '.join(changes)} "
                              "(rerun one with the other's settings, or pass --allow-protocol-change to compare "
                              "anyway)")
    return changes


# ----------------------------------------------------------------------------- methods
def parse_method_map(specs: list[str] | None) -> dict[str, str]:
    """``["OLD=NEW", ...]`` -> {OLD: NEW}; one-line error on a malformed or repeated name."""
    mapping: dict[str, str] = {}
    for spec in specs or []:
        old, sep, new = str(spec).partition("=")
        old, new = old.strip(), new.strip()
        if not sep or not old or not new:
            raise ConfigError(f"--map {spec!r}: expected OLD=NEW (the baseline's method name = the candidate's)")
        if GT in (old, new):
            raise ConfigError(f"--map {spec!r}: {GT} is the reference set in both runs and cannot be renamed")
        if old in mapping:
            raise ConfigError(f"--map {spec!r}: {old!r} is mapped twice")
        if new in mapping.values():
            raise ConfigError(f"--map {spec!r}: two baseline methods mapped onto {new!r}")
        mapping[old] = new
    return mapping


def _methods(results: Results) -> list[str]:
    names = list(dict.fromkeys([*results.methods, *results.summary.method.astype(str).tolist()]))
    return [m for m in names if m != GT]


def rename_methods(results: Results, mapping: dict[str, str]) -> Results:
    """``results`` with its methods renamed by ``mapping`` (summary, per-case rows, method list)."""
    if not mapping:
        return results

    def ren(df: pd.DataFrame) -> pd.DataFrame:
        if "method" not in df or df.empty:
            return df
        out = df.copy()
        out["method"] = out["method"].map(lambda m: mapping.get(m, m))
        return out

    return replace(results, summary=ren(results.summary), per_case=ren(results.per_case), errors=ren(results.errors),
                   warnings=ren(results.warnings), methods=[mapping.get(m, m) for m in results.methods])


def match_methods(baseline: Results, candidate: Results, mapping: dict[str, str] | None = None) -> Results:
    """The baseline with its methods renamed to the candidate's names by ``mapping`` (OLD -> NEW), after
    checking that every OLD is a baseline method, every NEW a candidate method, no two baseline methods
    end up with one name, and the two runs share at least one method; each failure is one line."""
    mapping = dict(mapping or {})
    b_methods, c_methods = _methods(baseline), _methods(candidate)
    for old, new in mapping.items():
        if old not in b_methods:
            raise ConfigError(f"--map {old}={new}: the baseline {baseline.out} has no method {old!r} "
                              f"(its methods: {', '.join(b_methods) or 'none'})")
        if new not in c_methods:
            raise ConfigError(f"--map {old}={new}: the candidate {candidate.out} has no method {new!r} "
                              f"(its methods: {', '.join(c_methods) or 'none'})")
    renamed = [mapping.get(m, m) for m in b_methods]
    clash = sorted({m for m in renamed if renamed.count(m) > 1})
    if clash:
        raise ConfigError(f"--map: two baseline methods would both be compared as {clash[0]!r}; "
                          f"map the baseline's own {clash[0]!r} too (--map {clash[0]}=...)")
    if b_methods and c_methods and not set(renamed) & set(c_methods):
        raise ConfigError(f"compare {baseline.out} {candidate.out}: the runs share no method (baseline: "
                          f"{', '.join(b_methods)}; candidate: {', '.join(c_methods)}); if a method was renamed, "
                          f"pass --map OLD=NEW, e.g. --map {b_methods[0]}={c_methods[0]}")
    return rename_methods(baseline, mapping)


def unmatched_methods(baseline: Results, candidate: Results) -> tuple[list[str], list[str]]:
    """(methods only in the baseline, methods only in the candidate), ``GT`` left out."""
    b, c = _methods(baseline), _methods(candidate)
    return [m for m in b if m not in c], [m for m in c if m not in b]


def comparable_runs(baseline: Results, candidate: Results, method_map: dict[str, str] | None = None, *,
                    allow_protocol_change: bool = False) -> tuple[Results, list[str]]:
    """Every refusal above, in order (methods, then protocols and weights): the baseline with its methods
    renamed to the candidate's, and the protocol / weights changes (non-empty only when allowed)."""
    renamed = match_methods(baseline, candidate, method_map)
    return renamed, comparability_changes(renamed, candidate, allow=allow_protocol_change)
