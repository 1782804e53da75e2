"""The catalogue: one row per public statistic-on-a-space metric (``fid``, ``kid_i3d``, ``fd_astra``, ...),
from which the metric classes are generated and registered.

A row names a feature space (:mod:`.spaces`), a statistic (:mod:`.statistic`), and how its columns show
(header label, position in Table 2, decimals, ``compare`` tolerance), plus its description and whether
it is part of ``--metrics available``. Everything else follows from the space and the statistic: the
options (the space's, then the statistic's), the weights, the protocol id and its legend, the states,
the merge and the values. Adding a statistic to a space, or a space to the toolkit, is a few rows here.

``key_class``: the class path the per-case cache key has always recorded for the metric (``run/plan.py``
keys entries by ``module.qualname`` of the metric's class); the generated class carries it as its
``__module__`` / ``__qualname__`` so that no cache key moved when the hand-written classes became rows (a
new row names ``trace_bench.metrics.catalog.<ClassName>``). Instances pickle by metric name
(:func:`make_metric`), not by that path.

Metrics that are more than a statistic on a space stay classes of their own and reuse the spaces:
``fid_2p5d`` (:mod:`.fid`), ``fid_maisi`` / ``fid_vlm3d`` (:mod:`.fid_presets`), ``fvd_ctnet`` (paired
chunks, :mod:`.fvd_ctnet`), ``clip_score`` and the VBench dimensions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Iterable

import numpy as np

from .backbone import Backbone
from .base import CaseData, Metric, Part, RunContext, State, register_metric
from .spaces import (ASTRA_VOLUMES, CLIP_SLICES, CTNET_VOLUMES, I3D_CLIPS, INCEPTION_SLICES, MEDICALNET_VOLUMES,
                     FeatureSpace)
from .statistic import FD, KID, PRDC, Display, Statistic

#: regression tolerances (trace-bench compare) of the Frechet columns
FID_TOL = {"abs": 0.5, "rel": 0.05}
FVD_TOL = {"abs": 5.0, "rel": 0.05}
FD_TOL = {"abs": 0.01, "rel": 0.05}


@dataclass(frozen=True)
class Row:
    """One public metric: ``statistic`` on ``space``, shown as ``show``."""

    name: str
    space: FeatureSpace
    statistic: Statistic
    show: Display
    key_class: str
    #: '' = generated from the statistic and the space
    description: str = ""
    #: None = the space's
    in_default_set: bool | None = None


FD_VOLUME_NOTE = "; needs many volumes (n vs the feature dimension)"
CATALOG: tuple[Row, ...] = (
    Row("fid", INCEPTION_SLICES, FD(1, "ddof=1"), Display("FID", 0, 1, FID_TOL), "trace_bench.metrics.fid.FID",
        "Frechet Inception Distance of axial slices (Inception-v3 pool features, pytorch-fid formula)"),
    Row("fvd", I3D_CLIPS, FD(0, "ddof=0"), Display("FVD (I3D)", 2, 1, FVD_TOL), "trace_bench.metrics.fvd.FVD",
        "Frechet Video Distance of 16-slice clips, I3D Kinetics-400 features (StyleGAN-V protocol)"),
    Row("kid", INCEPTION_SLICES, KID(), Display("KID", 2.5), "trace_bench.metrics.kid.KID",
        "Kernel Inception Distance (MMD^2 over pairs of different volumes, cubic kernel) of axial-slice Inception "
        "features (as fid)"),
    Row("kid_i3d", I3D_CLIPS, KID(), Display("KID (I3D)", 2.52), "trace_bench.metrics.kid.KIDI3D"),
    Row("kid_clip", CLIP_SLICES, KID(), Display("KID (CLIP)", 2.54), "trace_bench.metrics.kid.KIDClip"),
    Row("prdc", INCEPTION_SLICES, PRDC(), Display("PRDC", 2.7), "trace_bench.metrics.prdc.PRDC"),
    Row("prdc_i3d", I3D_CLIPS, PRDC(), Display("PRDC (I3D)", 2.8), "trace_bench.metrics.prdc.PRDCI3D"),
    Row("prdc_clip", CLIP_SLICES, PRDC(), Display("PRDC (CLIP)", 2.9), "trace_bench.metrics.prdc.PRDCClip"),
    Row("fd_astra", ASTRA_VOLUMES, FD(), Display("FD (Astra 3D)", 4.0, 3, FD_TOL), "trace_bench.metrics.ct3d.FDAstra",
        "Frechet distance of whole-volume CT features (Astra/Merlin I3ResNet-152, 2048-d, one per volume)"
        + FD_VOLUME_NOTE),
    Row("kid_astra", ASTRA_VOLUMES, KID(), Display("KID (Astra 3D)", 4.1), "trace_bench.metrics.ct3d.KIDAstra"),
    Row("prdc_astra", ASTRA_VOLUMES, PRDC(), Display("PRDC (Astra 3D)", 4.2), "trace_bench.metrics.ct3d.PRDCAstra"),
    Row("fd_medicalnet", MEDICALNET_VOLUMES, FD(), Display("FD (MedicalNet 3D)", 4.3, 3, FD_TOL),
        "trace_bench.metrics.medicalnet.FDMedicalNet",
        "HA-GAN's 3D FID: Frechet distance of MedicalNet ResNet-50 volume features (2048-d, one per volume, HA-GAN "
        "preprocessing to 256^3)" + FD_VOLUME_NOTE),
    Row("kid_medicalnet", MEDICALNET_VOLUMES, KID(), Display("KID (MedicalNet 3D)", 4.35),
        "trace_bench.metrics.medicalnet.KIDMedicalNet"),
    Row("prdc_medicalnet", MEDICALNET_VOLUMES, PRDC(), Display("PRDC (MedicalNet 3D)", 4.4),
        "trace_bench.metrics.medicalnet.PRDCMedicalNet"),
    Row("fd_ctnet", CTNET_VOLUMES, FD(), Display("FD (CT-Net)", 4.6, 3, FD_TOL),
        "trace_bench.metrics.fvd_ctnet.FDCTNet",
        "Frechet distance of all generated vs all reference CT-Net features (96-d, one per volume, unpaired; not "
        "VLM3D's chunked FVD_CTNet)"),
    Row("kid_ctnet", CTNET_VOLUMES, KID(), Display("KID (CT-Net)", 4.7), "trace_bench.metrics.fvd_ctnet.KIDCTNet"),
    Row("prdc_ctnet", CTNET_VOLUMES, PRDC(), Display("PRDC (CT-Net)", 4.8), "trace_bench.metrics.fvd_ctnet.PRDCCTNet"),
)


class SpaceMetric(Metric):
    """A distribution metric: :attr:`statistic` on the vectors of :attr:`space` (a catalogue row)."""

    kind = "distribution"
    table = "table2"
    space: ClassVar[FeatureSpace]
    statistic: ClassVar[Statistic]

    def __init__(self, options: dict[str, Any] | None = None) -> None:
        super().__init__(options)
        self.net = Backbone(self.space.network)

    def __reduce__(self):
        """Pickled as metric name + options (see the module doc: ``__module__`` is the cache-key path)."""
        return make_metric, (self.name, dict(self.opts))

    def required_weights(self, ctx: RunContext | None = None) -> tuple[str, ...]:
        """The space's weights for these options (a weights entry with a ``provider``, e.g. Astra's installed
        shard packages, is built into the cache only when a run resolves it: trace_bench.weights)."""
        return self.space.weights(self.opts)

    def setup(self, ctx: RunContext) -> None:
        for w in self.required_weights(ctx):
            self.net.get(w, ctx)

    def protocol_parts(self, ctx: RunContext) -> list[Part]:
        return [*self.space.parts(self.opts, ctx), *self.statistic.parts(self.opts, ctx)]

    def case_state(self, data: CaseData, ctx: RunContext) -> State:
        return self.statistic.case_state(self.space.features(self.net, data, ctx, self.opts), data.case_id)

    def merge(self, states: Iterable[State]) -> State:
        return self.statistic.merge(states)

    def compute(self, generated: State, reference: State, ctx: RunContext) -> dict[str, float]:
        return self.statistic.compute(self.name, generated, reference, self.opts, ctx)

    def value_notes(self, generated: State, reference: State, ctx: RunContext) -> dict[str, str]:
        return self.statistic.value_notes(self.name, generated, reference, self.opts)

    def export_stats(self, state: State) -> dict[str, np.ndarray]:
        return self.statistic.export_stats(state)

    def sample_info(self, state: State) -> dict[str, int]:
        return self.statistic.sample_info(state)


def metric_class(row: Row) -> type[SpaceMetric]:
    """The class of a catalogue row (registered by the caller)."""
    module, _, qualname = row.key_class.rpartition(".")
    description = row.description or f"{row.statistic.title} of {row.space.noun}"
    attrs = {
        "__module__": module, "__qualname__": qualname,
        "__doc__": f"``{row.name}``: {description} (catalogue row, :mod:`trace_bench.metrics.catalog`).",
        "name": row.name, "space": row.space, "statistic": row.statistic,
        "outputs": row.statistic.outputs(row.name, row.show),
        "options": row.space.options + row.statistic.options_for(row.space.one_per_volume),
        "weights": row.space.default_weights,
        "description": description,
        "in_default_set": row.space.in_default_set if row.in_default_set is None else row.in_default_set,
    }
    return type(qualname, (SpaceMetric,), attrs)


CLASSES: dict[str, type[SpaceMetric]] = {row.name: register_metric(metric_class(row)) for row in CATALOG}


def make_metric(name: str, options: dict[str, Any]) -> SpaceMetric:
    """A catalogue metric by name (how instances are unpickled in worker processes)."""
    return CLASSES[name](options)
