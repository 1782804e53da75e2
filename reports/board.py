"""``trace-bench board``: one static leaderboard page across runs (checkpoints of one model, several
papers' generators scored with the same protocol), from each run's ``results.json``.

Rows are (run, method); GT rows are kept on top as reference rows (one per reference set). A column is
one metric under one protocol id, one reference set (``reference_sha256``: the same reference cases)
and, for FPS / memory, one device: rows that differ in any of these are never put in one column. They
get separate columns (``FID [A]``, ``FID [B]``) and a line under the table saying why the metric is
split and which runs fall on each side. Values are shown in each column's display unit with their
intervals (:func:`reports.intervals.shown_interval`); the best non-GT value of a column is bold by the
column's declared rule (FPS / memory only among GPU measurements). The page sorts by a clicked header
(a small inline script; GT stays on top) and links to each run's ``report.html``. Nothing is loaded
from the network.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from trace_bench.results import GT, MetricInfo, atomic_write_text
from trace_bench.results.escape import code, html_attr, html_text, literal, prose_html
from trace_bench.results.table_model import DASH, Cell, Column, Row, Table, to_html

from .html_report import CSS, SORT_JS
from .intervals import CLIPPED, ESTIMATE, HEAVY_TAILED_MARK, MARK_NOTES, is_std_column

#: results.json ``flags`` -> the table's footnote marks (:mod:`reports.intervals`)
FLAG_MARKS = {HEAVY_TAILED_MARK: ("heavy-tailed",), CLIPPED: ("interval clipped to range", "value clipped to range"),
              ESTIMATE: ("estimate outside the quantity's range",)}
from .leaderboard import SCHEMA_ID
from .tables import CLOSEST_ARROW, fmt_value, on_cpu

__all__ = ["Board", "BoardColumn", "BoardError", "BoardRun", "board_html", "build_board", "load_run", "write_board"]


class BoardError(ValueError):
    """A run folder the board cannot read (one line naming the folder and what to do)."""


@dataclass
class BoardRun:
    """One run on the board: its label, folder, results.json document and report page."""

    label: str
    folder: Path
    doc: dict[str, Any]

    @property
    def reference(self) -> str:
        return str((self.doc.get("run") or {}).get("reference_sha256") or "")


@dataclass
class BoardColumn:
    """One column: a metric under one (protocol, reference set, device) key; ``tag`` tells the columns of a
    split metric apart ("" when the metric has one column)."""

    metric: str
    protocol: str
    reference: str
    device: str
    label: str
    info: MetricInfo
    tag: str = ""
    runs: list[str] = field(default_factory=list)

    @property
    def key(self) -> str:
        return f"{self.metric}|{self.tag}" if self.tag else self.metric


@dataclass
class Board:
    """The table, the lines explaining split metrics, and the runs."""

    table: Table
    refusals: list[str]
    runs: list[BoardRun]
    columns: list[BoardColumn]


def load_run(spec: str | Path) -> BoardRun:
    """``PATH`` or ``LABEL=PATH`` of a run's output folder (or its ``results.json``)."""
    text = str(spec)
    label, sep, path = text.partition("=")
    if not sep or not label or Path(text).exists():
        label, path = "", text
    p = Path(path)
    f = p / "results.json" if p.is_dir() else p
    if not f.is_file():
        raise BoardError(f"{p}: no results.json here; is it the --out folder of a finished `trace-bench run` "
                          "(rerun `trace-bench report` on it if it predates results.json)?")
    try:
        doc = json.loads(f.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise BoardError(f"{f}: not a results.json document ({type(e).__name__}: {e})") from None
    if not isinstance(doc, dict) or doc.get("schema") != SCHEMA_ID or not isinstance(doc.get("rows"), list):
        raise BoardError(f"{f}: not a trace-bench results.json (schema {SCHEMA_ID!r} expected)")
    return BoardRun(label or f.parent.name, f.parent, doc)


def _unique_labels(runs: list[BoardRun]) -> None:
    seen: dict[str, int] = {}
    for r in runs:
        seen[r.label] = seen.get(r.label, 0) + 1
    for r in runs:
        if seen[r.label] > 1:
            r.label = f"{r.folder.parent.name}/{r.folder.name}"


def _shown(row: dict[str, Any]) -> bool:
    """Rows the board shows: Table 1 and 2 columns (not per-class, hidden or std columns)."""
    metric = str(row.get("metric", ""))
    return (row.get("table") in ("table1", "table2") and "[" not in metric and not row.get("hidden")
            and not is_std_column(metric) and metric != "vram_train")


def _info(row: dict[str, Any]) -> MetricInfo:
    return MetricInfo(row.get("higher_is_better"), label=str(row.get("label") or row.get("metric")),
                      unit=str(row.get("unit") or ""), digits=int(row.get("digits") or 3),
                      closest_to_reference=bool(row.get("closest_to_reference")), kind=str(row.get("kind") or "case"))


def _table_of(metric: str, runs: list[BoardRun]) -> str:
    return next((str(r.get("table")) for run in runs for r in run.doc["rows"] if r.get("metric") == metric), "")


def _rank_of(metric: str, runs: list[BoardRun]) -> float:
    return next((_num(r.get("rank")) for run in runs for r in run.doc["rows"]
                 if r.get("metric") == metric and r.get("rank") is not None), 100.0)


def _tags(n: int) -> list[str]:
    return [chr(ord("A") + i) if i < 26 else f"Z{i}" for i in range(n)]


def _num(x: Any) -> float:
    try:
        return float(x) if x is not None else float("nan")
    except (TypeError, ValueError):
        return float("nan")


def build_board(runs: list[BoardRun]) -> Board:
    """The leaderboard of ``runs`` (see the module docstring)."""
    _unique_labels(runs)
    keyed: dict[tuple[str, str, str, str], BoardColumn] = {}
    values: dict[tuple[str, str], dict[tuple, dict[str, Any]]] = {}
    order: list[str] = []
    for run in runs:
        for row in run.doc["rows"]:
            if not _shown(row):
                continue
            metric = str(row["metric"])
            device = str(row.get("measured_on") or "") if row.get("kind") == "profile" else ""
            k = (metric, str(row.get("protocol") or ""), run.reference, device)
            if k not in keyed:
                keyed[k] = BoardColumn(metric, k[1], k[2], device, str(row.get("label") or metric), _info(row))
                if metric not in order:
                    order.append(metric)
            if run.label not in keyed[k].runs:
                keyed[k].runs.append(run.label)
            values.setdefault((run.label, str(row["method"])), {})[k] = row
    first = {k[0]: i for i, k in reversed(list(enumerate(keyed)))}
    order.sort(key=lambda m: ({"table1": 0, "table2": 1}.get(_table_of(m, runs), 2), _rank_of(m, runs), first[m]))
    columns: list[BoardColumn] = []
    refusals: list[str] = []
    for metric in order:
        cols = [c for k, c in keyed.items() if k[0] == metric]
        if len(cols) > 1:
            for c, tag in zip(cols, _tags(len(cols))):
                c.tag = tag
            why = [w for w, attr in (("protocol ids", "protocol"), ("reference sets", "reference"),
                                     ("devices", "device")) if len({getattr(c, attr) for c in cols}) > 1]
            refusals.append(
                f"{literal(cols[0].label)}: not one column, the runs differ in {' and '.join(why)}; "
                + "; ".join(f"[{c.tag}] = {', '.join(literal(x) for x in c.runs)} (protocol {code(c.protocol)}"
                            + (f", reference {c.reference[:12]}" if c.reference else ", reference unknown")
                            + (f", {literal(c.device)}" if c.device else "") + ")" for c in cols) + ".")
        columns += cols
    table_cols = []
    for c in columns:
        hib = c.info.higher_is_better
        arrow = "" if hib is None else CLOSEST_ARROW if c.info.closest_to_reference else ("↑" if hib else "↓")
        name = "Infer RSS" if c.metric == "vram" and on_cpu(c.device) else c.label
        head = name + (f" [{c.tag}]" if c.tag else "") + (" (CPU)" if on_cpu(c.device) else "")
        table_cols.append(Column(c.key, head, arrow, unit=c.info.unit))
    rows: list[Row] = []
    gt_seen: set[str] = set()
    for run in runs:
        methods = list((run.doc.get("run") or {}).get("methods") or [])
        methods += [m for (lab, m) in values if lab == run.label and m not in methods]
        for m in methods:
            vals = values.get((run.label, m))
            if not vals:
                continue
            if m == GT:
                if run.reference and run.reference in gt_seen:
                    continue
                gt_seen.add(run.reference)
            cells = {}
            for c in columns:
                row = vals.get((c.metric, c.protocol, c.reference, c.device))
                if row is None:
                    continue
                v, lo, hi = _num(row.get("value")), _num(row.get("ci_low")), _num(row.get("ci_high"))
                infos = {c.metric: c.info}
                ci = (f"[{fmt_value(c.metric, lo, infos)}, {fmt_value(c.metric, hi, infos)}]"
                      if math.isfinite(lo) and math.isfinite(hi) and not is_std_column(c.metric) else "")
                flags = row.get("flags") or []
                mark = "".join(m for m, f in FLAG_MARKS.items() if any(x in flags for x in f))
                cells[c.key] = Cell(fmt_value(c.metric, v, infos), ci, v, mark=mark,
                                    hover=str(row.get("interval_of") or row.get("ci_method") or ""))
            label = f"{GT} (reference of {run.label})" if m == GT else f"{run.label} / {m}"
            rows.append(Row(f"{run.label}/{m}", cells, label=label, pinned=(m == GT)))
    _mark_best(rows, columns)
    used = {m for r in rows for x in r.cells.values() for m in x.mark}
    notes = ["Rows: run / method; GT rows are the reference (one per reference set), kept on top when sorting. "
             "A column holds one metric under one protocol id and one reference set (and, for FPS / memory, one "
             "device); best non-GT value in bold (FPS / memory only among GPU measurements). Intervals as each "
             "run reported them (hover: what they cover)."]
    notes += [text for m, text in MARK_NOTES.items() if m in used]
    table = Table("board", "Leaderboard", table_cols, rows, notes, stub="Run / method")
    return Board(table, refusals, runs, columns)


def _mark_best(rows: list[Row], columns: list[BoardColumn]) -> None:
    for c in columns:
        hib = c.info.higher_is_better
        if hib is None or (c.device and not _gpu(c.device)):
            continue
        cand = [(r.cell(c.key).value, r) for r in rows if not r.pinned and math.isfinite(r.cell(c.key).value)]
        if c.info.closest_to_reference:
            gts = [r.cell(c.key).value for r in rows if r.pinned and math.isfinite(r.cell(c.key).value)]
            if len(gts) != 1:
                continue
            cand = [(abs(v - gts[0]), r) for v, r in cand]
            hib = False
        if len(cand) < 2:
            continue
        best = max(v for v, _ in cand) if hib else min(v for v, _ in cand)
        for v, r in cand:
            if v == best:
                r.cells[c.key].best = True


def _gpu(device: str) -> bool:
    d = device.strip().lower()
    return bool(d) and not on_cpu(d) and not d.startswith("unknown")


def _link(site: Path, folder: Path) -> str:
    return Path(os.path.relpath(folder.resolve() / "report.html", site)).as_posix()


def board_html(board: Board, site: Path) -> str:
    """The page (one self-contained file; links to each run's report relative to ``site``)."""
    h = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">', "<title>trace-bench leaderboard</title>",
         f"<style>{CSS}</style></head><body>", "<h1>trace-bench leaderboard</h1>",
         f"<p>{len(board.runs)} run(s), {sum(1 for r in board.table.rows if not r.pinned)} method row(s). "
         "Click a column header to sort.</p>"]
    h.append(to_html(board.table, css="board", anchor="board", caption=False))
    if board.refusals:
        h.append('<h2 id="split">Metrics split into several columns</h2><ul>')
        h += [f'<li class="warn">{prose_html(x)}</li>' for x in board.refusals]
        h.append("</ul>")
    h.append('<h2 id="runs">Runs</h2><ul>')
    for r in board.runs:
        run = r.doc.get("run") or {}
        what = "; ".join(x for x in (
            f"trace-bench {run.get('toolkit_version')}" if run.get("toolkit_version") else "",
            f"finished {run.get('finished_utc')}" if run.get("finished_utc") else "",
            f"device {run.get('device')}" if run.get("device") else "",
            f"reference {r.reference[:12]}" if r.reference else "reference unknown") if x)
        link = (f' (<a href="{html_attr(_link(site, r.folder))}">report.html</a>)'
                if (r.folder / "report.html").is_file() else "")
        h.append(f"<li><b>{html_text(r.label)}</b>{link}: {html_text(str(r.folder))}; {html_text(what)}</li>")
    h.append("</ul>")
    h.append('<h2 id="columns">Columns</h2><dl class="legend">')
    for c in board.columns:
        h.append(f"<dt>{html_text(c.label + (f' [{c.tag}]' if c.tag else ''))}</dt><dd>protocol "
                 f"<code>{html_text(c.protocol or DASH)}</code>; runs: {html_text(', '.join(c.runs))}"
                 + (f"; measured on {html_text(c.device)}" if c.device else "") + "</dd>")
    h.append("</dl>")
    h.append(f"<script>{SORT_JS}</script>")
    h.append("</body></html>")
    return "\n".join(h) + "\n"


def write_board(runs: list[str | Path], out: str | Path) -> Path:
    """Write ``out/index.html``, the leaderboard of ``runs`` (``PATH`` or ``LABEL=PATH`` each); returns its path."""
    if not runs:
        raise BoardError("board: give at least one run folder (RUN or LABEL=RUN)")
    site = Path(out)
    board = build_board([load_run(r) for r in runs])
    site.mkdir(parents=True, exist_ok=True)
    return atomic_write_text(site / "index.html", board_html(board, site.resolve()))
