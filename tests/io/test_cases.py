"""Case id rules and pairing of generated / reference / masks / prompts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from baselines.base import generic_case_id
from trace_bench.cases import load_prompts, pair_cases
from trace_bench.errors import ConfigError


@pytest.mark.parametrize("name,cid", [
    ("case_001.nii.gz", "case_001"), ("case_001.nii", "case_001"), ("a.b.nrrd", "a.b"), ("x.mha", "x"),
    ("vol.npz", "vol"), ("sample-['train_1_a_1'].nii.gz", "train_1_a_1"), ("sample-train_2.nii.gz", "train_2"),
    ("CT.NII.GZ", "CT"),
])
def test_generic_case_id(name, cid):
    assert generic_case_id(Path(name)) == cid


def _touch(folder: Path, *names: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for n in names:
        (folder / n).write_bytes(b"x")


def test_pairing_reports_every_problem(tmp_path):
    ref, gen, masks = tmp_path / "ref", tmp_path / "gen", tmp_path / "masks"
    _touch(ref, "a.nii.gz", "b.nii.gz", "c.nii.gz", "notes.txt")
    _touch(gen, "sample-['a'].nii.gz", "b.nii.gz", "z.nii.gz", "d.nii.gz", "d.nii", "readme.pdf")
    _touch(masks, "a.nii.gz")
    (gen / "b.txt").write_text("70 years old male: emphysema\n")
    p = pair_cases(ref, {"m": (gen, "nifti")}, reference_masks=masks)
    ids = [c.case_id for c in p.cases]
    assert ids == ["a", "b", "c", "z"]  # "d" has two files: both skipped and reported
    a = p.case("a")
    assert a.reference.path.name == "a.nii.gz" and a.generated["m"].path.name == "sample-['a'].nii.gz"
    assert a.reference_mask.name == "a.nii.gz"
    assert p.case("b").prompt == "70 years old male: emphysema"
    reasons = {(pr.case_id, pr.reason.split(":")[0].split(" (")[0]) for pr in p.problems}
    text = " | ".join(f"{pr.method}/{pr.case_id}: {pr.reason}" for pr in p.problems)
    assert any(pr.case_id == "d" and "duplicate" in pr.reason for pr in p.problems), text
    assert any(pr.case_id == "z" and "unpaired" in pr.reason for pr in p.problems), text
    assert any(pr.case_id == "c" and pr.method == "m" and "no volume" in pr.reason for pr in p.problems), text
    assert any("readme.pdf" in pr.path and "not a volume" in pr.reason for pr in p.problems), text
    assert reasons


def test_prompts_csv_json_and_override(tmp_path):
    ref = tmp_path / "ref"
    _touch(ref, "a.nii.gz", "b.nii.gz")
    (ref / "a.txt").write_text("sidecar prompt")
    csv_path = tmp_path / "p.csv"
    csv_path.write_text("case_id,prompt\nb,from csv\n")
    p = pair_cases(ref, {}, prompts=csv_path)
    assert p.case("a").prompt == "sidecar prompt" and p.case("b").prompt == "from csv"
    js = tmp_path / "p.json"
    js.write_text(json.dumps({"a": "from json"}))
    assert load_prompts(js) == {"a": "from json"}
    bad = tmp_path / "bad.csv"
    bad.write_text("id,text\n1,2\n")
    with pytest.raises(ConfigError, match="case_id,prompt"):
        load_prompts(bad)


def test_missing_folder_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="not a folder"):
        pair_cases(tmp_path / "nope", {})
