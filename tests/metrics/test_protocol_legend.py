"""The legend travels with the run (issue 25): every metric states the meaning of each part of its protocol
id, built from its declarations (spaces, statistics, options), ``metrics.json`` records it per column, and
the report renders the record instead of re-parsing ids."""

from __future__ import annotations

import pytest

from reports.protocols import describe_protocol
from trace_bench.errors import ConfigError
from trace_bench.metrics.base import METRICS, Metric, Output, RunContext
from trace_bench.results import MetricInfo
from trace_bench.run.select import load_metric_registry

from helpers.metric_snapshot import _contexts, _option_values

BAD_MEANINGS = ("not decoded", "declares no meaning")


def _grid():
    """(metric, instance, context) over every registered metric and the option grid of the snapshot."""
    load_metric_registry()
    ctxs = _contexts()
    for name, cls in sorted(METRICS.items()):
        for ctx in ctxs.values():
            yield name, cls(), ctx
        for o in cls.options:
            for v in _option_values(o):
                try:
                    yield name, cls({o.name: v}), ctxs["default"]
                except ConfigError:
                    pass  # an invalid value of the grid (the snapshot pins its message)


def _check(m: Metric, ctx: RunContext) -> int:
    legend = m.protocol_legend(ctx)
    pid = m.protocol_id(ctx)
    assert [p for p, _ in legend] == pid.split("|"), (m.name, pid, legend)
    for part, meaning in legend:
        assert meaning and len(meaning) > 10 and not any(b in meaning for b in BAD_MEANINGS), (m.name, part, meaning)
    return len(legend)


def test_every_part_of_every_protocol_id_has_a_meaning():
    parts = 0
    for _, m, ctx in _grid():
        parts += _check(m, ctx)
    assert parts > 1000  # the grid was walked


def test_options_in_the_id_are_explained():
    """An option that changes the id (``in_protocol_id``) gets an ``opt:`` part naming it with its help."""
    load_metric_registry()
    m = METRICS.get("segmentation")({"provided_labels": "vista3d"})
    legend = m.protocol_legend(RunContext())
    assert legend[-1][0] == "opt:provided_labels=vista3d"
    assert "provided_labels = vista3d" in legend[-1][1] and "segmenter label table" in legend[-1][1]


def test_slices_every_k_reads_as_one_in_k():
    load_metric_registry()
    legend = dict(METRICS.get("fid")({"slices": "every:3"}).protocol_legend(RunContext()))
    assert legend["slices=every3"] == "slices: one axial slice in 3, from the first (indices 0, 3, 6, ...)"
    legend = dict(METRICS.get("kid")({"slices": "central:0.4:16"}).protocol_legend(RunContext()))
    assert "16 evenly spaced slices of the central 0.4" in legend["slices=central0.4x16"]


def test_a_plug_in_without_a_legend_is_marked_not_guessed():
    """Control for the checks above: a metric overriding ``base_protocol_id`` only gets its parts listed as
    declared without a meaning (which the first test would reject for a registered metric)."""

    class Legacy(Metric):
        name = "legacy_plugin"
        outputs = {"legacy_plugin": Output(True)}

        def base_protocol_id(self, ctx: RunContext) -> str:
            return f"{ctx.protocol.id}|mine-v2"

    legend = Legacy().protocol_legend(RunContext())
    assert [p for p, _ in legend] == Legacy().protocol_id(RunContext()).split("|")
    assert "declares no meaning" in legend[1][1]
    with pytest.raises(AssertionError):
        _check(Legacy(), RunContext())


def test_metrics_json_records_the_legend_and_the_report_renders_it():
    from trace_bench.run.plan import column_infos

    load_metric_registry()
    ctx = RunContext(seed=2)
    metrics = [METRICS.get(n)() for n in ("fvd", "kid_astra", "prdc_ctnet", "segmentation", "clip_score")]
    infos = column_infos(metrics, ctx)
    back = {c: MetricInfo.from_dict(i.to_dict()) for c, i in infos.items()}
    assert back == infos
    kid = back["kid_astra"]
    assert kid.legend and [p for p, _ in kid.legend] == kid.protocol.split("|")
    for info in back.values():
        rendered = describe_protocol(info.protocol, back)
        assert rendered == list(info.legend)
        assert not any(b in m for _, m in rendered for b in BAD_MEANINGS)
    # an id whose parts were each recorded by some metric of the run (e.g. the frame protocol alone)
    frame = ctx.protocol.id
    assert describe_protocol(frame, back)[0][1] == ctx.protocol.meaning


def test_an_old_run_without_legends_falls_back_and_says_so():
    old = {"fid": MetricInfo(False, protocol="ct-frames-v1:256px:hu[-1000,1000]:bilinear-aa:round-half-up|"
                                      "inception-fid:inc299-nvbilinear-tf|slices=every3|ddof=1")}
    parts = dict(describe_protocol(old["fid"].protocol, old))
    assert parts["slices=every3"] == "one axial slice in 3, from the first"  # was "every3 axial slices"
    assert describe_protocol("astra-i3resnet152:merlin-i3res152:gap2048", old)[0][1].startswith("not decoded")
