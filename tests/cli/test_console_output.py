"""The wiring of this wave into the user-facing paths: what `trace-bench run` / `report` print (the grouped
not-computed sentence, the compact results tables, the report pointer), `trace-bench metrics --missing`, the
panels of `run --help`, the LaTeX layout settings, published rows only when asked, and never an impossible
value in any printed format (hostile numbers: tiny n, identical sets, copies of the reference, one case).

"Printed" formats: the console, report.md, report.tex + tables/*.tex, report.html and results.json; the CSV
files keep the raw numbers the run computed.

The runs are real (weight-free metrics and the runner-test fakes on crops of the shipped CTs); the hostile rows
of :func:`test_hostile_numbers_never_print_outside_their_declared_range` are written into a copy of a real run's
summary.csv (test data: numbers that a small-n jackknife or float round-off produce, e.g. the issue's PRDC
precision 62.50 [-229.07, 354.07] %), so that every rule of reports/intervals.py is exercised."""

from __future__ import annotations

import io
import json
import math
import re
import shutil
from pathlib import Path

import pytest

from reports import render_report
from reports.console import results_summary
from reports.tables import build_tables
from trace_bench.config import RunConfig
from trace_bench.errors import ConfigError
from trace_bench.results import load_results
from trace_bench.run import run

from helpers.fake_metrics import make_small_dataset, register_fakes, unregister_fakes

pytestmark = pytest.mark.filterwarnings("ignore:Tight layout not applied", "ignore:Precision loss occurred")


def _weights_reason(name: str) -> str:
    from trace_bench.weights import WEIGHTS, missing_message

    return missing_message(WEIGHTS.get(name))


def _demo_skipped() -> dict[str, str]:
    """The demo's kinds of not-computed reasons (26 metrics in the real demo): the weights registry's own
    messages and the demo's speed reason."""
    slow = ("not in the demo's fast CPU set; run `trace-bench run --config OUT/config.toml --metrics {}` to add it")
    out = {m: _weights_reason("clip-vit-b32")
           for m in ("clip_score", "kid_clip", "prdc_clip", "background_consistency")}
    out.update({m: _weights_reason("i3d-torchscript") for m in ("fvd", "kid_i3d", "prdc_i3d")})
    out.update({m: _weights_reason("medicalnet-resnet50") for m in ("fd_medicalnet", "kid_medicalnet")})
    out.update({m: slow.format(m) for m in ("fid_2p5d", "fid_maisi", "fd_astra", "frd", "mmd")})
    return out


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_small_dataset(tmp_path_factory.mktemp("wiring-data"))  # 2 cases, as the demo


@pytest.fixture(scope="module")
def data4(tmp_path_factory):
    return make_small_dataset(tmp_path_factory.mktemp("wiring-data4"), slabs=2)  # 4 cases


def _config(data: Path, out: Path, **kw) -> RunConfig:
    prof = out.parent / "prof.json"
    prof.write_text(json.dumps({"fps": 3.48, "inference_peak_bytes": 1191706624, "train_peak_bytes": 1345261568,
                                "device": "cpu"}), encoding="utf-8")
    base = dict(out=str(out), reference=str(data / "reference"), reference_masks=str(data / "masks"),
                methods={"interp": str(data / "interp"), "noisy": str(data / "noisy")},
                profiles={"noisy": str(prof)}, metrics=["temporal_flickering", "segmentation", "fake_mean"],
                frame_size=32, bootstrap=50, progress=True, plots=False)
    return RunConfig(**{**base, **kw})


# ----------------------------------------------------------------------------- console
def test_demo_shaped_console_at_80_columns(data, tmp_path, capsys, monkeypatch):
    """What `trace-bench run` prints for a demo-shaped run (2 cases, 2 methods + GT, a CPU profile, 14 metrics
    not computed for the demo's reasons) at 80 columns: one grouped not-computed sentence before the progress
    (the demo printed 26 paragraphs of 400-600 characters there), the compact results tables, the errors /
    warnings line, the sentence again and "open OUT/report.html" last (the demo printed 99 lines in all)."""
    from rich.console import Console

    from trace_bench.cli.run import print_outcome

    monkeypatch.setenv("COLUMNS", "80")
    err = io.StringIO()
    console = Console(file=err, width=80, soft_wrap=True, force_terminal=False)
    register_fakes()
    try:
        result = run(_config(data, tmp_path / "o"), console=console, extra_skipped=_demo_skipped())
        print_outcome(result)
    finally:
        unregister_fakes()
    cap = capsys.readouterr()
    stderr = err.getvalue().splitlines() + cap.err.splitlines()
    stdout = cap.out.splitlines()
    lines = stderr + stdout
    # lines are not hard-wrapped where they hold a path or a list (logs keep them whole): rows at 80 columns
    assert all(len(x) <= 80 for x in lines if "/" not in x and not x.startswith("per-case:")), \
        [x for x in lines if len(x) > 80]
    rows = sum(max(1, math.ceil(len(x) / 80)) for x in lines)
    # stderr: the grouped sentence first, then the progress; no per-metric paragraph
    first = next(i for i, x in enumerate(stderr) if "metrics not computed" in x)
    progress = next(i for i, x in enumerate(stderr) if x.startswith("per-case"))
    assert first < progress and stderr[first].startswith("14 metrics not computed: 9 need weights (clip-vit-b32: 4,")
    assert not any(x.startswith("not computed") for x in lines)
    sentence = " ".join(stderr[first:progress])
    assert "5 are left out as slow (name them with --metrics)" in sentence
    assert "`trace-bench metrics --missing` says how to get each" in sentence
    # stdout: the tables, the problems line, the sentence again, the report pointer last
    text = "\n".join(stdout)
    assert re.search(r"Table 1: VBench dimensions.*\(no intervals: n too small\)", " ".join(stdout))
    assert "Table 2: distribution metrics" in text and re.search(r"^GT\s+\d", text, re.M)
    assert not re.search(r"\d[eE][+-]\d", text) and "(GB)" in text  # no 1.19171e+09: memory in GB
    assert not re.search(r"\d\.\d{5,}", text)  # no 6-significant-digit dump
    assert "0 error rows; 0 warnings." in text
    assert stdout[-1] == f"open {tmp_path / 'o' / 'report.html'}"
    assert rows <= 45, "\n".join(lines)  # demo-shaped (the demo: 99 lines, 263 rows at 80 columns before)


def test_report_prints_the_same_summary(data, tmp_path):
    from typer.testing import CliRunner

    from trace_bench.cli import app

    register_fakes()
    try:
        run(_config(data, tmp_path / "o", progress=False), extra_skipped=_demo_skipped())
    finally:
        unregister_fakes()
    r = CliRunner(env={"COLUMNS": "80"}).invoke(app, ["report", str(tmp_path / "o"), "--no-viewer"])
    assert r.exit_code == 0, r.output
    out = r.stdout.splitlines()
    assert out[-1] == f"open {tmp_path / 'o' / 'report.html'}" and any(x.startswith("Table 1:") for x in out)
    assert any("metrics not computed" in x for x in out)


# ----------------------------------------------------------------------------- metrics --missing, help
def test_metrics_missing_says_what_each_needs_and_the_command(tmp_path):
    from typer.testing import CliRunner

    from trace_bench.cli import app
    from trace_bench.cli.metrics import missing_needs
    from trace_bench.metrics.base import METRICS, RunContext

    r = CliRunner(env={"COLUMNS": "80"}).invoke(app, ["metrics", "--missing", "--json"])
    assert r.exit_code == 0, r.output
    rows = {x["name"]: x["needs"] for x in json.loads(r.stdout)["missing"]}
    assert "temporal_flickering" not in rows and "segmentation" not in rows  # they run here
    assert [n["command"] for n in rows["fid_2p5d"]] == ["trace-bench run ... --metrics fid_2p5d"]  # opt-in
    for name, needs in rows.items():
        for n in needs:
            w = re.match(r"weights '([^']+)'", n["need"])
            if w:  # missing weights: the fetch command, and the offline import naming the file
                assert n["command"] == f"trace-bench weights fetch {w.group(1)}"
                assert n["offline"].startswith(f"trace-bench weights import {w.group(1)} /path/to/")
    assert missing_needs(METRICS.get("clip_score"), RunContext(), {"clip-vit-b32": str(tmp_path / "none.pt")})
    text = CliRunner(env={"COLUMNS": "80"}).invoke(app, ["metrics", "--missing"]).stdout
    assert "get it: trace-bench run ... --metrics fid_2p5d" in text and all(len(x) <= 80 for x in text.splitlines())
    listing = CliRunner(env={"COLUMNS": "80"}).invoke(app, ["metrics"]).stdout
    assert all(len(x) <= 80 for x in listing.splitlines()), [x for x in listing.splitlines() if len(x) > 80]


def test_run_help_is_grouped_into_panels_that_fit_80_columns():
    from typer.testing import CliRunner

    from trace_bench.cli import app

    r = CliRunner(env={"COLUMNS": "80", "TERMINAL_WIDTH": "80"}).invoke(app, ["run", "--help"])
    assert r.exit_code == 0, r.output
    panels = re.findall(r"╭─ (\w+) ─", r.stdout)
    assert panels == ["Options", "Inputs", "Metrics", "Statistics", "Output", "Performance", "Advanced"]
    assert "…" not in r.stdout  # nothing cut
    assert all(len(x) <= 80 for x in r.stdout.splitlines())
    assert len(r.stdout.splitlines()) < 140  # 243 lines at 80 columns before the panels
    assert "--tex-layout" in r.stdout and "--tex-width" in r.stdout and "README" not in r.stdout
    audit = CliRunner(env={"COLUMNS": "80"}).invoke(app, ["audit", "--help"]).stdout
    assert "docs/guide/audit.md" in " ".join(audit.split()) and "README" not in audit


# ----------------------------------------------------------------------------- LaTeX settings, published rows
def test_tex_layout_and_width_settings(data, tmp_path):
    from trace_bench.cli.run import build_config
    from trace_bench.config import SETTINGS, load_config

    assert SETTINGS["tex_layout"].scope == SETTINGS["tex_width"].scope == "run"  # report only, no value changes
    c = RunConfig(tex_layout={"table1": "Compact", "table2": "split+pm"}, tex_width=300)
    assert c.tex_layout == {"table1": "compact", "table2": "split+pm"} and c.tex_width == 300.0
    for bad in ({"tex_layout": "wide"}, {"tex_layout": {"table1": 3}}, {"tex_width": "a4"}, {"tex_width": 10}):
        with pytest.raises(ConfigError, match=next(iter(bad))):
            RunConfig(**bad)
    assert build_config(None, tex_layout="table1=pm,table2=compact").tex_layout == {"table1": "pm",
                                                                                   "table2": "compact"}
    p = tmp_path / "c.toml"
    p.write_text(RunConfig(tex_layout={"table1": "pm"}, tex_width="ieee").to_toml(), encoding="utf-8")
    assert load_config(p).tex_layout == {"table1": "pm"} and load_config(p).tex_width == "ieee"
    register_fakes()
    try:
        r = run(_config(data, tmp_path / "o", progress=False, tex_layout={"table1": "compact"}, tex_width="ieee"))
    finally:
        unregister_fakes()
    t1 = (r.out / "tables" / "table1.tex").read_text(encoding="utf-8")
    assert "layout compact" in t1.splitlines()[1] and "IEEE" in t1.splitlines()[1]
    assert "twocolumn" in (r.out / "report.tex").read_text(encoding="utf-8")
    from typer.testing import CliRunner

    from trace_bench.cli import app

    res = CliRunner().invoke(app, ["report", str(r.out), "--no-viewer", "--tex-layout", "split", "--tex-width",
                                   "neurips"])
    assert res.exit_code == 0, res.output
    assert "layout split" in (r.out / "tables" / "table1.tex").read_text(encoding="utf-8").splitlines()[1]


def test_published_rows_only_when_asked_and_report_follows_the_run(data, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    import trace_bench.demo as demo
    from trace_bench.cli import app

    assert RunConfig().published is False
    register_fakes()
    try:
        r = run(_config(data, tmp_path / "o", progress=False))
        r2 = run(_config(data, tmp_path / "p", progress=False, published=True))
    finally:
        unregister_fakes()
    assert not list((r.out / "tables").glob("*_published.tex"))
    assert CliRunner().invoke(app, ["report", str(r.out), "--no-viewer"]).exit_code == 0
    assert not list((r.out / "tables").glob("*_published.tex"))  # the run's setting, not forced on
    assert CliRunner().invoke(app, ["report", str(r.out), "--no-viewer", "--published"]).exit_code == 0
    assert (r.out / "tables" / "table1_published.tex").is_file()
    assert (r2.out / "tables" / "table1_published.tex").is_file()
    assert CliRunner().invoke(app, ["report", str(r2.out), "--no-viewer"]).exit_code == 0
    assert "As published" in (r2.out / "report.md").read_text(encoding="utf-8")
    monkeypatch.setattr(demo, "trace_methods", lambda out_dir, seed=0: ({}, None))  # no TRACE sampling here
    cfg, _, _ = demo.prepare_demo(RunConfig(out=str(tmp_path / "demo")))
    assert cfg.published is True  # the demo turns it on


# ----------------------------------------------------------------------------- never an impossible value
def _declared(metric: str) -> tuple:
    from trace_bench.metrics.base import METRICS
    from trace_bench.run.select import load_metric_registry

    load_metric_registry()
    for name in METRICS.names():
        o = METRICS.get(name).outputs.get(metric)
        if o is not None:
            return name, o
    raise KeyError(metric)


#: (method, metric, value, ci_low, ci_high, n, ci_method, ci_flag): numbers small-n jackknives and round-off give
HOSTILE = [
    ("interp", "prdc_precision", 0.625, -2.290713, 3.540713, 4, "jackknife-2sample-t:4+4", ""),
    ("noisy", "prdc_coverage", 1.0, 0.920613, 1.079413, 4, "jackknife-2sample-t:4+4", ""),
    ("interp", "prdc_recall", 0.5, -3.125013, 4.125013, 2, "jackknife-2sample-t:2+2", ""),  # n too small
    ("noisy", "prdc_density", 1.3, 0.213, 2.413, 4, "jackknife-2sample-t:4+4", "heavy-tailed"),
    ("interp", "fid", 42.2, -31.3129, 115.7129, 4, "jackknife-2sample-t:4+4", ""),
    ("noisy", "fid", 0.0, -77.0413, 77.0413, 4, "jackknife-2sample-t:4+4", ""),
    ("GT", "fid_half", -5.0713, -40.0713, 30.0713, 4, "jackknife-2sample-t:4+4", ""),  # impossible value
    ("interp", "kid", -0.001213, -0.010513, 0.008113, 4, "jackknife-2sample-t:4+4", ""),  # an unbiased estimate
    ("interp", "kid_std", 0.0, 0.0, 0.0, 4, "jackknife-2sample-t:4+4", ""),
    ("noisy", "dice", 1.003137, 0.991137, 1.015137, 4, "bootstrap-percentile:50", ""),  # round-off above 1
    ("interp", "dice", 0.9, float("nan"), float("nan"), 1, "none", ""),  # one case
]
#: raw numbers that must never be printed (in display units)
FORBIDDEN = ["-229.07", "354.07", "107.94", "-31.3", "-77.0", "-40.0", "-5.07", "100.31", "101.51", "-0.011",
             "412.50"]


def _inside(x: float, rng) -> bool:
    if rng is None:
        return True
    lo, hi = rng
    return (lo is None or x >= lo - 1e-12) and (hi is None or x <= hi + 1e-12)


def test_hostile_numbers_never_print_outside_their_declared_range(data4, tmp_path):
    from trace_bench.results import SUMMARY_COLUMNS, MetricInfo, write_csv
    from trace_bench.results.table_model import to_latex

    register_fakes()
    try:
        r = run(_config(data4, tmp_path / "o", progress=False))
    finally:
        unregister_fakes()
    o = r.out
    meta = json.loads((o / "metrics.json").read_text(encoding="utf-8"))
    for _, metric, *_ in HOSTILE:
        if metric.endswith("_half"):
            continue  # no entry of its own: labelled, ranked, directed and ranged as its full-sample column
        name, style = _declared(metric)
        if metric not in meta["columns"]:
            meta["columns"][metric] = MetricInfo.of(style, table="table1" if name == "segmentation" else "table2",
                                                    kind="case" if name == "segmentation" else "distribution",
                                                    protocol="synthetic", spec=name).to_dict()
    (o / "metrics.json").write_text(json.dumps(meta), encoding="utf-8")
    res = load_results(o)
    keep = [tuple(x) for x in res.summary.itertuples(index=False)
            if (x.method, x.metric) not in {(h[0], h[1]) for h in HOSTILE}]
    rows = keep + [(m, c, v, lo, hi, n, how, 0, "", flag) for m, c, v, lo, hi, n, how, flag in HOSTILE]
    write_csv(o / "summary.csv", SUMMARY_COLUMNS, rows)
    render_report(o, plots=False)
    res = load_results(o)
    printed = {"report.md": (o / "report.md").read_text(encoding="utf-8"),
               "report.html": (o / "report.html").read_text(encoding="utf-8"),
               "console": "\n".join(results_summary(res, width=80)),
               "tex": "\n".join(p.read_text(encoding="utf-8") for p in sorted((o / "tables").glob("*.tex")))}
    for t in build_tables(res):
        for lay in ("pm", "stacked"):
            printed["tex"] += to_latex(t, layout=lay)
    for where, text in printed.items():
        for raw in FORBIDDEN:
            assert raw not in text, f"{where} prints {raw}"
    # what was done is said: the clip mark, the estimate mark, the heavy-tailed dagger, the dash of n too small
    for where in ("report.md", "report.html"):
        for mark in ("‡", "§", "†", "n too small"):
            assert mark in printed[where], (where, mark)
    assert r"\textdaggerdbl" in printed["tex"] and r"\textdagger{}" in printed["tex"]
    assert "[0.0, 115.7]" in printed["report.md"] and "-0.001" in printed["report.md"]  # KID: an estimate, marked
    # every table cell: value and interval inside the declared range (the estimate range for KID's value)
    for t in build_tables(res):
        for row in t.rows:
            for key, cell in row.cells.items():
                col = key if key != "vram" else "vram"
                info = res.metrics.get(col)
                if info is None or math.isnan(cell.value):
                    continue
                assert _inside(cell.value, info.estimate_range or info.value_range), (t.key, row.key, key)
    t2 = next(t for t in build_tables(res) if t.key == "table2")
    keys = [c.key for c in t2.columns]
    assert keys.index("fid_half") == keys.index("fid") + 1
    half = t2.columns[keys.index("fid_half")]
    assert half.header == "FID (half vs half)" and half.arrow == "↓"
    assert t2.rows[0].shown == "GT/GT" and t2.rows[0].cells["fid_half"].text == "0.0"  # clipped, marked
    notes = " ".join(t2.notes)
    assert "an interval of the estimator's expected value at this sample size (not of the distance itself)" in notes
    assert "their GT/GT row is the floor" in notes and "GT = the reference set scored as a method" not in notes
    # results.json: printed values and intervals, each inside its column's range; flags say what was done
    doc = json.loads((o / "results.json").read_text(encoding="utf-8"))
    by = {(x["method"], x["metric"]): x for x in doc["rows"]}
    for x in doc["rows"]:
        info = res.metrics.get(x["metric"]) or res.metrics.get(x["metric"].split("[")[0])
        if info is None:
            continue
        for k in ("ci_low", "ci_high"):
            assert x[k] is None or _inside(x[k], info.value_range), (x["method"], x["metric"], k, x[k])
        assert x["value"] is None or _inside(x["value"], info.estimate_range or info.value_range), x
    assert by[("interp", "prdc_precision")]["ci_low"] == 0.0 and by[("interp", "prdc_precision")]["ci_high"] == 1.0
    assert "interval clipped to range" in by[("interp", "prdc_precision")]["flags"]
    assert by[("interp", "prdc_recall")]["ci_low"] is None and "n too small" in by[("interp", "prdc_recall")]["flags"]
    assert by[("GT", "fid_half")]["value"] == 0.0 and "value clipped to range" in by[("GT", "fid_half")]["flags"]
    assert by[("interp", "kid")]["value"] < 0 and "estimate outside" in " ".join(by[("interp", "kid")]["flags"])
    assert by[("interp", "kid_std")]["ci_low"] is None and by[("interp", "dice")]["ci_low"] is None
    assert by[("noisy", "prdc_density")]["ci_flag"] == "heavy-tailed" and "heavy-tailed" in \
        by[("noisy", "prdc_density")]["flags"]
    assert by[("interp", "fid")]["floor_column"] == "fid_half"
    # the CSV files keep the raw numbers
    assert "-2.290713" in (o / "summary.csv").read_text(encoding="utf-8")


def test_identical_sets_one_case_and_copies_of_the_reference(data, tmp_path):
    """Real runs on hostile inputs: a method whose volumes are copies of the reference, and the same with one
    case. Every printed number stays in its declared range; one case prints no interval at all."""
    copies = tmp_path / "copies"
    shutil.copytree(data / "reference", copies / "copy")
    one = tmp_path / "one"
    (one / "reference").mkdir(parents=True)
    (one / "copy").mkdir()
    first = sorted((data / "reference").iterdir())[0]
    shutil.copy(first, one / "reference" / first.name)
    shutil.copy(first, one / "copy" / first.name)
    metrics = ["temporal_flickering", "segmentation", "mmd", "anatomy_dist", "anatomy_stats"]
    for ref, meth in ((data / "reference", copies / "copy"), (one / "reference", one / "copy")):
        out = tmp_path / f"o-{meth.parent.name}"
        r = run(RunConfig(out=str(out), reference=str(ref), methods={"copy": str(meth)}, metrics=metrics,
                          frame_size=32, bootstrap=50, progress=False, plots=False))
        res = load_results(r.out)
        doc = json.loads((r.out / "results.json").read_text(encoding="utf-8"))
        for x in doc["rows"]:
            info = res.metrics.get(x["metric"]) or res.metrics.get(x["metric"].split("[")[0])
            rng = info.value_range if info is not None else None
            for k in ("ci_low", "ci_high"):
                assert x[k] is None or _inside(x[k], rng), x
            assert x["value"] is None or _inside(x["value"], (info.estimate_range or rng) if info else None), x
        console = "\n".join(results_summary(res, width=80))
        if meth.parent == one:
            assert all(x["ci_low"] is None for x in doc["rows"])
            assert not re.search(r"\[[-\d.]+, [-\d.]+\]", console)
        tables = {t.key: t for t in build_tables(res)}
        assert tables["anatomy"].rows[0].key == "GT" and tables["anatomy"].rows[0].pinned
        assert "anatomy_labels" in tables and not any(c.startswith("anat_") for c in tables["table1b"].keys)
        assert "anatomy-distributions" in (r.out / "report.html").read_text(encoding="utf-8")


def test_missing_weights_message_has_no_doubled_period(data, tmp_path):
    from trace_bench.errors import WeightsError
    from trace_bench.weights import resolve_weights

    try:
        resolve_weights("clip-vit-b32")
        pytest.skip("clip-vit-b32 is installed here")
    except Exception:  # noqa: BLE001 - missing: the preflight message is what is tested
        pass
    with pytest.raises(WeightsError) as e:
        run(RunConfig(out=str(tmp_path / "o"), reference=str(data / "reference"),
                      methods={"noisy": str(data / "noisy")}, metrics=["background_consistency"], progress=False))
    assert "preflight: cannot compute background_consistency" in str(e.value) and ".." not in str(e.value)


# ----------------------------------------------------------------------------- [utility] in a run config
@pytest.mark.usefixtures("one_torch_thread")
def test_run_config_with_a_utility_section(tmp_path):
    """`run --config FILE` with a [utility] section: after the scoring the seg-tstr protocol (tiny variant) runs
    into OUT/utility/, the report has its table, the run's stamp names its summary files; a later, different run
    removes those (the training jobs stay); a utility folder the run did not write is left alone."""
    from typer.testing import CliRunner

    from reports.utility import SEG_TITLE
    from helpers.utility_cases import seg_cases
    from trace_bench.cli import app
    from trace_bench.io import write_nifti
    from trace_bench.results.stamp import stamped_names
    from trace_bench.volume import from_canonical

    cases = seg_cases()
    ids = sorted(cases)[:12]
    root = tmp_path / "data"

    def put(folder: str, name: str, a) -> None:
        (root / folder).mkdir(parents=True, exist_ok=True)
        write_nifti(from_canonical(a.astype("float32"), (8.0, 8.0, 8.0)), root / folder / f"{name}.nii.gz")

    for i, c in enumerate(ids):
        img, lab = cases[c]
        kind = "test" if i % 3 == 0 else "ref"
        put(kind, c, img)
        put(f"{kind}_masks", c, lab)
        if kind == "ref":
            put("gen", c, img)
    toml = f"""
out = "{tmp_path / 'out'}"
reference = "{root / 'ref'}"
reference_masks = "{root / 'ref_masks'}"
metrics = ["temporal_flickering"]
frame_size = 32
bootstrap = 20
device = "cpu"
plots = false
progress = false

[methods]
identity = "{root / 'gen'}"

[utility]
protocols = ["seg-tstr"]
variant = "tiny"
arms = ["real", "method"]
test_reference = "{root / 'test'}"
test_masks = "{root / 'test_masks'}"
cache_dir = "{tmp_path / 'cache'}"
"""
    cfg = tmp_path / "bench.toml"
    cfg.write_text(toml, encoding="utf-8")
    out = tmp_path / "out"
    (out / "utility").mkdir(parents=True)
    (out / "utility" / "notes.txt").write_text("written by `trace-bench utility`, not by the run")
    r = CliRunner().invoke(app, ["run", "--config", str(cfg)])
    assert r.exit_code == 0, r.output
    assert (out / "utility" / "utility.json").is_file()
    md = (out / "report.md").read_text(encoding="utf-8")
    assert "Downstream utility" in md and SEG_TITLE in md and "seg-tstr-tiny-v1" in md
    assert 'id="utility"' in (out / "report.html").read_text(encoding="utf-8")
    assert "tables/utility_seg.tex" in stamped_names(out) and "utility/utility.json" in stamped_names(out)
    assert "[utility]" in (out / "config.toml").read_text(encoding="utf-8")  # the rerun repeats it
    jobs = sorted(p.relative_to(out) for p in (out / "utility" / "seg").rglob("*") if p.is_file())
    assert jobs
    # a different run in the same folder: the utility results it wrote go, its training jobs stay
    r = CliRunner().invoke(app, ["run", "--reference", str(root / "ref"), "--method", f"identity={root / 'gen'}",
                                 "--metrics", "temporal_flickering", "--frame-size", "48", "--out", str(out),
                                 "--no-plots", "--no-progress", "--device", "cpu"])
    assert r.exit_code == 0, r.output
    assert not (out / "utility" / "utility.json").exists()
    assert "Downstream utility" not in (out / "report.md").read_text(encoding="utf-8")
    assert sorted(p.relative_to(out) for p in (out / "utility" / "seg").rglob("*") if p.is_file()) == jobs
    assert (out / "utility" / "notes.txt").is_file()
    # a [utility] section with a mistake stops before anything runs
    bad = tmp_path / "bad.toml"
    bad.write_text(toml.replace('variant = "tiny"', 'variant = "huge"').replace(str(out), str(tmp_path / "o2")),
                   encoding="utf-8")
    r = CliRunner().invoke(app, ["run", "--config", str(bad)])
    assert r.exit_code == 2 and "utility.variant" in r.output and not (tmp_path / "o2").exists()
