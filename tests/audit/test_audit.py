"""Memorization audit (trace_bench.audit) on small crops of the shipped real chest CTs, plus the C_T and
AuthPct statistics against dgm-eval's formulas (layer6ai-labs/dgm-eval dgm_eval/metrics/ct.py, authpct.py)."""

from __future__ import annotations

import math
import random
from pathlib import Path

import numpy as np
import pytest

from helpers.paths import DEMO_CTS


def _crop(v, z0: int, z1: int, flip: str | None = None):
    """Slices z0:z1 of a demo CT, in-plane subsampled by 2 (128 x 128 px of ~2.3 mm), optionally flipped."""
    from trace_bench.volume import Volume

    arr = v.array[z0:z1, ::2, ::2]
    if flip == "x":
        arr = arr[:, :, ::-1]
    elif flip == "y":
        arr = arr[:, ::-1, :]
    aff = v.affine.copy()
    aff[:3, 0] *= 2
    aff[:3, 1] *= 2
    return Volume(np.ascontiguousarray(arr), (v.spacing[0], v.spacing[1] * 2, v.spacing[2] * 2), aff, {})


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """train: six "patients" (distinct z ranges / flips of lung1, lung2); heldout: three others;
    gen: g01 = train p01 shifted up by 3 slices + noise (a copy), g02 = a held-out-like, x-flipped case."""
    from baselines import get_adapter
    from trace_bench.io import write_nifti

    root = tmp_path_factory.mktemp("audit_data")
    ad = get_adapter("nifti")
    l1, l2 = ad.read(DEMO_CTS / "lung1.nii.gz"), ad.read(DEMO_CTS / "lung2.nii.gz")
    rng = np.random.default_rng(0)
    train = {"p01": _crop(l1, 2, 16), "p02": _crop(l1, 32, 46), "p03": _crop(l2, 2, 16), "p04": _crop(l2, 34, 48),
             "p05": _crop(l1, 16, 30, "y"), "p06": _crop(l2, 18, 32, "y")}
    held = {"h01": _crop(l1, 18, 30), "h02": _crop(l2, 20, 32), "h03": _crop(l2, 50, 61)}
    for k, v in train.items():
        write_nifti(v, root / "train" / f"{k}.nii.gz")
    for k, v in held.items():
        write_nifti(v, root / "heldout" / f"{k}.nii.gz")
    copy = _crop(l1, 5, 19)  # p01 is l1[2:16]: generated slice k is training slice k + 3
    write_nifti(copy.with_array(copy.array + rng.normal(0, 20, copy.shape).astype(np.float32)), root / "gen" / "g01.nii.gz")
    other = _crop(l2, 20, 32, "x")
    write_nifti(other.with_array(other.array + rng.normal(0, 20, other.shape).astype(np.float32)), root / "gen" / "g02.nii.gz")
    return root


def _run(root: Path, out: Path, **kw):
    from trace_bench.audit import run_audit

    return run_audit(out, (root / "train", "nifti"), (root / "heldout", "nifti"), {"gen": (root / "gen", "nifti")}, **kw)


@pytest.fixture(scope="module")
def first(dataset, tmp_path_factory):
    cache = tmp_path_factory.mktemp("audit_cache")
    return _run(dataset, tmp_path_factory.mktemp("audit_out"), cache_dir=cache), cache


def test_copy_is_flagged_with_its_training_case_and_offset(first):
    res, _ = first
    rows = {r["case_id"]: r for r in res.rows}
    g1, g2 = rows["g01"], rows["g02"]
    assert g1["flagged"] and g1["nn_train_case"] == "p01" and g1["nn_distance"] < g1["threshold"]
    assert g1["matched_train_case"] == "p01" and g1["slice_match_case"] == "p01"
    assert g1["matched_train_slice"] - g1["gen_slice"] == 3
    assert g1["slice_offset"] == 3.0 and g1["slice_offset_mm"] == 15.0 and g1["offset_consistency"] > 0.7
    assert g1["best_slice_ncc"] > 0.99 and g1["n_slices_flagged"] >= 10
    assert not g2["flagged"] and g2["n_slices_flagged"] == 0 and g2["nn_distance"] > g2["threshold"]
    # held-out calibration: thresholds from the three held-out volumes, all their slices searched
    h = res.data["heldout"]
    assert h["n_volumes"] == 3 and h["n_slices"] == 12 + 12 + 11
    assert len(res.heldout_rows) == 3 and 0 < h["volume_threshold"] <= min(r["nn_distance"] for r in res.heldout_rows) + 0.1
    assert g2["best_slice_ncc"] < h["slice_threshold"] < g1["best_slice_ncc"]
    s = res.summary[0]
    assert s["n"] == 2 and s["near_copy_rate_volume"] == 0.5 and 0 < s["near_copy_rate_slice"] < 1
    assert math.isnan(s["C_T"]) and "not applicable" in s["C_T_note"]
    assert 0.0 <= s["authpct"] <= 100.0


def test_outputs_and_json_schema(first):
    from trace_bench.audit import SCHEMA, load_memorization

    res, _ = first
    d = res.out_dir
    for name in ("memorization.csv", "memorization_summary.csv", "memorization_heldout.csv", "memorization.md",
                 "montage_gen.png"):
        assert (d / name).is_file(), name
    assert (d / "montage_gen.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    head = (d / "memorization.csv").read_text().splitlines()[0].split(",")
    assert head[:11] == ["method", "case_id", "nn_train_case", "nn_distance", "threshold", "flagged", "authentic",
                         "best_slice_ncc", "gen_slice", "matched_train_case", "matched_train_slice"]
    data = load_memorization(d.parent)
    assert data["schema"] == SCHEMA and data["methods"][0]["method"] == "gen"
    assert data["methods"][0]["C_T"] is None and data["methods"][0]["montage"] == "montage_gen.png"
    assert {c["case_id"] for c in data["methods"][0]["cases"]} == {"g01", "g02"}
    assert data["feature"]["volume"] == "grid16x32x32@1" and "not proof" in data["note"]
    assert "| gen | 2 |" in (d / "memorization.md").read_text()


def test_order_batch_and_cache_independent(first, dataset, tmp_path, monkeypatch):
    from baselines import get_adapter

    res, cache = first
    ref = {n: (res.out_dir / n).read_bytes() for n in ("memorization.csv", "memorization_summary.csv",
                                                        "memorization_heldout.csv")}
    cls = type(get_adapter("nifti"))
    orig = cls.list_files

    def shuffled(self, folder):
        files = list(orig(self, folder))
        random.Random(7).shuffle(files)
        return files

    monkeypatch.setattr(cls, "list_files", shuffled)
    # cached rerun, shuffled listing, one volume per batch: every feature comes from the cache
    again = _run(dataset, tmp_path / "a", cache_dir=cache, batch_size=1)
    assert again.cache_misses == 0 and again.cache_hits == 2 * (6 + 3 + 2)
    # no cache at all, another batch size
    fresh = _run(dataset, tmp_path / "b", use_cache=False, batch_size=2)
    assert fresh.cache_hits == 0
    for r in (again, fresh):
        for n, b in ref.items():
            assert (r.out_dir / n).read_bytes() == b, n


def test_cli_audit_and_one_line_errors(dataset, tmp_path, capsys):
    from trace_bench.cli import main

    with pytest.raises(SystemExit) as e:
        main(["audit", "-t", str(tmp_path / "missing"), "-r", str(dataset / "heldout"), "-m",
              f"gen={dataset / 'gen'}", "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err.strip()
    assert e.value.code == 2 and len(err.splitlines()) == 1 and str(tmp_path / "missing") in err
    with pytest.raises(SystemExit) as e:
        main(["audit", "-t", str(dataset / "train"), "-r", str(dataset / "heldout"), "-m", f"gen={dataset / 'gen'}",
              "--out", str(tmp_path / "o"), "--feature", "nope", "--no-cache", "-q"])
    err = capsys.readouterr().err.strip()
    assert e.value.code == 2 and "unknown audit feature 'nope'" in err and len(err.splitlines()) == 1


# ---- statistics: C_T (Meehan et al. 2020) and AuthPct (Alaa et al. 2022) as in dgm-eval ----------------

def _dgm_eval_zu(pn, qm, t):
    """dgm-eval ct.py ``Zu`` (from casey-meehan/data-copying), brute-force nearest neighbours."""
    from scipy.stats import mannwhitneyu

    def l(x):
        return np.sqrt(((x[:, None, :] - t[None, :, :]) ** 2).sum(-1)).min(1)

    m, n = len(qm), len(pn)
    u, _ = mannwhitneyu(l(qm), l(pn), alternative="less")
    return (u - (n * m / 2 - 0.5)) / np.sqrt(n * m * (n + m + 1) / 12)


def _dgm_eval_ct(pn, pn_c, qm, qm_c, t, t_c, tau):
    """dgm-eval ct.py ``C_T``: P_n-weighted mean of in-cell Z_U over cells with Q_m(cell) > tau."""
    k = t_c.max() + 1
    m, n = len(qm), len(pn)
    q_of = np.bincount(qm_c, minlength=k) / m
    p_of = np.bincount(pn_c, minlength=k) / n
    zs = np.array([_dgm_eval_zu(pn[pn_c == i], qm[qm_c == i], t[t_c == i]) if (qm_c == i).any() else 0.0
                   for i in range(k)])
    use = q_of > tau
    return p_of[use].dot(zs[use]) / p_of[use].sum()


def test_c_t_matches_dgm_eval_formula():
    from trace_bench.audit.stats import c_t, z_u

    rng = np.random.default_rng(1)
    t, pn, qm = rng.normal(size=(90, 4)), rng.normal(size=(60, 4)), rng.normal(0.1, 0.9, size=(75, 4))
    cell = lambda x: (x[:, 0] > -0.4).astype(int) + (x[:, 0] > 0.4).astype(int)
    assert z_u(pn, qm, t) == pytest.approx(_dgm_eval_zu(pn, qm, t), rel=1e-12)
    got = c_t(pn, cell(pn), qm, cell(qm), t, cell(t), 3, min_generated=20)
    assert got.value == pytest.approx(_dgm_eval_ct(pn, cell(pn), qm, cell(qm), t, cell(t), 20 / len(qm)), rel=1e-12)
    # a cell without held-out samples: not applicable, with the reason
    bad = c_t(pn[cell(pn) != 2], cell(pn)[cell(pn) != 2], qm, cell(qm), t, cell(t), 3)
    assert math.isnan(bad.value) and "cell 2" in bad.note


def test_c_t_score_separates_copies_from_fresh_samples():
    from trace_bench.audit.stats import c_t_score

    rng = np.random.default_rng(2)
    train, test = rng.normal(size=(150, 8)), rng.normal(size=(90, 8))
    copies = train[:90] + rng.normal(0, 0.01, size=(90, 8))
    fresh = rng.normal(size=(90, 8))
    assert c_t_score(train, test, copies).value < -5
    assert abs(c_t_score(train, test, fresh).value) < 3
    few = c_t_score(train, test, fresh[:20])
    assert math.isnan(few.value) and "more than 20" in few.note


def test_authpct_by_hand_and_dgm_eval_formula():
    from trace_bench.audit.stats import authpct

    train = np.array([[0.0], [1.0], [3.0]])  # each training point's nearest other: 1, 1, 2
    gen = np.array([[0.1], [2.9], [1.6], [-5.0]])  # d1 = 0.1, 0.1, 0.6, 5 vs d2 = 1, 2, 1, 1: only -5 authentic
    assert authpct(train, gen) == 25.0
    rng = np.random.default_rng(3)
    tr, ge = rng.normal(size=(50, 5)), rng.normal(size=(40, 5))
    d = np.sqrt(((tr[:, None] - tr[None]) ** 2).sum(-1))
    np.fill_diagonal(d, np.inf)
    dg = np.sqrt(((tr[:, None] - ge[None]) ** 2).sum(-1))  # dgm-eval: cdist(train, gen), min over dim 0
    expect = 100 * np.mean(d.min(0)[dg.argmin(0)] < dg.min(0))
    assert authpct(tr, ge) == pytest.approx(expect)


def test_feature_registry():
    from trace_bench.audit import (
        VolumeFeature,
        get_volume_feature,
        register_volume_feature,
    )
    from trace_bench.errors import ConfigError

    f = get_volume_feature("grid16x32x32")
    assert f.id == "grid16x32x32@1"
    mine = register_volume_feature(VolumeFeature("test-mean-hu", "1", lambda v, c: c.mean(axis=(1, 2))))
    assert get_volume_feature("test-mean-hu") is mine
    with pytest.raises(ValueError):
        register_volume_feature(VolumeFeature("test-mean-hu", "2", lambda v, c: c.mean(axis=(1, 2))))
    with pytest.raises(ConfigError, match="unknown audit feature"):
        get_volume_feature("nope")


def test_run_with_train_reference_adds_the_audit_to_the_report(dataset, tmp_path, monkeypatch):
    """`trace-bench run --train-reference`: the audit runs after the tables, lands in OUT/audit/ and in
    the report; the generated cases are unpaired with the held-out set here (other ids), which the
    run lists, while the audit still examines every generated volume."""
    from typer.testing import CliRunner

    from trace_bench.cli import app

    monkeypatch.setenv("TRACE_BENCH_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "o"
    r = CliRunner().invoke(app, ["run", "--reference", str(dataset / "heldout"), "--method", f"gen={dataset / 'gen'}",
                                 "--train-reference", str(dataset / "train"), "--metrics", "temporal_flickering",
                                 "--no-progress", "--no-plots", "--no-published", "--frame-size", "64",
                                 "--bootstrap", "20", "--out", str(out)])
    assert r.exit_code == 0, r.output
    summary = (out / "audit" / "memorization_summary.csv").read_text(encoding="utf-8")
    assert summary.startswith("method") and "gen" in summary
    assert "## Memorization audit" in (out / "report.md").read_text(encoding="utf-8")
    assert 'id="memorization"' in (out / "report.html").read_text(encoding="utf-8")
