"""Reports: Table 1 / Table 2 renderers, the published rows, self-contained HTML, plots, re-render."""

from __future__ import annotations

import base64
import csv
import json
import re
from html.parser import HTMLParser

import pandas as pd
import pytest

from reports.tables import (
    build_tables,
    fmt_value,
    published_tables,
    to_latex,
    to_markdown,
)
from trace_bench.config import RunConfig
from trace_bench.results import load_results
from trace_bench.results.escape import latex_text
from trace_bench.run import run

from helpers.fake_metrics import make_small_dataset, register_fakes, unregister_fakes


@pytest.fixture(scope="module")
def out(tmp_path_factory):
    data = make_small_dataset(tmp_path_factory.mktemp("rep-data"))
    register_fakes()
    try:
        r = run(RunConfig(out=str(tmp_path_factory.mktemp("rep") / "o"), reference=str(data / "reference"),
                          reference_masks=str(data / "masks"),
                          methods={"interp": str(data / "interp"), "noisy": str(data / "noisy")},
                          metrics=["weight-free", "fake_mae", "fake_mean"], frame_size=64, bootstrap=100,
                          bootstrap_distribution=10, progress=False, published=True))  # the paper's rows too
    finally:
        unregister_fakes()
    return r.out


class _Collect(HTMLParser):
    def __init__(self):
        super().__init__()
        self.stack: list[str] = []
        self.tables: list[str] = []
        self.imgs: list[str] = []
        self.text: list[str] = []
        self.errors: list[str] = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag not in ("br", "img", "meta", "input", "hr", "link"):  # void elements
            self.stack.append(tag)
        if tag == "table":
            self.tables.append(a.get("id", ""))
        if tag == "img":
            self.imgs.append(a.get("src", ""))

    def handle_endtag(self, tag):
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"unbalanced </{tag}> (open: {self.stack[-3:]})")
        else:
            self.stack.pop()

    def handle_data(self, data):
        self.text.append(data)


def test_html_is_self_contained_and_well_formed(out):
    html = (out / "report.html").read_text(encoding="utf-8")
    p = _Collect()
    p.feed(html)
    p.close()
    assert not p.errors and p.stack == []
    assert "table1" in p.tables and "table2" in p.tables and "table1-published" in p.tables
    assert len(p.imgs) >= 4  # bars, per-slice curves, montage, overlay
    for src in p.imgs:  # charts as PNG, CT montages / overlays as JPEG (their PNG is linked)
        data = base64.b64decode(src.split(",", 1)[1])
        assert (src.startswith("data:image/png;base64,") and data[:8] == b"\x89PNG\r\n\x1a\n") or \
               (src.startswith("data:image/jpeg;base64,") and data[:3] == b"\xff\xd8\xff")
    assert sum(src.startswith("data:image/jpeg") for src in p.imgs) == 2  # montage, overlay
    text = " ".join(p.text)
    assert "as published" in text.lower() or "As published" in text
    assert not re.search(r"""src=["'](?!data:)""", html)  # nothing loaded from elsewhere
    # links only to the run's own files (relative) or anchors, never to the network
    assert not re.search(r"""href=["'](https?:|//|/)""", html)


def test_plots_written(out):
    names = {p.name for p in (out / "plots").glob("*.png")}
    assert {"metrics_bars.png", "per_slice_lung2.png", "montage_lung2.png", "overlay_lung2.png"} <= names or \
           {"metrics_bars.png", "per_slice_lung1.png", "montage_lung1.png", "overlay_lung1.png"} <= names


def test_tables_direction_best_and_percent(out):
    res = load_results(out)
    t1, *_ = [t for t in build_tables(res) if t.key == "table1"]
    assert t1.arrows["temporal_flickering"] == "≈GT"  # ranked by closeness to GT: no ↑ that contradicts the rule
    cells = {r.key: r.cells for r in t1.rows}
    # interp is smoother than noisy: best (bold) of the non-GT rows; GT is never marked best
    assert cells["interp"]["temporal_flickering"].best and not cells["noisy"]["temporal_flickering"].best
    assert not any(c.best for c in cells["GT"].values())
    assert cells["interp"]["temporal_flickering"].text.endswith("%")
    t2 = [t for t in build_tables(res) if t.key == "table2"][0]
    assert t2.arrows["fake_mean"] == "↓"
    md = to_markdown(t1)
    assert "**" in md and "Temporal Flickering ≈GT" in md and "closest to GT is best" in md
    tex = to_latex(t1)
    assert r"\toprule" in tex and r"\midrule" in tex and r"\bottomrule" in tex and r"$\approx$GT" in tex
    assert r"\%" in tex and r"\textbf{" in tex
    # table csv in stored units
    rows = list(csv.DictReader((out / "table1.csv").open(encoding="utf-8")))
    s = pd.read_csv(out / "summary.csv")
    v = s[(s.method == "interp") & (s.metric == "temporal_flickering")].value.iloc[0]
    assert float(next(r for r in rows if r["method"] == "interp")["temporal_flickering"]) == pytest.approx(v)


def test_report_rerender_without_inputs(out, tmp_path):
    """`trace-bench report` works from the saved files alone (inputs and cache entries not needed)."""
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    for f in ("report.md", "report.html", "report.tex"):
        (copy / f).unlink()
    shutil.rmtree(copy / "plots")
    from typer.testing import CliRunner

    from trace_bench.cli import app

    r = CliRunner().invoke(app, ["report", str(copy)])
    assert r.exit_code == 0, r.output
    assert (copy / "report.html").is_file() and (copy / "plots" / "metrics_bars.png").is_file()
    a = (out / "report.md").read_text(encoding="utf-8")
    b = (copy / "report.md").read_text(encoding="utf-8")
    assert a == b


def test_published_tables_match_the_paper():
    t1, t2 = published_tables()
    rows1 = {r.key: r.cells for r in t1.rows}
    assert rows1["100/[1,2,4] (Ours)"]["dice"].text == "76.50%"
    assert rows1["GenerateCT [15]"]["hd95"].text == "220.07"
    assert rows1["GT"]["subject_consistency"].text == "84.58%"
    rows2 = {r.key: r.cells for r in t2.rows}
    assert rows2["Ours"]["fvd"].text == "1176.7" and rows2["Base w/ Imagen [50]"]["fid"].text == "160.8"
    assert all("not computed here" in t.title for t in (t1, t2))
    # the numeric column holds the printed numbers in stored units
    from importlib import resources

    text = resources.files("reports").joinpath("published/trace_paper_tables.csv").read_text(encoding="utf-8")
    rows = list(csv.DictReader(text.splitlines()))
    r = next(r for r in rows if r["method"] == "MedSyn [62]" and r["metric"] == "jaccard")
    assert float(r["value"]) == pytest.approx(0.354)


def test_formatting_helpers():
    from trace_bench.results import MetricInfo

    # display comes from what each metric declared (metrics.json), not from a table in reports/
    infos = {"dice": MetricInfo(True, unit="fraction"), "hd95": MetricInfo(False, unit="mm", digits=2)}
    assert fmt_value("dice", 0.76503, infos) == "76.50%"
    assert fmt_value("dice[lungs]", 0.5, infos) == "50.00%"
    assert fmt_value("hd95", 13.371, infos) == "13.37"
    assert fmt_value("vram", 6 * 2**30, infos) == "6.0 GB"
    assert fmt_value("fid", float("nan"), infos) == "–"
    assert fmt_value("unknown", 1.23456, infos) == "1.235"
    assert latex_text("a_b & 50%") == r"a\_b \& 50\%"


def test_metrics_json_directions(out):
    meta = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    assert meta["columns"]["temporal_flickering"]["higher_is_better"] is True
    assert meta["columns"]["fake_mae"]["higher_is_better"] is False
    assert meta["methods"][0] == "GT"
