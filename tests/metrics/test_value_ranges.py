"""Every value printed must be one that can be true (issue 28, finding 5): every output of every shipped metric
declares the range of the quantity it estimates (``value_range``: what reports clip values and intervals to)
and, where the estimator can leave it, the estimator's own range (``estimate_range``); direction flags agree
with the closest-to-GT rule; bookkeeping columns have no direction. The declarations travel in
``metrics.json`` (MetricInfo round trip)."""

from __future__ import annotations

import numpy as np
import pytest

from trace_bench.metrics import METRICS, RunContext
from trace_bench.results.tables import MetricInfo


def _shipped() -> list[type]:
    return [METRICS.get(n) for n in sorted(METRICS.names()) if METRICS.get(n).__module__.startswith("trace_bench.")]


def _outputs(cls) -> dict:
    m = cls()
    out = dict(m.outputs)
    for ctx in (RunContext(), RunContext(classes="2")):
        out.update(m.output_columns(ctx))
    return out


def _inside(inner, outer) -> bool:
    lo_i, hi_i = inner
    lo_o, hi_o = outer
    low_ok = lo_o is None or (lo_i is not None and lo_i >= lo_o)
    return low_ok and (hi_o is None or (hi_i is not None and hi_i <= hi_o))


def test_every_output_declares_its_range():
    seen = 0
    for cls in _shipped():
        for col, o in _outputs(cls).items():
            seen += 1
            assert o.value_range is not None, f"{cls.name}: column {col} declares no value_range"
            lo, hi = o.value_range
            assert lo is None or hi is None or lo < hi, (col, o.value_range)
            if o.estimate_range is not None:  # wider than the quantity's, never narrower
                assert _inside(o.value_range, o.estimate_range) and o.estimate_range != o.value_range, col
            if o.unit == "fraction":
                assert _inside(o.value_range, (-1.0, 1.0)), col
    assert seen > 60


def test_direction_flags():
    for cls in _shipped():
        for col, o in _outputs(cls).items():
            if o.closest_to_reference:  # ranked by |method - GT|: reports mark it "closest to GT", not an arrow
                assert o.higher_is_better is not None, col
            if o.hidden:  # bookkeeping (a std, a count): no "better"
                assert o.higher_is_better is None, col
    seg = METRICS.get("segmentation")().outputs
    assert seg["seg_n_classes"].higher_is_better is None and seg["dice"].higher_is_better is True


def test_declared_ranges_of_the_families():
    k = METRICS.get("kid")().outputs
    assert k["kid"].value_range == (0.0, None) and k["kid"].estimate_range == (None, None)  # unbiased: can be < 0
    assert k["kid_std"].value_range == (0.0, None) and k["kid_std"].higher_is_better is None
    f = METRICS.get("fid")().outputs
    assert f["fid"].value_range == (0.0, None) and f["fid"].estimate_range is None
    assert f["fid_inf"].estimate_range == (None, None)
    p = METRICS.get("prdc")().outputs
    assert p["prdc_precision"].value_range == p["prdc_coverage"].value_range == (0.0, 1.0)
    assert p["prdc_density"].value_range == (0.0, None)
    s = METRICS.get("segmentation")().outputs
    assert s["dice"].value_range == s["jaccard[lungs]"].value_range == (0.0, 1.0)
    assert s["hd95"].value_range == (0.0, None)
    assert METRICS.get("temporal_flickering")().outputs["temporal_flickering"].value_range == (0.0, 1.0)
    assert METRICS.get("overall_consistency")().outputs["overall_consistency"].value_range == (-1.0, 1.0)


def test_ranges_travel_in_metrics_json():
    o = METRICS.get("kid")().outputs["kid"]
    info = MetricInfo.of(o, table="table2", kind="distribution", protocol="p", spec="kid")
    d = info.to_dict()
    assert d["value_range"] == [0.0, None] and d["estimate_range"] == [None, None]
    back = MetricInfo.from_dict(d)
    assert back.value_range == (0.0, None) and back.estimate_range == (None, None)
    assert MetricInfo.from_dict({k: v for k, v in d.items() if k != "estimate_range"}).estimate_range is None


@pytest.mark.parametrize("name", ["fid", "kid", "prdc"])
def test_values_inside_their_estimator_range_on_hostile_sets(name):
    """Identical sets, copies, tiny n: what the statistics return stays inside the declared estimator range
    (for FD: >= 0 up to rounding; PRDC fractions in [0, 1])."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(12, 32)).astype(np.float32)
    m = METRICS.get(name)({"slices": 4} if name != "prdc" else {"slices": 4, "nearest_k": 2})
    sets = [[{"features": x[:6]}, {"features": x[6:]}], [{"features": x[:6]}, {"features": x[:6]}]]
    for gen in sets:
        vals = m.compute(m.merge(gen), m.merge(sets[0]), RunContext())
        for col, v in vals.items():
            o = m.outputs[col]
            lo, hi = o.estimate_range or o.value_range
            if np.isnan(v):
                continue
            assert (lo is None or v >= lo - 1e-9 * max(1.0, abs(v))) and (hi is None or v <= hi), (col, v)
