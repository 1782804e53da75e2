"""The torch path of the ``threshold`` segmenter (:mod:`trace_bench.segmenters.threshold_torch`)
equals the scipy path bit for bit (uint8 label maps compared with ``np.array_equal``), step by step
against ``scipy.ndimage`` itself and end to end on the shipped chest CTs and adversarial phantoms.

Every equality runs with torch on the CPU (so it runs in CI) and again on CUDA when there is one.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import ndimage as ndi

from trace_bench.segmenters import threshold_torch as TT
from trace_bench.segmenters.threshold import ThresholdSegmenter, threshold_segment
from trace_bench.segmenters.threshold_params import disc, opening_disc
from trace_bench.segmenters.threshold_torch import threshold_segment_torch

from helpers.paths import DEMO_CTS

torch.set_num_threads(1)

CUDA = torch.cuda.is_available()
needs_cuda = pytest.mark.skipif(not CUDA, reason="no CUDA device")
DEVICES = ["cpu", pytest.param("cuda", marks=needs_cuda)]

AIR, FAT, TISSUE = -1000.0, -100.0, 40.0


def _same_labels(hu: np.ndarray, spacing, device) -> np.ndarray:
    ref = threshold_segment(hu, spacing)
    got = threshold_segment_torch(hu, spacing, device)
    assert got.dtype == np.uint8 and got.shape == ref.shape
    assert np.array_equal(got, ref), f"{np.count_nonzero(got != ref)} voxels differ"
    return ref


def _first_index_labels(lab: np.ndarray) -> np.ndarray:
    """scipy labels -> flat index of each component's first voxel (background: size)."""
    n = lab.size
    first = np.full(lab.max() + 1, n, dtype=np.int64)
    np.minimum.at(first, lab.ravel(), np.arange(n))
    out = first[lab]
    out[lab == 0] = n
    return out


def _random_masks(shape, seed: int):
    rng = np.random.default_rng(seed)
    yield rng.random(shape) > 0.5  # many tiny components, percolation-like
    yield ndi.gaussian_filter(rng.normal(size=shape), 1.5) > 0.1  # blobs
    yield np.zeros(shape, bool)
    yield np.ones(shape, bool)


def _serpentine(nz: int, ny: int, nx: int) -> np.ndarray:
    """One component: a path of 1-voxel-wide walls zigzagging along z within the (z, y) plane,
    repeated across x in a zigzag too; its runs along x are single voxels for half of it."""
    m = np.zeros((nz, ny, nx), bool)
    for y in range(0, ny, 2):  # vertical strokes in (z, y) at x = 0, joined alternately top/bottom
        m[:, y, 0] = True
        if y + 2 < ny:
            m[nz - 1 if (y // 2) % 2 == 0 else 0, y:y + 3, 0] = True
    # a spiral in the last slice, joined to the serpentine at (nz-1, ny-1, 0)
    sl = np.zeros((ny, nx), bool)
    lo_y, hi_y, lo_x, hi_x = 0, ny - 1, 2, nx - 1
    while lo_y <= hi_y and lo_x <= hi_x:
        sl[lo_y, lo_x:hi_x + 1] = True
        sl[lo_y:hi_y + 1, hi_x] = True
        sl[hi_y, lo_x:hi_x + 1] = True
        if lo_y + 2 <= hi_y:
            sl[lo_y + 2:hi_y + 1, lo_x] = True
            if lo_x + 2 <= hi_x:
                sl[lo_y + 2, lo_x:lo_x + 3] = True
        lo_y, hi_y, lo_x, hi_x = lo_y + 2, hi_y - 2, lo_x + 2, hi_x - 2
    m[-1] |= sl
    m[-1, ny - 1, 0:3] = True
    return m


def _phantom(shape, spacing, seed: int, *, touch_borders: bool = False) -> np.ndarray:
    """A chest-like HU volume: a body ellipse (touching the in-plane borders if asked) with two
    lungs, a trachea (an air tube in the upper slices, open to the outside through the front wall
    in slice 0), a small gas pocket low down, a thick table along the bottom border joined to the
    body by a 1-voxel strap (cut by the opening, then dropped as a smaller component), noise."""
    rng = np.random.default_rng(seed)
    nz, ny, nx = shape
    _, sy, sx = spacing
    y, x = np.mgrid[0:ny, 0:nx]
    table = max(3, int(np.ceil(9 / sy)))  # rows of table, thicker than the opening disc
    cy, cx = (ny - table) * 0.48, nx / 2
    ay, ax = ((ny - table) * (0.62 if touch_borders else 0.38)), (nx * (0.62 if touch_borders else 0.42))
    h, w = min(ay, cy), min(ax, cx)  # the visible half-height / half-width
    hu = np.full(shape, AIR, np.float32)
    body2d = ((y - cy) / ay) ** 2 + ((x - cx) / ax) ** 2 <= 1
    hu[:, body2d] = TISSUE
    hu[:, body2d & (np.abs(x - cx) > 0.8 * w) & (np.abs(y - cy) < 0.3 * h)] = FAT
    for side in (-1, 1):
        lung = ((y - cy) / (0.5 * h)) ** 2 + ((x - cx - side * 0.4 * w) / (0.2 * w)) ** 2 <= 1
        hu[:, lung] = -850.0
    r = max(1, int(round(2.5 / sx)))
    tube = (np.abs(x - cx) <= r) & (np.abs(y - (cy - 0.55 * h)) <= max(1, int(round(2.5 / sy))))
    hu[: max(1, nz // 3), tube] = AIR
    hu[0, (np.abs(x - cx) <= r) & (y < cy - 0.55 * h)] = AIR  # slice 0: the trachea opens to the outside
    hu[nz // 2:, int(cy + 0.7 * h), int(cx) - 1:int(cx) + 2] = -700.0  # small gas pocket
    hu[:, ny - table:, int(0.15 * nx):int(0.85 * nx)] = 200.0  # the table, on the bottom border
    hu[:, int(cy + h) - 2:ny - table, int(cx)] = 200.0  # a 1-voxel strap to it
    hu += rng.normal(0, 30, size=shape).astype(np.float32)
    return hu


# --------------------------------------------------------------------------------- building blocks
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("radii", [(1, 1), (3, 3), (1, 4), (5, 2), (2, 0)])
def test_opening_equals_scipy(device, radii):
    ry, rx = radii
    st = disc(ry, max(rx, 1)) if rx else np.ones((1, 2 * ry + 1, 1), bool)  # (2, 0): a vertical bar
    for shape in [(3, 17, 23), (1, 9, 7), (2, 1, 12)]:
        for k, m in enumerate(_random_masks(shape, 7)):
            ref = ndi.binary_opening(m, structure=st)
            got = TT.binary_opening_axial(torch.from_numpy(m).to(device), st[0]).cpu().numpy()
            assert np.array_equal(got, ref), (shape, k)
            ero = TT.binary_erosion_axial(torch.from_numpy(m).to(device), st[0]).cpu().numpy()
            dil = TT.binary_dilation_axial(torch.from_numpy(m).to(device), st[0]).cpu().numpy()
            assert np.array_equal(ero, ndi.binary_erosion(m, structure=st))
            assert np.array_equal(dil, ndi.binary_dilation(m, structure=st))


def test_opening_of_an_asymmetric_structure_follows_scipys_reflection():
    """The segmenter's discs are point-symmetric; with an asymmetric one, erosion and dilation
    must still place it as scipy does (dilation reflects it)."""
    st = np.array([[[1, 1, 0], [0, 1, 0], [0, 0, 1]]], bool)
    assert not np.array_equal(st, st[:, ::-1, ::-1])
    for m in _random_masks((4, 13, 11), 3):
        t = torch.from_numpy(m)
        assert np.array_equal(TT.binary_erosion_axial(t, st[0]).numpy(), ndi.binary_erosion(m, structure=st))
        assert np.array_equal(TT.binary_dilation_axial(t, st[0]).numpy(), ndi.binary_dilation(m, structure=st))


def test_even_sized_structure_is_refused():
    with pytest.raises(ValueError, match="odd-sized"):
        TT.binary_erosion_axial(torch.ones(1, 4, 4, dtype=torch.bool), np.ones((2, 3), bool))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("shape", [(1, 1, 1), (1, 9, 11), (6, 13, 10), (20, 3, 4), (5, 1, 17)])
def test_label_partition_and_numbering_equal_scipy(device, shape):
    plane = np.zeros((3, 3, 3), bool)
    plane[1] = ndi.generate_binary_structure(2, 1)
    for k, m in enumerate(_random_masks(shape, sum(shape))):
        lab, _ = ndi.label(m)
        first = _first_index_labels(lab)
        got = TT.label_first_index(torch.from_numpy(m).to(device)).cpu().numpy()
        assert np.array_equal(got, first), (shape, k)
        # scipy's numbering = the order of first indices (what "argmax = lowest label" relies on)
        reps = np.unique(got[m])
        assert np.array_equal(np.searchsorted(reps, got[m]) + 1, lab[m])
        lab2, _ = ndi.label(m, structure=plane)  # 4-connectivity within each slice, nothing across
        got2 = TT.label_first_index(torch.from_numpy(m).to(device), axes=(1, 2)).cpu().numpy()
        assert np.array_equal(got2, _first_index_labels(lab2)), (shape, k)


@pytest.mark.parametrize("device", DEVICES)
def test_label_long_serpentine_and_spiral(device):
    m = _serpentine(40, 61, 63)
    n = ndi.label(m)[1]
    assert n == 1 and m.sum() > 2000  # one long thin component: worst case for plain propagation
    for mm in (m, m[::-1].copy(), m[:, ::-1, ::-1].copy(), np.ascontiguousarray(m.transpose(2, 1, 0))):
        got = TT.label_first_index(torch.from_numpy(mm).to(device)).cpu().numpy()
        assert np.array_equal(got, _first_index_labels(ndi.label(mm)[0]))
    broken = m.copy()
    broken[20, 30, 0] = False  # cut the path: two long components
    assert ndi.label(broken)[1] == 2
    got = TT.label_first_index(torch.from_numpy(broken).to(device)).cpu().numpy()
    assert np.array_equal(got, _first_index_labels(ndi.label(broken)[0]))


@pytest.mark.parametrize("device", DEVICES)
def test_largest_component_breaks_ties_as_scipy_argmax(device):
    m = np.zeros((6, 20, 20), bool)
    m[3:5, 10:14, 2:5] = True  # 24 voxels, first in raster order
    m[0:2, 15:19, 12:15] = True  # 24 voxels, starts in an earlier slice: scipy label 1
    m[4:6, 0:3, 16:20] = True  # 24 voxels
    m[5, 18, 0] = True
    lab, _ = ndi.label(m)
    sizes = np.bincount(lab.ravel())[1:]
    assert sizes[0] == sizes[1] == sizes[2] == sizes.max()  # a real three-way tie
    ref = lab == int(np.bincount(lab.ravel())[1:].argmax()) + 1
    got = TT.largest_component(torch.from_numpy(m).to(device)).cpu().numpy()
    assert np.array_equal(got, ref) and got[0:2, 15:19, 12:15].all()
    empty = np.zeros((2, 3, 4), bool)
    assert not TT.largest_component(torch.from_numpy(empty).to(device)).cpu().numpy().any()


@pytest.mark.parametrize("device", DEVICES)
def test_fill_holes_axial_equals_scipy(device):
    rng = np.random.default_rng(4)
    masks = list(_random_masks((5, 21, 18), 9)) + [rng.random((3, 1, 9)) > 0.3, rng.random((2, 7, 1)) > 0.3]
    ring = np.zeros((2, 9, 9), bool)
    ring[:, 1:8, 1:8] = True
    ring[:, 3:6, 3:6] = False
    ring[1, 3:6, 0:4] = False  # slice 1: the hole opens to the border through a channel
    ring[1, 4, 0:2] = False
    diag = np.zeros((1, 7, 7), bool)
    diag[0, 1:6, 1:6] = True
    diag[0, 2:5, 2:5] = False
    diag[0, 1, 1] = False  # a diagonal gap: 4-connectivity keeps the hole closed
    for k, m in enumerate(masks + [ring, diag]):
        ref = np.stack([ndi.binary_fill_holes(s) for s in m])
        got = TT.fill_holes_axial(torch.from_numpy(m).to(device)).cpu().numpy()
        assert np.array_equal(got, ref), k


# ----------------------------------------------------------------------------------- end to end
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", ["lung1", "lung2"])
def test_demo_chest_ct_equal(device, name):
    from trace_bench.io import read_volume

    v = read_volume(DEMO_CTS / f"{name}.nii.gz")
    assert v.array.shape[1:] == (256, 256)
    ref = _same_labels(v.array, v.spacing, device)  # the full volume, full resolution
    assert (ref == 1).sum() > 100_000 and (ref == 2).sum() > 100_000  # lungs and body found
    slab = v.array[16:34]  # an 18-slice slab: the lungs are cut at both ends
    _same_labels(slab, v.spacing, device)
    _same_labels(v.array[:, ::2, ::2], (v.spacing[0], 2 * v.spacing[1], 2 * v.spacing[2]), device)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("case", [
    ((12, 48, 56), (5.0, 1.0, 1.0), False),
    ((12, 80, 56), (2.5, 0.6, 1.5), False),  # non-square disc: ry = 5, rx = 2
    ((9, 40, 56), (1.0, 2.0, 0.7), True),  # body touches the in-plane borders: ry = 2, rx = 4
    ((1, 64, 64), (5.0, 1.0, 1.0), False),  # one slice
    ((7, 36, 30), (3.0, 10.0, 10.0), True),  # coarse: 1-voxel discs (a cross)
])
def test_phantoms_equal(device, case):
    shape, spacing, touch = case
    for seed in (0, 1):
        ref = _same_labels(_phantom(shape, spacing, seed, touch_borders=touch), spacing, device)
        assert (ref == 1).sum() > 100 and (ref == 2).sum() > 1000  # a body with lungs was found


@pytest.mark.parametrize("device", DEVICES)
def test_edge_volumes_equal(device):
    sp = (2.0, 3.0, 3.0)  # 1-voxel discs (a 3 x 3 cross): the 4-voxel walls below survive the opening
    air = np.full((4, 20, 22), AIR, np.float32)
    assert not _same_labels(air, sp, device).any()  # empty body
    tissue = np.full((4, 20, 22), TISSUE, np.float32)
    body = _same_labels(tissue, sp, device) == 2  # everything is body but the slice corners,
    assert body.sum() == tissue.size - 4 * 4 and not body[:, 0, 0].any()  # which the opening by a cross removes
    lungish = np.full((3, 16, 16), -850.0, np.float32)
    _same_labels(lungish, sp, device)  # air-like everywhere: HU between the two thresholds nowhere
    # two equal bodies, each with two equal lungs: ties in both the body and the lung selection
    hu = np.full((6, 30, 64), AIR, np.float32)
    for x0 in (2, 34):
        hu[1:5, 3:27, x0:x0 + 28] = TISSUE
        hu[1:5, 8:22, x0 + 4:x0 + 12] = -900.0
        hu[1:5, 8:22, x0 + 16:x0 + 24] = -900.0
    ref = _same_labels(hu, sp, device)
    assert (ref[:, :, :32] > 0).any() and not (ref[:, :, 32:] > 0).any()  # the first body won the tie
    assert ((ref == 1).sum()) == 2 * 4 * 14 * 8  # both tied lungs kept
    # the segmentation of the scipy path touching all borders in 3-D, with a hollow core
    box = np.full((5, 18, 18), TISSUE, np.float32)
    box[1:4, 4:14, 4:14] = -950.0
    _same_labels(box, (1.0, 1.0, 1.0), device)
    # random HU noise (many small components, many ties)
    rng = np.random.default_rng(11)
    noise = rng.choice(np.array([AIR, -850.0, TISSUE], np.float32), size=(6, 24, 26), p=[0.3, 0.2, 0.5])
    _same_labels(noise, (1.0, 3.0, 3.0), device)
    smooth = (ndi.gaussian_filter(rng.normal(size=(8, 40, 44)), 2.0) * 3000).astype(np.float32)
    _same_labels(smooth, (2.0, 1.0, 1.0), device)


def test_input_types_and_shape_check():
    hu = _phantom((5, 32, 36), (3.0, 1.0, 1.0), 3)
    ref = threshold_segment(hu, (3.0, 1.0, 1.0))
    as64 = torch.from_numpy(hu.astype(np.float64))
    assert np.array_equal(threshold_segment_torch(as64, (3.0, 1.0, 1.0), "cpu"), ref)
    assert np.array_equal(threshold_segment_torch(np.asfortranarray(hu), [3, 1, 1], torch.device("cpu")), ref)
    with pytest.raises(ValueError, match="3-D"):
        threshold_segment_torch(hu[0], (1.0, 1.0), "cpu")
    assert opening_disc((3.0, 1.0, 1.0)).shape == (1, 7, 7)


# ---------------------------------------------------------------------------------------- wiring
def test_segmenter_dispatch(monkeypatch, small_volume):
    """``cpu`` keeps the scipy path; a CUDA device (or None/"auto" with a GPU present) takes the
    torch path, with the same label map and the same segmenter id."""
    import trace_bench.segmenters.threshold_torch as mod

    calls = []
    real = mod.threshold_segment_torch

    def spy(hu, spacing, device):
        calls.append(device)
        return real(hu, spacing, "cuda" if CUDA else "cpu")

    monkeypatch.setattr(mod, "threshold_segment_torch", spy)
    cpu = ThresholdSegmenter(device="cpu")
    assert cpu.torch_device() is None
    ref = cpu.segment(small_volume, "3")
    assert calls == []
    gpu = ThresholdSegmenter(device="cuda:1")
    assert gpu.torch_device() == "cuda:1"
    got = gpu.segment(small_volume, "3")
    assert calls == ["cuda:1"] and got.segmenter == ref.segmenter == "threshold-v1"
    assert np.array_equal(got.labels, ref.labels) and got.names == ref.names
    two = gpu.segment(small_volume, "2")
    assert np.array_equal(two.labels, cpu.segment(small_volume, "2").labels)
    for dev in (None, "auto"):
        assert ThresholdSegmenter(device=dev).torch_device() == ("cuda" if CUDA else None)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert ThresholdSegmenter(device=None).torch_device() == "cuda"
    assert ThresholdSegmenter(device="cpu").torch_device() is None


@pytest.mark.parametrize("device", [pytest.param("cuda", marks=needs_cuda)])
def test_segmenter_on_cuda_equals_cpu(device, demo_volume):
    a = ThresholdSegmenter(device="cpu").segment(demo_volume, "3")
    b = ThresholdSegmenter(device=device).segment(demo_volume, "3")
    assert np.array_equal(a.labels, b.labels) and a.segmenter == b.segmenter
