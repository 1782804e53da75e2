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
    methods = list(dict.fromkeys(m for m, _ in values))
    (path / "metrics.json").write_text(json.dumps({"methods": methods, "columns": COLUMNS, "skipped": {}}))
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


# ----------------------------------------------------------------------------- comparability
def renamed(values: dict[tuple[str, str], float], old: str, new: str) -> dict[tuple[str, str], float]:
    return {(new if m == old else m, k): v for (m, k), v in values.items()}


def test_runs_sharing_no_method_are_refused_in_one_line(tmp_path):
    a = make_out(tmp_path / "a", {**BASE, ("GT", "dice"): 1.0})
    b = make_out(tmp_path / "b", {**renamed(BASE, "TRACE", "TRACE-v2"), ("GT", "dice"): 1.0})
    r = invoke(str(a), str(b))
    assert r.exit_code == 2 and "REGRESSED" not in r.output and "MISSING" not in r.output
    msg = r.output.strip().splitlines()
    assert len(msg) == 1 and "share no method" in msg[0] and "--map TRACE=TRACE-v2" in msg[0]
    # --map pairs them: identical values, no regression, rows under the candidate's name
    r = invoke(str(a), str(b), "--map", "TRACE=TRACE-v2", "--csv", str(tmp_path / "c.csv"))
    assert r.exit_code == 0, r.output
    assert "baseline method TRACE compared with candidate method TRACE-v2" in r.output
    df = __import__("pandas").read_csv(tmp_path / "c.csv")
    assert set(df.method) == {"TRACE-v2", "GT"} and set(df.status) == {"ok"}
    # a regression of the renamed method is still found
    worse = make_out(tmp_path / "w", renamed({**BASE, ("TRACE", "dice"): 0.60}, "TRACE", "TRACE-v2"))
    assert invoke(str(a), str(worse), "--map", "TRACE=TRACE-v2").exit_code == 1


@pytest.mark.parametrize("spec,words", [
    ("TRACE", "expected OLD=NEW"),
    ("NOPE=TRACE-v2", "baseline"),
    ("TRACE=NOPE", "candidate"),
    ("GT=TRACE-v2", "reference"),
])
def test_bad_maps_are_one_line_errors(tmp_path, spec, words):
    a = make_out(tmp_path / "a", BASE)
    b = make_out(tmp_path / "b", renamed(BASE, "TRACE", "TRACE-v2"))
    r = invoke(str(a), str(b), "--map", spec)
    assert r.exit_code == 2 and words in r.output and len(r.output.strip().splitlines()) == 1, r.output


def test_partly_shared_methods_get_a_hint(tmp_path):
    a = make_out(tmp_path / "a", {**BASE, ("Old", "dice"): 0.5})
    b = make_out(tmp_path / "b", {**BASE, ("New", "dice"): 0.5})
    r = invoke(str(a), str(b))
    assert r.exit_code == 1 and "MISSING" in r.output and "--map Old=New" in r.output
    # a map onto a name the baseline also uses needs that one mapped too
    r = invoke(str(a), str(b), "--map", "Old=TRACE")
    assert r.exit_code == 2 and "both be compared as 'TRACE'" in r.output


def with_protocol(path: Path, metric: str, protocol: str, weights: dict[str, str] | None = None) -> Path:
    meta = json.loads((path / "metrics.json").read_text())
    meta["columns"][metric] = dict(meta["columns"][metric], protocol=protocol)
    (path / "metrics.json").write_text(json.dumps(meta))
    if weights is not None:
        (path / "manifest.json").write_text(json.dumps({"weights": weights}))
    return path


FRAMES = "ct-frames-v1:{size}px:hu[{lo},{hi}]:bilinear-aa:round-half-up"


def test_protocol_change_is_refused_naming_the_part(tmp_path):
    fid = "|inception-fid:inc299-nvbilinear-tf|slices=all|ddof=1"
    a = with_protocol(make_out(tmp_path / "a", BASE), "fid", FRAMES.format(size=256, lo=-1000, hi=1000) + fid)
    b = with_protocol(make_out(tmp_path / "b", BASE), "fid", FRAMES.format(size=128, lo=-1000, hi=1000) + fid)
    r = invoke(str(a), str(b))
    assert r.exit_code == 2 and len(r.output.strip().splitlines()) == 1
    assert "ct-frames-v1 256px vs 128px (fid)" in r.output and "--allow-protocol-change" in r.output
    c = with_protocol(make_out(tmp_path / "c", BASE), "fid", FRAMES.format(size=256, lo=-1024, hi=600) + fid)
    r = invoke(str(a), str(c))
    assert r.exit_code == 2 and "hu[-1000,1000] vs hu[-1024,600]" in r.output
    # allowed: compared, and the output says the protocol changed
    r = invoke(str(a), str(b), "--allow-protocol-change")
    assert r.exit_code == 0 and "PROTOCOL CHANGED" in r.output and "256px vs 128px" in r.output


def test_weights_change_is_refused(tmp_path):
    a = with_protocol(make_out(tmp_path / "a", BASE), "fid", "p", {"inception-fid": "a" * 64})
    b = with_protocol(make_out(tmp_path / "b", BASE), "fid", "p", {"inception-fid": "b" * 64})
    r = invoke(str(a), str(b))
    assert r.exit_code == 2 and f"weights inception-fid sha256 {'a' * 12} vs {'b' * 12}" in r.output
    same = with_protocol(make_out(tmp_path / "s", BASE), "fid", "p", {"inception-fid": "a" * 64, "other": "c" * 64})
    # (these manifests hold only weights: no set-level jackknife)
    assert invoke(str(a), str(same), "--no-jackknife").exit_code == 0  # an entry only one run used is not a change
    assert invoke(str(a), str(b), "--allow-protocol-change", "--no-jackknife").exit_code == 0
