"""User strings are data (issue 27): hostile case ids, method names, labels and messages fed through
every writer -- report.md / .tex / .html, the run's CSVs and table CSVs, the reader-study packet and
tables, the memorization audit -- must keep the document's structure: HTML parses to the same DOM as
with plain names, Markdown renders to the same table structure, LaTeX compiles (where pdflatex is
installed), no CSV cell starts with a formula character, and the run's own CSVs (per_case, summary,
errors, warnings) and the study's answers read back to the same strings.
"""

from __future__ import annotations

import csv
import io
import json
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

from trace_bench.results.escape import (
    code,
    csv_cell,
    csv_value,
    html_attr,
    html_text,
    json_script,
    latex_text,
    literal,
    markdown_cell,
    markdown_code,
    markdown_text,
    plot_text,
    prose_html,
    prose_latex,
    prose_markdown,
    prose_spans,
    visible_controls,
)
from trace_bench.results.files import csv_text, write_csv

CJK = "中文病例标识" * 13 + "中文"  # 80 characters
HOSTILE = ['=HYPERLINK("http://x")', "+1", "-2+3", "@SUM(A1)", "<!--<script>", "</script><script>alert(1)</script>",
           "a & b_c%d#e$f~g^h\\i{j}", "`--`", "nul\x00byte", CJK, "TRACE", "\u0422RACE", "line\nbreak",
           "$x^2$ and $y$", "[1] *start", "\tTAB", "'=quoted", "-0.5"]
FORMULA = ("=", "+", "-", "@", "\t", "\r")
PDFLATEX = shutil.which("pdflatex")
pytestmark = pytest.mark.filterwarnings("ignore:Glyph .* missing from font", "ignore:Tight layout not applied")


def _md():
    from markdown_it import MarkdownIt

    return MarkdownIt("commonmark").enable("table").enable("strikethrough")


class _Dom(HTMLParser):
    """Tag structure (tag, attribute names) and text of a document; unbalanced tags are recorded."""

    VOID = {"br", "img", "meta", "input", "hr", "link"}

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, tuple[str, ...]]] = []
        self.stack: list[str] = []
        self.errors: list[str] = []
        self.text: list[str] = []
        self.scripts: list[str] = []
        self._in: str | None = None

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, tuple(sorted(k for k, _ in attrs))))
        if tag not in self.VOID:
            self.stack.append(tag)
        self._in = tag

    def handle_startendtag(self, tag, attrs):
        self.handle_starttag(tag, attrs)
        if tag not in self.VOID:
            self.handle_endtag(tag)

    def handle_endtag(self, tag):
        self.tags.append(("/" + tag, ()))
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes {self.stack[-2:]}")
        else:
            self.stack.pop()
        self._in = None

    def handle_data(self, data):
        if self._in == "script":
            self.scripts.append(data)
        else:
            self.text.append(data)

    def handle_comment(self, data):
        self.errors.append(f"comment <!--{data[:40]}")


def _script_safe(d: _Dom) -> None:
    """Browsers (unlike html.parser) switch to the "script data escaped" state at ``<!--`` inside a
    script and then ignore ``</script>`` after ``<script``: neither may occur in script data."""
    for s in d.scripts:
        assert "<!--" not in s and "</script" not in s.lower() and "<script" not in s.lower(), s[:80]


def _dom(html: str) -> _Dom:
    p = _Dom()
    p.feed(html)
    p.close()
    assert not p.errors and not p.stack, (p.errors, p.stack)
    return p


# ----------------------------------------------------------------------------- the escape functions
@pytest.mark.parametrize("s", HOSTILE)
def test_html_text_and_attributes(s):
    d = _dom(f'<p title="{html_attr(s)}">{html_text(s)}</p>')
    assert d.tags == [("p", ("title",)), ("/p", ())]
    assert "".join(d.text) == visible_controls(s)


@pytest.mark.parametrize("s", HOSTILE)
def test_json_in_script(s):
    data = json_script({"case": s, "list": [s, s]})
    assert not re.search("[<>&\u2028\u2029]", data)
    assert json.loads(data) == {"case": s, "list": [s, s]}
    d = _dom(f'<script type="application/json" id="x">{data}</script><p>after</p>')
    assert [t for t, _ in d.tags] == ["script", "/script", "p", "/p"] and json.loads(d.scripts[0])["case"] == s


def test_viewer_data_with_a_comment_opener_case_id_does_not_swallow_the_page():
    """The bug of issue 27: a case id ``<!--<script>`` in the viewer's JSON hid the rest of the page."""
    from reports.html_report import viewer_section

    html = "\n".join(viewer_section([{"case": "<!--<script>", "mode": "planes", "volumes": []}], []))
    html += "<script>var later = 1;</script>"
    d = _dom(html)
    assert [t for t, _ in d.tags].count("script") == 2 and d.scripts[-1] == "var later = 1;"
    _script_safe(d)
    data = json.loads(re.search(r'id="viewer-data">(.*?)</script>', html, re.S).group(1))
    assert data[0]["case"] == "<!--<script>"


@pytest.mark.parametrize("s", HOSTILE)
def test_markdown_renders_as_the_string(s):
    md = _md()
    want = visible_controls(s, keep_whitespace=False)
    html = md.render(f"x {markdown_text(s)} y\n")
    assert " ".join(_text(html).split()) == " ".join(f"x {want} y".split())
    table = md.render(f"| a | b |\n| --- | --- |\n| {markdown_cell(s)} | {markdown_code(s, cell=True)} |\n")
    d = _dom(table)
    assert [t for t, _ in d.tags].count("td") == 2
    assert _cells(table) == [want.strip(), want]  # Markdown trims a cell's outer spaces; a code span keeps them


def _text(html: str) -> str:
    d = _Dom()
    d.feed(html)
    return "".join(d.text).strip()


def _cells(html: str) -> list[str]:
    import html as h

    return [h.unescape(re.sub(r"<[^>]+>", "", c)) for c in re.findall(r"<td>(.*?)</td>", html, re.S)]


@pytest.mark.parametrize("s", HOSTILE)
def test_csv_cells_are_formula_safe_and_read_back(s):
    c = csv_cell(s)
    assert not c.startswith(FORMULA) or _is_number(c)
    assert csv_value(c) == s
    text = csv_text(["name", "value"], [[s, -0.5]])
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[1] == [c, "-0.5"]  # negative numbers stay numbers


def _is_number(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


def test_csv_round_trip_is_exact_over_every_short_string():
    import itertools

    alphabet = ["'", "=", "-", "+", "@", "\t", "\r", "a", "1", ".", "e"]
    for k in range(5):
        for t in itertools.product(alphabet, repeat=k):
            s = "".join(t)
            c = csv_cell(s)
            assert csv_value(c) == s, (s, c)
            assert not c.startswith(FORMULA) or _is_number(c), (s, c)


def test_prose_keeps_code_spans_and_literal_user_strings():
    for s in HOSTILE:
        text = f"case {literal(s)} needs {code(s)}; run `trace-bench report`"
        assert prose_spans(text) == [(False, f"case {s} needs "), (True, s), (False, "; run "),
                                     (True, "trace-bench report")]
        d = _dom(f"<p>{prose_html(text)}</p>")
        assert [t for t, _ in d.tags] == ["p", "code", "/code", "code", "/code", "/p"]
        assert _cells(_md().render(f"| a |\n| --- |\n| {prose_markdown(text, cell=True)} |\n"))[0] == \
            visible_controls(f"case {s} needs {s}; run trace-bench report", keep_whitespace=False)
        assert prose_latex(text).count(r"\texttt{") == 2


def test_latex_text_escapes_every_special():
    assert latex_text("a & b_c%d#e$f~g^h\\i{j}") == (r"a \& b\_c\%d\#e\$f\textasciitilde{}g\textasciicircum{}h"
                                                      r"\textbackslash{}i\{j\}")
    assert latex_text("`--`") == r"\textasciigrave{}-{}-\textasciigrave{}"
    assert latex_text("[1]").startswith("{}[") and latex_text("*x").startswith("{}*")
    assert latex_text("\u0422RACE") == "{[}U+0422]RACE" and latex_text("x\x00") == "x{[}U+0000]"
    assert latex_text("a\nb") == "a b" and latex_text("Fréchet ↑ –") == r"Fréchet $\uparrow$ --"


def test_plot_text_is_not_mathtext():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    try:
        for s in HOSTILE + ["_hidden"]:
            ax.plot([0, 1], [0, 1], label=plot_text(s))
            ax.set_title(plot_text(s))
            fig.canvas.draw()  # mathtext would fail on "$f~g^h\i{j}" style input
        assert len(ax.get_legend_handles_labels()[1]) == len(HOSTILE) + 1  # "_hidden" is not dropped
    finally:
        plt.close(fig)


# ----------------------------------------------------------------------------- a run's output folder
def _fake_run(out: Path, methods: list[str], cases: list[str], label: str, word: str) -> None:
    """An output folder as a run leaves it (CSVs through write_csv), for ``methods`` x ``cases``; ``word``
    is embedded in messages, notes and folders."""
    rng = np.random.default_rng(0)
    out.mkdir(parents=True)
    proto = "ct-frames-v1:64px:hu[-1000,1000]:bilinear-aa:round-half-up"
    per_case, summary, errors, warns = [], [], [], []
    for m in ["GT"] + methods:  # evenly spread values: no per-case outlier (their marks would differ by row order)
        vals = np.stack([rng.permutation(np.linspace(0.4, 0.6, len(cases))) for _ in range(2)], axis=1)
        for c, (a, b) in zip(cases, vals):
            per_case += [(m, c, "fake_mae", float(a), proto), (m, c, "dice", float(b), proto),
                         (m, c, "dice[lungs]", float(b) / 2, proto)]
        for metric, v in (("fake_mae", vals[:, 0]), ("dice", vals[:, 1]), ("dice[lungs]", vals[:, 1] / 2)):
            summary.append((m, metric, float(v.mean()), float(v.min()), float(v.max()), len(cases),
                            "bootstrap-percentile:100", 100, f"only {len(cases)} cases" if m != "GT" else ""))
        per_case.append((m, "(all)", "fake_mean", 1.5, proto))
        summary.append((m, "fake_mean", 1.5, 1.0, 2.0, len(cases), "jackknife-2sample-t:4+4", 8, ""))
    for m, c in zip(methods, cases):
        errors.append((m, c, "read", f"cannot read {c!r} of {m}: {word}"))
        warns.append((m, c, "geometry", f"spacing differs for {c}"))
    from trace_bench.results import (
        ERROR_COLUMNS,
        PER_CASE_COLUMNS,
        SUMMARY_COLUMNS,
        WARNING_COLUMNS,
    )

    write_csv(out / "per_case.csv", PER_CASE_COLUMNS, per_case)
    write_csv(out / "summary.csv", SUMMARY_COLUMNS, summary)
    write_csv(out / "errors.csv", ERROR_COLUMNS, errors)
    write_csv(out / "warnings.csv", WARNING_COLUMNS, warns)
    col = {"higher_is_better": False, "table": "table1", "kind": "case", "protocol": proto, "spec": "fake_mae",
           "label": label, "unit": "", "digits": 3, "rank": 50.0, "hidden": False}
    meta = {"columns": {"fake_mae": col,
                        "dice": {**col, "higher_is_better": True, "label": "DC", "unit": "fraction",
                                 "spec": "segmentation", "rank": 10.0},
                        "fake_mean": {**col, "table": "table2", "kind": "distribution", "label": "Fake mean"}},
            "methods": ["GT"] + methods, "plot_case": cases[0],
            "skipped": {"clip_score": f"needs weights ({literal(word)}): `trace-bench weights fetch clip`"},
            "unscored_methods": [methods[0]]}
    (out / "metrics.json").write_text(json.dumps(meta), encoding="utf-8")
    prov = {"toolkit": {"version": "0.1.0", "git_commit": None}, "device": {"requested": "cpu"},
            "input_folders": {"GT": f"/data/{word}",
                              **{m: {"folder": f"/data/{m}", "adapter": "nifti"} for m in methods}},
            "notes": [f"case {literal(word)} was read with a warning (see `warnings.csv`)"],
            "config": {"segmenter": "threshold", "classes": 3}, "timings_s": {"plan_s": 1.0}}
    (out / "provenance.json").write_text(json.dumps(prov), encoding="utf-8")


def _stacks(methods: list[str], n: int = 6) -> dict[str, dict]:
    """What trace_bench.report_inputs reads again from the inputs for the viewer and the case figures."""
    from trace_bench.report_inputs import case_arrays

    rng = np.random.default_rng(1)
    return {m: case_arrays(rng.uniform(-1000, 500, (n, 24, 24)).astype(np.float32), (2.0, 1.0, 1.0),
                           labels=(rng.uniform(size=(n, 24, 24)) > 0.5).astype(np.int16), frame_size=16)
            for m in ["GT"] + methods}


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    """The same run twice: hostile method names / case ids / labels, and plain ones in the same roles."""
    from reports import render_report

    out = {}
    n = len(HOSTILE)
    for kind, methods, cases, label, word in (
            ("hostile", HOSTILE, HOSTILE[::-1], "a & b_c%d#e$f~g^h\\i{j}", "</script><!--`--`"),
            ("plain", [f"m{i}" for i in range(n)], [f"c{sorted(HOSTILE).index(c):02d}" for c in HOSTILE[::-1]],
             "plain label", "word")):
        o = tmp_path_factory.mktemp(kind) / "out"
        _fake_run(o, methods, cases, label, word)
        _audit(o, methods, cases, word)
        render_report(o, plots=True, published=False, plot_cases=[cases[0]],
                      viewer_stacks={cases[0]: _stacks(methods[:3])})
        out[kind] = o
    return out


def _audit(o: Path, methods: list[str], cases: list[str], word: str) -> None:
    from trace_bench.audit.report import write_outputs

    def row(m, c, flagged):
        return {"method": m, "case_id": c, "nn_train_case": c, "nn_distance": 0.01, "threshold": 0.05,
                "flagged": flagged, "authentic": not flagged, "best_slice_ncc": 0.9, "gen_slice": 3,
                "matched_train_case": c, "matched_train_slice": 6, "slice_threshold": 0.8, "n_slices": 10,
                "n_slices_flagged": int(flagged), "slice_match_case": c, "slice_offset": 3.0, "slice_offset_mm": 15.0,
                "offset_consistency": 0.9, "path": f"/x/{c}"}

    rows = [row(m, c, i % 2 == 0) for i, (m, c) in enumerate(zip(methods, cases))]
    summary = [{"method": m, "n": 1, "n_flagged": 1, "near_copy_rate_volume": 0.5, "n_slices": 10,
                "n_slices_flagged": 1, "near_copy_rate_slice": 0.1, "C_T": None, "C_T_note": f"too few cells ({word})",
                "authpct": 50.0, "median_nn_distance": 0.02, "max_slice_ncc": 0.9} for m in methods]
    img = np.linspace(0, 1, 64, dtype=np.float32).reshape(8, 8)
    pairs = {methods[0]: [{"row": rows[0], "gen": img, "train": img}]}
    meta = {"feature": {"volume": "grid16x32x32@1"}, "train": {"n_volumes": 6, "folder": f"/t/{word}"},
            "heldout": {"n_volumes": 3, "folder": f"/h/{word}", "volume_threshold": 0.05, "slice_threshold": 0.8,
                        "near_copy_rate_volume": 0.0, "near_copy_rate_slice": 0.1, "authpct": 66.7,
                        "median_nn_distance": 0.03}}

    class _Cache:
        hits = misses = 0

    write_outputs(o, rows=rows, heldout_rows=[], summary=summary, problems=[], meta=meta, pairs=pairs, cache=_Cache())


def test_report_html_keeps_its_dom(rendered):
    a = _dom((rendered["hostile"] / "report.html").read_text(encoding="utf-8"))
    b = _dom((rendered["plain"] / "report.html").read_text(encoding="utf-8"))
    assert a.tags == b.tags
    text = "".join(a.text)
    for s in HOSTILE:
        assert visible_controls(s).replace("\n", " ") in text.replace("\n", " "), s
    _script_safe(a)
    viewer = json.loads(next(s for s in a.scripts if s.startswith("[")))
    assert viewer[0]["case"] == HOSTILE[::-1][0]
    assert a.scripts[-1].lstrip().startswith("document.querySelectorAll")  # the page's own script survived


def test_report_md_keeps_its_structure(rendered):
    a = _md().render((rendered["hostile"] / "report.md").read_text(encoding="utf-8"))
    b = _md().render((rendered["plain"] / "report.md").read_text(encoding="utf-8"))
    da, db = _dom(a), _dom(b)
    assert [t for t, _ in da.tags] == [t for t, _ in db.tags]
    cells = _cells(a)
    for s in HOSTILE:  # every method name is a row label of Table 1
        assert visible_controls(s, keep_whitespace=False).strip() in cells, s  # Markdown trims a cell


@pytest.mark.skipif(PDFLATEX is None, reason="pdflatex not installed")
def test_report_tex_compiles(rendered, tmp_path):
    work = tmp_path / "tex"
    work.mkdir()
    shutil.copy(rendered["hostile"] / "report.tex", work / "report.tex")
    shutil.copytree(rendered["hostile"] / "tables", work / "tables")
    _pdflatex(work, "report.tex")


def _pdflatex(work: Path, name: str) -> None:
    r = subprocess.run([PDFLATEX, "-interaction=nonstopmode", "-halt-on-error", name], cwd=work, capture_output=True,
                       text=True, encoding="utf-8", errors="replace", timeout=180)
    assert r.returncode == 0, r.stdout[-3000:]
    assert (work / name).with_suffix(".pdf").stat().st_size > 1000


@pytest.mark.skipif(PDFLATEX is None, reason="pdflatex not installed")
@pytest.mark.parametrize("fontenc", ["T1", None])
def test_table_tabulars_compile_in_a_paper(rendered, tmp_path, fontenc):
    """The tabulars \\input into a paper's own document, with or without T1 fonts."""
    tabs = sorted((rendered["hostile"] / "tables").glob("*.tex"))
    body = "\n".join(f"\\input{{{p.as_posix()}}}\\par" for p in tabs)
    doc = ("\\documentclass{article}\\usepackage{booktabs}" + (f"\\usepackage[{fontenc}]{{fontenc}}" if fontenc else "")
           + "\\usepackage{graphicx}\\begin{document}" + body + "\\end{document}\n")
    (tmp_path / "paper.tex").write_text(doc, encoding="utf-8")
    _pdflatex(tmp_path, "paper.tex")


def test_run_csvs_are_formula_safe_and_read_back(rendered):
    from trace_bench.results import load_results

    o = rendered["hostile"]
    for name in ("per_case.csv", "summary.csv", "errors.csv", "warnings.csv", "table1.csv", "table1b.csv",
                 "table2.csv", "audit/memorization.csv", "audit/memorization_summary.csv"):
        with open(o / name, newline="", encoding="utf-8") as fh:
            for row in csv.reader(fh):
                for cell in row:
                    assert not cell.startswith(FORMULA) or _is_number(cell), (name, cell)
    res = load_results(o)  # the contract: the run's CSVs read back to the very strings written
    assert set(res.per_case.method) == {"GT", *HOSTILE}
    assert set(res.per_case.case_id) == {*HOSTILE, "(all)"}
    assert set(res.errors.case_id) == set(HOSTILE[::-1][: len(HOSTILE)])
    assert all(e == f"cannot read {c!r} of {m}: </script><!--`--`" for m, c, e in
               zip(res.errors.method, res.errors.case_id, res.errors.error))
    with open(o / "table1.csv", newline="", encoding="utf-8") as fh:
        assert {csv_value(r["method"]) for r in csv.DictReader(fh)} == {"GT", *HOSTILE}


def test_console_summary_lets_no_control_character_reach_the_terminal(rendered):
    import unicodedata

    from reports.console import results_summary
    from trace_bench.results import load_results

    for kind in ("hostile", "plain"):
        lines = results_summary(load_results(rendered[kind]), width=100)
        assert all(len(x) <= 100 for x in lines)
        bad = [x for x in lines for ch in x if unicodedata.category(ch) in ("Cc", "Cf") and ch != "\u200b"]
        assert not bad, bad[:3]
    text = "\n".join(results_summary(load_results(rendered["hostile"]), width=100))
    assert "\u2400" in text and "=HYPERLINK(" in text  # NUL shown as its picture; names are kept (clipped to 18)


def test_leaderboard_keeps_its_dom(rendered, tmp_path):
    from reports.board import board_html, build_board, load_run

    a = _dom(board_html(build_board([load_run(rendered["hostile"])]), tmp_path))
    b = _dom(board_html(build_board([load_run(rendered["plain"])]), tmp_path))
    assert a.tags == b.tags
    text = "".join(a.text).replace("\n", " ")
    for s in HOSTILE:
        assert visible_controls(s).replace("\n", " ") in text, s
    _script_safe(a)


def test_audit_markdown_and_montage(rendered):
    md = (rendered["hostile"] / "audit" / "memorization.md").read_text(encoding="utf-8")
    plain = (rendered["plain"] / "audit" / "memorization.md").read_text(encoding="utf-8")
    a, b = _dom(_md().render(md)), _dom(_md().render(plain))
    assert [t for t, _ in a.tags] == [t for t, _ in b.tags]
    assert any(p.name.startswith("montage_") for p in (rendered["hostile"] / "audit").glob("*.png"))


# ----------------------------------------------------------------------------- reader study
def _study(tmp: Path, methods: list[str], labels: list[str]) -> tuple[Path, object]:
    import nibabel as nib

    from trace_bench.study.criteria import criteria_from_json
    from trace_bench.study.packet import Source, StudyPlan, make_study

    rng = np.random.default_rng(0)
    tmp.mkdir(parents=True, exist_ok=True)
    f = tmp / "vol.nii.gz"
    nib.save(nib.Nifti1Image(rng.uniform(-1000, 500, (16, 16, 4)).astype(np.float32), np.eye(4)), f)
    crit = criteria_from_json([
        {"id": "quality", "label": labels[0], "group": labels[1], "scale": [1, 3], "anchors": {"1": labels[2]}},
        {"id": "look", "label": labels[3], "choices": [labels[4], "plain choice"]}])
    items = {f"V{i:03d}": Source(m, f"c{i}", str(f), "nifti", False) for i, m in enumerate(methods)}
    plan = StudyPlan(items, {"R1": list(items), "R2": list(items)[::-1]}, crit, 0, {})
    d = tmp / "study"
    make_study(d, plan, size=16, slices=2)
    return d, plan


STUDY_METHODS = ["=HYPERLINK(\"http://x\")", "<!--<script>", "a & b_c%d#e$f~g^h\\i{j}", "`--`", CJK, "\u0422RACE"]
STUDY_LABELS = ["</script><script>alert(1)</script>", "<!--group", "a & b_c%d#e$f~g^h\\i{j}", "`--` $x$",
                "=cmd|' /C calc'!A0"]


@pytest.mark.parametrize("kind", ["hostile"])
def test_study_packet_tables_and_answers(tmp_path, kind):
    from trace_bench.study.packet import load_key
    from trace_bench.study.score import score_study

    d, plan = _study(tmp_path / "h", STUDY_METHODS, STUDY_LABELS)
    dp, _ = _study(tmp_path / "p", [f"m{i}" for i in range(len(STUDY_METHODS))], [f"label {i}" for i in range(5)])
    for rater in ("R1", "R2"):
        a = _dom((d / "packets" / f"{rater}.html").read_text(encoding="utf-8"))
        b = _dom((dp / "packets" / f"{rater}.html").read_text(encoding="utf-8"))
        assert a.tags == b.tags
        _script_safe(a)
        meta = json.loads(next(s for s in a.scripts if s.startswith("{")))
        assert [c["label"] for c in meta["criteria"]] == [STUDY_LABELS[0], STUDY_LABELS[3]]
    # answers as the packet exports them (cells through the same neutralisation), scored
    _, sha = load_key(d)
    files = []
    for rater, order in plan.orders.items():
        rows = [[rater, iid, "quality", str(1 + i % 3), "t", sha] for i, iid in enumerate(order)]
        rows += [[rater, iid, "look", STUDY_LABELS[4], "t", sha] for iid in order]
        p = tmp_path / f"answers-{rater}.csv"
        p.write_text(csv_text(["rater", "item_id", "criterion", "score", "timestamp", "key_sha256"], rows),
                     encoding="utf-8")
        assert "\n=cmd" not in p.read_text(encoding="utf-8") and ",=cmd" not in p.read_text(encoding="utf-8")
        files.append(p)
    scores = score_study(d, files, out=tmp_path / "scores", resamples=20)
    md = (tmp_path / "scores" / "table3.md").read_text(encoding="utf-8")
    cells = _cells(_md().render(md.split("\n\n", 1)[1]))
    assert {visible_controls(m) for m in STUDY_METHODS} <= set(cells)
    for name in ("table3.csv", "agreement.csv"):
        with open(tmp_path / "scores" / name, newline="", encoding="utf-8") as fh:
            for row in csv.reader(fh):
                assert all(not c.startswith(FORMULA) or _is_number(c) for c in row), row
    with open(tmp_path / "scores" / "table3.csv", newline="", encoding="utf-8") as fh:
        assert {csv_value(r["method"]) for r in csv.DictReader(fh)} == set(STUDY_METHODS)
    assert scores.table
    if PDFLATEX:
        for name in ("table3.tex", "agreement.tex"):
            doc = ("\\documentclass{article}\\usepackage{booktabs}\\usepackage[T1]{fontenc}\\begin{document}"
                   f"\\input{{{(tmp_path / 'scores' / name).as_posix()}}}\\end{{document}}\n")
            (tmp_path / f"w-{name}").write_text(doc, encoding="utf-8")
            _pdflatex(tmp_path, f"w-{name}")
