"""A metric input with a given frames view, for tests of the per-frame VBench metrics."""

from __future__ import annotations

import numpy as np

from trace_bench.metrics import CaseData
from trace_bench.volume import from_canonical


def case_with_frames(frames, prompt=None) -> CaseData:
    """A CaseData whose frames view is ``frames`` (the volume itself is not read by these metrics)."""
    d = CaseData("m", "c", from_canonical(np.zeros((2, 8, 8), np.float32), (1.0, 1.0, 1.0)), prompt=prompt)
    d.__dict__["frames"] = frames
    return d
