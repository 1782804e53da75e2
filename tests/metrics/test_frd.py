"""Frechet Radiomics Distance (trace_bench/metrics/frd.py, trace_bench/networks/radiomics.py).

* extractor vs pyradiomics' own baseline: tests/data/pyradiomics/ is a derived copy of pyradiomics-bhklab 3.1.4's
  sdist test data (``data/breast1_image.nrrd``, ``breast1_label.nrrd`` and the breast1 columns of
  ``data/baseline/baseline_{firstorder,glcm,glrlm,glszm,ngtdm}.csv``, the classes FRD uses; BSD-3, licence copied
  beside them). The installed wheel ships neither. Our extractor (trace-bench's reader -> canonical volume ->
  SimpleITK) with each baseline configuration's settings equals the baseline to 1e-9 relative, except the
  resampling configuration: its baseline was made on the file's integer pixel type (B-spline output rounded to
  integers), trace-bench always passes float32 (as frd-score does: ``ReadImage(..., sitkFloat32)``); there it
  equals pyradiomics called directly on the float32 image to 1e-9, and the baseline to pyradiomics' own 3 %;
* FRD vs ``frd_score.frd.compute_frd`` (the package itself, v1 defaults) on the same small volumes, whole volume
  and with masks (``paths_masks``): equal to 1e-6 (absolute, on ln d^2);
* the run end to end (``python -m trace_bench run --metrics frd,frd_labels``).

Skipped where pyradiomics / frd-score are not installed (``make env``: pyradiomics-bhklab from the ``dev`` extra,
frd-score without its dependencies, as the other parity references).
"""

from __future__ import annotations

import ast
import csv
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

radiomics = pytest.importorskip("radiomics")
pytestmark = pytest.mark.filterwarnings("ignore:the load_module:DeprecationWarning")  # an import inside pyradiomics

from trace_bench.io import read_label_map, read_volume, write_nifti  # noqa: E402
from trace_bench.metrics.base import METRICS, CaseData, RunContext  # noqa: E402
from trace_bench.metrics.frd import FRD, FRDLabels, frd_from_features, frd_normalise  # noqa: E402
from trace_bench.networks.radiomics import FRD_V1_PARAMS, RadiomicsExtractor  # noqa: E402
from trace_bench.volume import from_canonical  # noqa: E402
from helpers.paths import ROOT, TEST_DATA

DATA = TEST_DATA / "pyradiomics"
CONFIGS = ("breast1", "breast1_normalization", "breast1_resampling", "breast1_resegmentation")
CLASSES = ("firstorder", "glcm", "glrlm", "glszm", "ngtdm")


# ============================================================================= extractor vs the baseline
def _baseline() -> list[dict[str, str]]:
    with open(DATA / "baseline_breast1.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def _config(rows, cls: str, cfg: str) -> dict:
    get = {r["featureName"]: r[cfg] for r in rows if r["class"] == cls}
    return {"imageType": ast.literal_eval(get["diagnostics_Configuration_EnabledImageTypes"]),
            "featureClass": {cls: None}, "setting": ast.literal_eval(get["diagnostics_Configuration_Settings"])}


def test_extractor_equals_pyradiomics_baseline():
    import SimpleITK as sitk
    from radiomics import featureextractor

    rows = _baseline()
    vol = read_volume(DATA / "breast1_image.nrrd", convention="hu")  # intensities as stored (values 6..248)
    mask = (np.rint(read_label_map(DATA / "breast1_label.nrrd").array) == 1).astype(np.uint8)
    checked = 0
    for cfg in CONFIGS:
        for cls in CLASSES:
            params = _config(rows, cls, cfg)
            ours = RadiomicsExtractor(params).execute(vol, mask)
            if cfg == "breast1_resampling":
                direct = featureextractor.RadiomicsFeatureExtractor(params).execute(
                    sitk.ReadImage(str(DATA / "breast1_image.nrrd"), sitk.sitkFloat32),
                    sitk.ReadImage(str(DATA / "breast1_label.nrrd"), sitk.sitkUInt32))
            for r in rows:
                if r["class"] != cls or "diagnostics" in r["featureName"] or r[cfg] == "":
                    continue
                name, base, got = r["featureName"], float(r[cfg]), float(ours[r["featureName"]])
                if cfg == "breast1_resampling":
                    assert got == pytest.approx(float(direct[name]), rel=1e-9, abs=1e-12), (cfg, name)
                    assert got == pytest.approx(base, rel=0.03, abs=1e-12), (cfg, name)  # pyradiomics' tolerance
                else:
                    assert got == pytest.approx(base, rel=1e-9, abs=1e-12), (cfg, name)
                checked += 1
    assert checked == 4 * (18 + 24 + 16 + 16 + 5)  # every baseline value of the five classes (glcm: all 24), 4 configs


def test_frd_v1_settings_are_frd_scores():
    import yaml

    frd_pkg = pytest.importorskip("frd_score.frd")

    with open(frd_pkg.V1_CONFIG_3D) as fh:
        cfg = yaml.safe_load(fh)
    assert cfg["imageType"] == FRD_V1_PARAMS["imageType"]
    assert cfg["setting"] == FRD_V1_PARAMS["setting"]
    assert {k: (v or None) for k, v in cfg["featureClass"].items()} == FRD_V1_PARAMS["featureClass"]


# ============================================================================= the statistic
def test_normalisation_and_log():
    rng = np.random.default_rng(0)
    ref = rng.normal(size=(6, 5)).astype(np.float32)
    ref[:, 2] = 7.0  # constant over the reference: dropped (inf / nan after the z-score)
    gen = rng.normal(1.0, 2.0, size=(5, 5)).astype(np.float32)
    rn, gn = frd_normalise(ref, gen)
    assert rn.shape == (6, 4) and gn.shape == (5, 4)
    np.testing.assert_allclose(rn.mean(0), 0, atol=1e-6)
    np.testing.assert_allclose(rn.std(0), 1, atol=1e-6)
    value, kept = frd_from_features(ref, gen)
    assert kept == 4 and np.isfinite(value)
    same, _ = frd_from_features(ref, ref + 0.0)
    assert same < -20 or same == float("-inf")  # d^2 = 0 up to round-off
    with pytest.raises(ValueError, match="at least 2"):
        frd_from_features(ref[:1], gen)


# ============================================================================= parity with frd-score
def _volume(seed: int, shift: float, blob: float):
    """A small CT-like volume (10 x 20 x 20 voxels of 3 x 2 x 2 mm): air around a textured body with a bright block
    whose contrast varies."""
    rng = np.random.default_rng(seed)
    a = rng.normal(-1000.0, 15.0, size=(10, 20, 20)).astype(np.float32)
    yy, xx = np.mgrid[:20, :20]
    body = (yy - 10) ** 2 / 81 + (xx - 10) ** 2 / 64 < 1
    a[:, body] = rng.normal(shift, 120.0, size=(10, int(body.sum())))
    a[3:7, 6:14, 5:15] += blob
    return from_canonical(a, (3.0, 2.0, 2.0))


def _mask(shape) -> np.ndarray:
    m = np.zeros(shape, np.uint8)
    m[2:8, 5:15, 4:16] = 1
    return m


@pytest.fixture(scope="module")
def sets(tmp_path_factory):
    """Three reference and three generated volumes written as NIfTI, plus one mask per volume (label 1)."""
    root = tmp_path_factory.mktemp("frd")
    out = {}
    for name, shift, blob in (("ref", 0.0, 300.0), ("gen", 40.0, 150.0)):
        for i in range(3):
            v = _volume(100 * (name == "gen") + i, shift, blob + 60 * i)
            write_nifti(v, root / name / f"c{i}.nii.gz")
            m = _mask(v.shape)
            write_nifti(from_canonical(m.astype(np.float32), v.spacing), root / f"{name}_masks" / f"c{i}.nii.gz")
            out.setdefault(name, []).append(read_volume(root / name / f"c{i}.nii.gz"))
    out["root"] = root
    return out


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    """``$TRACE_BENCH_CACHE`` shared by the tests of this module (features under ``features/``): the end-to-end run
    reads the features the parity tests extracted (same files, same content hash)."""
    return tmp_path_factory.mktemp("frd-cache")


@pytest.fixture(scope="module")
def frd_score_values(sets):
    compute_frd = pytest.importorskip("frd_score.frd").compute_frd  # Makefile: installed without its dependencies

    root = sets["root"]
    whole = compute_frd([str(root / "ref"), str(root / "gen")], num_workers=1)
    masked = compute_frd([str(root / "ref"), str(root / "gen")], num_workers=1,
                         paths_masks=[str(root / "ref_masks"), str(root / "gen_masks")])
    return float(whole), float(masked)


def test_frd_equals_frd_score(sets, frd_score_values, cache):
    ctx = RunContext(cache_dir=str(cache / "features"))
    g, r = FRD(), FRD()
    for i, v in enumerate(sets["gen"]):
        g.update(CaseData("gen", f"c{i}", v), ctx)
    for i, v in enumerate(sets["ref"]):
        r.update(CaseData("GT", f"c{i}", v), ctx)
    res = g.compute_result(ctx, reference=r)
    assert res["frd"] == pytest.approx(frd_score_values[0], abs=1e-6)
    assert 1000 < res["frd_features"] <= 1014  # 1014 per volume; features constant over the reference dropped
    # features come back from the on-disk cache
    again = FRD()
    again.update(CaseData("gen", "c0", sets["gen"][0]), ctx)
    assert again.net.cache.hits == 1


def test_frd_labels_equals_frd_score_with_masks(sets, frd_score_values, cache):
    """frd_labels with provided masks (label 1 = 'lungs' at --classes 3) equals compute_frd with the same masks."""
    ctx = RunContext(cache_dir=str(cache / "features"), segmenter="provided", classes="3")
    g, r = FRDLabels({"provided_labels": "3"}), FRDLabels({"provided_labels": "3"})
    root = sets["root"]
    for name, m in (("gen", g), ("ref", r)):
        for i, v in enumerate(sets[name]):
            mask = read_label_map(root / f"{name}_masks" / f"c{i}.nii.gz")
            m.update(CaseData(name, f"c{i}", v, mask=mask), ctx)
    res = g.compute_result(ctx, reference=r)
    assert set(res) == {"frd_labels[lungs]", "frd_labels_features[lungs]"}  # 'other' (label 2) is empty here
    assert res["frd_labels[lungs]"] == pytest.approx(frd_score_values[1], abs=1e-6)


def test_missing_pyradiomics_is_refused_in_preflight(monkeypatch):
    import builtins

    real = builtins.__import__

    def no_radiomics(name, *a, **k):
        if name == "radiomics" or name.startswith("radiomics."):
            raise ImportError("No module named 'radiomics'")
        return real(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", no_radiomics)
    with pytest.raises(ImportError, match=r"trace-bench\[radiomics\]"):
        FRD().setup(RunContext())
    assert not FRD.in_default_set and not FRDLabels.in_default_set
    from trace_bench.run.select import resolve_metric_names

    assert not {"frd", "frd_labels"} & set(resolve_metric_names(["available", "weight-free"]))


# ============================================================================= end to end
def test_run_end_to_end(sets, cache, tmp_path):
    """python -m trace_bench run --metrics frd,frd_labels (frd_labels on the provided masks)."""
    import pandas as pd

    root = sets["root"]
    out = tmp_path / "out"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TRACE_BENCH_CACHE": str(cache),
           "PYTHONPATH": str(ROOT)}
    r = subprocess.run([sys.executable, "-m", "trace_bench", "run", "-r", str(root / "ref"), "-m",
                        f"gen={root / 'gen'}", "-o", str(out), "--metrics", "frd,frd_labels", "--segmenter", "provided",
                        "--classes", "3", "--reference-masks", str(root / "ref_masks"), "--method-masks",
                        f"gen={root / 'gen_masks'}", "--option", "frd_labels.provided_labels=3", "--no-plots",
                        "--no-progress"],
                       capture_output=True, text=True, cwd=ROOT, env=env, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    s = pd.read_csv(out / "summary.csv")
    for col in ("frd", "frd_labels[lungs]"):
        row = s[(s.method == "gen") & (s.metric == col)]
        assert len(row) == 1 and np.isfinite(row.value.iloc[0]), col
    assert METRICS.get("frd")().protocol_id(RunContext()) in (out / "per_case.csv").read_text()
    assert len(list((cache / "features").rglob("*.npy"))) == 12  # 6 whole volumes + 6 masks: read back, not redone
