"""Slice sampling as part of the protocol (issue "Speed"): named, deterministic, in protocol ids and
cache keys; the --fast preset."""

from __future__ import annotations

import numpy as np
import pytest

from trace_bench.errors import ConfigError
from trace_bench.metrics import METRICS, RunContext
from trace_bench.protocol import SliceSampling


def test_sampling_indices_by_hand():
    assert SliceSampling.parse("all").indices(5).tolist() == [0, 1, 2, 3, 4]
    assert SliceSampling.parse(3).indices(9).tolist() == [0, 4, 8]
    assert SliceSampling.parse("every:4").indices(10).tolist() == [0, 4, 8]
    # central 40% of 10 slices: floor(10 * 0.6 / 2) = 3 cut on each side -> slices 3..6
    assert SliceSampling.parse("central:0.4").indices(10).tolist() == [3, 4, 5, 6]
    assert SliceSampling.parse("central:0.4:2").indices(10).tolist() == [3, 6]
    assert SliceSampling.parse("fast").indices(100).tolist() == list(np.unique(np.round(np.linspace(30, 69, 16)).astype(int)))
    assert len(SliceSampling.parse("central:0.01").indices(3)) == 1  # never empty
    for bad in ("0", "vlm3d", "every:0", "central:1.5", "central:0", "middle", "central:x"):
        with pytest.raises(ConfigError, match="slice sampling"):
            SliceSampling.parse(bad)


def test_sampling_in_protocol_ids_and_options():
    ids = {s: METRICS.get("fid")({"slices": s}).protocol_id(RunContext()) for s in ("all", 40, "central:0.4", "every:3")}
    assert "|slices=all|ddof=1|" in ids["all"] and "|slices=40|" in ids[40]  # earlier ids unchanged
    assert "|slices=central0.4|" in ids["central:0.4"] and "|slices=every3|" in ids["every:3"]
    assert len(set(ids.values())) == 4
    with pytest.raises(ConfigError, match="option fid.slices"):
        METRICS.get("fid")({"slices": "sometimes"})


def test_fast_preset_fills_declared_options_unless_set(tmp_path):
    from trace_bench.config import RunConfig
    from trace_bench.run.plan import instantiate_metrics

    cfg = RunConfig(out=str(tmp_path), reference=str(tmp_path), metrics=["fid", "fvd", "fid_2p5d", "temporal_flickering"],
                    fast=True, options={"fvd": {"clips": 5}})
    got = {m.name: m for m in instantiate_metrics(cfg)}
    assert got["fid"].opts["slices"] == "central:0.4:16" and "central0.4x16" in got["fid"].protocol_id(RunContext())
    assert got["fvd"].opts["clips"] == 5  # the user's own value wins
    assert got["fid_2p5d"].opts["every_k"] == 8
    assert got["temporal_flickering"].opts == {}
