"""The run core's contracts (issue "One run core"): an out-of-tree metric plug-in is one file and
appears in every output; metric options reach the run from the CLI and TOML, are validated, recorded
and change the protocol id; ``--metrics`` accepts output names; the Plan is frozen.

The plug-in below is a real (small) computation: mean absolute gradient of the HU volume along an axis."""

from __future__ import annotations

import json
import sys
import textwrap

import pandas as pd
import pytest
from typer.testing import CliRunner

from trace_bench.cli import app
from trace_bench.metrics.base import METRICS

from helpers.fake_metrics import make_small_dataset

PLUGIN = '''
import numpy as np
from trace_bench.metrics.base import CaseData, Metric, Option, Output, RunContext, register_metric


@register_metric
class Sharpness(Metric):
    name = "sharpness_test"
    kind = "case"
    table = "table2"
    outputs = {"sharpness_test": Output(True, "Sharpness (HU/mm)", digits=1, rank=50)}
    options = (Option("axis", "z", "axis of the gradient", choices=("z", "y", "x")),)
    description = "mean |gradient| of the HU volume along one axis, per mm"

    def case_values(self, data: CaseData, ctx: RunContext) -> dict[str, float]:
        ax = "zyx".index(self.opts["axis"])
        a = data.volume.array.astype(np.float64)
        return {"sharpness_test": float(np.abs(np.diff(a, axis=ax)).mean() / data.volume.spacing[ax])}
'''

runner = CliRunner()


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_small_dataset(tmp_path_factory.mktemp("core-data"))


@pytest.fixture()
def plugin(tmp_path, monkeypatch):
    (tmp_path / "plug").mkdir()
    (tmp_path / "plug" / "tb_sharpness_plugin.py").write_text(textwrap.dedent(PLUGIN), encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path / "plug"))
    yield "tb_sharpness_plugin"
    METRICS.unregister("sharpness_test")
    sys.modules.pop("tb_sharpness_plugin", None)


def _run(args: list[str]):
    r = runner.invoke(app, ["run", "--no-progress", "--no-plots", "--no-published", "--bootstrap", "50",
                            "--frame-size", "64", *args])
    return r


def test_out_of_tree_plugin_appears_in_every_output(data, tmp_path, plugin):
    outs = []
    for name, opt in (("a", []), ("b", ["--option", "sharpness_test.axis=y"])):
        out = tmp_path / name
        r = _run(["--reference", str(data / "reference"), "--method", f"noisy={data / 'noisy'}", "--plugins", plugin,
                  "--metrics", "sharpness_test,temporal_flickering", "--out", str(out), *opt])
        assert r.exit_code == 0, r.output
        outs.append(out)
    a, b = outs
    pc = pd.read_csv(a / "per_case.csv")
    assert set(pc[pc.metric == "sharpness_test"].method) == {"GT", "noisy"}
    assert "sharpness_test" in set(pd.read_csv(a / "summary.csv").metric)
    cols = json.loads((a / "metrics.json").read_text(encoding="utf-8"))["columns"]
    assert cols["sharpness_test"]["label"] == "Sharpness (HU/mm)" and cols["sharpness_test"]["table"] == "table2"
    assert "Sharpness (HU/mm) ↑" in (a / "report.md").read_text(encoding="utf-8")
    assert "sharpness_test" in (a / "table2.csv").read_text(encoding="utf-8").splitlines()[0]
    # the option: recorded in config.toml, part of the protocol id, changes the values
    assert "[options.sharpness_test]" in (b / "config.toml").read_text(encoding="utf-8")
    pb = pd.read_csv(b / "per_case.csv")
    assert pb[pb.metric == "sharpness_test"].protocol.str.contains("opt:axis=y").all()
    assert not pc[pc.metric == "sharpness_test"].protocol.str.contains("opt:").any()
    va = pc[pc.metric == "sharpness_test"].value.to_numpy()
    vb = pb[pb.metric == "sharpness_test"].value.to_numpy()
    assert (va != vb).all()
    # compare knows its direction; `trace-bench metrics` lists it with its option
    r = runner.invoke(app, ["compare", str(a), str(b)])  # the option changed its protocol id: refused
    assert r.exit_code == 2 and "(none) vs opt:axis=y (sharpness_test)" in r.output
    r = runner.invoke(app, ["compare", str(a), str(b), "--allow-protocol-change"])
    assert "sharpness_test" in r.output and "higher" in r.output
    r = runner.invoke(app, ["metrics", "--plugins", plugin])
    assert r.exit_code == 0 and "sharpness_test" in r.output and "sharpness_test.axis" in r.output
    # a rerun from the written config.toml repeats the run (same option, everything cached); the config's
    # plug-ins are code: loaded only when allowed (or named on the command line)
    r = _run(["--config", str(b / "config.toml")])
    assert r.exit_code == 2 and "--allow-plugins" in r.output and len(r.output.strip().splitlines()) == 1, r.output
    r = _run(["--config", str(b / "config.toml"), "--allow-plugins"])
    assert r.exit_code == 0, r.output
    assert pd.read_csv(b / "per_case.csv").equals(pb)


def test_option_from_toml_and_validation(data, tmp_path, plugin):
    toml = tmp_path / "bench.toml"
    toml.write_text(f'reference = "{data / "reference"}"\nmetrics = ["sharpness_test"]\nplugins = ["{plugin}"]\n'
                    f'out = "{tmp_path / "o"}"\n\n[options.sharpness_test]\naxis = "x"\n', encoding="utf-8")
    r = _run(["--config", str(toml), "--allow-plugins"])
    assert r.exit_code == 0, r.output
    assert pd.read_csv(tmp_path / "o" / "per_case.csv").protocol.str.contains("opt:axis=x").all()
    bad = [(["--option", "sharpness_test.axis=w"], "expected one of z, y, x"),
           (["--option", "sharpness_test.axes=y"], "has no option 'axes'"),
           (["--option", "nosuchmetric.axis=y"], "unknown metric 'nosuchmetric'"),
           (["--option", "fid.slices=0"], "an integer K >= 1"),
           (["--option", "fid.weights=inception"], "expected one of inception-fid, inception-fid-pth"),
           (["--option", "noequals"], "METRIC.OPTION=VALUE")]
    for extra, msg in bad:
        r = _run(["--reference", str(data / "reference"), "--plugins", plugin, "--metrics", "sharpness_test",
                  "--out", str(tmp_path / "bad"), *extra])
        assert r.exit_code == 2, (extra, r.output)
        assert msg in r.output and "Traceback" not in r.output, (extra, r.output)


def test_metrics_accepts_output_names(data, tmp_path):
    outs = {}
    for label, metrics in (("names", "dice,hd95"), ("metric", "segmentation")):
        out = tmp_path / label
        r = _run(["--reference", str(data / "reference"), "--method", f"interp={data / 'interp'}",
                  "--metrics", metrics, "--out", str(out)])
        assert r.exit_code == 0, r.output
        outs[label] = out
    for f in ("per_case.csv", "summary.csv", "errors.csv"):
        assert (outs["names"] / f).read_bytes() == (outs["metric"] / f).read_bytes(), f
    r = _run(["--reference", str(data / "reference"), "--metrics", "dic", "--out", str(tmp_path / "x")])
    assert r.exit_code == 2 and "Did you mean 'dice'" in r.output


def test_plan_is_frozen_and_pickles_without_networks(data, tmp_path):
    import dataclasses
    import pickle

    from trace_bench.config import RunConfig
    from trace_bench.run.plan import plan_run

    plan = plan_run(RunConfig(out=str(tmp_path / "o"), reference=str(data / "reference"),
                              methods={"interp": str(data / "interp")}, metrics=["weight-free"], frame_size=64))
    with pytest.raises(dataclasses.FrozenInstanceError):
        plan.entries = ()  # type: ignore[misc]
    again = pickle.loads(pickle.dumps(plan))
    assert again.entries == plan.entries and [m.name for m in again.metrics] == [m.name for m in plan.metrics]
    assert [m.opts for m in again.metrics] == [m.opts for m in plan.metrics]
