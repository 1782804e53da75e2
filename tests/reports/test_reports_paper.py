"""Reports for papers and reviewers: \\input-able LaTeX tabulars, report.tex (compiled when pdflatex
exists), the HTML (sortable tables, per-case table, slice viewer, protocol legend, links, no literal
backticks; checked in headless chromium when it exists), results.json, honest plot axes,
``trace-bench report --plot-case``."""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import pytest

from trace_bench.config import RunConfig
from trace_bench.results import load_results
from trace_bench.run import run

from helpers.fake_metrics import make_small_dataset, register_fakes, unregister_fakes


@pytest.fixture(scope="module")
def out(tmp_path_factory):
    data = make_small_dataset(tmp_path_factory.mktemp("paper-data"))
    register_fakes()
    try:
        r = run(RunConfig(out=str(tmp_path_factory.mktemp("paper") / "o"), reference=str(data / "reference"),
                          methods={"interp": str(data / "interp"), "noisy": str(data / "noisy")},
                          metrics=["weight-free", "fake_mae", "fake_mean"], frame_size=32, bootstrap=50,
                          bootstrap_distribution=10, progress=False))
    finally:
        unregister_fakes()
    return r.out


def _strip_tex_comments(tex: str) -> str:
    return "\n".join(re.sub(r"(?<!\\)%.*", "", line) for line in tex.splitlines())


def _balanced(tex: str) -> bool:
    depth = 0
    for i, ch in enumerate(tex):
        if ch in "{}" and i and tex[i - 1] == "\\":
            continue
        depth += {"{": 1, "}": -1}.get(ch, 0)
        if depth < 0:
            return False
    return depth == 0


def test_latex_tables_are_inputable_tabulars(out):
    for key in ("table1", "table2"):
        tex = (out / "tables" / f"{key}.tex").read_text(encoding="utf-8")
        body = _strip_tex_comments(tex)
        assert _balanced(body), key
        assert r"\begin{tabular}" in body and r"\end{tabular}" in body
        assert body.index(r"\toprule") < body.index(r"\midrule") < body.index(r"\bottomrule")
        assert r"\begin{table}" not in body and r"\caption" not in body  # no float, no double numbering
        assert r"\resizebox" not in body and r"\scriptsize" not in body  # sized to fit, intervals >= 8 pt
        assert "$\\uparrow$" in body or "$\\downarrow$" in body or "$\\approx$GT" in body
        assert tex.splitlines()[1].startswith("% layout ") and "fits" in tex.splitlines()[1]
        # every top-level tabular (a split table has two): rows have as many cells as its column spec
        for part in re.findall(r"^\\begin\{tabular\}.*?^\\end\{tabular\}", body, re.S | re.M):
            spec = re.match(r"\\begin\{tabular\}\{((?:[^{}]|\{[^{}]*\})*)\}", part).group(1)
            n_cols = len(re.findall(r"[lrcS]", re.sub(r"@\{[^}]*\}", "", spec)))
            for line in part.splitlines()[1:]:
                if line.rstrip().endswith(r"\\"):
                    assert line.count(" & ") == n_cols - 1, line
    t1 = (out / "tables" / "table1.tex").read_text(encoding="utf-8")
    # percentages: unit in the header, plain numbers with one number of decimals in the cells
    assert r"(\%) $\approx$GT" in t1 and "Temporal" in t1
    row = next(line for line in t1.splitlines() if line.startswith("interp &"))
    cell = row.split(" & ")[1]
    assert "%" not in cell and re.search(r"(\\textbf\{)?\d+\.\d\d\b", cell)
    rep = (out / "report.tex").read_text(encoding="utf-8")
    assert r"\input{tables/table1}" in rep and r"\input{tables/table2}" in rep and r"\resizebox" not in rep
    assert r"\caption{VBench dimensions" in rep and "Table 1:" not in rep.split(r"\caption{", 1)[1].split("}")[0]
    assert _balanced(_strip_tex_comments(rep))


def test_latex_wrapper_option(out):
    from reports.tables import build_tables, to_latex

    t1 = next(t for t in build_tables(load_results(out)) if t.key == "table1")
    plain = to_latex(t1, ci=False)
    assert "scriptsize" not in plain and r"\begin{table}" not in plain
    wrapped = to_latex(t1, caption="My caption", label="tab:mine", notes=True)
    assert wrapped.startswith(r"\begin{table}") and r"\caption{My caption}" in wrapped and r"\label{tab:mine}" in wrapped
    assert _balanced(_strip_tex_comments(wrapped))


@pytest.mark.skipif(shutil.which("pdflatex") is None, reason="pdflatex not installed")
def test_report_tex_compiles(out, tmp_path):
    work = tmp_path / "tex"
    work.mkdir()
    shutil.copy(out / "report.tex", work / "report.tex")
    shutil.copytree(out / "tables", work / "tables")
    r = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "report.tex"], cwd=work,
                       capture_output=True, text=True, encoding="utf-8", errors="replace", timeout=120)
    assert r.returncode == 0, r.stdout[-2000:]
    assert (work / "report.pdf").stat().st_size > 1000


def test_html_sortable_viewer_links_legend(out):
    html = (out / "report.html").read_text(encoding="utf-8")
    assert 'class="ours sortable" id="table1"' in html and "table.sortable" in html
    assert 'id="per-case-table"' in html
    data = json.loads(re.search(r'<script type="application/json" id="viewer-data">(.*?)</script>', html, re.S)
                      .group(1).replace("<\\/", "</"))
    assert data and data[0]["volumes"] and data[0]["volumes"][0]["img"].startswith("data:image/")
    assert {v["name"] for v in data[0]["volumes"]} >= {"Reference (GT)", "interp", "noisy"}
    assert 'href="summary.csv"' in html and 'href="per_case.csv"' in html and 'href="results.json"' in html
    assert "ct-frames-v1:32px:hu[-1000,1000]:bilinear-aa:round-half-up" in html
    assert "resized to 32 x 32 px" in html and "HU clipped to [-1000, 1000]" in html
    text = re.sub(r"<script.*?</script>|<style.*?</style>", "", html, flags=re.S)
    assert "`" not in text
    assert not re.search(r"""(src)=["'](?!data:)""", html)  # nothing loaded from elsewhere
    assert not re.search(r"""href=["'](https?:|//)""", html)
    assert len(html) < 5_000_000


def test_protocol_legend_decodes_parts():
    from reports.protocols import describe_protocol

    parts = describe_protocol("ct-frames-v1:256px:hu[-1000,1000]:bilinear-aa:round-half-up|inception-fid:"
                              "inc299-nvbilinear-tf|slices=all|ddof=1|opt:slices=40")
    assert [p for p, _ in parts][0].startswith("ct-frames-v1")
    text = " ".join(d for _, d in parts)
    assert "256 x 256" in text and "rounded half up" in text and "Inception" in text and "every axial slice" in text
    assert "unbiased" in text and "slices=40" in text
    assert describe_protocol("mystery-v9")[0][1].startswith("not decoded")


def test_skipped_reasons_grouped():
    from reports.skipped import skipped_line, skipped_rows

    skipped = {
        "a": "pretrained weights 'w1' (x.pt) are not installed (looked in: /x). Fix: `trace-bench weights fetch w1`",
        "b": "pretrained weights 'w1' (x.pt) are not installed (looked in: /x). Fix: `trace-bench weights fetch w1`",
        "c": "pretrained weights 'w2' (y.pt) are not installed (looked in: /y).",
        "d": "not in the demo's fast CPU set; run `trace-bench run --metrics d` to add it",
        "e": "the e backbone failed to load: e.so missing"}
    rows = skipped_rows(skipped)
    assert len(rows) == 3
    assert rows[0][1] == "a, b, c" and "w1: a, b" in rows[0][2] and "w2: c" in rows[0][2]
    assert rows[1][1] == "d" and "--metrics" in rows[1][0]
    assert "<metric>" in rows[2][0]
    line = " ".join(skipped_line(skipped, width=80))
    assert line.startswith("5 metrics not computed: 3 need weights (w1: 2, w2: 1); 1 is left out as slow")
    assert all(len(x) <= 80 for x in skipped_line(skipped, width=80))


def test_results_json_schema(out):
    from reports.leaderboard import SCHEMA_ID, validate

    doc = json.loads((out / "results.json").read_text(encoding="utf-8"))
    assert doc["schema"] == SCHEMA_ID and not validate(doc)
    assert doc["run"]["methods"][0] == "GT" and doc["run"]["toolkit_version"]
    assert isinstance(doc["run"]["n_errors"], int) and "frame_size" in doc["run"]["config"]
    row = next(r for r in doc["rows"] if r["method"] == "interp" and r["metric"] == "temporal_flickering")
    assert row["unit"] == "fraction" and row["higher_is_better"] is True and row["table"] == "table1"
    assert row["ci_method"].startswith("bootstrap") and row["protocol"].startswith("ct-frames-v1")
    assert json.loads((out / "results.schema.json").read_text(encoding="utf-8"))["$id"] == SCHEMA_ID


def test_bar_panels_start_at_zero_and_follow_table_order(out):
    import matplotlib.pyplot as plt

    from reports.plots import metric_figure
    from reports.tables import build_tables

    res = load_results(out)
    fig, panels = metric_figure(res)
    try:
        table_order = [c for t in build_tables(res) if t.key != "table1b" for c in t.keys
                       if c not in ("fps", "vram")]
        assert [m for m, _, _ in panels] == table_order
        styles = {m: s for m, s, _ in panels}
        assert styles["temporal_flickering"] == "dot" and styles["fake_mae"] == "bar"
        for m, style, ax in panels:
            lo, hi = ax.get_ylim()
            if style == "bar":
                assert lo <= 0 <= hi, m
            else:
                assert "axis not from 0" in ax.get_ylabel()
    finally:
        plt.close(fig)


def test_report_plot_case_cli(out, tmp_path):
    from typer.testing import CliRunner

    from trace_bench.cli import app

    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    meta = json.loads((copy / "metrics.json").read_text(encoding="utf-8"))
    cases = sorted(set(load_results(copy).per_case.case_id) - {"(all)", "(profile)"})
    other = next(c for c in cases if c != meta["plot_case"])
    r = CliRunner().invoke(app, ["report", str(copy), "--plot-case", other])
    assert r.exit_code == 0, r.output
    assert (copy / "plots" / f"montage_{other}.png").is_file()
    html = (copy / "report.html").read_text(encoding="utf-8")
    assert f"Case {other}" in html
    r = CliRunner().invoke(app, ["report", str(copy), "--plot-case", "no-such-case"])
    assert r.exit_code == 2
    assert "no-such-case" in r.output and len(r.output.strip().splitlines()) == 1


def test_plot_case_without_inputs_uses_mid_planes_or_refuses(out, tmp_path):
    """Without the inputs: the run's plot case scrolls from the arrays the run stored (plot-v2); a run that
    stored mid-planes only (before plot-v2, simulated by dropping the stack arrays) shows those."""
    import numpy as np

    from reports import PlotCaseError, render_report

    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    meta = json.loads((copy / "metrics.json").read_text(encoding="utf-8"))
    render_report(copy, plots=False, published=False, plot_cases=[meta["plot_case"]])
    html = (copy / "report.html").read_text(encoding="utf-8")
    assert "only the stored mid-planes are shown" not in html and '"mode":"stack"' in html
    for p in copy.glob("cases/*/*/_plot.npz"):
        with np.load(p) as z:
            arrays = {k: z[k] for k in z.files if not k.startswith("stack")}
        np.savez(p, **arrays)
    render_report(copy, plots=False, published=False, plot_cases=[meta["plot_case"]])
    html = (copy / "report.html").read_text(encoding="utf-8")
    assert "only the stored mid-planes are shown" in html and '"mode":"planes"' in html
    with pytest.raises(PlotCaseError, match="'other'"):
        render_report(copy, plots=False, published=False, plot_cases=["other"])


@pytest.mark.skipif(shutil.which("chromium") is None, reason="chromium not installed")
def test_html_in_headless_chromium(out, tmp_path):
    from typer.testing import CliRunner

    from trace_bench.cli import app

    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    assert CliRunner().invoke(app, ["report", str(copy), "--no-plots"]).exit_code == 0  # inputs readable: a stack
    r = subprocess.run(["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=3000",
                        "--dump-dom", (copy / "report.html").as_uri()], capture_output=True, text=True, encoding="utf-8", errors="replace", timeout=120)
    dom = r.stdout
    assert r.returncode == 0 and "</html>" in dom
    assert dom.count("<canvas") >= 3  # the viewer drew one canvas per volume
    assert re.search(r"z = [\d.]+ mm \(slice \d+ of \d+\)", dom)  # captions written by the script
    assert 'title="click to sort"' in dom
    body = re.sub(r"<script.*?</script>|<style.*?</style>", "", dom, flags=re.S)
    assert "`" not in body
