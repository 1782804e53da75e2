"""Reader-study kit (Table 3): criteria, blinded packets, unblinding, agreement statistics, the viewer."""

from __future__ import annotations

import csv
import html
import json
import math
import re
import shutil
import subprocess
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from typer.testing import CliRunner

from trace_bench.cli import app
from trace_bench.errors import ConfigError
from trace_bench.study.agreement import (
    anova_two_way,
    icc_2_1,
    weighted_kappa,
    wilson_interval,
)
from trace_bench.study.criteria import DETECTION_ID, load_criteria, paper_criteria
from trace_bench.study.packet import (
    REAL,
    WINDOWS,
    display_volume,
    load_key,
    make_study,
    plan_study,
    window_uint8,
)
from trace_bench.study.score import score_study
from trace_bench.study.viewer_html import ANSWER_COLUMNS

from helpers.paths import DEMO_CT

METHODS = ("SecretGenX", "OtherGenY")
CASE = "caseZebra"


def _chromium() -> str | None:
    for p in ("/usr/bin/chromium", "/usr/lib/chromium/chromium", shutil.which("chromium") or "",
              shutil.which("chromium-browser") or ""):
        if p and Path(p).is_file():
            return p
    return None


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> dict[str, Path]:
    """A reference folder (crops of the shipped demo CT) and two methods' folders (noisy copies),
    four cases each, with distinctive method names and case ids."""
    from trace_bench.io import read_volume

    demo = DEMO_CT
    vol = read_volume(demo)
    base = tmp_path_factory.mktemp("study_inputs")
    rng = np.random.default_rng(0)
    out = {}
    for name in ("ref",) + METHODS:
        d = base / name
        d.mkdir()
        for i in range(4):
            crop = vol.array[10 + i:22 + i, 90:170, 100:140]  # (z, y, x) = 12 x 80 x 40
            if name != "ref":
                crop = crop + rng.normal(0, 30, crop.shape)
            # NIfTI stores (x, y, z); the affine flips x and y (RAS -> LPS) with 0.8 x 0.8 x 2 mm voxels
            nib.save(nib.Nifti1Image(np.ascontiguousarray(crop.transpose(2, 1, 0)).astype(np.float32),
                                     np.diag([-0.8, -0.8, 2.0, 1.0])), d / f"{CASE}{i}.nii.gz")
        out[name] = d
    return out


def _plan(folders: dict[str, Path], *, seed: int = 0, raters=("R1", "R2"), cases=3, include_real=2, detection=True):
    methods = {m: (str(folders[m]), "nifti") for m in METHODS}
    return plan_study(str(folders["ref"]), methods, raters=list(raters), criteria=paper_criteria(detection),
                      cases=cases, include_real=include_real, seed=seed)


@pytest.fixture(scope="module")
def study(folders, tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("study") / "S"
    make_study(d, _plan(folders), size=32, slices=8)
    return d


def _packet_meta(path: Path) -> dict:
    text = path.read_text(encoding="utf-8")
    m = re.search(r'<script type="application/json" id="study-items">(.*?)</script>', text, re.DOTALL)
    assert m
    return json.loads(m.group(1))


def _write_answers(path: Path, rows: list[list[str]]) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(ANSWER_COLUMNS)
        w.writerows(rows)
    return path


def _rows(path: Path, dict_rows: bool = False) -> list:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh) if dict_rows else csv.reader(fh))


def _synth_answers(study: Path, tmp: Path, score_fn) -> list[Path]:
    """Answer every item x criterion of every packet with ``score_fn(rater, item, criterion)``."""
    files = []
    for p in sorted((study / "packets").glob("*.html")):
        meta = _packet_meta(p)
        rows = [[meta["rater"], it["item_id"], c["id"], score_fn(meta["rater"], it["item_id"], c), "2026-01-01T00:00:00Z",
                 meta["key_sha256"]] for it in meta["items"] for c in meta["criteria"]]
        files.append(_write_answers(tmp / f"answers-{meta['rater']}.csv", rows))
    return files


# ---- criteria ------------------------------------------------------------------------------------


def test_paper_criteria_and_detection_switch():
    c = paper_criteria()
    assert [x.id for x in c][:8] == ["structural_accuracy", "tissue_contrast", "pathological_representation",
                                     "intra_slice_consistency", "inter_slice_continuity", "temporal_artifacts",
                                     "overall_image_quality", "confidence"]
    assert all(x.low == 1 and x.high == 10 and set(x.anchors) == {1, 5, 10} for x in c[:8])
    assert c[8].id == DETECTION_ID and c[8].choices == ("real", "generated")
    assert len(load_criteria("paper", detection=False)) == 8


def test_custom_criteria_file(tmp_path):
    p = tmp_path / "c.json"
    p.write_text(json.dumps({"criteria": [
        {"id": "sharpness", "label": "Sharpness", "scale": [1, 5], "anchors": {"1": "blurred", "5": "crisp"}},
        {"id": "detection", "label": "Real?", "choices": ["real", "generated"], "detection": True}]}))
    c = load_criteria(str(p))
    assert [x.id for x in c] == ["sharpness", "detection"] and c[0].valid("5") and not c[0].valid("6")
    assert [x.id for x in load_criteria(str(p), detection=False)] == ["sharpness"]


@pytest.mark.parametrize("doc, needle", [
    ({"criteria": []}, "at least one"),
    ([{"id": "Bad Id", "label": "x", "scale": [1, 5]}], "id 'Bad Id'"),
    ([{"id": "a", "label": "x", "scale": [5, 1]}], "scale must be"),
    ([{"id": "a", "label": "x", "scale": [1, 5], "choices": ["p", "q"]}], "exactly one"),
    ([{"id": "a", "label": "x", "scale": [1, 5], "anchors": {"9": "too high"}}], "outside the scale"),
    ([{"id": "a", "label": "x", "choices": ["yes", "no"], "detection": True}], "'real' and 'generated'"),
    ([{"id": "a", "label": "x", "scale": [1, 5]}, {"id": "a", "label": "y", "scale": [1, 5]}], "used twice"),
    ([{"id": "a", "label": "x", "scale": [1, 5], "colour": 1}], "unknown key"),
])
def test_criteria_file_errors_are_one_line(tmp_path, doc, needle):
    p = tmp_path / "c.json"
    p.write_text(json.dumps(doc))
    with pytest.raises(ConfigError) as e:
        load_criteria(str(p))
    msg = str(e.value)
    assert needle in msg and str(p) in msg and "\n" not in msg


# ---- packets -------------------------------------------------------------------------------------


def test_display_cap_and_windows(demo_volume):
    a, sp = display_volume(demo_volume.array, demo_volume.spacing, size=40, slices=8)
    nz, ny, _ = demo_volume.shape
    assert a.shape[0] == min(8, nz) and max(a.shape[1:]) == 40
    assert sp[1] == pytest.approx(demo_volume.spacing[1] * ny / a.shape[1])
    hu = np.array([-2000, -1350, -600, 150, 1000, -160, 40, 240], dtype=np.float32)
    lung = window_uint8(hu, *WINDOWS[0][1:])
    medi = window_uint8(hu, *WINDOWS[1][1:])
    assert lung.tolist()[:5] == [0, 0, 128, 255, 255]
    assert medi.tolist()[5:] == [0, 128, 255]


def _decode(b64: str) -> np.ndarray:
    import base64
    import io

    from PIL import Image

    with Image.open(io.BytesIO(base64.b64decode(b64))) as im:
        return np.asarray(im.convert("L"))


def test_encoded_images_lossless_png_and_close_webp(small_volume):
    from trace_bench.study.packet import encode_item

    a, _ = display_volume(small_volume.array, small_volume.spacing, size=40, slices=8)
    png = encode_item("V001", small_volume.array, small_volume.spacing, size=40, slices=8, codec="png")
    webp = encode_item("V001", small_volume.array, small_volume.spacing, size=40, slices=8)
    nz, ny, nx = png.shape
    cols, th, tw = png.sprite
    assert th % 16 == 0 and tw % 16 == 0 and png.mime == "image/png" and webp.mime == "image/webp"
    for name, w, lv in WINDOWS:
        want = window_uint8(a, w, lv)
        sheet = _decode(png.data[name]["axial"])
        tiles = np.stack([sheet[(z // cols) * th:(z // cols) * th + ny, (z % cols) * tw:(z % cols) * tw + nx]
                          for z in range(nz)])
        assert np.array_equal(tiles, want)  # lossless: the grey levels exactly as windowed
        assert np.array_equal(_decode(png.data[name]["coronal"]), want[::-1, ny // 2, :])  # superior up
        assert np.array_equal(_decode(png.data[name]["sagittal"]), want[::-1, :, nx // 2])
        lossy = _decode(webp.data[name]["axial"])[: sheet.shape[0], : sheet.shape[1]].astype(float)
        psnr = 10 * np.log10(255**2 / np.mean((lossy - sheet) ** 2))
        assert psnr > 35, psnr


def test_packet_under_1_mb_per_item_at_default_settings(demo_volume):
    """The shipped chest CT lung1 (48 slices of 256 x 256) at the default size (160) and slice cap (64): the
    zlib-compressed raw windows took 1.5 MB of HTML; WebP at quality 90 stays under 1 MB."""
    from trace_bench.study.packet import encode_item

    item = encode_item("V001", demo_volume.array, demo_volume.spacing)
    assert max(item.shape[1:]) == 160 and item.n_bytes < 1_000_000, item.n_bytes


def test_packets_deterministic_blinded_and_shuffled_per_rater(folders, study, tmp_path):
    again = tmp_path / "S2"
    make_study(again, _plan(folders), size=32, slices=8)
    for name in ("key.json", "study.json", "packets/R1.html", "packets/R2.html"):
        assert (study / name).read_bytes() == (again / name).read_bytes(), name
    key = json.loads((study / "key.json").read_text())
    assert len(key["items"]) == 3 * 2 + 2 and sum(v["is_real"] for v in key["items"].values()) == 2
    secrets = list(METHODS) + [CASE, "nifti", REAL, str(folders["ref"].parent), ".nii"]
    secrets += [Path(v["path"]).name for v in key["items"].values()]
    for rater in ("R1", "R2"):
        text = (study / "packets" / f"{rater}.html").read_text(encoding="utf-8")
        low = text.lower()
        for s in secrets:
            assert s.lower() not in low, f"{s!r} leaks into {rater}'s packet"
        assert re.search(r"https?://|<link |src=", text) is None  # self-contained
        assert f'content="{json.loads((study / "study.json").read_text())["key_sha256"]}"' in text
    o1 = [i["item_id"] for i in _packet_meta(study / "packets" / "R1.html")["items"]]
    o2 = [i["item_id"] for i in _packet_meta(study / "packets" / "R2.html")["items"]]
    assert sorted(o1) == sorted(o2) == sorted(key["items"]) and o1 != o2
    assert o1 == key["orders"]["R1"]
    other = _plan(folders, seed=1)
    assert other.orders["R1"] != key["orders"]["R1"] or [s.case_id for s in other.items.values()] != \
        [key["items"][i]["case_id"] for i in sorted(key["items"])]
    with pytest.raises(ConfigError, match="exists"):
        make_study(study, _plan(folders), size=32, slices=8)


def test_sampling_errors(folders):
    with pytest.raises(ConfigError, match="--cases 9: only 4"):
        _plan(folders, cases=9)
    with pytest.raises(ConfigError, match="--include-real 5: only 4"):
        _plan(folders, include_real=5)
    p = _plan(folders, cases=None, include_real=None)
    assert sum(s.is_real for s in p.items.values()) == round(8 / 5)  # default: one real per five generated


# ---- scoring -------------------------------------------------------------------------------------


def test_roundtrip_scores_reproduce_known_means(study, tmp_path):
    plan, _ = load_key(study)

    def fn(rater: str, iid: str, c: dict) -> str:
        s = plan.items[iid]
        if "choices" in c:
            return "real" if (s.case_id.endswith(("0", "1")) or rater == "R1") else "generated"
        base = {METHODS[0]: 7, METHODS[1]: 4, REAL: 8}[s.method]
        return str(base + int(s.case_id[-1]) % 2 + (1 if rater == "R2" else 0))

    files = _synth_answers(study, tmp_path, fn)
    res = score_study(study, files, out=tmp_path / "scores", resamples=50)
    for cell in res.table:
        vals = [int(fn(cell.rater, iid, {"id": cell.criterion})) for iid, s in plan.items.items()
                if (REAL if s.is_real else s.method) == cell.method]
        assert cell.n == len(vals) and cell.mean == pytest.approx(np.mean(vals))
        assert cell.sd == pytest.approx(np.std(vals, ddof=1)) or (math.isnan(cell.sd) and len(vals) < 2)
    assert {c.method for c in res.table} == set(METHODS) | {REAL}
    md = (tmp_path / "scores" / "table3.md").read_text()
    assert "Real (control)" in md and "Structural accuracy" in md and "±" in md
    tex = (tmp_path / "scores" / "table3.tex").read_text()
    assert "\\toprule" in tex and "\\bottomrule" in tex and "\\pm" in tex
    rows = _rows(tmp_path / "scores" / "table3.csv", dict_rows=True)
    assert len(rows) == 8 * 2 * 3
    # detection: R1 always says "real" -> right exactly on the real items
    det = {(r.rater, r.truth): r for r in res.detection}
    assert det[("R1", "real")].accuracy == 1.0 and det[("R1", "generated")].accuracy == 0.0
    assert det[("R1", "all")].correct == 2 and det[("R1", "all")].n == 8
    lo, hi = wilson_interval(2, 8)
    assert (det[("R1", "all")].ci_low, det[("R1", "all")].ci_high) == pytest.approx((lo, hi))
    # agreement over all items: R2 = R1 + 1 -> consistent but not absolute agreement
    agr = res.agreement[0]
    assert agr.n_items == 8 and 0 < agr.icc < 1 and not math.isnan(agr.kappa)
    assert (tmp_path / "scores" / "agreement.csv").is_file() and (tmp_path / "scores" / "report.md").is_file()


def test_incomplete_answers_name_the_items(study, tmp_path):
    files = _synth_answers(study, tmp_path, lambda r, i, c: "generated" if "choices" in c else "5")
    rows = _rows(files[0])
    body = rows[1:]
    dropped_item = body[0][1]
    body = [r for r in body if r[1] != dropped_item and not (r[2] == "confidence" and r[1] == body[-1][1])]
    last_item = rows[-1][1]
    _write_answers(files[0], body)
    with pytest.raises(ConfigError) as e:
        score_study(study, files, out=tmp_path / "x", resamples=10)
    msg = str(e.value)
    assert "\n" not in msg and "R1" in msg and f"{dropped_item} (all 9 criteria)" in msg and f"{last_item} (confidence)" in msg
    res = score_study(study, files, out=tmp_path / "x", resamples=10, allow_incomplete=True)
    assert dropped_item in res.missing["R1"]
    with pytest.raises(ConfigError, match="R2: no answers at all"):
        score_study(study, files[:1], out=tmp_path / "x", resamples=10)


def test_tampered_key_and_foreign_answers_are_refused(folders, study, tmp_path):
    files = _synth_answers(study, tmp_path, lambda r, i, c: "real" if "choices" in c else "6")
    copy = tmp_path / "S"
    shutil.copytree(study, copy)
    key = json.loads((copy / "key.json").read_text())
    first = min(key["items"])
    key["items"][first]["method"] = "SomethingElse"
    (copy / "key.json").write_text(json.dumps(key, indent=1, sort_keys=True) + "\n")
    with pytest.raises(ConfigError, match="key was modified"):
        score_study(copy, files, out=tmp_path / "x", resamples=10)
    # answers made for another key
    bad = tmp_path / "bad.csv"
    rows = _rows(files[0])
    rows[1][5] = "0" * 64
    _write_answers(bad, rows[1:])
    with pytest.raises(ConfigError, match="line 2: answers belong to study key 000000000000"):
        score_study(study, [bad, files[1]], out=tmp_path / "x", resamples=10)
    # a cell answered twice with different scores
    rows = _rows(files[0])
    extra = list(rows[1])
    extra[3] = "3" if rows[1][2] != DETECTION_ID else "generated"
    if extra[3] == rows[1][3]:
        extra[3] = "4"
    _write_answers(bad, rows[1:] + [extra])
    with pytest.raises(ConfigError, match="pass only the latest export"):
        score_study(study, [bad, files[1]], out=tmp_path / "x", resamples=10)
    rows[1][3] = "11" if rows[1][2] != DETECTION_ID else "maybe"
    _write_answers(bad, rows[1:])
    with pytest.raises(ConfigError, match="not a valid answer"):
        score_study(study, [bad, files[1]], out=tmp_path / "x", resamples=10)


# ---- statistics ----------------------------------------------------------------------------------

#: Shrout & Fleiss (1979), Table 2: 6 targets x 4 judges; published ICC(2,1) = .29
SHROUT_FLEISS = np.array([[9, 2, 5, 8], [6, 1, 3, 2], [8, 4, 6, 8], [7, 1, 2, 6], [10, 5, 6, 9], [6, 2, 4, 7]], float)


def test_icc_shrout_fleiss_table_2():
    r = icc_2_1(SHROUT_FLEISS)
    assert round(r.icc, 2) == 0.29
    # their ANOVA (Table 2 lower part): BMS 11.24, JMS 32.49, EMS 1.02
    assert (r.msr, r.msc, r.mse) == pytest.approx((11.24, 32.49, 1.02), abs=0.005)
    assert r.f == pytest.approx(11.03, abs=0.005) and (r.df1, r.df2) == (5, 15)
    # the F-based interval as R psych::ICC reports it for these data: [0.019, 0.761]
    assert (r.ci_low, r.ci_high) == pytest.approx((0.019, 0.761), abs=0.001)


def test_icc_matches_a_hand_computed_anova():
    x = np.array([[4, 5, 4], [2, 3, 3], [5, 5, 4], [1, 2, 1], [3, 5, 4]], dtype=float)
    n, k = x.shape
    gm = sum(sum(row) for row in x) / (n * k)
    rows_m = [sum(row) / k for row in x]
    cols_m = [sum(x[i][j] for i in range(n)) / n for j in range(k)]
    ssr = sum(k * (m - gm) ** 2 for m in rows_m)
    ssc = sum(n * (m - gm) ** 2 for m in cols_m)
    sst = sum((x[i][j] - gm) ** 2 for i in range(n) for j in range(k))
    msr, msc, mse = ssr / (n - 1), ssc / (k - 1), (sst - ssr - ssc) / ((n - 1) * (k - 1))
    expected = (msr - mse) / (msr + (k - 1) * mse + k * (msc - mse) / n)
    assert anova_two_way(x) == pytest.approx((msr, msc, mse))
    r = icc_2_1(x)
    assert r.icc == pytest.approx(expected)
    assert r.ci_low < r.icc < r.ci_high
    assert math.isnan(icc_2_1(x[:1]).icc)
    assert icc_2_1(np.array([[1, 1], [3, 3], [5, 5]])).icc == 1.0


def test_kappa_against_sklearn_and_wilson():
    from sklearn.metrics import cohen_kappa_score

    a, b = SHROUT_FLEISS[:, 0].astype(int), SHROUT_FLEISS[:, 3].astype(int)
    k = weighted_kappa(a, b, range(1, 11), resamples=200, seed=3)
    assert k.kappa == pytest.approx(cohen_kappa_score(a, b, weights="quadratic", labels=list(range(1, 11))))
    assert k.ci_low <= k.kappa <= k.ci_high
    assert weighted_kappa(a, b, range(1, 11), resamples=200, seed=3) == k  # seeded
    # Wilson interval, 8 of 10 at 95%: 0.490..0.943 (computed by hand from the formula)
    assert wilson_interval(8, 10) == pytest.approx((0.4902, 0.9433), abs=1e-4)
    assert wilson_interval(0, 10)[0] == 0.0 and wilson_interval(10, 10)[1] == 1.0


# ---- CLI ------------------------------------------------------------------------------------------


def test_cli_make_from_config_and_score(folders, tmp_path):
    cfg = tmp_path / "config.toml"
    cfg.write_text(f'reference = "{folders["ref"]}"\n[methods]\n'
                   + "".join(f'{m} = "{folders[m]}"\n' for m in METHODS))
    out = tmp_path / "S"
    r = CliRunner().invoke(app, ["study", "make", "--out", str(out), "--config", str(cfg), "--methods", METHODS[0],
                                 "--cases", "2", "--include-real", "1", "--raters", "A,B", "--no-detection",
                                 "--size", "24", "--slices", "6"])
    assert r.exit_code == 0, r.output
    key = json.loads((out / "key.json").read_text())
    assert {v["method"] for v in key["items"].values()} == {METHODS[0], REAL} and len(key["criteria"]) == 8
    files = _synth_answers(out, tmp_path, lambda rr, i, c: "8")
    r = CliRunner().invoke(app, ["study", "score", str(out), *map(str, files), "--bootstrap", "20"])
    assert r.exit_code == 0, r.output
    assert "8.0 ± 0.0" in r.output and (out / "scores" / "table3.tex").is_file()
    r = CliRunner().invoke(app, ["study", "make", "--out", str(tmp_path / "T"), "--config", str(cfg),
                                 "--methods", "Nope", "--raters", "A"])
    assert r.exit_code == 2 and "--methods: unknown method(s) Nope" in r.output


def test_cli_make_config_paths_relative_to_the_config_folder(folders, tmp_path, monkeypatch):
    """`study make --config` from another folder: the config's relative paths are its folder's."""
    import os

    cfg_dir = tmp_path / "run"
    cfg_dir.mkdir()
    rel = lambda p: os.path.relpath(p, cfg_dir)  # noqa: E731
    (cfg_dir / "config.toml").write_text(f'reference = "{rel(folders["ref"])}"\n[methods]\n'
                                         + "".join(f'{m} = "{rel(folders[m])}"\n' for m in METHODS))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    r = CliRunner().invoke(app, ["study", "make", "--out", str(tmp_path / "S"), "--config",
                                 str(cfg_dir / "config.toml"), "--cases", "1", "--include-real", "1",
                                 "--raters", "A", "--size", "24", "--slices", "4"])
    assert r.exit_code == 0, r.output
    key = json.loads((tmp_path / "S" / "key.json").read_text())
    assert {Path(v["path"]).parent.resolve() for v in key["items"].values()} <= \
        {folders[m].resolve() for m in ("ref",) + METHODS}


# ---- the viewer in a real browser ---------------------------------------------------------------

_CLICK_AND_EXPORT = """<script>
(async function () {
  let i = 0;
  document.querySelectorAll("section.study-item fieldset.criterion").forEach(function (fs) {
    const radios = fs.querySelectorAll("input[type=radio]");
    radios[(i++) % radios.length].click();
  });
  let captured = null;
  URL.createObjectURL = function (b) { captured = b; return "blob:none"; };
  HTMLAnchorElement.prototype.click = function () {};
  document.getElementById("export").click();
  const pre = document.createElement("pre");
  pre.id = "exported";
  pre.textContent = await captured.text();
  document.body.appendChild(pre);
})();
</script>"""


@pytest.mark.skipif(_chromium() is None, reason="no headless Chromium on this machine")
def test_packet_in_headless_chromium(study, tmp_path):
    src = study / "packets" / "R1.html"
    page = tmp_path / "R1.html"
    page.write_text(src.read_text(encoding="utf-8").replace("</body>", _CLICK_AND_EXPORT + "</body>"), encoding="utf-8")
    cmd = [_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--virtual-time-budget=5000",
           f"--user-data-dir={tmp_path / 'profile'}", "--dump-dom", page.as_uri()]
    dom = subprocess.run(cmd, capture_output=True, text=True, encoding="utf-8", errors="replace", timeout=120,
                         check=False).stdout
    meta = _packet_meta(src)
    assert 'data-ready="1"' in dom  # the script ran to the end
    for it in meta["items"]:
        assert f'data-item="{it["item_id"]}"' in dom
    first = meta["items"][0]
    assert re.search(rf'data-item="{first["item_id"]}"[^>]*data-rendered="lung:\d+"', dom)  # pixels inflated + drawn
    assert f'<canvas class="axial" width="{first["shape"][2]}" height="{first["shape"][1]}"' in dom
    m = re.search(r'<pre id="exported">(.*?)</pre>', dom, re.DOTALL)
    assert m, "export did not produce a CSV"
    exported = tmp_path / "answers-R1.csv"
    exported.write_text(html.unescape(m.group(1)), encoding="utf-8")
    rows = _rows(exported, dict_rows=True)
    assert len(rows) == len(meta["items"]) * len(meta["criteria"])
    assert {r["key_sha256"] for r in rows} == {meta["key_sha256"]} and {r["rater"] for r in rows} == {"R1"}
    other = _synth_answers(study, tmp_path, lambda r, i, c: "generated" if "choices" in c else "5")[1]
    res = score_study(study, [exported, other], out=tmp_path / "scores", resamples=10)
    assert not res.missing
