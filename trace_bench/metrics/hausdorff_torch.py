"""HD95 on any torch device (``cuda`` for speed; ``cpu`` to test it against the numpy path): the
per-class engine behind :func:`trace_bench.metrics.hausdorff.hd95_torch` / ``hd95(..., device="cuda")``.

Same definition, same values as :func:`trace_bench.metrics.hausdorff.hd95` (itself equal to MONAI's):

* same per-class driver (:func:`~trace_bench.metrics.hausdorff.per_class_hd`: checks, empty-structure
  policy, union bounding box + 1-voxel margin per class);
* same surface: ``M & ~erode(M)`` with the 6-neighbour cross and background outside the image,
  computed on the device as ``M`` AND its six shifted copies of the zero-padded mask;
* same distances, bit for bit: surface voxels shared by both masks get 0; every other surface voxel
  gets ``sqrt(((a0 - b0)^2 + (a1 - b1)^2) + (a2 - b2)^2)`` in float64 on the coordinates
  ``index * spacing`` (the arithmetic of scipy's ``cKDTree``), minimised over its nearest
  candidates. Candidates come from a float32 ``torch.cdist`` (direct differences, no matmul) on
  centred coordinates: every destination voxel whose float32 distance lies within ``tol`` of the
  row's float32 minimum is re-checked in float64, with ``tol`` twice a bound on the float32 error,
  so the float64 minimiser is always among them. Destination voxels are sorted by slice (axis 0)
  and only the slices that can hold the nearest voxel are compared (a window grown until its
  slice gap exceeds the float32 minimum plus ``tol`` of every source voxel still open; voxels settled
  in a narrow window leave, so a few far voxels do not widen the window of the rest);
* same quantile: the distances go back to the host and through
  :func:`~trace_bench.metrics.hausdorff.quantile_monai` (float32, ``torch.quantile``), so the same
  set of distances gives the same number.

Memory is bounded by chunking (rows x columns of the float32 distance block).
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

_ROWS = {"cuda": 8192, "cpu": 1024}  # source voxels per chunk
_BLOCK = {"cuda": 1 << 27, "cpu": 1 << 22}  # float32 distances held at once
_EPS32 = 2.0 ** -24


def surface_torch(mask: torch.Tensor) -> torch.Tensor:
    """Surface voxels of a boolean tensor (any device), equal to :func:`hausdorff.surface`."""
    m = mask.bool()
    p = F.pad(m.to(torch.uint8), (1, 1) * m.ndim).bool()  # background outside the image
    inner = m.clone()
    for ax in range(m.ndim):
        inner &= _shift(p, ax, 0, m.shape)  # neighbour at -1 along ax
        inner &= _shift(p, ax, 2, m.shape)  # neighbour at +1
    return m & ~inner


def _shift(p: torch.Tensor, ax: int, start: int, shape: Sequence[int]) -> torch.Tensor:
    """The padded mask ``p`` read at offset ``start - 1`` along ``ax`` (1 along the other axes)."""
    out = p
    for a in range(p.ndim):
        out = out.narrow(a, start if a == ax else 1, shape[a])
    return out


def _coords(idx: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return idx.to(torch.float64) * scale  # cKDTree's coordinates: float64 index * spacing


def _sq_dist64(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Row-wise float64 squared distance with cKDTree's order of operations (separate kernels: no
    FMA). The square root is taken on the host by numpy: torch's CPU sqrt is not always correctly
    rounded (1 ulp off on some inputs), numpy's (the hardware instruction) is, like cKDTree's."""
    d = a - b
    s = d[:, 0] * d[:, 0]
    for k in range(1, a.shape[1]):
        s = s + d[:, k] * d[:, k]
    return s


def nearest_sq_distances(src: torch.Tensor, dst: torch.Tensor, src_idx0: torch.Tensor, dst_idx0: torch.Tensor,
                         scale0: float, rows: int, block: int) -> torch.Tensor:
    """Exact float64 squared distance (cKDTree's arithmetic) from every row of ``src`` (n, D) to the
    nearest row of ``dst`` (m, D), both float64 mm coordinates; ``*_idx0``: their slice indices
    (axis 0), ``dst`` sorted by it. ``np.sqrt`` of it is cKDTree's distance, bit for bit."""
    n, m = src.shape[0], dst.shape[0]
    out = torch.empty(n, dtype=torch.float64, device=src.device)
    if n == 0:
        return out
    lo_c = torch.minimum(src.min(0).values, dst.min(0).values)
    hi_c = torch.maximum(src.max(0).values, dst.max(0).values)
    centre = (lo_c + hi_c) / 2
    radius = float(torch.linalg.vector_norm(hi_c - centre))  # bound on |centred coordinate vector|
    s32 = (src - centre).to(torch.float32)
    d32 = (dst - centre).to(torch.float32)
    n_slices = int(dst_idx0[-1]) + 1 if m else 0
    for r0 in range(0, n, rows):
        act = torch.arange(r0, min(r0 + rows, n), device=src.device)  # rows not settled yet
        k = 1
        while act.numel():  # grow the slice window until no voxel outside it can be nearer
            a32, a64, z = s32[act], src[act], src_idx0[act]
            za, zb = int(z.min()), int(z.max())
            c0 = int(torch.searchsorted(dst_idx0, za - k))
            c1 = int(torch.searchsorted(dst_idx0, zb + k, right=True))
            everything = za - k <= 0 and zb + k >= n_slices - 1
            if c1 == c0:  # no destination voxel in the window yet
                k *= 2
                continue
            best = _block_min(a32, d32, c0, c1, block)
            tol = _tol(best, radius)
            # voxels |dz| >= k + 1 slices away are farther than (k + 1) * spacing0 > best + tol when need <= k + 1
            need = torch.floor((best.to(torch.float64) + tol) / scale0 * (1 + 1e-9)).long() + 1
            done = torch.ones_like(need, dtype=torch.bool) if everything else need <= k + 1
            sel = torch.nonzero(done)[:, 0]
            if sel.numel():
                out[act[sel]] = _recheck(a32[sel], a64[sel], d32, dst, c0, c1, best[sel], tol[sel], block)
            if sel.numel() == act.numel():
                break
            k = max(int(need[~done].max()), k + 1)
            act = act[~done]
    return out


def _tol(best: torch.Tensor, radius: float) -> torch.Tensor:
    # |float32 distance - float64 distance| <= eps32 * (4 * radius + 8 * d) with a wide margin
    # (centred coordinates rounded once, one rounded difference, square, sum, sqrt); candidates
    # are kept within twice that bound, times 4 for safety.
    return 8 * _EPS32 * (4 * radius + 8 * (best.to(torch.float64) + 1))


def _block_min(a32: torch.Tensor, d32: torch.Tensor, c0: int, c1: int, block: int) -> torch.Tensor:
    cols = max(block // max(a32.shape[0], 1), 1)
    best = None
    for j in range(c0, c1, cols):
        d = torch.cdist(a32, d32[j:min(j + cols, c1)], compute_mode="donot_use_mm_for_euclid_dist").min(1).values
        best = d if best is None else torch.minimum(best, d)
    return best


def _recheck(a32, a64, d32, d64, c0: int, c1: int, best, tol, block: int) -> torch.Tensor:
    cols = max(block // max(a32.shape[0], 1), 1)
    out = torch.full((a32.shape[0],), float("inf"), dtype=torch.float64, device=a64.device)
    # float32 limit rounded up from the float64 one (the relative nudge exceeds a float32 rounding)
    limit = ((best.to(torch.float64) + tol) * (1 + 2.0 ** -20)).to(torch.float32)[:, None]
    for j in range(c0, c1, cols):
        j1 = min(j + cols, c1)
        d = torch.cdist(a32, d32[j:j1], compute_mode="donot_use_mm_for_euclid_dist")
        ii, jj = torch.nonzero(d <= limit, as_tuple=True)
        if ii.numel():
            out.scatter_reduce_(0, ii, _sq_dist64(a64[ii], d64[j + jj]), reduce="amin")
    return out


def class_hd_torch(pm: np.ndarray, rm: np.ndarray, scale: np.ndarray, percentile: float,
                   device: str | torch.device, quantile: Callable[[np.ndarray, float], float]) -> float:
    """One class: boolean crops (host) -> surfaces and nearest distances on ``device`` ->
    ``max(quantile(d(P->R)), quantile(d(R->P)))`` on the host (float64 distances in mm)."""
    dev = torch.device(device)
    kind = "cuda" if dev.type == "cuda" else "cpu"
    pt = torch.from_numpy(np.ascontiguousarray(pm)).to(dev)
    rt = torch.from_numpy(np.ascontiguousarray(rm)).to(dev)
    sp, sr = surface_torch(pt), surface_torch(rt)
    shared = sp & sr
    sc = torch.as_tensor(np.asarray(scale, dtype=np.float64), device=dev)
    pts = {}
    for name, s in (("p", sp), ("r", sr)):
        idx = torch.nonzero(s)  # C order: sorted by axis 0
        pts[name] = (idx[:, 0].contiguous(), _coords(idx, sc))
    vals = []
    for src, dst, dname in ((sp, sr, "r"), (sr, sp, "p")):
        n_shared = int((src & shared).sum())
        rest = torch.nonzero(src & ~shared)
        d = torch.zeros(n_shared + rest.shape[0], dtype=torch.float64, device=dev)  # squared mm
        if rest.shape[0]:
            didx0, dxyz = pts[dname]
            d[n_shared:] = nearest_sq_distances(_coords(rest, sc), dxyz, rest[:, 0].contiguous(), didx0,
                                             float(scale[0]), _ROWS[kind], _BLOCK[kind])
        vals.append(quantile(np.sqrt(d.cpu().numpy()), percentile))  # host sqrt: correctly rounded
    return max(vals)
