"""`trace-bench compare`: direction-aware regression gate with per-metric tolerances."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from trace_bench.cli import app
from trace_bench.results import SUMMARY_COLUMNS, compare_results, load_tolerances, write_csv

# tolerances as the metrics declare them (Output.tolerance -> metrics.json)
COLUMNS = {"dice": {"higher_is_better": True, "table": "table1", "kind": "case", "protocol": "p", "spec": "segmentation",
                    "tolerance": {"abs": 0.01}},
           "hd95": {"higher_is_better": False, "table": "table1", "kind": "case", "protocol": "p", "spec": "segmentation",
                    "tolerance": {"abs": 1.0, "rel": 0.05}},
           "fid": {"higher_is_better": False, "table": "table2", "kind": "distribution", "protocol": "p", "spec": "fid",
                   "tolerance": {"abs": 0.5, "rel": 0.05}}}


def make_out(path: Path, values: dict[tuple[str, str], float]) -> Path:
    path.mkdir(parents=True)
    write_csv(path / "summary.csv", SUMMARY_COLUMNS,
              [(m, k, v, float("nan"), float("nan"), 2) for (m, k), v in values.items()])
    (path / "metrics.json").write_text(json.dumps({"methods": ["GT", "TRACE"], "columns": COLUMNS, "skipped": {}}))
    return path


BASE = {("TRACE", "dice"): 0.70, ("TRACE", "hd95"): 15.0, ("TRACE", "fid"): 100.0}


def invoke(*args: str):
    return CliRunner().invoke(app, ["compare", *args])


def test_identical_runs_pass(tmp_path):
    a, b = make_out(tmp_path / "a", BASE), make_out(tmp_path / "b", BASE)
    r = invoke(str(a), str(b))
    assert r.exit_code == 0, r.output
    assert "REGRESSED" not in r.output


@pytest.mark.parametrize("metric,new,code", [
    ("dice", 0.68, 1),   # -2 points > 1 point tolerance, higher is better
    ("dice", 0.695, 0),  # within tolerance
    ("dice", 0.80, 0),   # improvement
    ("hd95", 17.0, 1),   # lower is better: +2 mm > max(1 mm, 5%)
    ("hd95", 10.0, 0),
    ("fid", 104.0, 0),   # within 5 %
    ("fid", 110.0, 1),
    ("fid", float("nan"), 1),  # a value that became NaN is a regression
])
def test_direction_and_tolerance(tmp_path, metric, new, code):
    a = make_out(tmp_path / "a", BASE)
    b = make_out(tmp_path / "b", {**BASE, ("TRACE", metric): new})
    r = invoke(str(a), str(b))
    assert r.exit_code == code, r.output


def test_missing_metric_fails_and_new_metric_passes(tmp_path):
    a = make_out(tmp_path / "a", BASE)
    b = make_out(tmp_path / "b", {k: v for k, v in BASE.items() if k[1] != "fid"})
    assert invoke(str(a), str(b)).exit_code == 1
    c = make_out(tmp_path / "c", {**BASE, ("TRACE", "clip_score"): 29.0})
    r = invoke(str(a), str(c))
    assert r.exit_code == 0 and "new" in r.output


def test_tolerance_file_overrides(tmp_path):
    a = make_out(tmp_path / "a", BASE)
    b = make_out(tmp_path / "b", {**BASE, ("TRACE", "dice"): 0.66})
    tol = tmp_path / "tol.toml"
    tol.write_text("dice = 0.05\n[fid]\nrel = 0.2\n")
    assert invoke(str(a), str(b), "--tolerance", str(tol)).exit_code == 0
    t = load_tolerances(tol)
    assert t["dice"] == {"abs": 0.05} and t["fid"] == {"rel": 0.2}
    bad = tmp_path / "bad.toml"
    bad.write_text('dice = "x"\n')
    r = CliRunner().invoke(app, ["compare", str(a), str(b), "--tolerance", str(bad)])
    assert r.exit_code != 0


def test_compare_api_rows(tmp_path):
    a = make_out(tmp_path / "a", BASE)
    b = make_out(tmp_path / "b", {**BASE, ("TRACE", "hd95"): 12.0})
    cmp = compare_results(a, b)
    row = cmp.rows[cmp.rows.metric == "hd95"].iloc[0]
    assert row.status == "improved" and row.delta == pytest.approx(-3.0) and not row.higher_is_better
    assert cmp.ok
