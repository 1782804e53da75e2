"""HA-GAN's 3D FID (and KID / PRDC) on MedicalNet ResNet-50 volume features.

HA-GAN (batmanlab/HA-GAN ``evaluation/fid_score.py``) and WDM-3D (pfriedri/wdm-3d ``eval/fid.py``)
report "FID" of whole CT volumes on the features of MedicalNet's 3D ResNet-50 (Med3D, pretrained on
medical segmentation datasets; :mod:`trace_bench.extractors.medicalnet`): the trunk to ``layer4``,
globally averaged, one 2048-d vector per volume, with HA-GAN's preprocessing (HU [-1024, 600] ->
[-1, 1], blank axial slices trimmed, resized to 256^3 by scikit-image 0.19.2).

* ``fd_medicalnet``: Frechet distance of Gaussians fitted to the generated and reference features,
  covariance with ``n - 1`` (``np.cov``, HA-GAN's ``post_process``); HA-GAN evaluates the trace term
  with ``scipy.linalg.sqrtm`` (pytorch-fid's algorithm), trace-bench with the exact low-rank formula
  below 2048 volumes and symmetric eigendecompositions above (:mod:`.frechet`, the same quantity).
  Lower is better.
* ``kid_medicalnet`` / ``kid_medicalnet_std``: KID (:func:`.kid.kid_from_features`, cubic kernel,
  unbiased MMD^2) on the same features. Lower is better.
* ``prdc_medicalnet_{precision,recall,density,coverage}``: :func:`.prdc.prdc_from_features`, k = 5.
  Higher is better; each set needs more than k volumes.

Weights: option ``weights`` = ``medicalnet-resnet50`` (``resnet_50_23dataset.pth``, the default:
MedicalNet's 23-dataset ResNet-50, WDM-3D's file and MONAI's) or ``medicalnet-resnet50-3dseg8``
(``resnet_50.pth``, the file HA-GAN's ``fid_score.py`` loads). Neither can be downloaded by
trace-bench (Google Drive / Weiyun / Hugging Face); import one with ``trace-bench weights import``.
Without it the three metrics are listed as not computed. Option ``size``: 256 (HA-GAN's default) or
128 (its 128^3 configuration).

Sample size. n volumes give n vectors in 2048 dimensions: with n <= 2048 the covariance has rank
n - 1, so FD is dominated by estimator bias and only comparable between runs with the same n (HA-GAN's
script draws 2048 generated volumes against its training set); KID is unbiased and the better choice
for tens to hundreds of volumes; PRDC needs n > k. ``sample_info`` reports n and d, and the report
prints the note.

Cost: 3.3 TFLOP per 256^3 volume (torch's FLOP counter; the dilated layer3 / layer4 run at 32^3) and
0.42 TFLOP at 128^3, measured 8.6 s for one 128^3 forward pass on one CPU thread, so roughly a minute
per 256^3 volume on a CPU; a GPU metric in practice. The float64 preprocessing of a 512 x 512 x 300 CT
holds about 2 GB. Features are cached on disk by volume content hash + protocol + weights sha256, so
the three metrics run the network once per volume.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from . import frechet
from .backbone import Backbone
from .base import CaseData, Option, Output, RunContext, State, register_metric
from .feature_spaces import (
    FeatureSetMetric,
    FeatureSpace,
    cache_option,
    features_of,
    shared_cached_features,
)
from .kid import KID_OPTIONS, KIDMetric, kid_outputs
from .prdc import PRDC_OPTIONS, PRDCMetric, prdc_outputs

MEDICALNET = "medicalnet-resnet50"
MEDICALNET_WEIGHTS = ("medicalnet-resnet50", "medicalnet-resnet50-3dseg8")


def load_medicalnet_for_metric(path: str, device: str, name: str, ctx: RunContext) -> Any:
    """:class:`~.backbone.Backbone` loader of the MedicalNet ResNet-50."""
    from ..extractors.medicalnet import load_medicalnet_backbone

    return load_medicalnet_backbone(path, device, name, ctx)


def medicalnet_features(volumes: list, device: str = "cpu", size: int = 256, batch_size: int = 1,
                        weights: str = MEDICALNET, path: str | None = None) -> np.ndarray:
    """Functional twin: (len(volumes), 2048) MedicalNet features of :class:`~trace_bench.volume.Volume` s
    (HA-GAN preprocessing at ``size``), ``batch_size`` volumes per forward pass on ``device``."""
    from ..extractors.medicalnet import load_medicalnet
    from ..weights import resolve_weights

    r = resolve_weights(weights, path)
    enc = load_medicalnet(r.path, device, batch_size=batch_size, sha256=r.sha256, name=weights)
    return enc.volume_features(list(volumes), size)


def medicalnet_volume_features(net: Backbone, data: CaseData, ctx: RunContext, weights: str, size: int,
                               batch_size: int = 1, enabled: bool = True) -> np.ndarray:
    """(1, 2048) features of ``data.volume``; cache key parts (extractor id, weights sha256, preprocessing)."""
    from ..extractors.medicalnet import preprocess_hagan, preprocess_id

    enc = net.get(weights, ctx)
    enc.batch_size = int(batch_size)
    return shared_cached_features(net, data, ctx, (enc.id, enc.weights_sha256, f"volume:{preprocess_id(size)}"),  # type: ignore[arg-type]
                                  lambda: enc.features(preprocess_hagan(data.volume, size)[None]).astype(np.float32),
                                  enabled)


def _protocol(opts: dict[str, Any], ctx: RunContext) -> str:
    from ..extractors.medicalnet import EXTRACTOR_ID, preprocess_id

    return f"{opts['weights']}:{EXTRACTOR_ID}|{preprocess_id(opts['size'])}"


MEDICALNET_VOLUMES = FeatureSpace(
    "medicalnet", load_medicalnet_for_metric,
    (Option("weights", MEDICALNET, "MedicalNet ResNet-50 file: resnet_50_23dataset.pth (medicalnet-resnet50, "
            "WDM-3D's) or resnet_50.pth (medicalnet-resnet50-3dseg8, HA-GAN's)", choices=MEDICALNET_WEIGHTS,
            in_protocol_id=False),
     Option("size", 256, "edge of the cube HA-GAN resizes every volume to (256: its fid_score default; 128)",
            type=int, choices=(256, 128), in_protocol_id=False),
     Option("batch_size", 1, "volumes per forward pass (functional API; the runner scores one case at a time)",
            type=int, minimum=1, maximum=64, in_protocol_id=False),
     cache_option("MedicalNet volume")),
    lambda o: (o["weights"],), _protocol,
    lambda net, d, ctx, o: medicalnet_volume_features(net, d, ctx, o["weights"], o["size"], o["batch_size"],
                                                      o["feature_cache"]))


class MedicalNetFeatureMetric(FeatureSetMetric):
    """A set-level metric on :data:`MEDICALNET_VOLUMES` (one 2048-d vector per volume)."""

    space = MEDICALNET_VOLUMES
    weights = (MEDICALNET,)
    #: minutes per 256^3 volume on a CPU: a GPU metric in practice, so not in ``--metrics available``
    in_default_set = False


def _options(extra: tuple[Option, ...]) -> tuple[Option, ...]:
    return MEDICALNET_VOLUMES.options + extra


FD_TOL = {"abs": 0.01, "rel": 0.05}


@register_metric
class FDMedicalNet(MedicalNetFeatureMetric):
    name = "fd_medicalnet"
    outputs = {"fd_medicalnet": Output(False, "FD (MedicalNet 3D)", digits=3, rank=4.3, tolerance=FD_TOL)}
    options = _options(())
    description = ("HA-GAN's 3D FID: Frechet distance of MedicalNet ResNet-50 volume features (2048-d, one per "
                   "volume, HA-GAN preprocessing to 256^3); needs many volumes (n vs 2048 dims)")

    def base_protocol_id(self, ctx: RunContext) -> str:
        return f"{self.space.protocol(self.opts, ctx)}|fd:ddof=1"

    def compute(self, generated: State, reference: State, ctx: RunContext) -> dict[str, float]:
        g = frechet.features_state(features_of(generated, "generated state"))
        r = frechet.features_state(features_of(reference, "reference state"))
        return {"fd_medicalnet": frechet.frechet_distance_from_states(g, r, ddof=1)}

    def export_stats(self, state: State) -> dict[str, np.ndarray]:
        return frechet.export_stats(frechet.features_state(features_of(state)), ddof=1)


@register_metric
class KIDMedicalNet(MedicalNetFeatureMetric, KIDMetric):
    name = "kid_medicalnet"
    outputs = kid_outputs("kid_medicalnet", "KID (MedicalNet 3D)", 4.35)
    options = _options(KID_OPTIONS)
    description = "KID (unbiased MMD^2, cubic kernel) of MedicalNet ResNet-50 volume features (HA-GAN preprocessing)"


@register_metric
class PRDCMedicalNet(MedicalNetFeatureMetric, PRDCMetric):
    name = "prdc_medicalnet"
    outputs = prdc_outputs("prdc_medicalnet", "PRDC (MedicalNet 3D)", 4.4)
    options = _options(PRDC_OPTIONS)
    description = ("precision / recall / density / coverage of MedicalNet ResNet-50 volume features (HA-GAN "
                   "preprocessing); needs more than nearest_k volumes per set")


__all__ = [
    "MEDICALNET_VOLUMES",
    "FDMedicalNet",
    "KIDMedicalNet",
    "MedicalNetFeatureMetric",
    "PRDCMedicalNet",
    "load_medicalnet_for_metric",
    "medicalnet_features",
    "medicalnet_volume_features",
]
