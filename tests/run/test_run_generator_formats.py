"""Generator-formats corpus through ``python -m trace_bench run`` (issue 26 "Tests"): every way of writing a
generated case (tests/helpers/generator_corpus.py: float [0, 1] and [-1, 1], int16 HU with and without
slope/intercept, HU + 1024, ``.npy`` without spacing, PNG stack, identity-affine NIfTI in (z, y, x) and (x, y, z)
order, half the z spacing in the header, a truthful RAS header against an LPS reference) is scored against
crops of the shipped CTs with ``--metrics dice,jaccard,temporal_flickering --segmenter threshold``.

First run, no reading option: each kind is scored equal to the same data written correctly (its twin), or
refused in one line naming the option that reads it (``--read KIND.KEY=VALUE``, the kind's own name); a value
scored as read that differs from the twin's carries a warning naming that option (nothing mirrored silently).
Second run, with the documented options: every kind's per-case values equal its twin's
(``pandas.testing.assert_frame_equal``) and no error row is written.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from helpers.generator_corpus import KINDS, build_corpus
from helpers.paths import ROOT

METRICS = ["--metrics", "dice,jaccard,temporal_flickering", "--segmenter", "threshold"]


def _run(args: list[str]) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "trace_bench", "run", *args], capture_output=True, text=True,
                          env=env, cwd=ROOT, timeout=900)


def _values(out: Path, method: str) -> pd.DataFrame:
    pc = pd.read_csv(out / "per_case.csv", keep_default_na=False)
    pc = pc[pc.method == method]
    return pc.pivot(index="case_id", columns="metric", values="value").sort_index(axis=0).sort_index(axis=1)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("generator-corpus")
    ref, folders = build_corpus(root)
    methods: list[str] = []
    for name, folder in folders.items():
        fmt = next((k.fmt for k in KINDS if k.name == name), "nifti")
        methods += ["--method", f"{name}={folder}" + (f":{fmt}" if fmt != "nifti" else "")]
    base = ["--reference", str(ref), *methods, *METRICS, "--no-progress", "--no-plots", "--no-published",
            "--bootstrap", "10", "--frame-size", "64", "--out", str(root / "out")]
    first = _run(base)
    first_tables = {n: pd.read_csv(root / "out" / n, keep_default_na=False)
                    for n in ("per_case.csv", "errors.csv", "warnings.csv")}
    first_values = {name: _values(root / "out", name) for name in folders}
    first_report = (root / "out" / "report.md").read_text(encoding="utf-8")
    reads = [x for k in KINDS for key, v in k.options.items() for x in ("--read", f"{k.name}.{key}={v}")]
    second = _run(base + reads)
    return {"root": root, "out": root / "out", "first": first, "first_tables": first_tables,
            "first_values": first_values, "first_report": first_report, "second": second}


def test_first_contact_scores_right_or_refuses_naming_the_option(corpus):
    r = corpus["first"]
    assert r.returncode == 0, r.stderr[-3000:]
    assert "Traceback" not in r.stderr
    errors, warnings = corpus["first_tables"]["errors.csv"], corpus["first_tables"]["warnings.csv"]
    vals = corpus["first_values"]
    for k in KINDS:
        twin = vals[k.twin]
        assert len(twin) == 2 and {"dice", "jaccard", "temporal_flickering"} <= set(twin.columns), k.twin
        mine = errors[errors.method == k.name]
        if k.refusal is None:  # read right as is
            pd.testing.assert_frame_equal(vals[k.name], twin, obj=k.name)
            assert mine.empty, mine.to_dict("records")
            continue
        hint = f"--read {k.name}.{k.refusal}"
        refused_metrics = ["dice", "jaccard", "temporal_flickering"] if k.read_refused else ["dice", "jaccard"]
        assert set(mine.case_id) == {"lung1", "lung2"}, (k.name, mine.to_dict("records"))
        for row in mine.itertuples():
            assert "\n" not in row.error and hint in row.error, (k.name, row.error)
            assert "NAME." not in row.error, row.error  # the generic spelling is replaced by the folder's name
        got = vals[k.name]
        assert not any(c in got.columns for c in refused_metrics if c != "temporal_flickering" or k.read_refused), \
            (k.name, got)
        if not k.read_refused:  # per-volume temporal flickering is scored as read: equal, or warned
            flick, want = got["temporal_flickering"], twin["temporal_flickering"]
            for case in ("lung1", "lung2"):
                if abs(flick[case] - want[case]) > 1e-6 * max(1.0, abs(want[case])):
                    said = warnings[(warnings.method == k.name) & (warnings.case_id == case)].warning
                    assert any(k.refusal.split("=")[0] in w and f"--read {k.name}." in w for w in said), (k.name, case)


def test_truthful_ras_header_is_scored_with_an_orientation_warning(corpus):
    w = corpus["first_tables"]["warnings.csv"]
    rows = w[(w.method == "ras_true") & (w.stage == "geometry")]
    assert set(rows.case_id) == {"lung1", "lung2"}
    want = "orientation: header orientation RAS differs from the reference's LPS"
    assert all(x.startswith(want) for x in rows.warning)
    assert "--read ras_true.layout=reference" in rows.warning.iloc[0]
    err = corpus["first"].stderr
    summary = [line for line in err.splitlines() if "warning row(s)" in line]
    assert len(summary) == 1 and "geometry orientation" in summary[0] and "warnings.csv" in summary[0], err[-2000:]
    # and at the top of the report, before the tables
    md = corpus["first_report"]
    top = md.split("\n### Table", 1)[0]  # what comes before the first table
    assert "warning row(s) (" in top and "geometry orientation" in top and "warnings.csv" in top, top[-2000:]


def test_documented_options_score_every_kind_equal_to_the_correctly_written_volume(corpus):
    r = corpus["second"]
    assert r.returncode == 0, r.stderr[-3000:]
    errors = pd.read_csv(corpus["out"] / "errors.csv", keep_default_na=False)
    assert errors.empty, errors.to_dict("records")
    for k in KINDS:
        got, want = _values(corpus["out"], k.name), _values(corpus["out"], k.twin)
        assert {"dice", "jaccard", "temporal_flickering"} <= set(got.columns), k.name
        pd.testing.assert_frame_equal(got, want, obj=k.name)
