"""What the memorization audit writes to ``OUT/audit/`` and how a report reads it.

Files (all written atomically):

* ``memorization.csv``: one row per generated volume (columns :data:`ROW_COLUMNS`);
* ``memorization_heldout.csv``: the same for the held-out real volumes (the calibration sample);
* ``memorization_summary.csv``: one row per method (columns :data:`SUMMARY_COLUMNS`);
* ``montage_<method>.png``: the method's closest generated / training slice pairs side by side;
* ``memorization.md``: the summary as a Markdown section (:func:`memorization_markdown`), ready to paste;
* ``memorization.json``: everything above in one document (:data:`SCHEMA`), which a report renders
  without importing this package: ``json.load(open(OUT / "audit" / "memorization.json"))``.

``memorization.json`` (``"schema": "trace-bench/memorization/1"``; NaN is written as ``null``)::

    {"schema", "note",
     "feature": {"volume": "grid16x32x32@1", "description", "distance", "canvas", "thumbnail"},
     "params": {"percentile": 5.0, "top_k", "seed", "ct_cells", "ct_min_generated_per_cell", "cache"},
     "train": {"folder", "adapter", "n_volumes", "n_slices"},
     "heldout": {"folder", "adapter", "n_volumes", "n_slices", "percentile", "volume_threshold",
                 "slice_threshold", "median_nn_distance", "near_copy_rate_volume", "near_copy_rate_slice", "authpct"},
     "inputs": {method: {"folder", "adapter"}},
     "timing": {"seconds_total", "seconds_train_encode", "seconds_per_train_volume", "cache_hits", "cache_misses"},
     "methods": [{<SUMMARY_COLUMNS>, "montage": "montage_<method>.png" | null, "cases": [{<ROW_COLUMNS>}]}],
     "heldout_cases": [{<ROW_COLUMNS>}],
     "problems": [{"set", "case_id", "path", "reason"}],
     "files": {"per_case", "heldout", "summary", "json", "markdown"}}
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..atomic import atomic_path, atomic_write_bytes
from ..results.escape import code, literal, markdown_text, plot_text, prose_markdown
from ..results.files import csv_text
from ..results.table_model import Cell, Column, Row, Table, markdown_grid

SCHEMA = "trace-bench/memorization/1"
AUDIT_DIR = "audit"
NOTE = ("A near-copy flag is evidence to look at, not proof: it says a generated volume (slice) is closer to "
        "a training volume (slice) than 95 % of held-out real patients are. Look at the montages; an "
        "independent real sample is flagged about 5 % of the time by construction.")

ROW_COLUMNS = ("method", "case_id", "nn_train_case", "nn_distance", "threshold", "flagged", "authentic",
               "best_slice_ncc", "gen_slice", "matched_train_case", "matched_train_slice", "slice_threshold",
               "n_slices", "n_slices_flagged", "slice_match_case", "slice_offset", "slice_offset_mm",
               "offset_consistency", "path")
SUMMARY_COLUMNS = ("method", "n", "n_flagged", "near_copy_rate_volume", "n_slices", "n_slices_flagged",
                   "near_copy_rate_slice", "C_T", "C_T_note", "authpct", "median_nn_distance", "max_slice_ncc")

COLUMN_HELP = {
    "nn_distance": "distance of the volume feature to the nearest training volume (0..2)",
    "threshold": "5th percentile of the held-out real volumes' nn_distance",
    "flagged": "nn_distance < threshold (volume-level near copy)",
    "authentic": "Alaa et al.: the nearest training volume's own nearest neighbour is closer than this volume",
    "best_slice_ncc": "highest NCC of any of its slices with any training slice (128 px, 3.5 mm, 5 mm slices)",
    "slice_threshold": "95th percentile of the held-out real slices' best NCC",
    "slice_offset": "median(matched training slice - generated slice) in 5 mm slices among the top matches",
    "offset_consistency": "fraction of the top matches sharing that offset (+-1 slice): near 1 for a shifted copy",
    "C_T": "Meehan et al. 2020 data-copying statistic (<< 0: copying, >> 0: underfitting)",
    "authpct": "percentage of generated volumes judged authentic (Alaa et al. 2022)",
}


@dataclass
class AuditResult:
    """Everything ``run_audit`` computed and wrote (``data`` is the content of ``memorization.json``)."""

    out_dir: Path
    data: dict
    rows: list[dict]
    heldout_rows: list[dict]
    summary: list[dict]
    problems: list[dict]
    cache_hits: int
    cache_misses: int
    files: dict[str, Path] = field(default_factory=dict)


def audit_dir(out: str | Path) -> Path:
    return Path(out) / AUDIT_DIR


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name) or "method"


def _clean(v: Any) -> Any:
    if isinstance(v, (np.floating, float)):
        v = float(v)
        return None if math.isnan(v) or math.isinf(v) else v
    if isinstance(v, np.integer):
        return int(v)
    if isinstance(v, np.bool_):
        return bool(v)
    if isinstance(v, dict):
        return {k: _clean(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_clean(x) for x in v]
    return v


def _csv_bytes(rows: list[dict], columns: tuple[str, ...]) -> bytes:
    """Rows as CSV: NaN empty, finite floats as ``str`` (shortest round trip), text cells formula-safe
    (:func:`trace_bench.results.files.csv_text`)."""
    def cell(v: Any) -> Any:
        if isinstance(v, (float, np.floating)):
            return "" if math.isnan(v) else str(v) if math.isfinite(v) else float(v)
        return v

    return csv_text(columns, ([cell(r.get(c)) for c in columns] for r in rows)).encode("utf-8")


def _fmt(v: Any, nd: int = 3) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "n/a"
    if isinstance(v, float):
        return f"{v:.{nd}f}"
    return str(v)


_SUMMARY_HEADS = (("n", "n", 0), ("near_copy_rate_volume", "near-copy rate (volumes)", 3),
                  ("near_copy_rate_slice", "near-copy rate (slices)", 3), ("C_T", "C_T", 2),
                  ("authpct", "AuthPct %", 1), ("median_nn_distance", "median NN distance", 4),
                  ("max_slice_ncc", "max slice NCC", 4))


def summary_table(data: dict) -> Table:
    """Per method: near-copy rates, C_T, AuthPct, distances; the held-out real set first (calibration)."""
    h = data["heldout"]
    cols = [Column(k, head) for k, head, _ in _SUMMARY_HEADS]
    calib = {"n": h["n_volumes"], "near_copy_rate_volume": h["near_copy_rate_volume"],
             "near_copy_rate_slice": h["near_copy_rate_slice"], "authpct": h["authpct"],
             "median_nn_distance": h["median_nn_distance"]}
    rows = [Row("held-out real (calibration)",
                {k: Cell(_fmt(calib[k], nd) if k in calib else "") for k, _, nd in _SUMMARY_HEADS})]
    rows += [Row(m["method"], {k: Cell(_fmt(m[k], nd)) for k, _, nd in _SUMMARY_HEADS}) for m in data["methods"]]
    return Table("memorization", "Memorization audit", cols, rows, stub="method")


def flagged_table(flagged: list[tuple[str, dict]]) -> Table:
    """The generated volumes flagged at volume level or with slices above the slice threshold."""
    cols = [Column("case", "case", align="l"), Column("nn", "nearest training case", align="l"),
            Column("distance", "distance"), Column("flagged", "flagged", align="l"),
            Column("ncc", "best slice NCC"), Column("match", "matched training slice", align="l"),
            Column("offset", "slice offset (5 mm)"), Column("consistency", "consistency")]
    rows = [Row(meth, {"case": Cell(c["case_id"]), "nn": Cell(str(c["nn_train_case"])),
                       "distance": Cell(_fmt(c["nn_distance"], 4)), "flagged": Cell("yes" if c["flagged"] else "no"),
                       "ncc": Cell(_fmt(c["best_slice_ncc"], 4)),
                       "match": Cell(f"{c['matched_train_case']} z={c['matched_train_slice']}"),
                       "offset": Cell(_fmt(c["slice_offset"], 1)),
                       "consistency": Cell(_fmt(c["offset_consistency"], 2))})
            for meth, c in flagged]
    return Table("flagged", "Flagged generated volumes", cols, rows, stub="method")


def memorization_markdown(data: dict) -> str:
    """A Markdown section (heading, summary table, calibration, flagged cases, montage links, caveats)
    rendered from the content of ``memorization.json``; paths are relative to ``OUT/audit/``."""
    h = data["heldout"]
    calibration = (f"Training set: {data['train']['n_volumes']} volumes ({literal(data['train']['folder'])}); "
                   f"held-out real set: {h['n_volumes']} volumes ({literal(h['folder'])}). Volume feature "
                   f"{code(data['feature']['volume'])}; thresholds from the held-out set: volume distance < "
                   f"{_fmt(h['volume_threshold'], 4)}, slice NCC > {_fmt(h['slice_threshold'], 4)}.")
    lines = ["## Memorization audit", "", prose_markdown(data.get("note", NOTE)), "", prose_markdown(calibration), "",
             *markdown_grid(summary_table(data))]
    notes = [f"- {markdown_text(m['method'])}: C_T {markdown_text(m['C_T_note'])}"
             for m in data["methods"] if m.get("C_T") is None]
    if notes:
        lines += ["", *notes]
    flagged = [(m["method"], c) for m in data["methods"] for c in m["cases"]
               if c["flagged"] or (c.get("n_slices_flagged") or 0) > 0]
    if flagged:
        lines += ["", "Flagged generated volumes (volume-level flag, or slices above the slice threshold):", "",
                  *markdown_grid(flagged_table(flagged))]
    mont = [m for m in data["methods"] if m.get("montage")]
    if mont:
        lines += ["", *[f"![{markdown_text(m['method'])}: closest generated / training slices]({m['montage']})"
                        for m in mont]]
    lines += ["", "Reading it: rates near 0.05 are what real patients the generator never saw show; C_T well "
              "below 0 or AuthPct well below the held-out value point the same way. Columns: "
              + "; ".join(f"`{k}` {v}" for k, v in COLUMN_HELP.items()) + "."]
    return "\n".join(lines) + "\n"


def write_montage(path: Path, method: str, pairs: list[dict]) -> Path:
    """PNG: one row per pair, generated slice | matched training slice (canvas, HU -1000..1000)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    n = len(pairs)
    fig, axes = plt.subplots(n, 2, figsize=(6.4, 3.3 * n), squeeze=False)
    for i, p in enumerate(pairs):
        r = p["row"]
        for j, (img, title) in enumerate(((p["gen"], f"{method}: {r['case_id']} z={r['gen_slice']}"),
                                          (p["train"], f"train: {r['matched_train_case']} z={r['matched_train_slice']}"))):
            title = plot_text(title)
            ax = axes[i][j]
            ax.imshow(img, cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
            ax.set_title(title, fontsize=8)
            ax.axis("off")
        flag = "FLAGGED" if (r["flagged"] or r["n_slices_flagged"] > 0) else "not flagged"
        axes[i][0].text(0.0, -0.06, f"NCC {r['best_slice_ncc']:.3f} ({flag}; slice threshold {r['slice_threshold']:.3f})",
                        transform=axes[i][0].transAxes, fontsize=7, va="top")
    fig.suptitle("Closest generated / training slices (evidence to inspect, not proof)", fontsize=9)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=80)
    plt.close(fig)
    return path


def write_outputs(out: Path, *, rows: list[dict], heldout_rows: list[dict], summary: list[dict],
                  problems: list[dict], meta: dict, pairs: dict[str, list[dict]], cache: Any) -> AuditResult:
    """Write every file of ``OUT/audit/`` and return the :class:`~trace_bench.audit.core.AuditResult`."""
    d = audit_dir(out)
    d.mkdir(parents=True, exist_ok=True)
    files = {"per_case": d / "memorization.csv", "heldout": d / "memorization_heldout.csv",
             "summary": d / "memorization_summary.csv", "json": d / "memorization.json",
             "markdown": d / "memorization.md"}
    atomic_write_bytes(files["per_case"], _csv_bytes(rows, ROW_COLUMNS))
    atomic_write_bytes(files["heldout"], _csv_bytes(heldout_rows, ROW_COLUMNS))
    atomic_write_bytes(files["summary"], _csv_bytes(summary, SUMMARY_COLUMNS))
    methods = []
    for s in summary:
        name = s["method"]
        mpath = None
        if pairs.get(name):
            mpath = write_montage(d / f"montage_{_safe(name)}.png", name, pairs[name])
            files[f"montage:{name}"] = mpath
        methods.append({**s, "montage": mpath.name if mpath else None,
                        "cases": [r for r in rows if r["method"] == name]})
    data = _clean({"schema": SCHEMA, "note": NOTE, **meta, "methods": methods, "heldout_cases": heldout_rows,
                   "problems": problems,
                   "files": {k: p.name for k, p in files.items() if ":" not in k}})
    atomic_write_bytes(files["markdown"], memorization_markdown(data).encode("utf-8"))
    atomic_write_bytes(files["json"], (json.dumps(data, indent=1, allow_nan=False) + "\n").encode("utf-8"))
    return AuditResult(out_dir=d, data=data, rows=rows, heldout_rows=heldout_rows, summary=summary,
                       problems=problems, cache_hits=cache.hits, cache_misses=cache.misses, files=files)


def load_memorization(out: str | Path) -> dict:
    """The content of ``OUT/audit/memorization.json`` (a :class:`~trace_bench.errors.ConfigError`
    naming the file when it is missing or of another schema)."""
    from ..errors import ConfigError

    p = audit_dir(out) / "memorization.json"
    if not p.is_file():
        raise ConfigError(f"{p}: no memorization audit here (run `trace-bench audit` first)")
    data = json.loads(p.read_text(encoding="utf-8"))
    if data.get("schema") != SCHEMA:
        raise ConfigError(f"{p}: schema {data.get('schema')!r}, expected {SCHEMA!r}")
    return data
