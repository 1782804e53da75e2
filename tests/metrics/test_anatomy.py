"""``anatomy_stats`` / ``anatomy_dist`` (trace_bench/metrics/anatomy.py, anatomy_labels.py): organ volumes and HU
statistics per volume, their distributions per set, MAISI's per-organ HU check, global HU sanity.

Known answers: a chest phantom whose "lung" is an air sphere of known voxel count (the threshold segmenter labels it
lungs) gives that volume in ml exactly; a generated set whose spheres are larger is told apart from the reference set
(KS = 1, W1 = the shift in ml, scipy.stats called directly); MAISI's check equals a transcription of
Project-MONAI/tutorials ``generation/maisi/scripts/quality_check.py`` ``is_outlier`` with the numbers of
``configs/image_median_statistics.json`` (reference code path, test file only).
"""

from __future__ import annotations

import numpy as np
import pytest

from trace_bench.metrics.anatomy import AnatomyDist, AnatomyStats, anatomy_distances
from trace_bench.metrics.anatomy_labels import MAISI_GROUPS, MAISI_MEDIAN_STATISTICS, maisi_range
from trace_bench.metrics.base import CaseData, RunContext
from trace_bench.volume import Volume, from_canonical

from helpers.phantoms import phantom

VOXEL_ML = 2.5 * 1.25 * 1.25 / 1000


def test_sphere_of_known_volume(tmp_path):
    ctx = RunContext(cache_dir=str(tmp_path))
    v, n = phantom(12.0)
    res = AnatomyStats().case_values(CaseData("m", "c", v), ctx)
    assert res["anat_volume_ml[lungs]"] == pytest.approx(n * VOXEL_ML, rel=1e-12)  # exactly the sphere's voxels
    assert res["anat_volume_ml[lungs]"] == pytest.approx(4 / 3 * np.pi * 12.0 ** 3 / 1000, rel=0.05)  # ~7.24 ml
    assert res["anat_hu_median[lungs]"] == pytest.approx(-850.0, abs=2.0)
    assert res["anat_hu_iqr[lungs]"] == pytest.approx(1.349 * 10.0, rel=0.15)  # noise sd 10: a normal's IQR 1.349 sd
    assert res["anat_hu_median[other]"] == pytest.approx(40.0, abs=2.0)
    assert res["anat_air_outside_hu"] == pytest.approx(-1000.0, abs=1.0)
    assert res["anat_hu_valid_fraction"] == 1.0
    assert "anat_hu_plausible" not in res  # 3-class labels: MAISI's organ check does not apply
    assert res["anat_body_volume_ml"] > res["anat_volume_ml[lungs]"] + res["anat_volume_ml[other]"] * 0.9


def test_hu_sanity_flags_painted_background(tmp_path):
    ctx = RunContext(cache_dir=str(tmp_path))
    v, _ = phantom(10.0, outside=-600.0)  # a generator painting the air grey
    res = AnatomyStats().case_values(CaseData("m", "c", v), ctx)
    assert res["anat_air_outside_hu"] == pytest.approx(-600.0, abs=1.0)
    a = v.array.copy()
    a[:2] = -2000.0  # out of the 12-bit CT range
    res2 = AnatomyStats().case_values(CaseData("m", "c", v.with_array(a)), ctx)
    assert res2["anat_hu_valid_fraction"] == pytest.approx(1 - 2 / 24, abs=1e-9)


def _set(metric, radii, method, ctx, seed0=0):
    for i, r in enumerate(radii):
        metric.update(CaseData(method, f"c{i}", phantom(r, seed0 + i)[0]), ctx)
    return metric


def test_shifted_organ_volumes_are_detected(tmp_path):
    from scipy.stats import ks_2samp, wasserstein_distance

    ctx = RunContext(cache_dir=str(tmp_path))
    ref_r, same_r, big_r = (9, 10, 11, 12, 13), (9.5, 10.5, 11, 12.5, 13), (14, 15, 16, 17, 18)
    ref = _set(AnatomyDist(), ref_r, "GT", ctx)
    same = _set(AnatomyDist(), same_r, "same", ctx, 10).compute_result(ctx, reference=ref)
    big_m = _set(AnatomyDist(), big_r, "big", ctx, 20)
    big = big_m.compute_result(ctx, reference=ref)
    assert big["anat_ks_volume_ml[lungs]"] == 1.0 and same["anat_ks_volume_ml[lungs]"] <= 0.4
    assert big["anat_w1_volume_ml[lungs]"] > 10 * same["anat_w1_volume_ml[lungs]"]
    g, r = big_m.state()["volume_ml:lungs"], ref.state()["volume_ml:lungs"]
    assert big["anat_w1_volume_ml[lungs]"] == pytest.approx(wasserstein_distance(g, r), rel=1e-12)
    assert big["anat_ks_volume_ml[lungs]"] == ks_2samp(g, r).statistic
    assert ks_2samp(g, r).pvalue < 0.01  # the two sets differ at n = 5 per set
    assert big["anat_ks_volume_ml"] == pytest.approx(np.mean([big["anat_ks_volume_ml[lungs]"],
                                                              big["anat_ks_volume_ml[other]"]]))
    assert set(big) >= {"anat_ks_hu_median[lungs]", "anat_w1_hu_median[other]"}


def test_absent_organ_counts_as_zero_volume(tmp_path):
    ctx = RunContext(cache_dir=str(tmp_path))
    ref = _set(AnatomyDist(), (9, 10, 11), "GT", ctx)
    none = AnatomyDist()
    for i in range(3):
        v, _ = phantom(10.0, 30 + i)
        a = v.array.copy()
        a[a < -700] = 40.0  # no air inside the body: no lungs
        a[:, :3] = -1000.0
        none.update(CaseData("gen", f"c{i}", v.with_array(a)), ctx)
    st = none.state()
    assert np.all(st["volume_ml:lungs"] == 0) and "hu_median:lungs" not in st
    res = none.compute_result(ctx, reference=ref)
    assert res["anat_ks_volume_ml[lungs]"] == 1.0 and "anat_ks_hu_median[lungs]" not in res


# ============================================================================= MAISI's check
# --- Project-MONAI/tutorials generation/maisi/scripts/quality_check.py is_outlier (get_masked_data inlined)
def maisi_is_outlier(statistics, image_data, label_data, label_int_dict):
    outlier_results = {}
    for label_name, stats in statistics.items():
        low_thresh = min(stats["sigma_6_low"], stats["percentile_0_5"])
        high_thresh = max(stats["sigma_6_high"], stats["percentile_99_5"])
        if label_name == "bone":
            high_thresh = 1000.0
        labels = label_int_dict.get(label_name, [])
        masked_data = image_data[np.isin(label_data, labels)] if labels else np.array([])
        masked_data = masked_data[~np.isnan(masked_data)]
        if len(masked_data) == 0:
            outlier_results[label_name] = {"is_outlier": False, "median_value": None}
            continue
        median_value = np.nanmedian(masked_data)
        outlier_results[label_name] = {"is_outlier": median_value < low_thresh or median_value > high_thresh,
                                       "median_value": median_value}
    return outlier_results


def statistics_json() -> dict:
    keys = ("sigma_6_low", "percentile_0_5", "sigma_6_high", "percentile_99_5")
    return {k: dict(zip(keys, v)) for k, v in MAISI_MEDIAN_STATISTICS.items()}


def test_maisi_ranges_equal_quality_check():
    assert maisi_range("bone")[1] == 1000.0
    assert maisi_range("liver") == (-21.596463547885904, 162.0)
    assert maisi_range("lung") == (-1088.5583843889117, -366.9500000000007)


def organ_volume(liver_hu: float, kidney_hu: float):
    """A VISTA3D-labelled volume (liver 1, kidneys 5 / 14, right lung lobes 30-32, vertebra 40) and its label map."""
    shape = (16, 48, 48)
    a = np.full(shape, -1000.0, np.float32)
    lab = np.zeros(shape, np.int32)
    for ids, hu, sl in (((1,), liver_hu, np.s_[2:14, 5:25, 5:25]), ((5,), kidney_hu, np.s_[4:10, 30:38, 5:12]),
                        ((14,), kidney_hu, np.s_[4:10, 30:38, 30:37]), ((30,), -850.0, np.s_[2:14, 5:20, 28:44]),
                        ((32,), -820.0, np.s_[2:14, 22:28, 28:44]), ((40,), 400.0, np.s_[2:14, 40:46, 20:26])):
        a[sl], lab[sl] = hu, ids[0]
    v = from_canonical(a, (2.0, 1.5, 1.5))
    return v, Volume(lab.astype(np.float32), v.spacing, v.affine.copy(), {"path": "mask"})


def test_maisi_check_with_vista3d_labels(tmp_path):
    ctx = RunContext(cache_dir=str(tmp_path), segmenter="provided", classes="full")
    m = AnatomyStats({"provided_labels": "vista3d"})
    label_int_dict = {k: list(v) for k, v in MAISI_GROUPS.items()}
    for liver, kidney, want in ((60.0, 150.0, {"liver": 1.0, "kidney": 1.0}),
                                (400.0, -300.0, {"liver": 0.0, "kidney": 0.0})):
        v, mask = organ_volume(liver, kidney)
        res = m.case_values(CaseData("m", "c", v, mask=mask), ctx)
        ref = maisi_is_outlier(statistics_json(), v.array, np.rint(mask.array).astype(int), label_int_dict)
        for organ in ("liver", "kidney", "lung", "bone"):
            assert res[f"anat_hu_plausible[{organ}]"] == float(not ref[organ]["is_outlier"]), organ
            assert res[f"anat_hu_median[{organ}]"] == pytest.approx(ref[organ]["median_value"]), organ
        assert res["anat_hu_plausible[liver]"] == want["liver"] and res["anat_hu_plausible[kidney]"] == want["kidney"]
        assert "anat_hu_plausible[brain]" not in res and ref["brain"]["median_value"] is None  # absent: not checked
        assert res["anat_hu_plausible"] == pytest.approx(np.mean([res[f"anat_hu_plausible[{o}]"]
                                                                  for o in ("liver", "kidney", "lung", "bone")]))
        assert res["anat_volume_ml[brain]"] == 0.0
        n_kidney = 2 * 6 * 8 * 7
        assert res["anat_volume_ml[kidney]"] == pytest.approx(n_kidney * 2.0 * 1.5 * 1.5 / 1000)


def test_distances_twin_needs_shared_groups():
    with pytest.raises(ValueError, match="no label group"):
        anatomy_distances({"volume_ml:a": np.ones(3)}, {"volume_ml:b": np.ones(3)})
