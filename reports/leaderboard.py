"""``OUT/results.json``: every summary row with what it means, plus the run's metadata, for
leaderboards and scripts (schema ``trace-bench/results/v1``, described by :data:`SCHEMA`).

Values are in stored units (fractions 0..1, mm, bytes); non-finite numbers are ``null`` with the
reason in ``note`` where the run gave one; every interval says what it is an interval of
(``interval_of``). Values and intervals are the printed ones (:func:`reports.intervals.shown`): an
interval the reports do not print (std columns, n too small) is ``null``, interval ends are clipped to the
column's declared range, and ``flags`` says what was done (``summary.csv`` keeps the raw numbers).
Written by :func:`reports.render_report`, atomically.
"""

from __future__ import annotations

import hashlib
import math
from typing import Any

from trace_bench.results import GT, HALF_SUFFIX, PROFILE_CASE, PROFILE_METRICS, Results, column_info, half_base

from .intervals import CLIPPED, ESTIMATE, HEAVY_TAILED_MARK, interval_meaning
from .tables import column_note, shown_row, table_of

SCHEMA_ID = "trace-bench/results/v1"

#: JSON-schema (draft 2020-12) description of results.json; also written next to it as documentation
SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$id": SCHEMA_ID,
    "title": "trace-bench results",
    "type": "object",
    "required": ["schema", "run", "rows"],
    "properties": {
        "schema": {"const": SCHEMA_ID},
        "run": {
            "type": "object",
            "description": "metadata from provenance.json and metrics.json",
            "properties": {
                "toolkit_version": {"type": ["string", "null"]},
                "git_commit": {"type": ["string", "null"]},
                "finished_utc": {"type": ["string", "null"]},
                "device": {"type": ["string", "null"], "description": "GPU name or the requested device"},
                "frame_protocol": {"type": ["string", "null"]},
                "config": {"type": "object", "description": "the settings that change numbers (metrics, options, "
                           "segmenter, classes, frame_size, hu_window, geometry, seed, bootstrap, confidence, ...)"},
                "methods": {"type": "array", "items": {"type": "string"}, "description": "GT first"},
                "plot_case": {"type": ["string", "null"]},
                "skipped_metrics": {"type": "object", "additionalProperties": {"type": "string"},
                                    "description": "metric -> why it was not computed"},
                "n_errors": {"type": "integer"}, "n_warnings": {"type": "integer"},
                "reference_sha256": {"type": ["string", "null"], "description": "SHA-256 over the reference "
                                     "set's per-case input hashes (case id + file hash): runs with equal values "
                                     "scored the same reference cases"},
            },
        },
        "rows": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["method", "metric", "value", "ci_low", "ci_high", "n", "ci_method", "n_resamples_ok",
                             "note", "protocol", "unit", "label", "higher_is_better", "table", "kind"],
                "properties": {
                    "method": {"type": "string"},
                    "metric": {"type": "string", "description": "column name; per-class columns read dice[lungs]"},
                    "value": {"type": ["number", "null"], "description": "stored units (fraction 0..1, mm, bytes)"},
                    "ci_low": {"type": ["number", "null"]}, "ci_high": {"type": ["number", "null"]},
                    "n": {"type": ["integer", "null"], "description": "cases behind the value"},
                    "ci_method": {"type": "string", "description": "bootstrap-percentile:B, jackknife-2sample-t:G+H, ..."},
                    "n_resamples_ok": {"type": ["integer", "null"]},
                    "note": {"type": "string", "description": "when a number needs care ('' when none)"},
                    "protocol": {"type": "string", "description": "protocol id of the metric ('|'-separated parts)"},
                    "unit": {"enum": ["fraction", "mm", "bytes", ""]},
                    "label": {"type": "string", "description": "column header in the tables"},
                    "higher_is_better": {"type": ["boolean", "null"]},
                    "closest_to_reference": {"type": "boolean", "description": "best = closest to the GT row"},
                    "table": {"enum": ["table1", "table1b", "table2", "anatomy"]},
                    "kind": {"enum": ["case", "distribution", "profile"]},
                    "digits": {"type": "integer", "description": "decimals shown in the tables"},
                    "rank": {"type": "number", "description": "position of the column in its table"},
                    "hidden": {"type": "boolean", "description": "bookkeeping column (CSV only, not in the tables)"},
                    "gt_row": {"type": "string", "description": "for method GT: 'reference scored as a method' or "
                               "'GT/GT split-half floor' (distribution metrics: in the <column>_half columns)"},
                    "floor_column": {"type": "string", "description": "a distribution metric's full-sample rows: "
                                     "the <column>_half column holding the comparable half-vs-half values and the "
                                     "GT/GT floor (the full-sample column has no GT row)"},
                    "ci_flag": {"type": "string", "description": "summary.csv's ci_flag: '' or 'heavy-tailed' (the "
                                "interval's coverage is likely below the nominal level)"},
                    "flags": {"type": "array", "items": {"enum": ["heavy-tailed", "interval clipped to range",
                                                                   "value clipped to range",
                                                                   "estimate outside the quantity's range",
                                                                   "n too small"]},
                              "description": "what the printed value / interval needed (summary.csv: raw numbers)"},
                    "interval_of": {"type": "string", "description": "what [ci_low, ci_high] is an interval of "
                                    "('' when there is none)"},
                    "measured_on": {"type": "string", "description": "profile rows (fps, vram): the device"},
                },
            },
        },
    },
}

CONFIG_KEYS = ("metrics", "options", "segmenter", "classes", "frame_size", "hu_window", "geometry", "seed",
               "bootstrap", "bootstrap_distribution", "confidence", "jackknife_groups", "reference_format",
               "plot_case", "relative_paths")


def _f(v: Any) -> float | None:
    try:
        x = float(v)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


def _i(v: Any) -> int | None:
    x = _f(v)
    return None if x is None else int(x)


def _s(v: Any) -> str:
    return "" if v is None or (isinstance(v, float) and math.isnan(v)) or str(v) == "nan" else str(v)


def reference_sha256(res: Results) -> str | None:
    """SHA-256 over the reference set's ``case id + input hash`` lines (provenance.json ``inputs.GT``)."""
    ref = (res.provenance.get("inputs") or {}).get(GT)
    if not isinstance(ref, dict) or not ref:
        return None
    text = "".join(f"{k}\t{v}\n" for k, v in sorted(ref.items()))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def results_json(res: Results, meta: dict[str, Any] | None = None) -> dict[str, Any]:
    """The results.json document of a run (see :data:`SCHEMA`)."""
    meta = meta or {}
    prov = res.provenance
    tk = prov.get("toolkit") or {}
    dev = prov.get("device") or {}
    cfg = prov.get("config") or {}
    confidence = float(cfg.get("confidence") or 0.95)
    pc = res.per_case
    devices = {(str(m), str(c)): str(p).partition("profile: ")[2] for m, c, p, case in
               zip(pc.method, pc.metric, pc.protocol, pc.case_id) if case == PROFILE_CASE} if len(pc) else {}
    rows = []
    columns = set(res.summary.metric)
    for r in res.summary.itertuples(index=False):
        info = column_info(r.metric, res.metrics) or column_info(half_base(r.metric) or "", res.metrics)
        table = table_of(r.metric, res)
        sh = shown_row(r.metric, r, res)
        iv = sh.interval
        flags = [text for mark, text in ((HEAVY_TAILED_MARK, "heavy-tailed"), (CLIPPED, "interval clipped to range"))
                 if mark in sh.interval_mark]
        flags += ["value clipped to range"] if sh.value_mark == CLIPPED else []
        flags += ["estimate outside the quantity's range"] if sh.value_mark == ESTIMATE else []
        flags += ["n too small"] if sh.too_small else []
        row = {"method": r.method, "metric": r.metric, "value": _f(sh.value), "ci_low": iv[0] if iv else None,
               "ci_high": iv[1] if iv else None, "n": _i(r.n), "ci_method": _s(getattr(r, "ci_method", "")),
               "n_resamples_ok": _i(getattr(r, "n_resamples_ok", None)),
               "note": column_note(_s(getattr(r, "note", ""))), "ci_flag": _s(getattr(r, "ci_flag", "")),
               "flags": flags,
               "protocol": info.protocol if info is not None else "",
               "unit": info.unit if info is not None else "",
               "label": (info.label if info is not None and info.label else r.metric),
               "higher_is_better": info.higher_is_better if info is not None else None,
               "closest_to_reference": bool(info.closest_to_reference) if info is not None else False,
               "table": table, "kind": info.kind if info is not None else "case",
               "digits": int(info.digits) if info is not None else 3,
               "rank": float(info.rank) if info is not None else 100.0,
               "hidden": bool(info.hidden) if info is not None else False,
               "interval_of": interval_meaning(getattr(r, "ci_method", ""), confidence) if iv else ""}
        if (r.method, r.metric) in devices:
            row["measured_on"] = devices[(r.method, r.metric)]
        if r.method == GT:
            row["gt_row"] = ("GT/GT split-half floor" if row["kind"] == "distribution"
                             else "reference scored as a method")
        elif row["kind"] == "distribution" and half_base(r.metric) is None and r.metric + HALF_SUFFIX in columns:
            row["floor_column"] = r.metric + HALF_SUFFIX
        rows.append(row)
    run = {
        "toolkit_version": tk.get("version"), "git_commit": tk.get("git_commit"),
        "finished_utc": prov.get("finished_utc"),
        "device": dev.get("gpu") or dev.get("requested"),
        "frame_protocol": prov.get("frame_protocol"),
        "config": {k: cfg[k] for k in CONFIG_KEYS if k in cfg},
        "methods": list(res.methods), "plot_case": meta.get("plot_case"),
        "skipped_metrics": dict(sorted(res.skipped.items())),
        "n_errors": int(len(res.errors)), "n_warnings": int(len(res.warnings)),
        "reference_sha256": reference_sha256(res),
        "profile_metrics": sorted(m for m in PROFILE_METRICS if m in set(res.summary.metric)),
    }
    return {"schema": SCHEMA_ID, "run": run, "rows": rows}


def validate(doc: dict[str, Any]) -> list[str]:
    """Problems of a results.json document against :data:`SCHEMA` (required keys and types; no
    jsonschema dependency). Empty when valid."""
    errs = []
    if doc.get("schema") != SCHEMA_ID:
        errs.append(f"schema: expected {SCHEMA_ID!r}")
    for k in SCHEMA["required"]:
        if k not in doc:
            errs.append(f"missing {k!r}")
    item = SCHEMA["properties"]["rows"]["items"]
    types = {"string": str, "number": (int, float), "integer": int, "boolean": bool, "null": type(None),
             "object": dict, "array": list}
    for i, r in enumerate(doc.get("rows", [])):
        for k in item["required"]:
            if k not in r:
                errs.append(f"rows[{i}]: missing {k!r}")
                continue
            spec = item["properties"][k]
            if "enum" in spec:
                if r[k] not in spec["enum"]:
                    errs.append(f"rows[{i}].{k}: {r[k]!r} not in {spec['enum']}")
                continue
            allowed = spec["type"] if isinstance(spec["type"], list) else [spec["type"]]
            ok = any(isinstance(r[k], types[t]) and not (t in ("number", "integer") and isinstance(r[k], bool))
                     for t in allowed)
            if not ok:
                errs.append(f"rows[{i}].{k}: {r[k]!r} is not {allowed}")
    return errs
