"""A (volume, label map) pair on the segmentation protocol's grid, computed once and cached.

Steps (:func:`prepare_pair`; ``SegProtocol.grid_id`` names them in the cache key):

1. read the volume through its folder's adapter and reading options (:meth:`.data.Source.read`: float32
   HU, canonical LPS (z, y, x)) and the label map with :func:`trace_bench.io.read_label_map`;
2. the label map's grid is the pair's grid, resampled to the protocol's spacing:
   ``n' = max(1, round(n * spacing / protocol_spacing))`` per axis, labels nearest
   (:func:`trace_bench.metrics.segmentation.resample_labels`, the segmentation metric's ``extent`` rule:
   voxel centre to voxel centre);
3. the volume is resampled onto that same grid by the same rule, trilinear
   (``torch.nn.functional.interpolate``, ``align_corners=False``): its field of view is taken to be the
   label map's, whatever its shape (a generator writing 128^3 for a 512^2 x 300 mask), as the
   segmentation metric maps generated label maps onto reference grids; one interpolation;
4. HU clipped to the protocol's window and scaled to [-1, 1], stored as float16 (step < 0.001, under
   1 HU); labels stored as their values (uint16; the class mapping happens when patches are drawn);
5. patch centres: per label value present, the flat indices of its voxels, at most ``fg_cap`` of them
   (evenly spaced over the sorted indices, deterministic).

Entries are ``.npy`` files of the project's feature cache (:class:`trace_bench.cache.FeatureCache`:
atomic, keyed by content) under ``$TRACE_BENCH_CACHE/utility`` (or ``cache_dir/utility``), keyed by
the input files' sha256, the reading options and the grid id, and read back memory-mapped, so a training set
larger than memory streams from disk. A test case's label map on its own grid (what it is scored
against) is cached the same way (:meth:`PairStore.native`), only for the cases asked for.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..cache import FeatureCache, default_cache_root
from .data import Pair
from .protocol import SegProtocol

PARTS = ("image", "labels", "present", "centres")
NATIVE_PARTS = ("native", "native_spacing")


@dataclass
class Prepared:
    """One pair on the protocol grid: ``image`` float16 in [-1, 1], ``labels`` uint16 label values,
    ``present`` the label values found (non-zero), ``centres[v]`` patch-centre flat indices of value v."""

    case_id: str
    image: np.ndarray
    labels: np.ndarray
    present: np.ndarray
    centres: dict[int, np.ndarray]

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(int(s) for s in self.image.shape)  # type: ignore[return-value]


def cache_root(cache_dir: str | Path | None) -> Path:
    return Path(cache_dir).expanduser() / "utility" if cache_dir else default_cache_root().parent / "utility"


def grid_shape(shape: tuple[int, ...], spacing: tuple[float, ...], target: tuple[float, ...]) -> tuple[int, int, int]:
    """``max(1, round(n * s / t))`` per axis."""
    out = tuple(max(1, int(round(n * float(s) / float(t)))) for n, s, t in zip(shape, spacing, target))
    return out  # type: ignore[return-value]


def resize_image(a: np.ndarray, shape: tuple[int, int, int]) -> np.ndarray:
    """Trilinear, voxel centre to voxel centre (``align_corners=False``); float32."""
    import torch
    import torch.nn.functional as F

    if tuple(a.shape) == tuple(shape):
        return np.asarray(a, dtype=np.float32)
    t = torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))[None, None]
    return F.interpolate(t, size=tuple(int(s) for s in shape), mode="trilinear", align_corners=False)[0, 0].numpy()


def normalise(hu: np.ndarray, window: tuple[float, float]) -> np.ndarray:
    """HU clipped to ``window`` and mapped linearly to [-1, 1]."""
    lo, hi = window
    return (np.clip(hu, lo, hi) - lo) * (2.0 / (hi - lo)) - 1.0


def centres_of(labels: np.ndarray, cap: int) -> tuple[np.ndarray, dict[int, np.ndarray]]:
    """Non-zero label values present and, per value, at most ``cap`` evenly spaced flat voxel indices."""
    flat = labels.ravel()
    present = np.unique(flat)
    present = present[present != 0].astype(np.int64)
    out = {}
    for v in present.tolist():
        idx = np.flatnonzero(flat == v)
        if idx.size > cap:
            idx = idx[np.unique(np.linspace(0, idx.size - 1, cap).round().astype(np.int64))]
        out[int(v)] = idx.astype(np.int64)
    return present, out


def compute_pair(pair: Pair, proto: SegProtocol) -> dict[str, np.ndarray]:
    """Every cached part of one pair (module docstring, steps 1-5)."""
    from ..metrics.segmentation import resample_labels

    native, spacing = compute_native(pair)
    shape = grid_shape(native.shape, spacing, proto.spacing)
    labels = resample_labels(native, shape).astype(np.uint16)
    del native
    image = normalise(resize_image(pair.volume.read().array, shape), proto.hu_window).astype(np.float16)
    present, centres = centres_of(labels, proto.fg_cap)
    counts = np.array([[v, centres[v].size] for v in present.tolist()], dtype=np.int64).reshape(-1, 2)
    flat = np.concatenate([centres[v] for v in present.tolist()]) if present.size else np.zeros(0, np.int64)
    return {"image": image, "labels": labels, "present": counts, "centres": flat}


def compute_native(pair: Pair) -> tuple[np.ndarray, tuple[float, float, float]]:
    """The pair's label map on its own grid (uint16 label values) and its spacing (mm, z y x)."""
    from ..errors import InvalidVolumeError
    from ..io import read_label_map

    mask = read_label_map(pair.mask)  # type: ignore[arg-type]
    native = np.rint(mask.array).astype(np.int64)
    if native.max(initial=0) > np.iinfo(np.uint16).max:
        raise InvalidVolumeError(pair.mask, f"label values up to {int(native.max())}; at most 65535 are supported")
    return native.astype(np.uint16), tuple(float(s) for s in mask.spacing)  # type: ignore[return-value]


class PairStore:
    """Prepared pairs through the feature cache (memory-mapped reads); ``enabled=False`` keeps them in memory."""

    def __init__(self, proto: SegProtocol, root: Path, enabled: bool = True) -> None:
        self.proto = proto
        self.cache = FeatureCache(root, enabled=enabled)
        self.memory: dict[str, dict[str, np.ndarray]] = {}

    def key_parts(self, pair: Pair) -> tuple[str, ...]:
        from ..inputs import input_hash

        mask = input_hash(pair.mask)  # type: ignore[arg-type]
        return ("utility-pair", *pair.volume.identity(), mask, self.proto.grid_id)

    def parts(self, pair: Pair, names: tuple[str, ...] = PARTS) -> dict[str, np.ndarray]:
        """The cached arrays ``names`` of a pair (computed and stored on a miss), memory-mapped."""
        base = self.key_parts(pair) if names == PARTS else (*self.key_parts(pair)[:-1], "native")

        def compute() -> dict[str, np.ndarray]:
            if names == PARTS:
                return compute_pair(pair, self.proto)
            native, spacing = compute_native(pair)
            return {"native": native, "native_spacing": np.asarray(spacing, dtype=np.float64)}

        if not self.cache.enabled:
            mem_key = "|".join(base)
            if mem_key not in self.memory:
                self.memory[mem_key] = compute()
            return self.memory[mem_key]
        keys = {p: self.cache.key(*base, p) for p in names}
        if not all(self.cache.path(k).is_file() for k in keys.values()):
            self.cache.misses += 1
            arrays = compute()
            for p, k in keys.items():
                self.cache.store(k, arrays[p])
        else:
            self.cache.hits += 1
        try:
            return {p: np.load(self.cache.path(k), mmap_mode="r", allow_pickle=False) for p, k in keys.items()}
        except (OSError, ValueError):  # an unreadable entry: recompute it in memory
            return compute()

    def prepared(self, pair: Pair) -> Prepared:
        a = self.parts(pair)
        counts = np.asarray(a["present"], dtype=np.int64).reshape(-1, 2)
        flat = np.asarray(a["centres"])
        centres, start = {}, 0
        for v, n in counts.tolist():
            centres[int(v)] = flat[start:start + n]
            start += n
        return Prepared(pair.case_id, a["image"], a["labels"], counts[:, 0].copy(), centres)

    def native(self, pair: Pair) -> tuple[np.ndarray, tuple[float, float, float]]:
        """The label map on its own grid (uint16) and its spacing (mm, z y x)."""
        a = self.parts(pair, NATIVE_PARTS)
        return a["native"], tuple(float(s) for s in a["native_spacing"])  # type: ignore[return-value]
