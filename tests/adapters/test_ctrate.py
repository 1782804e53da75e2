"""CT-RATE adapter and prompts on a synthetic CT-RATE layout built from the shipped real CT.

The layout follows the official dataset (``ibrahimhamamci/CT-RATE``, folder ``dataset/``): volumes
``valid/valid_{p}/valid_{p}_{s}/valid_{p}_{s}_{r}.nii.gz`` holding *stored* int16 values with a wrong
header spacing, ``metadata/validation_metadata.csv`` with the official 44 columns, and
``radiology_text_reports/validation_reports.csv`` with the official 5 columns. The adapter must
recover the original canonical HU volume (values, spacing, orientation, origin) exactly.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from typer.testing import CliRunner

from baselines import get_adapter
from baselines.ctrate import METADATA_ENV, REPORTS_ENV
from baselines.ctrate_prompts import PromptError, build_prompts, parse_age, parse_sex
from trace_bench.cases import load_prompts, pair_cases
from trace_bench.cli import app
from trace_bench.errors import ConfigError, VolumeError
from trace_bench.io import read_volume
from trace_bench.volume import Volume

from helpers.paths import DEMO_CT

LUNG1 = DEMO_CT

# header of dataset/metadata/validation_metadata.csv (CT-RATE), in the official order
METADATA_COLUMNS = (
    "VolumeName,Manufacturer,SeriesDescription,ManufacturerModelName,PatientSex,PatientAge,ReconstructionDiameter,"
    "DistanceSourceToDetector,DistanceSourceToPatient,GantryDetectorTilt,TableHeight,RotationDirection,ExposureTime,"
    "XRayTubeCurrent,Exposure,FilterType,GeneratorPower,FocalSpots,ConvolutionKernel,PatientPosition,RevolutionTime,"
    "SingleCollimationWidth,TotalCollimationWidth,TableSpeed,TableFeedPerRotation,SpiralPitchFactor,"
    "DataCollectionCenterPatient,ReconstructionTargetCenterPatient,ExposureModulationType,CTDIvol,"
    "ImagePositionPatient,ImageOrientationPatient,SliceLocation,SamplesPerPixel,PhotometricInterpretation,Rows,"
    "Columns,XYSpacing,RescaleIntercept,RescaleSlope,RescaleType,NumberofSlices,ZSpacing,StudyDate").split(",")
REPORT_COLUMNS = ["VolumeName", "ClinicalInformation_EN", "Technique_EN", "Findings_EN", "Impressions_EN"]

IMPRESSION_1 = "A few millimetric nonspecific nodules in both lungs, follow-up is recommended."
IMPRESSION_2 = 'Bilateral "ground-glass" opacities, compatible with viral pneumonia'


def _crop() -> Volume:
    """A small crop of lung1 (z, y, x) = (12, 64, 48): y != x so any axis swap is caught."""
    v = read_volume(LUNG1)
    arr = v.array[18:30, 96:160, 100:148]
    origin_ras = v.affine @ np.array([100, 96, 18, 1.0])  # index (x, y, z) of the crop's first voxel
    aff = v.affine.copy()
    aff[:3, 3] = origin_ras[:3]
    return Volume(arr, v.spacing, aff, {})


def _fmt(vals) -> str:
    return "[" + ", ".join(repr(float(x)) for x in vals) + "]"


def _write_case(root: Path, name: str, hu_zyx: np.ndarray, ref: Volume, slope: float, intercept: float,
                meta_rows: list, report_rows: list, *, age: str, sex: str, impression: str, with_meta: bool = True):
    """Write a CT-RATE volume (stored = (HU - intercept) / slope, int16, (x, y, z), wrong header) + CSV rows."""
    split, p, s, _ = name.split("_")
    folder = root / "dataset" / "valid" / f"{split}_{p}" / f"{split}_{p}_{s}"
    folder.mkdir(parents=True, exist_ok=True)
    stored = np.rint((hu_zyx - intercept) / slope)
    assert np.array_equal(stored * slope + intercept, hu_zyx)
    img = nib.Nifti1Image(stored.transpose(2, 1, 0).astype(np.int16), np.diag([0.5, 0.5, 9.0, 1.0]))  # wrong spacing
    img.header.set_slope_inter(1.0, 0.0)
    path = folder / f"{name}.nii.gz"
    nib.save(img, str(path))
    sz, sy, sx = ref.spacing
    origin_lps = ref.affine[:3, 3] * np.array([-1.0, -1.0, 1.0])
    if with_meta:
        row = dict.fromkeys(METADATA_COLUMNS, "")
        row.update(VolumeName=f"{name}.nii.gz", Manufacturer="Philips", SeriesDescription="HRCT", PatientSex=sex,
                   PatientAge=age, ImagePositionPatient=_fmt(origin_lps), ImageOrientationPatient="[1, 0, 0, 0, 1, 0]",
                   Rows=str(hu_zyx.shape[1]), Columns=str(hu_zyx.shape[2]), XYSpacing=_fmt((sx, sy)),
                   RescaleIntercept=f"{intercept:g}", RescaleSlope=f"{slope:g}", NumberofSlices=str(hu_zyx.shape[0]),
                   ZSpacing=f"{sz:g}", StudyDate="20210427")
        meta_rows.append(row)
    report_rows.append({"VolumeName": f"{name}.nii.gz", "ClinicalInformation_EN": "Not given.",
                        "Technique_EN": "Non-contrast images were taken in the axial plane.",
                        "Findings_EN": "Trachea, both main bronchi are open.", "Impressions_EN": impression})
    return path


def _write_csv(path: Path, columns: list, rows: list) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=columns)
        w.writeheader()
        w.writerows(rows)
    return path


@pytest.fixture()
def ctrate(tmp_path, monkeypatch):
    monkeypatch.delenv(METADATA_ENV, raising=False)
    monkeypatch.delenv(REPORTS_ENV, raising=False)
    ref = _crop()
    hu1 = ref.array.copy()
    hu2 = hu1 - np.mod(hu1, 2)  # slope 2 stores even HU only
    meta, reps = [], []
    root = tmp_path / "CT-RATE"
    v1 = _write_case(root, "valid_1_a_1", hu1, ref, 1.0, -1024.0, meta, reps, age="062Y", sex="M", impression=IMPRESSION_1)
    v2 = _write_case(root, "valid_1_a_2", hu2, ref, 2.0, -2048.0, meta, reps, age="045Y", sex="F", impression=IMPRESSION_2)
    v3 = _write_case(root, "valid_2_a_1", hu1, ref, 1.0, -1024.0, meta, reps, age="070Y", sex="F",
                     impression="No abnormality.", with_meta=False)
    mcsv = _write_csv(root / "dataset" / "metadata" / "validation_metadata.csv", METADATA_COLUMNS, meta)
    rcsv = _write_csv(root / "dataset" / "radiology_text_reports" / "validation_reports.csv", REPORT_COLUMNS, reps)
    return {"ref": ref, "hu2": hu2, "v1": v1, "v2": v2, "v3": v3, "metadata": mcsv, "reports": rcsv, "root": root}


def _flat(tmp_path: Path, files: list) -> Path:
    """One flat folder of volumes (what --reference takes), beside the official dataset/ folder."""
    folder = tmp_path / "CT-RATE" / "flat"
    folder.mkdir(exist_ok=True)
    for f in files:
        (folder / f.name).symlink_to(f)
    return folder


# ------------------------------------------------------------------------------------------ adapter
def test_hu_spacing_and_orientation_recovered_exactly(ctrate):
    ad = get_adapter("ctrate")
    ref = ctrate["ref"]
    for path, hu, slope, intercept in ((ctrate["v1"], ref.array, 1.0, -1024.0), (ctrate["v2"], ctrate["hu2"], 2.0, -2048.0)):
        vol = ad.read(path)
        assert vol.shape == ref.shape
        assert np.array_equal(vol.array, hu)
        assert vol.spacing == pytest.approx(ref.spacing, abs=1e-9)
        assert np.allclose(vol.affine, ref.affine, atol=1e-6)
        assert vol.orientation == "LPS"
        assert vol.meta["rescale_slope"] == slope and vol.meta["rescale_intercept"] == intercept
        assert vol.meta["metadata_csv"] == str(ctrate["metadata"])
        assert vol.meta["spacing_source"].startswith("CT-RATE metadata XYSpacing")
        assert vol.meta["adapter"] == "ctrate"
        assert any("header spacing" in w for w in vol.meta["warnings"])  # the wrong header was noticed, not used
    assert ad.case_id(ctrate["v1"]) == "valid_1_a_1"


def test_missing_metadata_row_is_a_per_case_error(ctrate, tmp_path):
    with pytest.raises(VolumeError) as e:
        get_adapter("ctrate").read(ctrate["v3"])
    msg = str(e.value)
    assert "valid_2_a_1.nii.gz" in msg and str(ctrate["metadata"]) in msg and "\n" not in msg
    # pairing keeps every case; the bad one fails alone (its prompt too is a problem row, not a crash)
    flat = _flat(tmp_path, [ctrate["v1"], ctrate["v2"], ctrate["v3"]])
    pairing = pair_cases(flat, {}, reference_adapter="ctrate")
    assert [c.case_id for c in pairing.cases] == ["valid_1_a_1", "valid_1_a_2", "valid_2_a_1"]
    assert pairing.case("valid_1_a_1").prompt == f"62 years old male: {IMPRESSION_1}"
    assert pairing.case("valid_1_a_2").prompt == f"45 years old female: {IMPRESSION_2}"
    assert pairing.case("valid_2_a_1").prompt is None
    probs = [p for p in pairing.problems if p.case_id == "valid_2_a_1"]
    assert len(probs) == 1 and "metadata" in probs[0].reason
    ad = get_adapter("ctrate")
    assert np.array_equal(ad.read(pairing.case("valid_1_a_1").reference.path).array, ctrate["ref"].array)


def test_metadata_from_environment(ctrate, tmp_path, monkeypatch):
    lone = tmp_path / "elsewhere"
    lone.mkdir()
    (lone / "valid_1_a_1.nii.gz").symlink_to(ctrate["v1"])
    with pytest.raises(VolumeError, match=METADATA_ENV):
        get_adapter("ctrate").read(lone / "valid_1_a_1.nii.gz")
    monkeypatch.setenv(METADATA_ENV, str(ctrate["metadata"]))
    vol = get_adapter("ctrate").read(lone / "valid_1_a_1.nii.gz")
    assert np.array_equal(vol.array, ctrate["ref"].array)
    monkeypatch.setenv(METADATA_ENV, str(tmp_path / "missing.csv"))
    with pytest.raises(ConfigError, match="missing.csv"):
        get_adapter("ctrate").read(lone / "valid_1_a_1.nii.gz")


def test_auto_detects_ctrate_with_metadata(ctrate):
    from baselines import detect_adapter

    ad, why = detect_adapter(ctrate["v1"])
    assert ad.name == "ctrate" and "metadata row" in why


# ------------------------------------------------------------------------------------------ prompts
def test_paper_prompts_exact_and_missing_rows_listed(ctrate):
    table = build_prompts([ctrate["reports"]], [ctrate["metadata"]])
    assert table.prompts == {"valid_1_a_1": f"62 years old male: {IMPRESSION_1}",
                             "valid_1_a_2": f"45 years old female: {IMPRESSION_2}"}
    assert len(table.problems) == 1 and table.problems[0].startswith("valid_2_a_1:")
    assert str(ctrate["metadata"]) in table.problems[0]
    t2 = build_prompts([ctrate["reports"]], [ctrate["metadata"]], template="{sex}, {age_raw}: {findings}",
                       cases=["valid_1_a_1.nii.gz", "valid_9_a_1"])
    assert t2.prompts == {"valid_1_a_1": "male, 062Y: Trachea, both main bronchi are open."}
    assert len(t2.problems) == 1 and "valid_9_a_1" in t2.problems[0] and str(ctrate["reports"]) in t2.problems[0]
    with pytest.raises(ConfigError, match="unknown field"):
        build_prompts([ctrate["reports"]], [ctrate["metadata"]], template="{age} {weight}")


@pytest.mark.parametrize("template, reason", [
    ("{age}\x00: {impression}", "control character"),
    ("{age.__class__.__mro__}", "unknown field"),
    ("{sex[0]}", "unknown field"),
    ("{age:>30000000}", "format spec not allowed"),
    ("{age!a}", "conversion must be"),
])
def test_template_is_text_with_plain_fields_only(template, reason):
    """A prompt template (often from a config someone hands you) is data: no control characters, no attribute
    or index access into Python objects, no format spec that builds a huge string."""
    from baselines.ctrate_prompts import check_template

    with pytest.raises(ConfigError, match=reason):
        check_template(template)
    assert check_template("{age:>3} years old {sex!s}:\n{impression}")  # ordinary specs stay allowed


def test_age_and_sex_parsing():
    assert parse_age("062Y") == 62 and parse_age("7") == 7 and parse_age("102Y") == 102
    for bad in ("006M", "010W", "030D"):
        with pytest.raises(PromptError, match="not years"):
            parse_age(bad)
    with pytest.raises(PromptError, match="DICOM age"):
        parse_age("")
    assert parse_sex("M") == "male" and parse_sex("f") == "female"
    with pytest.raises(PromptError, match="not M or F"):
        parse_sex("O")


# ------------------------------------------------------------------------------------------ CLI
def test_cli_convert_inspect_prompts(ctrate, tmp_path):
    runner = CliRunner()
    out = tmp_path / "out" / "valid_1_a_2.nii.gz"
    r = runner.invoke(app, ["convert", str(ctrate["v2"]), str(out), "--format", "ctrate", "--json"])
    assert r.exit_code == 0, r.output
    info = json.loads(r.stdout)
    assert info["adapter"] == "ctrate" and info["spacing_source"].startswith("CT-RATE metadata")
    back = read_volume(out)
    assert np.array_equal(back.array, ctrate["hu2"]) and np.allclose(back.affine, ctrate["ref"].affine, atol=1e-5)

    r = runner.invoke(app, ["inspect", str(ctrate["v1"]), "--format", "ctrate", "--json"])
    assert r.exit_code == 0, r.output
    s = json.loads(r.stdout)
    assert s["shape_zyx"] == list(ctrate["ref"].shape) and s["hu_min"] == float(ctrate["ref"].array.min())
    assert s["spacing_zyx_mm"] == pytest.approx(list(ctrate["ref"].spacing))

    r = runner.invoke(app, ["inspect", str(ctrate["v3"]), "--format", "ctrate"])
    assert r.exit_code == 1 and "valid_2_a_1.nii.gz" in r.output and "no row" in r.output

    pcsv = tmp_path / "prompts.csv"
    r = runner.invoke(app, ["prompts", "ctrate", "--reports", str(ctrate["reports"]), "--metadata",
                            str(ctrate["metadata"]), "--out", str(pcsv)])
    assert r.exit_code == 0, r.output
    assert "no prompt: valid_2_a_1" in r.output
    assert load_prompts(pcsv) == {"valid_1_a_1": f"62 years old male: {IMPRESSION_1}",
                                  "valid_1_a_2": f"45 years old female: {IMPRESSION_2}"}
    r = runner.invoke(app, ["prompts", "ctrate", "--reports", str(ctrate["reports"]), "--metadata",
                            str(ctrate["metadata"]), "--out", str(pcsv), "--strict"])
    assert r.exit_code == 1


def test_input_key_holds_the_metadata_row_the_read_uses(ctrate):
    ad = get_adapter("ctrate")
    key = ad.input_key(ctrate["v1"])
    assert key["ctrate_metadata"]["RescaleIntercept"] == "-1024"
    assert key["ctrate_metadata_csv"] == str(ctrate["metadata"])
    assert ad.input_key(ctrate["v3"]) == {}  # no row: the read says why
    text = ctrate["metadata"].read_text(encoding="utf-8").replace(",-1024,1,", ",-1000,1,", 1)
    ctrate["metadata"].write_text(text, encoding="utf-8")
    changed = get_adapter("ctrate").input_key(ctrate["v1"])
    assert changed != key and changed["ctrate_metadata"]["RescaleIntercept"] == "-1000"
    assert get_adapter("auto").input_key(ctrate["v1"]) == changed
    vol = ad.read(ctrate["v1"])
    assert vol.meta["geometry"] == "metadata" and "geometry_notes" not in vol.meta
