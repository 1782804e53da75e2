"""``trace-bench metrics``: the registered metrics, the columns they write and their options."""

from __future__ import annotations

import json
from typing import Optional

import typer

from . import app


@app.command("metrics")
def metrics_cmd(
    plugins: Optional[str] = typer.Option(None, "--plugins", help="Comma-separated plug-in modules to load first."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """List every metric: kind, table, weights it needs, output columns (with the direction of
    "better") and options (settable as --option METRIC.NAME=VALUE or in a TOML [options.METRIC] table).
    --metrics also accepts the output names (dice -> segmentation) and available / weight-free / all."""
    from ..metrics.base import METRICS
    from ..run.select import KEYWORDS, load_metric_registry

    load_metric_registry([p.strip() for p in (plugins or "").split(",") if p.strip()])
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
        print(f"{r['name']}  [{r['kind']}, {r['table']}; {need}]")
        print(f"    {r['description']}")
        outs = [f"{c} ({'↑' if o['higher_is_better'] else '↓' if o['higher_is_better'] is False else '·'})"
                for c, o in r["outputs"].items() if "[" not in c]
        print(f"    outputs: {', '.join(outs)}")
        for o in r["options"]:
            ch = f" one of {', '.join(map(str, o['choices']))};" if o["choices"] else ""
            print(f"    --option {r['name']}.{o['name']}=VALUE  (default {o['default']!r};{ch} {o['help']})")
    print("keywords: " + "; ".join(f"{k}: {v}" for k, v in KEYWORDS.items()))
