"""The metrics a run did not compute, grouped by why: one summary line for the console, one table for
the report, from ``metrics.json`` -> ``skipped`` (metric -> reason)."""

from __future__ import annotations

import re
import textwrap
from collections import defaultdict
from dataclasses import dataclass, field

__all__ = ["SkippedGroup", "group_skipped", "skipped_line", "skipped_rows"]

#: where a user learns how to get what is missing
HINT = "`trace-bench metrics --missing` says how to get each"
_WEIGHTS = re.compile(r"weights '([^']+)'")
#: reasons that mean "left out for speed", not "cannot" (the demo's CPU set, the default set's GPU-scale metrics)
_SLOW = re.compile(r"fast CPU set|GPU-scale|expensive|not in the default set", re.I)


@dataclass
class SkippedGroup:
    """Metrics skipped for one reason: ``kind`` ("weights", "slow", "reference", "prompts", "other"), the
    reason shown (for "other": the message with the metric's name as ``<metric>``), the metrics, and for
    missing weights the metrics per weights entry."""

    kind: str
    reason: str
    metrics: list[str] = field(default_factory=list)
    by_weights: dict[str, list[str]] = field(default_factory=dict)


def group_skipped(skipped: dict[str, str]) -> list[SkippedGroup]:
    """Groups, largest first within each kind; kinds in the order weights, slow, reference, prompts, other."""
    weights: dict[str, list[str]] = defaultdict(list)
    simple: dict[str, list[str]] = defaultdict(list)
    other: dict[str, list[str]] = defaultdict(list)
    for k, v in sorted(skipped.items()):
        text = str(v)
        w = _WEIGHTS.search(text)
        if w and ("not installed" in text or "weights" in text[:40]):
            weights[w.group(1)].append(k)
        elif _SLOW.search(text):
            simple["slow"].append(k)
        elif "reference set" in text:
            simple["reference"].append(k)
        elif "prompt" in text:
            simple["prompts"].append(k)
        else:
            other[text.replace(k, "<metric>")].append(k)
    groups = []
    if weights:
        groups.append(SkippedGroup("weights", "pretrained weights not installed (fix: `trace-bench weights fetch "
                                   "NAME`, or offline `trace-bench weights import NAME FILE`)",
                                   sorted(m for ms in weights.values() for m in ms),
                                   dict(sorted(weights.items(), key=lambda kv: (-len(kv[1]), kv[0])))))
    reasons = {"slow": "left out as slow on this device (name them with --metrics to compute them)",
               "reference": "need a reference set (--reference)",
               "prompts": "need text prompts (--prompts FILE or <case_id>.txt beside the volumes)"}
    groups += [SkippedGroup(kind, reasons[kind], simple[kind]) for kind in reasons if simple.get(kind)]
    groups += [SkippedGroup("other", r, ms) for r, ms in sorted(other.items(), key=lambda kv: (-len(kv[1]), kv[0]))]
    return groups


_SHORT = {"slow": ("is left out as slow (name it with --metrics)", "are left out as slow (name them with --metrics)"),
          "reference": ("needs a reference set (--reference)", "need a reference set (--reference)"),
          "prompts": ("needs text prompts (--prompts)", "need text prompts (--prompts)")}


def skipped_line(skipped: dict[str, str], *, width: int = 80, hint: str = HINT) -> list[str]:
    """The not-computed metrics as one grouped sentence wrapped to ``width``, e.g. "14 metrics not
    computed: 9 need weights (clip-vit-b32: 5, i3d-torchscript: 3, ...), 5 are left out as slow (name them
    with --metrics); ..." ([] when nothing was skipped)."""
    if not skipped:
        return []
    parts = []
    for g in group_skipped(skipped):
        n = len(g.metrics)
        if g.kind == "weights":
            per = ", ".join(f"{w}: {len(ms)}" for w, ms in g.by_weights.items())
            parts.append(f"{n} need{'s' if n == 1 else ''} weights ({per})")
        elif g.kind in _SHORT:
            parts.append(f"{n} {_SHORT[g.kind][n != 1]}")
        else:
            reason = g.reason if len(g.reason) <= 90 else g.reason[:89] + "…"
            parts.append(f"{n} other ({', '.join(g.metrics)}: {reason})")
    total = len(skipped)
    text = (f"{total} metric{'s' if total != 1 else ''} not computed: " + "; ".join(parts)
            + (f"; {hint}." if hint else "."))
    return textwrap.wrap(text, width=max(width, 40), break_on_hyphens=False, break_long_words=False)


def skipped_rows(skipped: dict[str, str]) -> list[list[str]]:
    """``[reason, metrics, detail]`` rows for the report's table (detail: which weights each metric needs)."""
    rows = []
    for g in group_skipped(skipped):
        detail = "; ".join(f"{w}: {', '.join(ms)}" for w, ms in g.by_weights.items()) if g.by_weights else ""
        rows.append([g.reason, ", ".join(g.metrics), detail])
    return rows
