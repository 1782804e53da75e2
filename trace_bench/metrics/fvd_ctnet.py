"""The VLM3D text-to-CT challenge's ``FVD_CTNet``, and FD / KID / PRDC on the same CT-Net features.

Network and preprocessing: :mod:`trace_bench.networks.ctnet` (CT-Net, Draelos et al. 2021, as the
challenge's evaluation Docker runs it: forithmus/VLM3D-Dockers ``ctgen_evaluation/``), weights entry
``vlm3d-ctnet``; the feature space :data:`~.spaces.CTNET_VOLUMES`. One 96-d feature vector per volume
(the whole volume resized to 402 x 420 x 420).

``fvd_ctnet`` reproduces the challenge's number (``evaluate_fvd.py`` + ``FVD/fvd_pytorch.py`` +
``FVD/fvd_pytorch_model.py``):

* the generated volumes are taken in the order of their sorted file names (``sorted(glob("*.mha"))``;
  here: case ids sorted as ``<case id>.mha``), each with the reference volume of the same name;
* they are cut into consecutive chunks of ``CHUNK = 4`` (generated, reference) pairs, the last chunk
  holding the remainder;
* per chunk: Frechet distance between Gaussians fitted to the 4 generated and the 4 reference feature
  vectors, mean and ``np.cov`` covariance (``n - 1``), ``||mu_g - mu_r||^2 + Tr(S_g + S_r - 2 sqrtm(S_g
  S_r))`` (``compute_fvd`` of ``fvd_pytorch_model.py``, the real part kept);
* ``FVD_CTNet`` = the mean over chunks.

The metric is therefore *paired* by case id (``needs_reference``): every generated case's state
carries its own reference's features, so a generated volume without a reference is not scored (listed
as a pairing problem; VLM3D's script stops there), and no GT/GT floor row is computed. With 4
vectors in 96 dimensions a chunk's covariances have rank <= 3: the value is dominated by estimator bias
and measures per-chunk spread more than a distribution distance; it is comparable only with other
FVD_CTNet numbers (same chunk size, same case order). A last chunk with a single pair has no
covariance (``np.cov`` of one row is NaN and ``scipy.linalg.sqrtm`` raises): VLM3D's script fails for
such counts (n = 4k + 1), and so does ``fvd_ctnet``, with a one-line reason. Option ``chunk`` changes
the chunk size (goes into the protocol id). Hidden column ``fvd_ctnet_chunks``: the number of chunks
averaged.

Formula check. The trace term is computed with :func:`.frechet.frechet_distance_low_rank` (nuclear norm
of ``C_g C_r^T``, exact for n <= d) instead of ``scipy.linalg.sqrtm`` of the 96 x 96 product of two
rank-3 matrices; on random ReLU features (chunks of 2 to 5, 200 draws, scales 0.01 to 10) the two agree
to 7e-8 relative (tests/metrics/test_fvd_ctnet.py checks 1e-6 against a transcription of ``compute_fvd``).

The unpaired companions on the same features are catalogue rows (:mod:`.catalog`; one state per volume,
the GT row is the split-half floor):

* ``fd_ctnet``: one Frechet distance between ALL generated and ALL reference feature vectors
  (:mod:`.frechet`, covariance ``n - 1``; exact low-rank formula while n <= 96). Not VLM3D's number; the
  statistically meaningful version once there are well over 96 volumes per set;
* ``kid_ctnet`` / ``kid_ctnet_std``: :func:`.kid.kid_from_features` (cubic kernel; one vector per volume,
  so the U-statistic is unbiased), the better choice for tens of volumes;
* ``prdc_ctnet_{precision,recall,density,coverage}``: :func:`.prdc.prdc_from_features`, k = 5.

Features are cached on disk by volume content hash + :data:`~trace_bench.networks.ctnet.PREPROCESS_ID`
+ weights sha256, and shared by the four metrics (a reference volume's features computed for
``fvd_ctnet``'s pairs are the cache entry the other metrics read). Cost: one CT-Net pass per volume, 134
ResNet-18 images of 420 x 420 (about 0.86 T multiply-adds: 32 s on one CPU core here);
none is in ``--metrics available``. No complete public copy of the weights exists (registry entry
``vlm3d-ctnet``): without the file every metric here is listed as not computed.
"""

from __future__ import annotations

from typing import Any, Iterable

import numpy as np

from . import frechet
from .backbone import Backbone
from .base import NONNEGATIVE, CaseData, Metric, Option, Output, Part, RunContext, State, register_metric
from .catalog import FD_TOL
from .spaces import CTNET_VOLUMES

CTNET = "vlm3d-ctnet"
#: evaluate_fvd.py ``CHUNK``: (generated, reference) pairs per Frechet distance
VLM3D_CHUNK = 4


# ============================================================================= FVD_CTNet (VLM3D)
def vlm3d_order(case_ids: Iterable[str]) -> np.ndarray:
    """Indices that put ``case_ids`` in VLM3D's order: ``sorted`` file names ``<case id>.mha``."""
    ids = [str(c) for c in case_ids]
    return np.array(sorted(range(len(ids)), key=lambda i: ids[i] + ".mha"), dtype=int)


def fvd_ctnet_from_features(gen: np.ndarray, ref: np.ndarray, chunk: int = VLM3D_CHUNK) -> tuple[float, int]:
    """Functional twin: ``(FVD_CTNet, number of chunks)`` of paired feature rows already in VLM3D's order
    (row i of ``gen`` and of ``ref`` come from the same case): the mean over consecutive chunks of
    ``chunk`` pairs of the Frechet distance (``ddof = 1``) of each chunk's two sets."""
    g, r = np.asarray(gen, np.float64), np.asarray(ref, np.float64)
    if g.ndim != 2 or g.shape != r.shape:
        raise ValueError(f"Expected paired feature matrices of one shape (n, d), got {g.shape} and {r.shape}")
    if len(g) == 0:
        raise ValueError("FVD_CTNet needs at least 2 (generated, reference) pairs, got 0")
    if not (np.isfinite(g).all() and np.isfinite(r).all()):
        raise ValueError("features contain NaN or inf")
    chunk = int(chunk)
    if chunk < 2:
        raise ValueError(f"Expected a chunk of at least 2 pairs, got {chunk}")
    if len(g) % chunk == 1:
        raise ValueError(f"{len(g)} pairs leave a last chunk of 1 pair, which has no covariance; VLM3D's "
                         f"evaluate_fvd.py fails there too (np.cov of one row is NaN): score a number of cases that "
                         f"is not a multiple of {chunk} plus 1")
    vals = [frechet.frechet_distance_low_rank(g[i:i + chunk], r[i:i + chunk], ddof=1) for i in range(0, len(g), chunk)]
    return float(np.mean(vals)), len(vals)


@register_metric
class FVDCTNet(Metric):
    """``FVD_CTNet`` of the VLM3D challenge (module doc): mean Frechet distance over chunks of 4
    (generated, reference) pairs in sorted-name order, on 96-d CT-Net features.

    State per generated case: ``{"features": (1, 96), "reference_features": (1, 96), "case": (1,)}``
    (the case's reference features travel with it, so :meth:`compute` pairs by case id and does not
    depend on the order states are merged in); a reference case's state has no
    ``reference_features``."""

    name = "fvd_ctnet"
    kind = "distribution"
    table = "table2"
    needs_reference = True
    weights = (CTNET,)
    #: ~30 s per volume on one CPU core: a GPU metric in practice, so not in ``--metrics available``
    in_default_set = False
    outputs = {"fvd_ctnet": Output(False, "FVD (CT-Net, VLM3D)", digits=3, rank=4.5, tolerance=FD_TOL,
                                   value_range=NONNEGATIVE),
               "fvd_ctnet_chunks": Output(None, "FVD (CT-Net) chunks", digits=0, rank=4.501, hidden=True,
                                          value_range=NONNEGATIVE)}
    options = (Option("chunk", VLM3D_CHUNK, "(generated, reference) pairs per Frechet distance, averaged over the "
                      "chunks (VLM3D evaluate_fvd.py: 4)", type=int, minimum=2, maximum=1_000_000,
                      in_protocol_id=False),
               *CTNET_VOLUMES.options)
    description = ("VLM3D challenge FVD_CTNet: Frechet distance of CT-Net features (96-d, one per volume) over "
                   "chunks of 4 (generated, reference) pairs in case-id order, averaged; paired by case id")

    def __init__(self, options: dict[str, Any] | None = None) -> None:
        super().__init__(options)
        self.net = Backbone(CTNET_VOLUMES.network)

    def protocol_parts(self, ctx: RunContext) -> list[Part]:
        n = int(self.opts["chunk"])
        return [*CTNET_VOLUMES.parts(self.opts, ctx),
                (f"fvd:paired-by-case:sorted-names:chunks{n}:fd-ddof1:mean",
                 f"VLM3D's FVD_CTNet: each generated volume paired with the reference of its case id, pairs in the "
                 f"order of sorted file names <case id>.mha, cut into consecutive chunks of {n} pairs; per chunk the "
                 f"Frechet distance (covariance n - 1) of its {n} generated vs {n} reference vectors; the mean over "
                 "chunks")]

    def setup(self, ctx: RunContext) -> None:
        self.net.get(CTNET, ctx)

    def case_state(self, data: CaseData, ctx: RunContext) -> State:
        f = np.asarray(CTNET_VOLUMES.features(self.net, data, ctx, self.opts), np.float32)
        state: State = {"features": f, "case": np.array([str(data.case_id)])}
        if data.reference is not None:
            ref = CaseData(method=f"{data.method}:reference", case_id=data.case_id, volume=data.reference,
                           protocol=data.protocol, device=data.device)
            state["reference_features"] = np.asarray(CTNET_VOLUMES.features(self.net, ref, ctx, self.opts), np.float32)
        for k in ("features", "reference_features"):
            if k in state and (state[k].shape != (1, f.shape[1]) or not np.isfinite(state[k]).all()):
                raise ValueError(f"case {data.case_id!r}: {k} of shape {state[k].shape}, expected (1, {f.shape[1]}) "
                                 "and finite")
        return state

    def merge(self, states: Iterable[State]) -> State:
        states = list(states)
        if not states:
            raise ValueError("no states to merge")
        paired = {"reference_features" in s for s in states}
        if len(paired) != 1:
            raise ValueError("Expected states all with or all without 'reference_features' (generated cases vs "
                             "reference cases), got a mix")
        keys = ("features", "case", "reference_features") if paired.pop() else ("features", "case")
        return {k: np.concatenate([np.asarray(s[k]) for s in states]) for k in keys}

    def compute(self, generated: State, reference: State, ctx: RunContext) -> dict[str, float]:
        if "reference_features" not in generated:
            raise ValueError("fvd_ctnet pairs each generated volume with its reference volume: the generated "
                             "state has no 'reference_features' (scored without CaseData.reference?)")
        order = vlm3d_order(generated["case"])
        value, n = fvd_ctnet_from_features(np.asarray(generated["features"])[order],
                                           np.asarray(generated["reference_features"])[order], int(self.opts["chunk"]))
        return {"fvd_ctnet": value, "fvd_ctnet_chunks": float(n)}

    def sample_info(self, state: State) -> dict[str, int]:
        """Vectors per Frechet distance (the chunk size, or fewer) and their dimension."""
        f = np.asarray(state["features"])
        return {"samples": int(min(int(self.opts["chunk"]), f.shape[0])), "dim": int(f.shape[1])}

    def export_stats(self, state: State) -> dict[str, np.ndarray]:
        f = np.asarray(state["features"])
        return {"n": np.int64(f.shape[0]), "dim": np.int64(f.shape[1]), "chunk": np.int64(self.opts["chunk"])}


__all__ = ["FVDCTNet", "VLM3D_CHUNK", "fvd_ctnet_from_features", "vlm3d_order"]
