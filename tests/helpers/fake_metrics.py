"""Small metric plug-ins used by the runner tests (no tests here).

They are real computations on the volumes (not placeholders): ``fake_mae`` = mean |HU difference|
with the reference / 1000 on the reference grid (same-shape volumes only), ``fake_mean`` = the
difference of the mean frame grey level between the generated and the reference set, computed
from mergeable sums; ``slow_flicker`` = temporal flickering after a sleep (to kill a run mid-way).
"""

from __future__ import annotations

import time

import numpy as np

from trace_bench.metrics.base import METRICS, CaseData, Metric, Output, RunContext, register_metric
from trace_bench.metrics.temporal import temporal_flickering

from helpers.paths import DEMO_CTS, DEMO_DIR


class FakeCase(Metric):
    name = "fake_mae"
    kind = "case"
    needs_reference = True
    outputs = {"fake_mae": Output(False)}

    def case_values(self, data: CaseData, ctx: RunContext) -> dict[str, float]:
        a, b = data.volume.array, data.reference.array
        if a.shape != b.shape:
            raise ValueError(f"Expected the reference shape {b.shape}, got {a.shape}")
        return {"fake_mae": float(np.abs(a.astype(np.float64) - b).mean() / 1000.0)}


class FakeDist(Metric):
    name = "fake_mean"
    kind = "distribution"
    needs_reference = True
    table = "table2"
    outputs = {"fake_mean": Output(False)}

    def case_state(self, data: CaseData, ctx: RunContext):
        f = data.frames.astype(np.float64)
        return {"n": np.float64(f.shape[0]), "s": f.mean(axis=(1, 2)).sum()}

    def compute(self, gen, ref, ctx):
        return {"fake_mean": float(abs(gen["s"] / gen["n"] - ref["s"] / ref["n"]))}


class SlowFlicker(Metric):
    name = "slow_flicker"
    kind = "case"
    outputs = {"slow_flicker": Output(True)}

    def case_values(self, data: CaseData, ctx: RunContext) -> dict[str, float]:
        time.sleep(0.4)
        return {"slow_flicker": temporal_flickering(data.frames)}


FAKES = (FakeCase, FakeDist, SlowFlicker)


def register_fakes(slow: bool = False) -> None:
    for cls in FAKES if slow else (FakeCase, FakeDist):
        register_metric(cls, overwrite=True)


def unregister_fakes() -> None:
    for cls in FAKES:
        METRICS.unregister(cls.name)


# ----------------------------------------------------------------------------- small inputs
def make_small_dataset(root, n_slices: int = 10, step: int = 4, slabs: int = 1):
    """Cropped, in-plane subsampled copies of the shipped demo CTs (64 x 64 x n_slices) as
    reference, plus two methods: ``interp`` (slice interpolation) and ``noisy`` (seeded noise).
    ``slabs`` > 1: that many disjoint slabs of each CT around its middle, as cases ``<id>_<k>``."""
    from pathlib import Path

    from baselines import get_adapter
    from trace_bench.demo import slice_interp
    from trace_bench.io import read_label_map, write_nifti
    from trace_bench.volume import Volume

    root = Path(root)
    ad = get_adapter("nifti")
    rng = np.random.default_rng(0)
    for p in ad.list_files(DEMO_CTS):
        v = ad.read(p)
        m = read_label_map(DEMO_DIR / "tumour_masks" / f"{ad.case_id(p)}.nii.gz")
        for k in range(slabs):
            cid = ad.case_id(p) if slabs == 1 else f"{ad.case_id(p)}_{k}"
            z0 = v.shape[0] // 2 - n_slices // 2 + (k - (slabs - 1) // 2) * n_slices
            arr = v.array[z0:z0 + n_slices, ::step, ::step]
            sp = (v.spacing[0], v.spacing[1] * step, v.spacing[2] * step)
            aff = v.affine.copy()
            aff[:3, 0] *= step
            aff[:3, 1] *= step
            small = Volume(arr, sp, aff, {})
            write_nifti(small, root / "reference" / f"{cid}.nii.gz")
            write_nifti(slice_interp(small, 3), root / "interp" / f"{cid}.nii.gz")
            noisy = small.with_array(arr + rng.normal(0, 60, arr.shape).astype(np.float32))
            write_nifti(noisy, root / "noisy" / f"{cid}.nii.gz")
            write_nifti(Volume(m.array[z0:z0 + n_slices, ::step, ::step], sp, aff, {}),
                        root / "masks" / f"{cid}.nii.gz")
    return root
