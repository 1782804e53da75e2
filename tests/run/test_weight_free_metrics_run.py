"""End to end: ``python -m trace_bench run`` with the weight-free metrics of issue 31 (``ms_ssim_diversity``, ``mmd``,
``paired_fidelity``, ``anatomy_stats``, ``anatomy_dist``) on four small chest phantoms and a paired noisy copy of each
(``frd`` and ``frd_labels`` run end to end in tests/metrics/test_frd.py; ``fid_vlm3d`` needs 1536 network passes on
512^2 slices per volume, see tests/metrics/test_fid_vlm3d_squeezenet.py for its code path at a small geometry)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from trace_bench.io import write_nifti

from helpers.paths import ROOT
from helpers.phantoms import phantom

METRICS = ("ms_ssim_diversity", "mmd", "paired_fidelity", "anatomy_stats", "anatomy_dist")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("issue31")
    for i, r in enumerate((9.0, 10.0, 12.0, 13.0)):
        v, _ = phantom(r, i)
        write_nifti(v, root / "ref" / f"c{i}.nii.gz")
        noisy = v.array + np.random.default_rng(50 + i).normal(0, 30, v.shape).astype(np.float32)
        write_nifti(v.with_array(noisy), root / "gen" / f"c{i}.nii.gz")
    out = root / "out"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TRACE_BENCH_CACHE": str(root / "cache"), "PYTHONPATH": str(ROOT)}
    r = subprocess.run([sys.executable, "-m", "trace_bench", "run", "-r", str(root / "ref"), "-m",
                        f"gen={root / 'gen'}",
                        "-o", str(out), "--metrics", ",".join(METRICS), "--no-plots", "--no-progress"],
                       capture_output=True, text=True, cwd=ROOT, env=env, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    return out


def test_every_metric_has_rows(run):
    s = pd.read_csv(run / "summary.csv")
    gen = set(s[s.method == "gen"].metric)
    assert {"ms_ssim_diversity", "mmd", "mae_hu", "psnr", "ssim", "ms_ssim", "anat_volume_ml[lungs]",
            "anat_hu_median[other]", "anat_air_outside_hu", "anat_ks_volume_ml[lungs]",
            "anat_w1_hu_median[lungs]"} <= gen
    gt = set(s[s.method == "GT"].metric)
    assert "anat_volume_ml[lungs]" in gt and "ms_ssim_diversity_half" in gt  # scored reference / half-vs-half floor
    assert not {"mae_hu", "psnr"} & gt  # paired: no GT row
    assert pd.read_csv(run / "errors.csv").empty


def test_values_are_plausible(run):
    s = pd.read_csv(run / "summary.csv").set_index(["method", "metric"]).value
    assert 0 < s["gen", "ms_ssim"] <= 1 and s["gen", "psnr"] > 30 and 20 < s["gen", "mae_hu"] < 30  # noise sd 30
    assert s["gen", "anat_ks_volume_ml[lungs]"] == 0  # the same spheres: the same volume distribution
    assert s["gen", "anat_air_outside_hu"] == pytest.approx(-1000, abs=5)
    assert 0 < s["gen", "ms_ssim_diversity"] < 1


def test_declarations_travel_with_the_run(run):
    cols = json.loads((run / "metrics.json").read_text())["columns"]
    for c in ("ms_ssim_diversity", "mmd", "psnr", "ms_ssim", "anat_volume_ml[lungs]", "anat_ks_volume_ml"):
        assert cols[c]["value_range"] is not None and cols[c]["legend"], c
    assert cols["anat_volume_ml[lungs]"]["table"] == cols["anat_ks_volume_ml"]["table"] == "anatomy"
    assert cols["ms_ssim_diversity"]["closest_to_reference"] and cols["psnr"]["higher_is_better"] is True
    from reports.leaderboard import validate

    assert not validate(json.loads((run / "results.json").read_text()))
