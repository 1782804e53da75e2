"""Helpers for the shard / torchrun tests (no tests here): a small distribution plug-in and data.

``shard_fake_mean`` is a real (small) distribution metric: the difference of the mean frame grey
level of the generated and the reference set, from mergeable float64 sums (count, sum, sum of
squares), so sharded and torchrun runs exercise the state files of distribution metrics without a
backbone. Load it in other processes with ``--plugins helpers.shard_metrics:register`` (tests/ on
PYTHONPATH).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from trace_bench.metrics.base import METRICS, CaseData, Metric, Output, RunContext, register_metric

from helpers.paths import DEMO_CTS, DEMO_DIR

NAME = "shard_fake_mean"


class ShardFakeMean(Metric):
    name = NAME
    kind = "distribution"
    needs_reference = True
    table = "table2"
    outputs = {NAME: Output(False)}

    def case_state(self, data: CaseData, ctx: RunContext):
        f = data.frames.astype(np.float64).mean(axis=(1, 2))
        return {"n": np.float64(f.size), "s": f.sum(), "s2": (f * f).sum()}

    def compute(self, gen, ref, ctx):
        return {NAME: float(abs(gen["s"] / gen["n"] - ref["s"] / ref["n"]))}


def register() -> None:
    register_metric(ShardFakeMean, overwrite=True)


def unregister() -> None:
    METRICS.unregister(NAME)


def make_cases(root, per_volume: int = 3, n_slices: int = 8, step: int = 4) -> Path:
    """``per_volume`` crops (different z ranges) of each shipped demo CT, in-plane subsampled to
    64 x 64: reference, masks, and two methods (``interp``: slice interpolation, ``noisy``: seeded noise)."""
    from baselines import get_adapter
    from trace_bench.demo import slice_interp
    from trace_bench.io import read_label_map, write_nifti
    from trace_bench.volume import Volume

    root = Path(root)
    ad = get_adapter("nifti")
    rng = np.random.default_rng(0)
    for p in ad.list_files(DEMO_CTS):
        cid = ad.case_id(p)
        v = ad.read(p)
        m = read_label_map(DEMO_DIR / "tumour_masks" / f"{cid}.nii.gz")
        starts = np.linspace(4, v.shape[0] - n_slices - 4, per_volume).astype(int)
        for k, z0 in enumerate(starts):
            name = f"{cid}-{k}"
            sp = (v.spacing[0], v.spacing[1] * step, v.spacing[2] * step)
            aff = v.affine.copy()
            aff[:3, 0] *= step
            aff[:3, 1] *= step
            arr = v.array[z0:z0 + n_slices, ::step, ::step]
            small = Volume(arr, sp, aff, {})
            write_nifti(small, root / "reference" / f"{name}.nii.gz")
            write_nifti(slice_interp(small, 3), root / "interp" / f"{name}.nii.gz")
            write_nifti(small.with_array(arr + rng.normal(0, 60, arr.shape).astype(np.float32)),
                        root / "noisy" / f"{name}.nii.gz")
            write_nifti(Volume(m.array[z0:z0 + n_slices, ::step, ::step], sp, aff, {}), root / "masks" / f"{name}.nii.gz")
    return root
