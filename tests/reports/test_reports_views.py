"""Reports people use (issue 30) and numbers a reader can believe, report side (issue 28 item 5): the console
summary at 80 columns, LaTeX layouts that fit the templates' widths without scaling (compiled where pdflatex
exists), the HTML ranking and distribution views (and GT kept on top when sorting, in headless Chromium where
it exists), each message once, the leaderboard across runs, interval meanings, arrows that follow each
column's rule, CPU-measured FPS / memory labelled and never bold, published rows only when asked.

The run is real (the weight-free metrics and the runner-test fakes on crops of the shipped CTs); its two
profile files are written here (one CPU, one GPU measurement: test data for the labelling, not results)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest

from reports import render_report
from reports.console import results_summary
from reports.tables import build_tables, column_note, published_tables
from trace_bench.config import RunConfig
from trace_bench.results import load_results
from trace_bench.results.table_model import LAYOUTS, TexLayout, to_latex
from trace_bench.run import run

from helpers.fake_metrics import make_small_dataset, register_fakes, unregister_fakes

PDFLATEX = shutil.which("pdflatex")
CHROMIUM = shutil.which("chromium") or (("/usr/bin/chromium") if Path("/usr/bin/chromium").is_file() else None)
pytestmark = pytest.mark.filterwarnings("ignore:Tight layout not applied")


def _skipped() -> dict[str, str]:
    """Real not-computed reasons: the weights registry's own messages and the demo's speed reason."""
    from trace_bench.weights import WEIGHTS, missing_message

    return {"clip_score": missing_message(WEIGHTS.get("clip-vit-b32")),
            "kid_clip": missing_message(WEIGHTS.get("clip-vit-b32")),
            "fvd": missing_message(WEIGHTS.get("i3d-torchscript")),
            "fid_2p5d": "not in the demo's fast CPU set; run `trace-bench run --config OUT/config.toml --metrics "
                        "fid_2p5d` to add it"}


@pytest.fixture(scope="module")
def out(tmp_path_factory):
    data = make_small_dataset(tmp_path_factory.mktemp("views-data"), slabs=2)  # 4 cases: intervals are printed
    prof = tmp_path_factory.mktemp("views-prof")
    (prof / "cpu.json").write_text(json.dumps({"fps": 4.04, "inference_peak_bytes": 1456619520,
                                               "train_peak_bytes": 1626497024, "device": "cpu"}))
    (prof / "gpu.json").write_text(json.dumps({"fps": 9.5, "inference_peak_bytes": 6 * 2**30,
                                               "train_peak_bytes": 40 * 2**30, "device": "NVIDIA H200"}))
    register_fakes()
    try:
        r = run(RunConfig(out=str(tmp_path_factory.mktemp("views") / "o"), reference=str(data / "reference"),
                          reference_masks=str(data / "masks"),
                          methods={"interp": str(data / "interp"), "noisy": str(data / "noisy")},
                          profiles={"interp": str(prof / "cpu.json"), "noisy": str(prof / "gpu.json")},
                          metrics=["weight-free", "fake_mae", "fake_mean"], frame_size=32, bootstrap=100,
                          bootstrap_distribution=10, progress=False), extra_skipped=_skipped())
    finally:
        unregister_fakes()
    render_report(r.out, plots=False)  # the API's default: no published rows
    return r.out


def _text(html: str) -> str:
    return re.sub(r"<[^>]+>", " ", re.sub(r"<script.*?</script>|<style.*?</style>", "", html, flags=re.S))


# ----------------------------------------------------------------------------- console
def test_console_summary_shape_at_80_columns(out):
    lines = results_summary(load_results(out), width=80)
    assert all(len(x) <= 80 for x in lines), [x for x in lines if len(x) > 80]
    text = "\n".join(lines)
    assert lines[0].startswith("Table 1: VBench dimensions") and "Table 2: distribution metrics" in text
    assert re.search(r"^Method\s.*", text, re.M) and "GT" in text and "interp" in text and "noisy" in text
    starts = [i for i, x in enumerate(lines) if "metrics not computed" in x]
    assert len(starts) == 1 and lines[starts[0]].startswith("4 metrics not computed: 3 need weights")
    sentence = " ".join(lines[starts[0]:starts[0] + 4])
    assert "clip-vit-b32: 2" in sentence and "i3d-torchscript: 1" in sentence and "--metrics" in sentence
    assert not re.search(r"\d[eE][+-]\d", text)  # no 1.49778e+09: memory in GB
    assert "1.4 GB" not in text and re.search(r"\(GB\)", text)  # the unit moves to the header
    assert re.search(r"0 error rows?", text) and lines[-1] == f"open {out / 'report.html'}"
    assert len(lines) < 60


# ----------------------------------------------------------------------------- tables: rules, notes, profiles
def test_arrows_notes_and_profiles_follow_the_declared_rules(out):
    res = load_results(out)
    t1 = next(t for t in build_tables(res) if t.key == "table1")
    assert t1.arrows["temporal_flickering"] == "≈GT" and t1.arrows["fake_mae"] == "↓"
    notes = " ".join(t1.notes)
    assert "bootstrap interval of the mean per-case value over cases" in notes
    assert "measured on interp: cpu; noisy: NVIDIA H200" in notes and "peak RSS" in notes
    cells = {r.key: r.cells for r in t1.rows}
    assert not cells["interp"]["fps"].best and not cells["interp"]["vram"].best  # a CPU number is never best
    assert t1.rows[0].key == "GT" and t1.rows[0].pinned
    t2 = next(t for t in build_tables(res) if t.key == "table2")
    assert "an interval of the estimator's expected value at this sample size (not of the distance itself)" in \
        " ".join(t2.notes)
    assert "GT = the reference set scored as a method" not in " ".join(t2.notes)


def test_published_rows_only_when_asked(out, tmp_path):
    assert not list((out / "tables").glob("*_published.tex"))
    assert "as published" not in (out / "report.md").read_text(encoding="utf-8").lower()
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    render_report(copy, plots=False, published=True)
    assert (copy / "tables" / "table1_published.tex").is_file()
    assert "As published" in (copy / "report.md").read_text(encoding="utf-8")


def test_results_json_says_what_each_interval_covers(out):
    doc = json.loads((out / "results.json").read_text(encoding="utf-8"))
    rows = {(r["method"], r["metric"]): r for r in doc["rows"]}
    assert "mean per-case value over cases" in rows[("interp", "fake_mae")]["interval_of"]
    dist = rows[("interp", "fake_mean")]
    if dist["ci_low"] is not None:
        assert "not an interval of the distance itself" in dist["interval_of"]
    assert rows[("interp", "fps")]["measured_on"] == "cpu" and rows[("interp", "fps")]["interval_of"] == ""
    assert doc["run"]["reference_sha256"] and len(doc["run"]["reference_sha256"]) == 64


def test_std_columns_get_no_interval_and_bias_note_attaches_to_frechet_columns(out):
    from reports.intervals import shown_interval
    from reports.leaderboard import results_json
    from trace_bench.results import MetricInfo

    assert shown_interval("kid_std", 0.0, 0.0, 0.0) is None
    assert shown_interval("kid", 0.01, 0.005, 0.02) == (0.005, 0.02)
    assert shown_interval("kid_astra_std", 0.1, 0.0, 0.2, {"kid_astra_std": MetricInfo(None, label="KID std")}) is None
    res = load_results(out)
    res.summary.loc[len(res.summary)] = ["interp", "fake_mean_std", 0.0, 0.0, 0.0, 2, "jackknife-2sample-t:2+2", 4, "",
                                         ""][:len(res.summary.columns)]
    row = next(r for r in results_json(res)["rows"] if r["metric"] == "fake_mean_std")
    assert row["ci_low"] is None and row["ci_high"] is None and row["interval_of"] == ""
    # the bias note is written at the source, counting cases, on the statistics with a feature dimension only
    from trace_bench.run.aggregate import sample_note

    assert sample_note({"samples": 109, "dim": 2048}, 2) == ("2 cases (109 feature vectors) < 2048 feature "
                                                             "dimensions: the estimate is dominated by its bias")
    assert sample_note({"samples": 109, "volumes": 2}) == ""  # KID / PRDC: no dimension, no note
    assert sample_note({"samples": 4096, "dim": 2048}, 2) == ""
    assert column_note("a; nan; ; b") == "a; b"


# ----------------------------------------------------------------------------- LaTeX
def test_named_layouts():
    t = published_tables()[0]  # the paper's Table 1: 11 columns
    assert set(LAYOUTS) == {"full", "stacked", "pm", "compact", "split", "split3"}
    assert TexLayout.parse("split3+compact") == TexLayout("none", 3) and TexLayout("pm", 3).name == "split3+pm"
    assert TexLayout.parse("split+pm") == TexLayout("pm", 2) and TexLayout.parse("compact").intervals == "none"
    with pytest.raises(ValueError, match="expected one of"):
        TexLayout.parse("wide")
    split = to_latex(t, layout="split")
    assert split.count(r"\begin{tabular}{") == 2 and r"\par\medskip" in split


def test_pm_and_stacked_layouts_show_the_interval(out):
    t1 = next(t for t in build_tables(load_results(out)) if t.key == "table1")
    pm = to_latex(t1, layout="pm")
    assert r"$\pm$" in pm or re.search(r"\$\^\{\+[\d.]+\}_\{-[\d.]+\}\$", pm)
    assert "[" not in to_latex(t1, layout="compact").split(r"\midrule", 1)[1]
    assert r"\begin{tabular}[t]" in to_latex(t1, layout="stacked")


def _compile(work: Path, body: str, template: str) -> str:
    from reports.report import _preamble

    doc = "\n".join(_preamble(template)) + "\n\\begin{document}\n" + body + "\n\\end{document}\n"
    (work / "doc.tex").write_text(doc, encoding="utf-8")
    r = subprocess.run([PDFLATEX, "-interaction=nonstopmode", "-halt-on-error", "doc.tex"], cwd=work,
                       capture_output=True, text=True, encoding="utf-8", errors="replace", timeout=180)
    assert r.returncode == 0, r.stdout[-3000:]
    return (work / "doc.log").read_text(encoding="utf-8", errors="replace")


@pytest.mark.skipif(PDFLATEX is None, reason="pdflatex not installed")
@pytest.mark.parametrize("template", ["lncs", "ieee", "ieee-wide", "neurips"])
def test_tables_fit_each_template_without_scaling(out, tmp_path, template):
    """Every table (ours and the paper's 11-column Table 1) in a float of the template's width: no overfull
    box, no \\resizebox, text at 8 pt or more (the layout's size)."""
    from reports.report import tex_fits

    copy = tmp_path / "o"
    shutil.copytree(out, copy)
    render_report(copy, plots=False, published=True, tex_width=template)
    env = "table*" if template == "ieee-wide" else "table"
    body = []
    for f in sorted((copy / "tables").glob("*.tex")):
        tex = f.read_text(encoding="utf-8")
        assert r"\resizebox" not in tex and r"\scriptsize" not in tex
        assert "WIDER" not in tex, tex.splitlines()[1]
        body.append(f"\\begin{{{env}}}\\centering\\input{{{f.as_posix()}}}\\end{{{env}}}\\clearpage")
    log = _compile(tmp_path, "\n".join(body), template)
    assert "Overfull \\hbox" not in log, re.findall(r"Overfull \\hbox.*", log)
    tables = build_tables(load_results(copy)) + published_tables()
    assert all(f.layout.points >= 8 for f in tex_fits(tables, "auto", template).values())
    rep = (copy / "report.tex").read_text(encoding="utf-8")
    assert r"\resizebox" not in rep


@pytest.mark.skipif(PDFLATEX is None, reason="pdflatex not installed")
def test_table1_font_size_in_an_lncs_page_before_and_after(tmp_path):
    """The paper's Table 1 (11 columns): scaled to the LNCS text width as report.tex did (full layout at
    10 pt in \\resizebox{\\linewidth}) it is set at about 5 pt; the fitted layout keeps 8 pt or more."""
    from reports.report import tex_fits

    t = published_tables()[0]
    old = " ".join(x for x in to_latex(t, layout=TexLayout("inline")).splitlines() if not x.startswith("%"))
    body = (f"\\setbox0\\hbox{{{old}}}\\typeout{{NATURAL \\the\\wd0}}"
            "\\typeout{LINE \\the\\linewidth}\\mbox{}")
    log = _compile(tmp_path, body, "lncs")
    natural = float(re.search(r"NATURAL ([\d.]+)pt", log).group(1))
    line = float(re.search(r"LINE ([\d.]+)pt", log).group(1))
    before = 10.0 * line / natural
    after = tex_fits([t], "auto", "lncs")[t.key + "_published"].layout.points
    assert before < 8.0 <= after


# ----------------------------------------------------------------------------- HTML
class _Rows(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tables: dict[str, list[tuple[str, list[str]]]] = {}
        self._table: str | None = None
        self._row: list | None = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "table":
            self._table = a.get("id") or ""
            self.tables[self._table] = []
        elif tag == "tr" and self._table is not None:
            self._row = [a.get("class") or "", []]
        elif tag in ("th", "td") and self._row is not None:
            self._row[1].append("")

    def handle_data(self, data):
        if self._row is not None and self._row[1]:
            self._row[1][-1] += data

    def handle_endtag(self, tag):
        if tag == "tr" and self._row is not None and self._table is not None:
            self.tables[self._table].append((self._row[0], self._row[1]))
            self._row = None
        elif tag == "table":
            self._table = None


def test_html_ranking_distributions_pinned_gt_and_messages_once(out):
    html = (out / "report.html").read_text(encoding="utf-8")
    p = _Rows()
    p.feed(html)
    table1 = p.tables["table1"]
    assert table1[1][0] == "pinned" and table1[1][1][0] == "GT"  # [0] is the header row
    ranking = p.tables["ranking-table"]
    head = ranking[0][1]
    assert head[0] == "Method" and head[-1] == "Mean rank" and "Temporal Flickering ≈GT" in head
    assert {r[1][0] for r in ranking[1:]} == {"interp", "noisy"}  # GT is the reference, not ranked
    assert any("range" in c for r in ranking[1:] for c in r[1]) and "kept" in html
    assert "Mean rank (rows sorted by it): the mean of the per-metric ranks" in html
    svgs = re.findall(r'<svg class="dist".*?</svg>', html, re.S)
    res = load_results(out)
    per_case = res.per_case[~res.per_case.case_id.isin(["(all)", "(profile)"])]
    assert len(svgs) >= 2  # temporal flickering, fake_mae, the segmentation columns
    flicker = next(s for s in svgs if "Temporal Flickering" in s)
    n = len(per_case[per_case.metric == "temporal_flickering"])
    assert flicker.count("<circle") == n and "GT median" in flicker
    text = _text(html)
    before, problems = text.split("Metrics not computed (4)")
    assert "kid_clip" not in before and "kid_clip" in problems  # the not-computed list: once, in Problems
    assert text.count("Per-case metrics: mean over cases") == 1  # a note shared by two tables: once
    assert re.search(r"4 metrics not computed in this run: see\s+Problems", text)


@pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed")
def test_sorting_keeps_gt_on_top_in_chromium(out, tmp_path):
    page = tmp_path / "r.html"
    click = """<script>
    document.querySelectorAll('#table1 thead th')[1].click();
    document.querySelectorAll('#table1 thead th')[1].click();
    var pre=document.createElement('pre'); pre.id='order';
    pre.textContent=Array.prototype.map.call(document.querySelectorAll('#table1 tbody tr'),
      function(r){return r.cells[0].textContent;}).join('|');
    document.body.appendChild(pre);
    </script>"""
    page.write_text((out / "report.html").read_text(encoding="utf-8").replace("</body>", click + "</body>"),
                    encoding="utf-8")
    r = subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=3000",
                        f"--user-data-dir={tmp_path / 'profile'}", "--dump-dom", page.as_uri()],
                       capture_output=True, text=True, encoding="utf-8", errors="replace", timeout=120)
    order = re.search(r'<pre id="order">(.*?)</pre>', r.stdout).group(1).split("|")
    assert order[0] == "GT" and sorted(order[1:]) == ["interp", "noisy"]


# ----------------------------------------------------------------------------- leaderboard
def _with_protocol(src: Path, dst: Path, metric: str, protocol: str, reference: str | None = None) -> Path:
    shutil.copytree(src, dst)
    doc = json.loads((dst / "results.json").read_text(encoding="utf-8"))
    for r in doc["rows"]:
        if r["metric"] == metric:
            r["protocol"] = protocol
    if reference is not None:
        doc["run"]["reference_sha256"] = reference
    (dst / "results.json").write_text(json.dumps(doc), encoding="utf-8")
    return dst


def test_board_same_and_different_protocols(out, tmp_path):
    from typer.testing import CliRunner

    from reports.board import build_board, load_run
    from trace_bench.cli import app

    same = tmp_path / "ckpt2"
    shutil.copytree(out, same)
    b = build_board([load_run(f"ckpt1={out}"), load_run(same)])
    keys = b.table.keys
    assert keys.count("fake_mae") == 1  # same protocol, same reference: one column
    assert [x.split(":")[0] for x in b.refusals] == ["FPS", "Train/Infer VRAM"]  # CPU and GPU: never one column
    assert all("differ in devices;" in x for x in b.refusals)
    rows = [r.shown for r in b.table.rows]
    assert rows[0].startswith("GT (reference of") and sum(r.startswith("GT") for r in rows) == 1
    assert {"ckpt1 / interp", "ckpt2 / noisy"} <= set(rows)
    other = _with_protocol(out, tmp_path / "paper", "fake_mae", "fake-v2:other-window")
    b = build_board([load_run(out), load_run(other)])
    assert "fake_mae|A" in b.table.keys and "fake_mae|B" in b.table.keys and "fake_mae" not in b.table.keys
    split = [x for x in b.refusals if "protocol ids" in x]
    assert len(split) == 1 and "fake-v2:other-window" in split[0]
    a_col = next(c for c in b.columns if c.key == "fake_mae|A")
    assert a_col.runs == ["o"]
    site = tmp_path / "site"
    r = CliRunner().invoke(app, ["board", str(out), f"other={other}", "--out", str(site)])
    assert r.exit_code == 0, r.output
    html = (site / "index.html").read_text(encoding="utf-8")
    assert 'class="board sortable"' in html and "Metrics split into several columns" in html
    link = re.findall(r'href="([^"]+report\.html)"', html)
    assert link and all((site / x).resolve().is_file() for x in link) and not re.search(r'src=["\'](?!data:)', html)
    r = CliRunner().invoke(app, ["board", str(tmp_path / "nothing"), "--out", str(site)])
    assert r.exit_code == 2 and "no results.json" in r.output and len(r.output.strip().splitlines()) == 1


# ----------------------------------------------------------------------------- reader study
@pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed")
def test_study_packet_keys_wheel_size_and_layout_in_chromium(tmp_path):
    """Keyboard scores and navigation, wheel down = next slice (as the report viewer), the rater's image
    size, and the images beside the questions."""
    import numpy as np

    from trace_bench.study.criteria import paper_criteria
    from trace_bench.study.packet import WINDOWS, encode_item
    from trace_bench.study.viewer_html import render_packet

    rng = np.random.default_rng(0)
    items = [encode_item(f"V00{i}", rng.uniform(-1000, 400, (12, 40, 48)).astype(np.float32), (2.0, 0.8, 0.8))
             for i in (1, 2)]
    html = render_packet(rater="R1", key_sha256="0" * 64, criteria=paper_criteria(), items=items, windows=WINDOWS)
    probe = """<script>
    setTimeout(function () {
      function key(k) { document.dispatchEvent(new KeyboardEvent('keydown', {key: k, bubbles: true})); }
      var sec = document.querySelector('section.study-item:not([hidden])'), s = sec.querySelector('.zslider');
      var z0 = +s.value;
      key('7'); key('0');
      var z1 = (key('ArrowDown'), +s.value);
      sec.querySelector('canvas.axial').dispatchEvent(
        new WheelEvent('wheel', {deltaY: 100, bubbles: true, cancelable: true}));
      var z2 = +s.value;
      var sel = document.getElementById('size'); sel.value = '640'; sel.dispatchEvent(new Event('change'));
      var views = sec.querySelector('.views'), q = sec.querySelector('.questions');
      var side = views.getBoundingClientRect().right <= q.getBoundingClientRect().left;
      var checked = Array.prototype.map.call(sec.querySelectorAll('fieldset.criterion'), function (f) {
        var c = f.querySelector('input:checked'); return c ? c.value : ''; }).slice(0, 3).join(',');
      key('ArrowRight');
      var shown = document.querySelector('section.study-item:not([hidden])').dataset.item;
      var pre = document.createElement('pre'); pre.id = 'probe';
      pre.textContent = [z1 - z0, z2 - z1, checked, shown, side, localStorage.getItem(
        'trace-bench-study:' + '0'.repeat(64) + ':R1:size')].join('|');
      document.body.appendChild(pre);
    }, 500);
    </script>"""
    page = tmp_path / "p.html"
    page.write_text(html.replace("</body>", probe + "</body>"), encoding="utf-8")
    r = subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--window-size=1400,900",
                        "--virtual-time-budget=5000", f"--user-data-dir={tmp_path / 'profile'}", "--dump-dom",
                        page.as_uri()], capture_output=True, text=True, encoding="utf-8", errors="replace", timeout=120)
    m = re.search(r'<pre id="probe">(.*?)</pre>', r.stdout)
    assert m, r.stdout[-2000:]
    d_key, d_wheel, checked, shown, side, size = m.group(1).split("|")
    assert d_key == "1" and d_wheel == "1"  # down arrow and wheel down: the next slice
    assert checked == "7,10,"  # "7" scored the first question, "0" (= 10) the second, the third is open
    assert shown == items[1].item_id and side == "true" and size == "640"
