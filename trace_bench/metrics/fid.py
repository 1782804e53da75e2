"""FID of CT volumes: axial slices as images, Inception-v3 pool features, Frechet distance.

``fid`` (a catalogue row, :mod:`.catalog`: the FD statistic on the Inception space of :mod:`.spaces`;
distribution metric, Table 2, lower is better):

* frames: every axial slice of the canonical volume through ``ctx.protocol`` (default
  ``ct-frames-v1``: 256 px bilinear, HU window [-1000, 1000] -> uint8), grey replicated to RGB;
  option ``fid.slices = k`` keeps k evenly spaced slices instead (goes into the protocol id);
* backbone ``inception-fid`` (:mod:`trace_bench.networks.inception`: 299 px "NVIDIA bilinear",
  ``v / 128 - 1``), 2048-d; option ``fid.weights = "inception-fid-pth"`` selects pytorch-fid's
  weights;
* statistics: float64 sums (:mod:`trace_bench.metrics.frechet`), covariance with ``n - 1``
  (pytorch-fid / torchmetrics), distance by pytorch-fid's algorithm. Unpaired: every slice of every
  generated volume against every slice of every reference volume.

``fid_2p5d`` (this module; MAISI-style 2.5D FID, after Project-MONAI/tutorials
``generation/maisi/scripts/compute_fid_2-5d_ct.py``): the volume is resampled (trilinear, MONAI
``Spacingd``'s grid and shape, v2) to isotropic ``fid_2p5d.spacing`` mm (default 1.5), padded with
-1000 HU to a cube, and sliced along
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

from ..networks.resample import resample_spacing
from ..protocol import hu_to_frames
from ..volume import Volume
from . import frechet
from .backbone import Backbone
from .base import NONNEGATIVE, CaseData, Metric, Option, Output, Part, RunContext, State, register_metric
from .catalog import FID_TOL
from .spaces import (INCEPTION_SLICES, INCEPTION_WEIGHTS, INCEPTION_WEIGHTS_OPTION, cache_option, frame_part,
                     inception_features)
from .statistic import FD

PLANES = ("axial", "coronal", "sagittal")
#: the statistic of each plane (``ddof=1``, the spelling fid_2p5d's protocol id has always had); its part
#: names the formula, :mod:`.frechet` computes it (no extrapolated column per plane)
PLANE_FD = FD(1, "ddof=1")


def isotropic_cube(volume: Volume, spacing: float, pad_value: float = -1000.0) -> np.ndarray:
    """Trilinear resample of the (z, y, x) HU array to isotropic ``spacing`` mm on MONAI ``Spacingd``'s grid
    and output shape (:func:`trace_bench.networks.resample.resample_spacing`, as MAISI's script resamples;
    v1 used ``round(n * old / new)`` voxels of ``F.interpolate(align_corners=False)``), padded to a cube."""
    r = resample_spacing(volume.array, tuple(float(s) for s in volume.spacing), (float(spacing),) * 3)
    shape = r.shape
    m = max(shape)
    out = np.full((m, m, m), pad_value, np.float32)
    o = [(m - n) // 2 for n in shape]
    out[o[0]:o[0] + shape[0], o[1]:o[1] + shape[1], o[2]:o[2] + shape[2]] = r
    return out


def plane_state(state: State, plane: str) -> State:
    """The entries ``"{plane}:{key}"`` of a 2.5D state, without the prefix."""
    return {k.split(":", 1)[1]: v for k, v in state.items() if k.startswith(plane + ":")}


def merge_planes(states: Iterable[State], planes: Iterable[str]) -> State:
    """2.5D states merged plane by plane (:func:`.frechet.merge_states`), keys ``"{plane}:{key}"``."""
    states = list(states)
    out: State = {}
    for plane in planes:
        m = frechet.merge_states([plane_state(s, plane) for s in states])
        out.update({f"{plane}:{k}": v for k, v in m.items()})
    return out


@register_metric
class FID2p5D(Metric):
    name = "fid_2p5d"
    kind = "distribution"
    table = "table2"
    weights = INCEPTION_SLICES.default_weights
    outputs = {"fid_2p5d": Output(False, "FID 2.5D", digits=1, rank=1, tolerance=FID_TOL, value_range=NONNEGATIVE),
               **{f"fid_2p5d_{p}": Output(False, f"FID 2.5D {p}", digits=1, rank=r, tolerance=FID_TOL,
                                          value_range=NONNEGATIVE) for p, r in zip(PLANES, (1.1, 1.2, 1.3))}}
    options = (INCEPTION_WEIGHTS_OPTION,
               Option("spacing", 1.5, "isotropic resampling spacing in mm before slicing", type=float,
                      minimum=0.1, maximum=20.0, in_protocol_id=False),
               Option("every_k", 2, "keep every k-th slice of each plane", type=int, minimum=1, in_protocol_id=False,
                      fast=8),
               cache_option("Inception"))
    description = "MAISI-style 2.5D FID: isotropic cube, axial/coronal/sagittal slices, FID per plane and mean"
    #: three planes of an isotropic cube: several times FID's Inception work, so named explicitly
    #: (or ``all``) rather than part of ``--metrics available``
    in_default_set = False

    def __init__(self, options=None) -> None:
        super().__init__(options)
        self.net = Backbone(INCEPTION_SLICES.network)

    def required_weights(self, ctx: RunContext | None = None) -> tuple[str, ...]:
        return (self.opts["weights"],)

    def setup(self, ctx: RunContext) -> None:
        self.net.get(self.opts["weights"], ctx)

    def _opts(self) -> tuple[float, int]:
        return float(self.opts["spacing"]), int(self.opts["every_k"])

    def protocol_parts(self, ctx: RunContext) -> list[Part]:
        sp, k = self._opts()
        w = self.opts["weights"]
        return [frame_part(ctx),
                (w, f"Inception-v3 pool features (2048-d per slice, preprocessed as fid's), weights {w} "
                    f"({INCEPTION_WEIGHTS[w]})"),
                (f"2.5d-v2:iso{sp:g}mm-monai-grid:pad-1000:every{k}",
                 f"2.5D (v2): the volume resampled (trilinear) to {sp:g} mm isotropic on MONAI Spacingd's grid and "
                 "output shape, padded with -1000 HU to a cube, "
                 f"every {k}th slice of the axial, coronal and sagittal planes through the frame protocol; one FD "
                 "per plane and their mean"),
                PLANE_FD.part(self.opts, ctx)]

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
            f = inception_features(self.net, data, ctx, self.opts["weights"], f"2.5d-v2:{plane}:iso{sp:g}:every{k}",
                                   lambda a=axis: plane_frames(a), self.opts["feature_cache"])
            out[f"{plane}:features"] = frechet.features_state(f)["features"]
        return out

    def merge(self, states: Iterable[State]) -> State:
        return merge_planes(states, PLANES)

    def compute(self, generated: State, reference: State, ctx: RunContext) -> dict[str, float]:
        res: dict[str, float] = {}
        for plane in PLANES:
            res[f"fid_2p5d_{plane}"] = frechet.frechet_distance_from_states(
                plane_state(generated, plane), plane_state(reference, plane), ddof=PLANE_FD.ddof)
        res["fid_2p5d"] = float(np.mean([res[f"fid_2p5d_{p}"] for p in PLANES]))
        return res

    def sample_info(self, state: State) -> dict[str, int]:
        """Feature vectors (slices) of the smallest plane, and their dimension."""
        infos = [i for i in (frechet.sample_info(plane_state(state, p)) for p in PLANES) if i]
        return min(infos, key=lambda i: i["samples"]) if infos else {}

    def export_stats(self, state: State) -> dict[str, np.ndarray]:
        out: dict[str, np.ndarray] = {}
        for plane in PLANES:
            out.update({f"{plane}_{k}": v for k, v in frechet.export_stats(plane_state(state, plane), PLANE_FD.ddof).items()})
        return out
