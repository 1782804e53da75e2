from __future__ import annotations

import numpy as np
import pytest

from trace_bench.errors import ConventionError
from trace_bench.intensity import parse_convention, suggest_convention


@pytest.mark.parametrize("spec,x,hu", [
    ("hu", -1000.0, -1000.0), ("hu/1000", 0.25, 250.0), ("unit", 0.0, -1000.0), ("unit", 1.0, 1000.0),
    ("unit:-1024:600", 1.0, 600.0), ("unit:-1024:600", 0.0, -1024.0), ("symmetric", 0.0, 0.0),
    ("symmetric", -1.0, -1000.0), ("byte", 255.0, 1000.0), ("hu+1024", 0.0, -1024.0), ("hu+32768", 32768.0, 0.0),
])
def test_conventions_map_to_hu(spec, x, hu):
    c = parse_convention(spec)
    assert c.to_hu(np.array([x], np.float32))[0] == pytest.approx(hu)
    assert c.from_hu(np.array([hu]))[0] == pytest.approx(x, abs=1e-6)
    assert parse_convention(c.spec) == c


def test_unclamped_overshoot_is_kept():
    # GenerateCT's decoder may overshoot [-1, 1]: the conversion must not clip
    assert parse_convention("hu/1000").to_hu(np.array([1.2], np.float32))[0] == pytest.approx(1200.0)


@pytest.mark.parametrize("bad", ["hU/10", "unit:1", "unit:5:1", "foo", "hu:1:2"])
def test_malformed_conventions(bad):
    with pytest.raises(ConventionError):
        parse_convention(bad, "file.nii")


def test_detection_refuses_ambiguous_ranges():
    rng = np.random.default_rng(0)
    with pytest.raises(ConventionError, match="unit"):
        suggest_convention(rng.random(100), "a.nii")
    with pytest.raises(ConventionError, match="symmetric"):
        suggest_convention(rng.random(100) * 2 - 1, "b.nii")
    with pytest.raises(ConventionError, match="cannot tell"):
        suggest_convention(np.array([0.0, 200.0]), "c.nii")
    conv, why = suggest_convention(np.array([-1024, 40, 1500], np.int16))
    assert conv.spec == "hu" and "HU" in why
