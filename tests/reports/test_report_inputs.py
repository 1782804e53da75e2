"""The report's slice viewer and ``report --plot-case`` read the run's input volumes again: a run made
with relative input paths must find them from any working directory (the run records the folder it
was started from; ``--relative-paths`` runs record paths relative to OUT)."""

from __future__ import annotations

import json
from html.parser import HTMLParser
from pathlib import Path

import pytest
from typer.testing import CliRunner

from trace_bench.cli import app
from trace_bench.config import RunConfig
from trace_bench.report_inputs import input_folders, resolve_input
from trace_bench.run import run

from helpers.fake_metrics import make_small_dataset


class ViewerDom(HTMLParser):
    """The viewer part of report.html: each ``div.viewer``'s note and slider, and the viewer-data JSON."""

    def __init__(self) -> None:
        super().__init__()
        self.viewers: list[dict] = []
        self.data = ""
        self._in_data = self._in_note = False

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "div" and a.get("class") == "viewer":
            self.viewers.append({"note": "", "sliders": 0})
        elif self.viewers and tag == "p" and a.get("class") == "note":
            self._in_note = True
        elif self.viewers and tag == "input" and a.get("type") == "range":
            self.viewers[-1]["sliders"] += 1
        elif tag == "script" and a.get("id") == "viewer-data":
            self._in_data = True

    def handle_endtag(self, tag):
        self._in_data = self._in_data and tag != "script"
        self._in_note = self._in_note and tag != "p"

    def handle_data(self, data):
        if self._in_data:
            self.data += data
        elif self._in_note and self.viewers:
            self.viewers[-1]["note"] += data


def viewer_of(out: Path) -> tuple[list[dict], list[dict]]:
    dom = ViewerDom()
    dom.feed((out / "report.html").read_text(encoding="utf-8"))
    return dom.viewers, json.loads(dom.data)


@pytest.fixture(scope="module")
def relative_run(tmp_path_factory):
    """A run started in ``root`` with every path relative: reference, method and OUT."""
    root = tmp_path_factory.mktemp("relative-run")
    make_small_dataset(root / "data")
    here = Path.cwd()
    import os

    os.chdir(root)
    try:
        run(RunConfig(out="out", reference="data/reference", methods={"noisy": "data/noisy"},
                      metrics=["temporal_flickering"], frame_size=64, bootstrap=20, plot_case="lung1",
                      published=False, progress=False))
    finally:
        os.chdir(here)
    return root


def test_viewer_scrolls_for_a_relative_path_run_rendered_elsewhere(relative_run, tmp_path, monkeypatch):
    out = relative_run / "out"
    assert json.loads((out / "provenance.json").read_text())["start_dir"] == str(relative_run)
    viewers, data = viewer_of(out)  # as written by the run itself
    assert [d["mode"] for d in data] == ["stack"]
    monkeypatch.chdir(tmp_path)  # another working directory
    assert {m: d for m, (d, _) in input_folders(out).items()} == {"GT": relative_run / "data/reference",
                                                                 "noisy": relative_run / "data/noisy"}
    r = CliRunner().invoke(app, ["report", str(out), "--no-plots"])
    assert r.exit_code == 0, r.output
    viewers, data = viewer_of(out)
    assert len(viewers) == 1 and viewers[0]["sliders"] == 1 and "Scroll through z" in viewers[0]["note"]
    assert "not readable" not in viewers[0]["note"]
    assert data[0]["mode"] == "stack" and [v["name"] for v in data[0]["volumes"]] == ["Reference (GT)", "noisy"]
    assert all(v["n"] == 10 for v in data[0]["volumes"])  # every slice of the 10-slice crops, not 3 mid-planes
    # another case than the run's plot case: read from the inputs, also from here
    r = CliRunner().invoke(app, ["report", str(out), "--no-plots", "--plot-case", "lung2"])
    assert r.exit_code == 0, r.output
    assert [d["case"] for d in viewer_of(out)[1]] == ["lung2"] and viewer_of(out)[1][0]["mode"] == "stack"


def test_relative_paths_option_resolves_against_out(tmp_path, monkeypatch):
    """``--relative-paths`` runs store folders relative to OUT (no start folder recorded)."""
    out = tmp_path / "runs" / "out"
    (tmp_path / "data" / "ref").mkdir(parents=True)
    out.mkdir(parents=True)
    (out / "provenance.json").write_text(json.dumps({"config": {"relative_paths": True}, "start_dir": None,
                                                     "input_folders": {"GT": "../../data/ref"}}))
    monkeypatch.chdir(tmp_path / "data")
    assert resolve_input("../../data/ref", out) == out / "../../data/ref"
    assert input_folders(out)["GT"][0].resolve() == (tmp_path / "data" / "ref").resolve()
    assert resolve_input("../../data/missing", out) is None
