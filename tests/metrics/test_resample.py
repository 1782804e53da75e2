"""Resampling to a voxel spacing (trace_bench/networks/resample.py) against MONAI's ``Spacing`` itself, on
volumes BUILT to hit the rounding tie of the output shape: the extent is a half-integer number of target
voxels (1.5 mm slices in even number, 0.75 mm pixels; odd and even counts along every axis).

MONAI: ``round((n - 1) * old / new + 1)`` (half to even); the form trace-bench used before,
``round((n - 1) * old / new) + 1``, is one voxel off on every tie where ``(n - 1) * old / new`` rounds up
(asserted below, so this test fails on the old form). Values: float32 round-off against MONAI's resampler.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from trace_bench.networks.resample import resample_spacing, spacing_shape

#: (z, y, x)-style counts with every odd / even combination, 1.5 mm slices and 0.75 mm pixels -> 3 / 1.5 mm
COUNTS = [(z, y, x) for z, y, x in itertools.product((40, 41), (30, 31), (34, 35))]
SPACING, NEW = (1.5, 0.75, 0.75), (3.0, 1.5, 1.5)


def _monai(a: np.ndarray, spacing, new) -> np.ndarray:
    from monai.data import MetaTensor
    from monai.transforms import Spacing

    x = MetaTensor(torch.from_numpy(np.ascontiguousarray(a))[None],
                   affine=torch.diag(torch.tensor([*spacing, 1.0], dtype=torch.float64)))
    return Spacing(pixdim=new, mode="bilinear")(x)[0].numpy()


def test_shape_equals_monai_on_ties_and_differs_from_the_old_form():
    ties = 0
    for shape in COUNTS:
        want = _monai(np.zeros(shape, np.float32), SPACING, NEW).shape
        assert spacing_shape(shape, SPACING, NEW) == want, shape
        old = tuple(int(round((n - 1) * s / t)) + 1 for n, s, t in zip(shape, SPACING, NEW))
        ties += old != want
    assert ties == len(COUNTS) - 1  # only (41, 31, 35) has no tie on any axis: every other shape moved


def test_values_equal_monai_spacing():
    rng = np.random.default_rng(0)
    for shape in COUNTS[:4] + [(23, 19, 17)]:
        a = (rng.normal(size=shape) * 300 - 500).astype(np.float32)
        for sp, new in ((SPACING, NEW), ((5.0, 1.14, 1.14), (3.0, 1.5, 1.5)), ((1.0, 1.0, 1.5), (1.5, 1.5, 1.5))):
            want = _monai(a, sp, new)
            got = resample_spacing(a, sp, new)
            assert got.shape == want.shape and got.dtype == np.float32
            np.testing.assert_allclose(got, want, rtol=0, atol=1e-5 * float(np.ptp(a)))


def test_identity_spacing_and_isotropic_cube():
    from trace_bench.metrics.fid import isotropic_cube
    from trace_bench.volume import Volume

    a = np.arange(4 * 5 * 6, dtype=np.float32).reshape(4, 5, 6)
    np.testing.assert_allclose(resample_spacing(a, (2.0, 1.0, 1.0), (2.0, 1.0, 1.0)), a, atol=1e-4)
    v = Volume(np.zeros((40, 31, 34), np.float32), (1.5, 0.75, 0.75), np.diag([-0.75, -0.75, 1.5, 1.0]), {})
    cube = isotropic_cube(v, 1.5)  # MONAI's shape (40 -> 39 * 1.5 / 1.5 + 1 = 40; 30 * 0.5 + 1 = 16; 33 * .5 + 1 -> 18)
    assert cube.shape == (40, 40, 40)
    assert spacing_shape((40, 31, 34), (1.5, 0.75, 0.75), (1.5,) * 3) == (40, 16, 18)
    with pytest.raises(ValueError, match="3 spacings"):
        spacing_shape((4, 5, 6), (1.0, 1.0), (1.0, 1.0, 1.0))
