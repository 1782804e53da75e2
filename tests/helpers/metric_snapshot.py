"""The pinned description of every registered metric (issue 25, "pin first").

:func:`snapshot` returns, per registered metric: kind, table, default-set membership, needs, declared
outputs (every display field), options (name, default, type, choices, bounds, fast value,
in-protocol-id flag), required weights and ``protocol_id`` over a grid of option values and run
contexts. ``tests/project/test_metric_snapshot.py`` compares it with ``tests/data/metric_snapshot.json``: a
refactor of the metric layer must leave it byte-identical (cache keys, CSV columns and ``compare``
tolerances do not move); a deliberate change regenerates the file with
``python tests/helpers/metric_snapshot.py --write`` and names the version bump in the issue note.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path
from typing import Any

#: tests/data/metric_snapshot.json (not via helpers.paths: this file also runs as a script, see the end)
SNAPSHOT = Path(__file__).resolve().parents[1] / "data" / "metric_snapshot.json"


def _jsonable(v: Any) -> Any:
    if isinstance(v, type):
        return v.__name__
    if isinstance(v, (tuple, list)):
        return [_jsonable(x) for x in v]
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, float) and v != v:
        return "nan"
    if v is None or isinstance(v, (bool, int, float, str)):
        return v
    return repr(v)


def _option_values(o) -> list[Any]:
    """The default, every choice, the fast value and a few typed alternatives."""
    vals: list[Any] = [o.default]
    vals += list(o.choices or ())
    if o.fast is not None:
        vals.append(o.fast)
    vals += list(o.special)
    if o.parser is not None:
        vals += ["all", "40", "every:3", "central:0.4", "central:0.4:16", "fast"]
    elif o.choices is None:
        if o.type is bool:
            vals += [True, False]
        elif o.type in (int, float):
            base = o.default if isinstance(o.default, (int, float)) and not isinstance(o.default, bool) else 1
            cand = [base, base * 2, base + 1, o.minimum, o.maximum]
            vals += [o.type(c) for c in cand if c is not None]
    out = []
    for v in vals:
        if v not in out:
            out.append(v)
    return out


def _contexts():
    from trace_bench.metrics.base import RunContext
    from trace_bench.protocol import FrameProtocol

    return {
        "default": RunContext(),
        "size128": RunContext(protocol=FrameProtocol(size=128)),
        "window": RunContext(protocol=FrameProtocol(window=(-1024.0, 600.0))),
        "seed1": RunContext(seed=1),
        "provided": RunContext(segmenter="provided", classes="provided"),
        "classes2": RunContext(classes="2"),
    }


def _describe(cls) -> dict[str, Any]:
    from trace_bench.errors import ConfigError

    ctxs = _contexts()
    m0 = cls()
    d: dict[str, Any] = {
        "kind": cls.kind, "table": cls.table, "in_default_set": cls.in_default_set,
        "needs_reference": cls.needs_reference, "needs_prompt": cls.needs_prompt,
        "required_weights": list(m0.required_weights()),
        "outputs": {c: _jsonable(dataclasses.asdict(o)) for c, o in cls.outputs.items()},
        "options": [{"name": o.name, "default": _jsonable(o.default), "type": o.type.__name__,
                     "choices": _jsonable(o.choices), "minimum": o.minimum, "maximum": o.maximum,
                     "special": list(o.special), "fast": _jsonable(o.fast), "in_protocol_id": o.in_protocol_id,
                     "parser": o.parser is not None}
                    for o in cls.options],
        "fast_options": _jsonable(cls.fast_options()),
    }
    ids: dict[str, Any] = {}
    for cname, ctx in ctxs.items():
        try:
            ids[f"{cname}|defaults"] = cls().protocol_id(ctx)
        except Exception as e:  # noqa: BLE001 - recorded as such
            ids[f"{cname}|defaults"] = f"!{type(e).__name__}"
    ctx = ctxs["default"]
    for o in cls.options:
        for v in _option_values(o):
            key = f"default|{o.name}={_jsonable(v)}"
            try:
                m = cls({o.name: v})
                ids[key] = [m.protocol_id(ctx), list(m.required_weights(ctx))]
            except ConfigError as e:
                ids[key] = f"!ConfigError: {e}"
            except Exception as e:  # noqa: BLE001
                ids[key] = f"!{type(e).__name__}"
    if cls.fast_options():
        m = cls(cls.fast_options())
        ids["default|fast"] = m.protocol_id(ctx)
        ids["seed1|fast"] = m.protocol_id(ctxs["seed1"])
    d["protocol_ids"] = ids
    try:
        d["output_columns_default"] = sorted(m0.output_columns(ctx))
        d["output_columns_classes2"] = sorted(m0.output_columns(ctxs["classes2"]))
    except Exception as e:  # noqa: BLE001
        d["output_columns_default"] = f"!{type(e).__name__}"
    return d


def snapshot() -> dict[str, Any]:
    from trace_bench.metrics.base import METRICS
    from trace_bench.run.select import KEYWORDS, resolve_metric_names

    out = {name: _describe(cls) for name, cls in sorted(METRICS.items())}
    sets = {k: resolve_metric_names([k]) for k in KEYWORDS}
    return {"metrics": out, "keywords": sets}


def dumps(snap: dict[str, Any]) -> str:
    return json.dumps(snap, indent=1, sort_keys=True, ensure_ascii=False) + "\n"


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root: its trace_bench
    text = dumps(snapshot())
    if "--write" in sys.argv:
        SNAPSHOT.parent.mkdir(exist_ok=True)
        SNAPSHOT.write_text(text, encoding="utf-8")
        print(f"wrote {SNAPSHOT} ({len(text)} chars)")
    else:
        sys.stdout.write(text)
