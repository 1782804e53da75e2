"""``trace-bench metrics``: the registered metrics, the columns they write and their options;
``--missing``: what each metric that ``--metrics available`` would not compute here needs, and the command
that gets it."""

from __future__ import annotations

import json
import shutil
import textwrap
from typing import Any, Optional

import typer

from . import app

INDENT = " " * 4


def wrapped(text: str, width: int, *, indent: str = INDENT, hang: str = INDENT * 2) -> list[str]:
    """``text`` wrapped to ``width`` (continuation lines indented further; words and paths never broken)."""
    return textwrap.wrap(text, width=max(width, 40), initial_indent=indent, subsequent_indent=hang,
                         break_long_words=False, break_on_hyphens=False) or [indent]


def missing_needs(cls: Any, ctx: Any, weights: dict[str, str] | None = None) -> list[dict[str, str]]:
    """Why ``--metrics available`` would not compute metric class ``cls`` on this machine, each with the command
    that fixes it: ``{"need": ..., "command": ...}`` (empty when it would run). Weights are resolved as a run
    resolves them (``weights``: the registry name -> path a run would be given)."""
    from ..weights import WEIGHTS, resolve_weights

    needs = []
    for w in cls().required_weights(ctx):
        try:
            resolve_weights(w, (weights or {}).get(w))
        except Exception:  # noqa: BLE001 - any reason it does not resolve: missing, corrupt, refused
            spec = WEIGHTS.get(w)
            needs.append({"need": f"weights {w!r} ({spec.filename}), not installed or not the published file",
                          "command": f"trace-bench weights fetch {w}",
                          "offline": f"trace-bench weights import {w} /path/to/{spec.filename}"})
    if not cls.in_default_set:
        needs.append({"need": "to be named (opt-in, expensive or specialised: not part of --metrics available)",
                      "command": f"trace-bench run ... --metrics {cls.name}"})
    if cls.needs_prompt:
        needs.append({"need": "a text prompt per case", "command": "trace-bench run ... --prompts FILE "
                      "(CSV case_id,prompt or JSON), or <case_id>.txt beside the volumes"})
    return needs


@app.command("metrics")
def metrics_cmd(
    plugins: Optional[str] = typer.Option(None, "--plugins", help="Comma-separated plug-in modules to load first."),
    missing: bool = typer.Option(False, "--missing", help="Only the metrics --metrics available would not compute "
                                 "here: what each needs and the command that gets it."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """List every metric: kind, table, weights it needs, output columns (with the direction of
    "better") and options (settable as --option METRIC.NAME=VALUE or in a TOML [options.METRIC] table).
    --metrics also accepts the output names (dice -> segmentation) and available / weight-free / all."""
    from ..metrics.base import METRICS, RunContext
    from ..run.select import KEYWORDS, load_metric_registry

    load_metric_registry([p.strip() for p in (plugins or "").split(",") if p.strip()])
    width = shutil.get_terminal_size((100, 24)).columns
    if missing:
        ctx = RunContext()
        rows = [{"name": name, "needs": needs} for name, cls in METRICS.items()
                for needs in [missing_needs(cls, ctx)] if needs]
        if as_json:
            print(json.dumps({"missing": rows}, indent=1))
            return
        for r in rows:
            print(r["name"])
            for n in r["needs"]:
                print("\n".join(wrapped(f"needs {n['need']}", width)))
                print("\n".join(wrapped(f"get it: {n['command']}", width)))
                if n.get("offline"):
                    print("\n".join(wrapped(f"offline: {n['offline']}", width)))
        n_all = len(METRICS.names())
        print("\n".join(wrapped(f"{len(rows)} of {n_all} metrics need something more; the others run here with "
                                "--metrics available. `trace-bench weights list` shows every weights file.", width,
                                indent="", hang="")))
        return
    rows = []
    for name, cls in METRICS.items():
        m = cls()
        rows.append({"name": name, "kind": cls.kind, "table": cls.table, "weights": list(m.required_weights()),
                     "needs_reference": cls.needs_reference, "needs_prompt": cls.needs_prompt,
                     "outputs": {c: {"higher_is_better": o.higher_is_better, "label": o.label, "unit": o.unit}
                                 for c, o in cls.outputs.items()},
                     "options": [{"name": o.name, "default": o.default, "choices": list(o.choices or []),
                                  "help": o.help} for o in cls.options],
                     "description": cls.description})
    if as_json:
        print(json.dumps({"metrics": rows, "keywords": KEYWORDS}, indent=1))
        return
    for r in rows:
        need = ", ".join(r["weights"]) or "no weights (weight-free)"
        print("\n".join(wrapped(f"{r['name']}  [{r['kind']}, {r['table']}; {need}]", width, indent="")))
        print("\n".join(wrapped(r["description"], width)))
        outs = [f"{c} ({'↑' if o['higher_is_better'] else '↓' if o['higher_is_better'] is False else '·'})"
                for c, o in r["outputs"].items() if "[" not in c]
        print("\n".join(wrapped(f"outputs: {', '.join(outs)}", width)))
        for o in r["options"]:
            ch = f" one of {', '.join(map(str, o['choices']))};" if o["choices"] else ""
            print("\n".join(wrapped(f"--option {r['name']}.{o['name']}=VALUE  (default {o['default']!r};{ch} "
                                    f"{o['help']})", width)))
    print("\n".join(wrapped("keywords: " + "; ".join(f"{k}: {v}" for k, v in KEYWORDS.items()), width, indent="",
                            hang=INDENT)))
