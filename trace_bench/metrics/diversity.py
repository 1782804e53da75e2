"""Diversity and realism on a common voxel grid, as MONAI's realism / diversity tutorial computes them:
``ms_ssim_diversity`` (mean pairwise 3-D MS-SSIM among the volumes of one set) and ``mmd`` (unbiased MMD^2 with a
linear kernel between the generated and the reference set).

Grid (:func:`grid_volume`, protocol part ``grid:...``): the canonical volume (LPS, (z, y, x)), HU clipped to
[-1000, 1000] and scaled to [0, 1], resized to ``size``^3 by MONAI ``Resize`` (trilinear, ``align_corners=False``,
anti-aliasing on: a Gaussian of sigma (scale - 1) / 2 before downsampling an axis). The field of view is stretched
onto the cube (aspect ratio not kept), the same for every volume, so the grid depends on nothing but the volume.

``ms_ssim_diversity``: MONAI ``MultiScaleSSIMMetric(spatial_dims=3, data_range=1.0, kernel_size=k)`` (Gaussian
kernel sigma 1.5, k1 0.01, k2 0.03, the five weights of Wang et al. 2003) on pairs of grid volumes, averaged over
the pairs, as the tutorial's ``for idx_a, idx_b in combinations(...)`` loop (Project-MONAI/tutorials
``generation/realism_diversity_metrics/realism_diversity_metrics.ipynb``). Defaults: 64^3 and ``kernel_size`` 4,
the tutorial's kernel (MONAI needs ``size // 16 > kernel_size - 1`` for five scales). Lower = more diverse; a
method is best when closest to the GT row, the same statistic on one half of the reference cases (the run's
split-half floor: an unbiased estimate of the reference set's own pairwise mean). With more than ``max_pairs``
pairs, a seeded subset: the pairs with the smallest ``sha256(seed | hash a | hash b)`` (the same pairs whatever the
case order; the jackknife's leave-out sets reuse them). Pair values are memoised per metric instance by content
hash, so the run's leave-out recomputations cost only the pairs they add. Cost (one CPU thread, measured by
benchmarks/bench_issue31_costs.py): 0.3 s per volume for the grid (MONAI Resize of the 48 x 256 x 256 demo CT), then
0.04 s per pair at the aggregate stage (set-level statistics run on the CPU), i.e. about 40 s for the default 1000
pairs; 1.5 s per pair at 128^3 with k 7 (WDM-3D's setting).

``mmd``: MONAI ``compute_mmd`` (``MMDMetric`` without ``y_mapping``): with ``y`` the reference grid volumes
(m) and ``p`` the generated ones (n), flattened, ``sum_{i != j} y_i.y_j / (m (m - 1)) + sum_{i != j} p_i.p_j /
(n (n - 1)) - 2 sum_{i, j} p_i.y_j / (m n)``, i.e. an unbiased estimate of ``||E y - E p||^2`` (can be slightly
negative). Computed from mergeable sums (``sum`` of the vectors and of their squared norms per set), so any number
of cases merges exactly; MONAI requires m = n, this formula does not. Per-case state: one grid volume (1 MiB at
64^3, float32) for either metric.
"""

from __future__ import annotations

import hashlib
import threading
from itertools import combinations
from typing import Any, Iterable

import numpy as np

from .base import CaseData, Metric, Option, Output, Part, RunContext, State, register_metric

HU_WINDOW = (-1000.0, 1000.0)


def grid_volume(volume: Any, size: int) -> np.ndarray:
    """float32 (size, size, size) in [0, 1]: HU clipped to [-1000, 1000], scaled, resized (see the module doc)."""
    import torch
    from monai.transforms import Resize

    lo, hi = HU_WINDOW
    a = (np.clip(volume.array, lo, hi) - lo) / (hi - lo)
    x = torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))[None]
    r = Resize(spatial_size=(size, size, size), mode="trilinear", align_corners=False, anti_aliasing=True)(x)
    return np.asarray(r.as_tensor() if hasattr(r, "as_tensor") else r, dtype=np.float32)[0]


def grid_part(size: int) -> Part:
    return (f"grid:lps:hu[-1000,1000]->[0,1]:monai-resize-trilinear-aa:{size}^3",
            f"the canonical (LPS) volume, HU clipped to [-1000, 1000] and scaled to [0, 1], resized to {size}^3 by "
            "MONAI Resize (trilinear, align_corners False, anti-aliasing on); field of view stretched onto the cube")


def grid_options(what: str) -> tuple[Option, ...]:
    return (Option("size", 64, f"edge of the cube every volume is resized to for {what}", type=int, minimum=16,
                   maximum=512),)


def shared_grid(data: CaseData, size: int) -> np.ndarray:
    """:func:`grid_volume` of ``data.volume``, once per case for both metrics."""
    key = ("diversity:grid", size)
    if key not in data.shared:
        data.shared[key] = grid_volume(data.volume, size)
    return data.shared[key]


def check_ms_ssim_size(size: int, kernel_size: int, n_weights: int = 5) -> None:
    """MONAI's condition for ``n_weights`` scales (compute_ms_ssim): ``size // (n_weights - 1)^2 > kernel_size - 1``."""
    from ..errors import ConfigError

    div = max(1, n_weights - 1) ** 2
    if size // div <= kernel_size - 1:
        raise ConfigError(f"ms_ssim_diversity: a {size}^3 grid is too small for kernel_size {kernel_size} at five "
                          f"scales (MONAI needs size // {div} > kernel_size - 1): raise size or lower kernel_size")


def ms_ssim_pairs(a: np.ndarray, b: np.ndarray, kernel_size: int) -> np.ndarray:
    """MONAI's 3-D MS-SSIM of volume pairs ``a[i]``, ``b[i]`` ((n, s, s, s) each, data range 1) -> float64 (n,)."""
    import torch
    from monai.metrics import MultiScaleSSIMMetric

    m = MultiScaleSSIMMetric(spatial_dims=3, data_range=1.0, kernel_size=int(kernel_size))
    with torch.no_grad():
        v = m(torch.from_numpy(np.ascontiguousarray(a))[:, None], torch.from_numpy(np.ascontiguousarray(b))[:, None])
    return np.asarray(v, dtype=np.float64).reshape(-1)


def volume_key(v: np.ndarray) -> str:
    return hashlib.sha1(np.ascontiguousarray(v, dtype=np.float32).view(np.uint8)).hexdigest()


def choose_pairs(keys: list[str], max_pairs: int | None, seed: int) -> list[tuple[int, int]]:
    """Index pairs (i < j) of distinct volumes; at most ``max_pairs``, chosen by the smallest seeded pair hash."""
    pairs = list(combinations(range(len(keys)), 2))
    if max_pairs is None or len(pairs) <= max_pairs:
        return pairs

    def rank(p: tuple[int, int]) -> str:
        a, b = sorted((keys[p[0]], keys[p[1]]))
        return hashlib.sha256(f"{seed}|{a}|{b}".encode()).hexdigest()

    return sorted(pairs, key=rank)[:max_pairs]


def ms_ssim_diversity(volumes: np.ndarray, kernel_size: int = 4, max_pairs: int | None = None, seed: int = 0,
                      memo: dict | None = None, batch: int = 4) -> tuple[float, int]:
    """Functional twin: (mean pairwise MS-SSIM, number of pairs) of grid volumes (n, s, s, s)."""
    v = np.asarray(volumes, dtype=np.float32)
    if len(v) < 2:
        raise ValueError(f"ms_ssim_diversity needs at least 2 volumes in a set, got {len(v)}")
    keys = [volume_key(x) for x in v]
    pairs = choose_pairs(keys, max_pairs, seed)
    memo = {} if memo is None else memo
    todo = [p for p in pairs if tuple(sorted((keys[p[0]], keys[p[1]]))) + (kernel_size,) not in memo]
    for s in range(0, len(todo), batch):
        chunk = todo[s:s + batch]
        vals = ms_ssim_pairs(v[[i for i, _ in chunk]], v[[j for _, j in chunk]], kernel_size)
        for (i, j), val in zip(chunk, vals):
            memo[tuple(sorted((keys[i], keys[j]))) + (kernel_size,)] = float(val)
    vals = [memo[tuple(sorted((keys[i], keys[j]))) + (kernel_size,)] for i, j in pairs]
    return float(np.mean(vals)), len(pairs)


@register_metric
class MSSSIMDiversity(Metric):
    name = "ms_ssim_diversity"
    kind = "distribution"
    table = "table2"
    in_default_set = False  # O(pairs) MS-SSIM at the aggregate stage, on the CPU
    outputs = {
        "ms_ssim_diversity": Output(False, "MS-SSIM diversity", digits=4, rank=5.0, tolerance={"abs": 0.01},
                                    closest_to_reference=True, value_range=(0.0, 1.0)),
        "ms_ssim_diversity_pairs": Output(None, "MS-SSIM pairs", digits=0, rank=5.001, hidden=True,
                                          value_range=(1.0, None)),
    }
    options = grid_options("MS-SSIM") + (
        Option("kernel_size", 4, "Gaussian kernel size of MONAI's MultiScaleSSIMMetric (the realism / diversity "
               "tutorial's 4; WDM-3D uses 7 at 128^3)", type=int, minimum=2, maximum=31),
        Option("max_pairs", 1000, "at most this many pairs per set (a seeded subset, see the module doc), or 'all'",
               type=int, minimum=1, special=("all",)),
    )
    description = ("Diversity within a set: mean pairwise 3-D MS-SSIM (MONAI MultiScaleSSIMMetric) of the volumes on "
                   "a 64^3 grid (HU [-1000, 1000] -> [0, 1]); lower = more diverse, best = closest to the GT row (the "
                   "reference set's own value on half its cases). CPU cost ~0.3 s per volume, ~0.04 s per pair at the "
                   "aggregate stage (at most 1000 pairs)")

    def __init__(self, options: dict[str, Any] | None = None) -> None:
        super().__init__(options)
        check_ms_ssim_size(int(self.opts["size"]), int(self.opts["kernel_size"]))
        self._memo: dict = {}
        self._lock = threading.Lock()

    def protocol_parts(self, ctx: RunContext) -> list[Part]:
        k, mp = int(self.opts["kernel_size"]), self.opts["max_pairs"]
        which = ("every pair" if mp == "all" else
                 f"at most {mp} pairs, those with the smallest sha256(seed {ctx.seed} | content hashes)")
        return [grid_part(int(self.opts["size"])),
                (f"monai-ms-ssim-3d:gauss{k}:sigma1.5:k0.01,0.03:w5:range1",
                 f"MONAI MultiScaleSSIMMetric(spatial_dims=3, data_range=1, kernel_size={k}): Gaussian kernel sigma "
                 "1.5, k1 0.01, k2 0.03, weights 0.0448 / 0.2856 / 0.3001 / 0.2363 / 0.1333 over five scales"),
                (f"pairs:within-set:max{mp}:seed{ctx.seed}",
                 f"the mean over pairs of distinct volumes of one set (generated; GT row: one half of the reference "
                 f"cases); {which}")]

    def case_state(self, data: CaseData, ctx: RunContext) -> State:
        return {"volume": shared_grid(data, int(self.opts["size"]))[None]}

    def merge(self, states: Iterable[State]) -> State:
        vs = [np.asarray(s["volume"], dtype=np.float32) for s in states]
        if not vs:
            raise ValueError("no states to merge")
        return {"volume": np.concatenate(vs)}

    def compute(self, generated: State, reference: State, ctx: RunContext) -> dict[str, float]:
        mp = self.opts["max_pairs"]
        with self._lock:
            val, n = ms_ssim_diversity(generated["volume"], int(self.opts["kernel_size"]),
                                       None if mp == "all" else int(mp), ctx.seed, self._memo)
        return {"ms_ssim_diversity": val, "ms_ssim_diversity_pairs": float(n)}

    def export_stats(self, state: State) -> dict[str, np.ndarray]:
        return {"n": np.int64(len(state["volume"]))}

    def sample_info(self, state: State) -> dict[str, int]:
        return {"samples": int(len(state["volume"]))}


def mmd_state(volume_grid: np.ndarray) -> State:
    """Mergeable MMD state of one grid volume: the flattened vector (float32, exact), its squared norm, n = 1."""
    f = np.asarray(volume_grid, dtype=np.float32).reshape(-1)
    return {"sum": f, "sqnorm": np.float64(np.dot(f.astype(np.float64), f.astype(np.float64))), "n": np.float64(1.0)}


def mmd_from_states(generated: State, reference: State) -> float:
    """MONAI ``compute_mmd`` (linear kernel, unbiased) from summed states; ``reference`` plays MONAI's ``y``."""
    m, n = float(reference["n"]), float(generated["n"])
    if m < 2 or n < 2:
        raise ValueError(f"mmd needs at least 2 volumes per set, got {int(n)} generated and {int(m)} reference")
    sy, sp = np.asarray(reference["sum"], np.float64), np.asarray(generated["sum"], np.float64)
    a = float(sy @ sy) - float(reference["sqnorm"])
    b = float(sp @ sp) - float(generated["sqnorm"])
    c = float(sp @ sy)
    return a / (m * (m - 1)) + b / (n * (n - 1)) - 2.0 * c / (m * n)


def mmd_from_volumes(generated: np.ndarray, reference: np.ndarray) -> float:
    """Functional twin: MMD of two stacks of grid volumes (n, ...) and (m, ...)."""
    def total(stack: np.ndarray) -> State:
        states = [mmd_state(v) for v in stack]
        return {k: np.sum([np.asarray(s[k], np.float64) for s in states], axis=0) for k in ("sum", "sqnorm", "n")}

    return mmd_from_states(total(generated), total(reference))


@register_metric
class MMD(Metric):
    name = "mmd"
    kind = "distribution"
    table = "table2"
    in_default_set = False
    outputs = {"mmd": Output(False, "MMD (voxels)", digits=5, rank=5.1, tolerance={"abs": 1e-3, "rel": 0.05},
                             value_range=(None, None))}
    options = grid_options("MMD")
    description = ("Realism: unbiased MMD^2 with a linear kernel (MONAI MMDMetric) between generated and reference "
                   "volumes on a 64^3 grid (HU [-1000, 1000] -> [0, 1]), i.e. the squared distance of the mean volumes "
                   "minus its bias; mergeable sums")

    def protocol_parts(self, ctx: RunContext) -> list[Part]:
        return [grid_part(int(self.opts["size"])),
                ("monai-mmd:linear-unbiased",
                 "MONAI MMDMetric (no y_mapping): unbiased MMD^2 with the linear kernel x.y on the flattened grid "
                 "volumes, generated set vs reference set (any set sizes >= 2; MONAI itself needs equal sizes)")]

    def case_state(self, data: CaseData, ctx: RunContext) -> State:
        return mmd_state(shared_grid(data, int(self.opts["size"])))

    def compute(self, generated: State, reference: State, ctx: RunContext) -> dict[str, float]:
        return {"mmd": mmd_from_states(generated, reference)}

    def export_stats(self, state: State) -> dict[str, np.ndarray]:
        return {"n": np.int64(state["n"]), "sqnorm": np.float64(state["sqnorm"])}

    def sample_info(self, state: State) -> dict[str, int]:
        return {"samples": int(state["n"])}


__all__ = ["MMD", "MSSSIMDiversity", "check_ms_ssim_size", "choose_pairs", "grid_volume", "mmd_from_states",
           "mmd_from_volumes", "mmd_state", "ms_ssim_diversity", "ms_ssim_pairs"]
