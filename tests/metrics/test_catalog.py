"""The metric catalogue (trace_bench/metrics/catalog.py): FD / KID / PRDC generated from one row each, with
their cache-key identity kept, picklable for worker processes, and a new feature space costing one
declaration and a few rows."""

from __future__ import annotations

import copy
import pickle

import numpy as np
import pytest

from trace_bench.metrics import METRICS, CaseData, RunContext, fid_from_features, kid_from_features, prdc_from_features
from trace_bench.metrics.base import Option
from trace_bench.metrics.catalog import CATALOG, CLASSES, Row, SpaceMetric, metric_class
from trace_bench.metrics.spaces import FeatureSpace
from trace_bench.metrics.statistic import FD, KID, PRDC, Display
from trace_bench.volume import Volume


def test_every_row_is_a_registered_class_with_its_declared_parts():
    assert len(CATALOG) == 17 and {r.name for r in CATALOG} == set(CLASSES)
    for row in CATALOG:
        cls = METRICS.get(row.name)
        assert cls is CLASSES[row.name] and issubclass(cls, SpaceMetric)
        assert f"{cls.__module__}.{cls.__qualname__}" == row.key_class  # the path the cache key records
        assert cls.options == row.space.options + row.statistic.options_for(row.space.one_per_volume)
        assert cls.weights == row.space.default_weights and cls.description
        m = cls()
        assert m.protocol_id(RunContext()).startswith(row.space.protocol(m.opts, RunContext()))


def test_generated_metrics_pickle_by_name_with_their_options():
    m = METRICS.get("kid_i3d")({"clips": 3, "subsets": 7})
    for copied in (pickle.loads(pickle.dumps(m)), copy.deepcopy(m)):
        assert type(copied) is type(m) and copied.opts == m.opts and copied.n_cases == 0


def _slice_stats(net, data: CaseData, ctx: RunContext, opts: dict) -> np.ndarray:
    """Per axial slice: the fractions of voxels below -500, -500..100 and above 100 HU (no network)."""
    a = data.volume.array.reshape(len(data.volume.array), -1)
    return np.stack([(a < -500).mean(1), ((a >= -500) & (a <= 100)).mean(1), (a > 100).mean(1)], 1)


def test_a_new_feature_space_is_one_declaration_and_a_few_rows(small_volume):
    """What ARCHITECTURE.md's "How to add a feature space" shows, on a space without a network (the HU-band
    fractions above, a stand-in for a real network's features): the three statistics come for free."""
    space = FeatureSpace(
        "hu_bands", "ctnet", "HU-band fractions of axial slices", (Option("unused", 1, "an option of the space",
                                                                           type=int, in_protocol_id=False),),
        lambda o: (), lambda o, ctx: [("hu-bands-v1", "fractions of voxels per HU band, per axial slice")],
        _slice_stats)
    rows = [Row("fd_bands", space, FD(), Display("FD (bands)", 50), "tests.FDBands"),
            Row("kid_bands", space, KID(), Display("KID (bands)", 51), "tests.KIDBands"),
            Row("prdc_bands", space, PRDC(), Display("PRDC (bands)", 52), "tests.PRDCBands")]
    opts = {"fd_bands": {}, "kid_bands": {"subsets": 5, "subset_size": 4}, "prdc_bands": {"nearest_k": 2}}
    fd, kid, prdc = (metric_class(r)(opts[r.name]) for r in rows)
    ctx = RunContext(seed=4)
    rng = np.random.default_rng(0)
    vols = [Volume(small_volume.array + rng.normal(0, s, small_volume.array.shape).astype(np.float32),
                   small_volume.spacing, small_volume.affine, {}) for s in (0, 50, 300, 600)]
    feats = [_slice_stats(None, CaseData("m", str(i), v), ctx, {}) for i, v in enumerate(vols)]
    states = {m.name: [m.case_state(CaseData("m", str(i), v), ctx) for i, v in enumerate(vols)] for m in (fd, kid, prdc)}
    g, r = np.concatenate(feats[:2]), np.concatenate(feats[2:])
    assert fd.compute(fd.merge(states["fd_bands"][:2]), fd.merge(states["fd_bands"][2:]), ctx)["fd_bands"] == \
        pytest.approx(fid_from_features(g, r), rel=1e-9)
    kv = kid.compute(kid.merge(states["kid_bands"][:2]), kid.merge(states["kid_bands"][2:]), ctx)
    vg, vr = (np.repeat(np.arange(2), [len(f) for f in fs]) for fs in (feats[:2], feats[2:]))
    assert (kv["kid_bands"], kv["kid_bands_std"]) == pytest.approx(
        kid_from_features(g, r, 5, 4, seed=4, gen_volume=vg, ref_volume=vr), rel=1e-9)
    kid_all = metric_class(rows[1])({**opts["kid_bands"], "pairs": "all"})
    ka = kid_all.compute(kid_all.merge(states["kid_bands"][:2]), kid_all.merge(states["kid_bands"][2:]), ctx)
    assert (ka["kid_bands"], ka["kid_bands_std"]) == pytest.approx(kid_from_features(g, r, 5, 4, seed=4), rel=1e-9)
    pv = prdc.compute(prdc.merge(states["prdc_bands"][:2]), prdc.merge(states["prdc_bands"][2:]), ctx)
    want = prdc_from_features(r, g, 2)  # the rows as the states keep them (float64: float32 would round them)
    assert pv == {f"prdc_bands_{k}": pytest.approx(v, abs=1e-12) for k, v in want.items()}
    assert fd.protocol_legend(ctx)[0] == ("hu-bands-v1", "fractions of voxels per HU band, per axial slice")
    assert fd.protocol_id(ctx).startswith("hu-bands-v1|fd:ddof=1|inf:chong-forsyth:") and "fd_bands" not in METRICS
