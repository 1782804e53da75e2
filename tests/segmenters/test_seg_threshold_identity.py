"""The fast scipy path of the ``threshold`` segmenter gives the label maps of the code it replaced, bit
for bit, and its building blocks (:mod:`trace_bench.segmenters.morphology`) equal ``scipy.ndimage``.

The reference is a FROZEN COPY, kept in this file (:func:`frozen_threshold_segment`), of
``trace_bench/segmenters/threshold.py:threshold_segment`` as it was before the speed work (main at
0a3977d, segmenter id ``threshold-v1``): ``binary_opening`` with the disc, the largest component of
the full volume, ``binary_fill_holes`` slice by slice, ``np.isin`` for the kept lung components. It is
not imported from the package on purpose: the package's version may change, this one may not (the
segmenter id ``threshold-v1`` promises these maps). Compared with ``np.array_equal`` on uint8 maps:
the shipped chest CTs at full resolution (and 2x in-plane, 512 x 512) and edge cases (ties, borders,
empty and full volumes, spirals, tiny structures, anisotropic spacing, HU exactly on a threshold,
non-finite HU).
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage as ndi

from trace_bench.segmenters import get_segmenter
from trace_bench.segmenters import morphology as MO
from trace_bench.segmenters.threshold import threshold_segment
from trace_bench.segmenters.threshold_params import disc, opening_disc

from helpers.paths import DEMO_CTS

AIR, FAT, TISSUE, LUNG = -1000.0, -100.0, 40.0, -850.0


# ------------------------------------------------------------------- frozen reference (do not edit)
def _frozen_largest(mask: np.ndarray) -> np.ndarray:
    lab, n = ndi.label(mask)
    if n == 0:
        return mask
    sizes = np.bincount(lab.ravel())
    sizes[0] = 0
    return lab == int(sizes.argmax())


def _frozen_fill_axial(mask: np.ndarray) -> np.ndarray:
    out = np.empty_like(mask)
    for k in range(mask.shape[0]):
        out[k] = ndi.binary_fill_holes(mask[k])
    return out


def frozen_threshold_segment(hu: np.ndarray, spacing) -> np.ndarray:
    """threshold-v1 as shipped at main 0a3977d (the constants inlined: -500, -400 HU, 3 mm, 10 %)."""
    a = np.asarray(hu, dtype=np.float32)
    _, sy, sx = (float(s) for s in spacing)
    ry, rx = max(1, int(round(3.0 / sy))), max(1, int(round(3.0 / sx)))
    yy, xx = np.mgrid[-ry:ry + 1, -rx:rx + 1]
    st = ((yy / max(ry, 1)) ** 2 + (xx / max(rx, 1)) ** 2 <= 1.0)[None]
    body = a > -500.0
    body = ndi.binary_opening(body, structure=st)
    body = _frozen_fill_axial(_frozen_largest(body))
    air = body & (a < -400.0)
    lab, n = ndi.label(air)
    lungs = np.zeros_like(air)
    if n:
        sizes = np.bincount(lab.ravel())
        sizes[0] = 0
        keep = np.flatnonzero(sizes >= 0.10 * sizes.max())
        lungs = _frozen_fill_axial(np.isin(lab, keep)) & body
    out = np.zeros(a.shape, dtype=np.uint8)
    out[body] = 2
    out[lungs] = 1
    return out
# -------------------------------------------------------------------------- end of the frozen copy


def _same(hu: np.ndarray, spacing) -> np.ndarray:
    ref = frozen_threshold_segment(hu, spacing)
    got = threshold_segment(hu, spacing)
    assert got.dtype == np.uint8 and got.shape == ref.shape
    assert np.array_equal(got, ref), f"{np.count_nonzero(got != ref)} voxels differ"
    return ref


def _phantom(shape, spacing, seed: int, touch: bool = False) -> np.ndarray:
    """Chest-like HU: body ellipse (touching the in-plane borders if asked), two lungs, a trachea
    open to the outside in slice 0, a gas pocket, a table joined by a 1-voxel strap, noise."""
    rng = np.random.default_rng(seed)
    nz, ny, nx = shape
    _, sy, sx = spacing
    y, x = np.mgrid[0:ny, 0:nx]
    table = min(max(3, int(np.ceil(9 / sy))), ny // 4)
    cy, cx = (ny - table) * 0.48, nx / 2
    ay, ax = (ny - table) * (0.62 if touch else 0.38), nx * (0.62 if touch else 0.42)
    h, w = min(ay, cy), min(ax, cx)
    hu = np.full(shape, AIR, np.float32)
    b2 = ((y - cy) / ay) ** 2 + ((x - cx) / ax) ** 2 <= 1
    hu[:, b2] = TISSUE
    hu[:, b2 & (np.abs(x - cx) > 0.8 * w) & (np.abs(y - cy) < 0.3 * h)] = FAT
    for side in (-1, 1):
        hu[:, ((y - cy) / (0.5 * h)) ** 2 + ((x - cx - side * 0.4 * w) / (0.2 * w)) ** 2 <= 1] = LUNG
    r = max(1, int(round(2.5 / sx)))
    hu[: max(1, nz // 3), (np.abs(x - cx) <= r) & (np.abs(y - (cy - 0.55 * h)) <= max(1, int(round(2.5 / sy))))] = AIR
    hu[0, (np.abs(x - cx) <= r) & (y < cy - 0.55 * h)] = AIR
    hu[nz // 2:, int(cy + 0.7 * h), int(cx) - 1:int(cx) + 2] = -700.0
    hu[:, ny - table:, int(0.15 * nx):int(0.85 * nx)] = 200.0
    hu[:, int(cy + h) - 2:ny - table, int(cx)] = 200.0
    return hu + rng.normal(0, 30, size=shape).astype(np.float32)


def _spiral(n: int) -> np.ndarray:
    """A square spiral wall of width 1 (True) in an n x n slice, corridor width 1."""
    s = np.zeros((n, n), bool)
    lo, hi = 0, n - 1
    while lo <= hi:
        s[lo, lo:hi + 1] = True
        s[lo:hi + 1, hi] = True
        s[hi, lo:hi + 1] = True
        if lo + 2 <= hi:
            s[lo + 2:hi + 1, lo] = True
            s[lo + 2, lo:lo + 3] = True
        lo, hi = lo + 2, hi - 2
    return s


# ------------------------------------------------------------------------------ shipped chest CT
@pytest.mark.parametrize("name", ["lung1", "lung2"])
def test_shipped_chest_ct_full_resolution(name):
    from trace_bench.io import read_volume

    v = read_volume(DEMO_CTS / f"{name}.nii.gz")
    ref = _same(v.array, v.spacing)
    assert (ref == 1).sum() > 100_000 and (ref == 2).sum() > 100_000
    _same(v.array[10:30], v.spacing)  # a slab: lungs cut at both ends
    _same(v.array[:, 40:200, 30:230], v.spacing)  # the body cut by the image border


def test_shipped_chest_ct_512_in_plane():
    """lung1 repeated 2x in-plane (512 x 512 at 0.57 mm: the 11 x 11 disc of clinical CT)."""
    from trace_bench.io import read_volume

    v = read_volume(DEMO_CTS / "lung1.nii.gz")
    hu = np.ascontiguousarray(np.repeat(np.repeat(v.array, 2, axis=1), 2, axis=2))
    sp = (v.spacing[0], v.spacing[1] / 2, v.spacing[2] / 2)
    assert opening_disc(sp).shape == (1, 11, 11)
    _same(hu, sp)


def test_segmenter_classes_follow_the_frozen_map():
    from trace_bench.io import read_volume

    v = read_volume(DEMO_CTS / "lung2.nii.gz")
    ref = frozen_threshold_segment(v.array, v.spacing)
    seg = get_segmenter("threshold", device="cpu")
    assert np.array_equal(seg.segment(v, "3").labels, ref)
    assert np.array_equal(seg.segment(v, "2").labels, (ref > 0).astype(np.uint8))
    assert seg.segment(v, "3").segmenter == "threshold-v1"


# ------------------------------------------------------------------------------------ edge cases
@pytest.mark.parametrize("case", [
    ((12, 48, 56), (5.0, 1.0, 1.0), False),
    ((12, 80, 56), (2.5, 0.6, 1.5), False),  # anisotropic in-plane: ry = 5, rx = 2
    ((9, 40, 56), (1.0, 2.0, 0.7), True),  # body touches the in-plane borders: ry = 2, rx = 4
    ((1, 64, 64), (5.0, 1.0, 1.0), False),  # one slice
    ((7, 36, 30), (3.0, 10.0, 10.0), True),  # coarse: 1-voxel discs (a cross)
    ((6, 60, 60), (1.0, 0.25, 0.25), False),  # fine: a 25 x 25 disc
    ((5, 60, 60), (1.0, 0.09, 0.09), False),  # a 67 x 67 disc, larger than the image: nothing survives
])
def test_phantoms(case):
    shape, spacing, touch = case
    for seed in (0, 1, 2):
        _same(_phantom(shape, spacing, seed, touch), spacing)


def test_empty_full_and_degenerate_volumes():
    sp = (2.0, 3.0, 3.0)
    assert not _same(np.full((4, 20, 22), AIR, np.float32), sp).any()
    body = _same(np.full((4, 20, 22), TISSUE, np.float32), sp)
    assert body.sum() == 2 * (4 * 20 * 22 - 4 * 4)  # all body but the corners the cross opening removes
    _same(np.full((3, 16, 16), LUNG, np.float32), sp)
    for shape in [(1, 1, 1), (1, 1, 9), (1, 9, 1), (3, 1, 7), (2, 5, 1), (1, 2, 2), (0, 4, 4), (4, 0, 3)]:
        for val in (AIR, TISSUE, LUNG):
            _same(np.full(shape, val, np.float32), sp)
            _same(np.full(shape, val, np.float32), (1.0, 0.5, 0.5))


def test_ties_between_bodies_and_lungs():
    sp = (2.0, 3.0, 3.0)
    hu = np.full((6, 30, 64), AIR, np.float32)
    for x0 in (2, 34):  # two equal bodies, each with two equal lungs
        hu[1:5, 3:27, x0:x0 + 28] = TISSUE
        hu[1:5, 8:22, x0 + 4:x0 + 12] = -900.0
        hu[1:5, 8:22, x0 + 16:x0 + 24] = -900.0
    ref = _same(hu, sp)
    assert (ref[:, :, :32] > 0).any() and not (ref[:, :, 32:] > 0).any()  # the first in raster order wins
    assert (ref == 1).sum() == 2 * 4 * 14 * 8
    # the tie broken along z and along y instead of x
    _same(np.ascontiguousarray(np.concatenate([hu[:, :, :32], hu[:, :, 32:]], axis=1)), sp)
    stacked = np.full((12, 30, 32), AIR, np.float32)
    stacked[:6], stacked[6:] = hu[:, :, :32], hu[:, :, 32:]
    _same(stacked, sp)
    # a lung component exactly at 10 % of the largest: kept (>=)
    lung = np.full((2, 40, 60), TISSUE, np.float32)
    lung[:, 0, :] = lung[:, -1, :] = lung[:, :, 0] = lung[:, :, -1] = AIR
    lung[:, 5:25, 5:25] = LUNG  # 800 voxels
    lung[:, 5:9, 40:50] = LUNG  # 80 voxels = 10 %
    lung[:, 30:33, 40:42] = LUNG  # 12 voxels: dropped
    ref = _same(lung, (1.0, 3.0, 3.0))
    assert ref[0, 6, 45] == 1 and ref[0, 31, 41] == 2


def test_thresholds_exactly_and_non_finite_hu():
    rng = np.random.default_rng(5)
    vals = np.array([-500.0, -400.0, np.nextafter(np.float32(-500), 0), np.nextafter(np.float32(-400), -1000),
                     AIR, TISSUE], np.float32)
    hu = rng.choice(vals, size=(5, 30, 34), p=[0.2, 0.2, 0.15, 0.15, 0.1, 0.2])
    _same(hu, (1.0, 3.0, 3.0))
    _same(hu, (1.0, 1.0, 1.0))
    ph = _phantom((6, 48, 56), (5.0, 1.0, 1.0), 3)
    ph[2, 10:20, 10:20] = np.nan
    ph[3, 30:32, 20:40] = np.inf
    ph[4, 25:27, 20:40] = -np.inf
    _same(ph, (5.0, 1.0, 1.0))
    _same(ph.astype(np.float64) + 0.25, (5.0, 1.0, 1.0))  # float64 input: cast to float32 as before


def test_spirals_serpentines_and_tiny_structures():
    sp = (1.0, 3.0, 3.0)  # a 1-voxel cross disc keeps 1-voxel-wide walls only where they are crosses
    # a spiral of tissue walls (3 voxels wide after scaling) around a lung-like core: its corridor
    # reaches the outside, so the core is not a hole of the body
    s = np.repeat(np.repeat(_spiral(21), 3, axis=0), 3, axis=1)
    hu = np.full((4, 63, 63), AIR, np.float32)
    hu[:, s] = TISSUE
    hu[:, 28:35, 28:35] = np.where(hu[:, 28:35, 28:35] == AIR, LUNG, hu[:, 28:35, 28:35])
    _same(hu, sp)
    _same(hu, (1.0, 1.0, 1.0))  # a 7 x 7 disc: the walls are cut
    closed = hu.copy()
    closed[:, 0:3, :] = TISSUE  # close the corridor's mouth in some slices only
    closed[2:, 0:3, :] = AIR
    _same(closed, sp)
    # a body ring with a lung spiral inside (air corridors in a tissue disc)
    ring = np.full((3, 70, 70), AIR, np.float32)
    y, x = np.mgrid[0:70, 0:70]
    ring[:, (y - 35) ** 2 + (x - 35) ** 2 <= 33 ** 2] = TISSUE
    ring[:, 14:56, 14:56][:, np.repeat(np.repeat(_spiral(21), 2, 0), 2, 1)] = LUNG
    _same(ring, sp)
    # tiny: single voxels of tissue and of air, 2 x 2 bodies, a 1-voxel channel to the border
    rng = np.random.default_rng(8)
    for seed in range(6):
        t = np.full((3, 25, 27), AIR, np.float32)
        t[rng.random(t.shape) < 0.05 * (seed + 1)] = TISSUE
        t[rng.random(t.shape) < 0.02 * seed] = LUNG
        for spc in ((1.0, 3.0, 3.0), (1.0, 1.5, 3.0), (2.0, 1.0, 1.0)):
            _same(t, spc)
    chan = np.full((2, 20, 20), TISSUE, np.float32)
    chan[:, 5:15, 5:15] = LUNG
    chan[1, 9:11, 0:5] = AIR  # slice 1: the lung opens to the image border through a channel
    _same(chan, (1.0, 3.0, 3.0))


def test_random_volumes_many_seeds():
    for seed in range(12):
        rng = np.random.default_rng(100 + seed)
        shape = tuple(int(v) for v in rng.integers([1, 4, 4], [8, 40, 40]))
        smooth = (ndi.gaussian_filter(rng.normal(size=shape), rng.uniform(0.5, 3.0)) * 3000).astype(np.float32)
        spc = (float(rng.uniform(0.5, 5)), float(rng.uniform(0.3, 4)), float(rng.uniform(0.3, 4)))
        _same(smooth, spc)
        noise = rng.choice(np.array([AIR, LUNG, TISSUE], np.float32), size=shape, p=[0.3, 0.2, 0.5])
        _same(noise, spc)


# -------------------------------------------------------------------------------- building blocks
def _random_structures(rng):
    for ry, rx in [(1, 1), (3, 3), (1, 4), (5, 2), (2, 1), (0, 3), (4, 0)]:
        yield disc(max(ry, 1), max(rx, 1))[0] if ry and rx else np.ones((2 * ry + 1, 2 * rx + 1), bool)
    yield np.ones((1, 1), bool)
    yield np.array([[0, 1, 0], [1, 1, 1], [0, 1, 0]], bool)
    yield np.array([[0, 0, 0], [0, 1, 0], [0, 0, 0]], bool)
    yield np.array([[1, 0, 0], [0, 0, 0], [0, 0, 0]], bool)  # not centred: scipy fallback
    yield np.array([[1, 1, 0], [0, 1, 0], [0, 0, 1]], bool)  # asymmetric: scipy fallback
    yield np.array([[1, 0, 1], [1, 1, 1], [0, 1, 0]], bool)  # a row with a gap: scipy fallback
    yield np.zeros((3, 3), bool)
    for _ in range(8):
        yield rng.random(tuple(int(v) for v in 2 * rng.integers(0, 4, 2) + 1)) > 0.4


def test_morphology_equals_scipy():
    rng = np.random.default_rng(0)
    masks = [lambda s: rng.random(s) > 0.5, lambda s: rng.random(s) > 0.15, lambda s: rng.random(s) > 0.85,
             lambda s: ndi.gaussian_filter(rng.normal(size=s), 1.5) > 0.1, lambda s: np.zeros(s, bool),
             lambda s: np.ones(s, bool)]
    for st in _random_structures(rng):
        for shape in [(3, 17, 23), (1, 9, 7), (2, 1, 12), (2, 12, 1), (1, 1, 1), (2, 3, 3)]:
            for make in masks:
                m = make(shape)
                s3 = st[None]
                assert np.array_equal(MO.erode_axial(m, st), ndi.binary_erosion(m, structure=s3)), (st, shape)
                assert np.array_equal(MO.dilate_axial(m, st), ndi.binary_dilation(m, structure=s3)), (st, shape)
                assert np.array_equal(MO.open_axial(m, s3), ndi.binary_opening(m, structure=s3)), (st, shape)


def test_row_half_widths():
    assert MO.row_half_widths(disc(5, 5)).tolist() == [0, 3, 4, 4, 4, 5, 4, 4, 4, 3, 0]
    assert MO.row_half_widths(np.ones((3, 5), bool)).tolist() == [2, 2, 2]
    assert MO.row_half_widths(np.array([[0, 0, 0], [0, 1, 0], [1, 1, 1]], bool)).tolist() == [-1, 0, 1]
    assert MO.row_half_widths(np.array([[1, 1, 0]], bool)) is None
    assert MO.row_half_widths(np.array([[1, 0, 1]], bool)) is None
    with pytest.raises(ValueError, match="odd-sized"):
        MO.erode_axial(np.ones((1, 4, 4), bool), np.ones((2, 3), bool))


def test_fill_holes_axial_equals_scipy_per_slice_not_3d():
    rng = np.random.default_rng(4)
    masks = [rng.random((5, 21, 18)) > p for p in (0.3, 0.5, 0.7)]
    masks += [ndi.gaussian_filter(rng.normal(size=(4, 30, 30)), 1.5) > 0.0, np.zeros((2, 5, 5), bool),
              np.ones((2, 5, 5), bool), rng.random((3, 1, 9)) > 0.3, rng.random((2, 7, 1)) > 0.3]
    ring = np.zeros((2, 9, 9), bool)
    ring[:, 1:8, 1:8] = True
    ring[:, 3:6, 3:6] = False
    ring[1, 3:6, 0:4] = False  # slice 1: the hole opens to the border through a channel
    diag = np.zeros((1, 7, 7), bool)
    diag[0, 1:6, 1:6] = True
    diag[0, 2:5, 2:5] = False
    diag[0, 1, 1] = False  # a diagonal gap: 4-connectivity keeps the hole closed
    spiral = np.stack([_spiral(15), ~_spiral(15)])
    for k, m in enumerate(masks + [ring, diag, spiral]):
        ref = np.stack([ndi.binary_fill_holes(s) for s in m]) if len(m) else m
        assert np.array_equal(MO.fill_holes_axial(m), ref), k
    # a tube: its core is a hole in every slice but opens to the outside in 3-D through the end slice
    tube = np.zeros((4, 9, 9), bool)
    tube[:, 2:7, 2:7] = True
    tube[:, 4, 4] = False
    assert MO.fill_holes_axial(tube)[:, 4, 4].all() and not ndi.binary_fill_holes(tube)[:, 4, 4].any()


def test_fill_holes_on_a_box_equals_the_whole_volume():
    """What the segmenter relies on: the axial fill of a mask that is False outside a box, computed on
    the box, equals the whole volume's fill (random masks placed in random boxes, box on the borders too)."""
    rng = np.random.default_rng(9)
    for _ in range(40):
        full = np.zeros((3, 24, 26), bool)
        z0, y0, x0 = (int(v) for v in rng.integers(0, [2, 12, 12]))
        z1, y1, x1 = (int(v) for v in rng.integers([z0 + 1, y0 + 1, x0 + 1], [4, 25, 27]))
        full[z0:z1, y0:y1, x0:x1] = rng.random((z1 - z0, y1 - y0, x1 - x0)) > rng.uniform(0.2, 0.7)
        box = MO.bounding_box(full)
        whole = MO.fill_holes_axial(full)
        if box is None:
            assert not whole.any()
            continue
        part = np.zeros_like(full)
        part[box] = MO.fill_holes_axial(full[box])
        assert np.array_equal(part, whole)


def test_component_sizes_and_bounding_box():
    rng = np.random.default_rng(2)
    m = rng.random((6, 40, 50)) > 0.6
    lab, n = ndi.label(m)
    assert np.array_equal(MO.component_sizes(lab, n, chunk=997), np.bincount(lab.ravel(), minlength=n + 1))
    assert MO.bounding_box(np.zeros((2, 3, 4), bool)) is None
    b = np.zeros((5, 6, 7), bool)
    b[1, 2, 3] = b[3, 4, 1] = True
    assert MO.bounding_box(b) == (slice(1, 4), slice(2, 5), slice(1, 4))

