"""Every registered metric's declaration and protocol ids over an option grid are pinned (issue 25):
a refactor of the metric layer must not move a cache key, a CSV column or a ``compare`` tolerance.
A deliberate change: ``python tests/helpers/metric_snapshot.py --write``, and name the version bump."""

from __future__ import annotations

import json

from helpers.metric_snapshot import SNAPSHOT, dumps, snapshot


def test_metric_snapshot_unchanged():
    now = json.loads(dumps(snapshot()))
    pinned = json.loads(SNAPSHOT.read_text(encoding="utf-8"))
    assert sorted(now["metrics"]) == sorted(pinned["metrics"])
    assert now["keywords"] == pinned["keywords"]
    for name in pinned["metrics"]:
        for part in pinned["metrics"][name]:
            assert now["metrics"][name][part] == pinned["metrics"][name][part], (name, part)
    assert now == pinned
