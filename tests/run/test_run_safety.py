"""What a run may touch and what it trusts (issues 26 and 27), through the command line:

* output folders: only files named in the tool's own stamp are removed or replaced; a non-empty
  folder trace-bench did not write is refused (``--force`` writes beside the user's files, never over
  them); ``--out`` inside or equal to an input folder is refused;
* cache integrity: a per-case record edited by hand fails its checksum, is recomputed and the run says so;
* missing / empty ``--reference`` is one line, exit 2; a segmentation-only run has no GT warning;
* method names: NFC, look-alikes refused; per-folder reading options from the CLI and TOML are one thing,
  written back into ``config.toml``;
* slice-based per-volume metrics warn when a generated volume's z spacing differs from its reference's;
* ``python -m trace_bench`` never imports a module from the working directory; profiles hold finite numbers.

The volumes are crops of the shipped real chest CT (tests/helpers/fake_metrics.make_small_dataset)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from trace_bench.cli import app
from trace_bench.config import RunConfig, load_config
from trace_bench.errors import ConfigError

from helpers.fake_metrics import make_small_dataset
from helpers.paths import ROOT

runner = CliRunner()
FAST = ["run", "--no-progress", "--no-plots", "--no-published", "--bootstrap", "20", "--frame-size", "48"]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_small_dataset(tmp_path_factory.mktemp("safety-data"))


def _args(data: Path, out: Path, *extra: str) -> list[str]:
    return [*FAST, "--reference", str(data / "reference"), "--method", f"noisy={data / 'noisy'}",
            "--metrics", "temporal_flickering,segmentation", "--out", str(out), *extra]


def _one_line_exit_2(r) -> str:
    assert r.exit_code == 2, r.output
    lines = [ln for ln in r.output.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in r.output, r.output
    return lines[0]


def test_foreign_out_folder_is_refused_and_never_overwritten(data, tmp_path):
    out = tmp_path / "mine"
    (out / "plots").mkdir(parents=True)
    mine = {"report.md": "my notes", "summary.csv": "a,b\n1,2\n", "plots/fig.png": "png", "notes.txt": "keep me"}
    for name, text in mine.items():
        (out / name).write_text(text, encoding="utf-8")
    assert "--force" in _one_line_exit_2(runner.invoke(app, _args(data, out)))
    # --force writes beside the user's files, never over them: a file where the run writes its own is refused
    assert "never replaced" in _one_line_exit_2(runner.invoke(app, _args(data, out, "--force")))
    for name in ("report.md", "summary.csv", "plots/fig.png"):
        (out / name).unlink()
    (out / "plots").rmdir()
    r = runner.invoke(app, _args(data, out, "--force"))
    assert r.exit_code == 0, r.output
    assert (out / "notes.txt").read_text(encoding="utf-8") == "keep me" and (out / "summary.csv").is_file()
    stamp = json.loads((out / ".trace-bench" / "stamp.json").read_text(encoding="utf-8"))
    assert "notes.txt" not in stamp["files"] and "summary.csv" in stamp["files"]


def test_only_stamped_files_are_removed(data, tmp_path):
    out = tmp_path / "o"
    assert runner.invoke(app, _args(data, out, "--plots")).exit_code == 0
    assert any((out / "plots").iterdir())
    (out / "notes.txt").write_text("the user's", encoding="utf-8")
    (out / "plots" / "mine.png").write_bytes(b"not ours")
    # a different run: the earlier run's stamped outputs go, the user's files stay; a foreign file in a folder
    # the run writes into is refused first
    r = runner.invoke(app, _args(data, out, "--frame-size", "32"))
    assert "plots/mine.png" in _one_line_exit_2(r)
    (out / "plots" / "mine.png").unlink()
    r = runner.invoke(app, _args(data, out, "--frame-size", "32", "--no-plots"))
    assert r.exit_code == 0, r.output
    assert (out / "notes.txt").read_text(encoding="utf-8") == "the user's"
    assert not (out / "plots").exists()  # the earlier run's plots were named in its stamp


def test_out_inside_an_input_folder_is_refused(data, tmp_path):
    for out in (data / "reference", data / "noisy" / "results"):
        msg = _one_line_exit_2(runner.invoke(app, _args(data, out)))
        assert "input folder" in msg
    assert not (data / "noisy" / "results").exists()


def test_edited_record_is_recomputed_and_said(data, tmp_path):
    out = tmp_path / "o"
    assert runner.invoke(app, _args(data, out)).exit_code == 0
    before = (out / "summary.csv").read_bytes()
    rec_path = out / "cases" / "noisy" / "lung2" / "segmentation.json"
    rec = json.loads(rec_path.read_text(encoding="utf-8"))
    rec["values"] = {k: 0.5 for k in rec["values"]}
    rec_path.write_text(json.dumps(rec), encoding="utf-8")
    r = runner.invoke(app, _args(data, out))
    assert r.exit_code == 0, r.output
    assert "failed their checksum" in r.output and "1 computed" in r.output, r.output
    assert (out / "summary.csv").read_bytes() == before
    w = pd.read_csv(out / "warnings.csv")
    assert ((w.method == "noisy") & (w.case_id == "lung2") & (w.stage == "cache")).sum() == 1
    # a truncated state file of a distribution metric is caught the same way
    assert "checksum" in json.loads(rec_path.read_text(encoding="utf-8"))


def test_reference_is_required_and_gt_warning_only_when_gt_has_rows(data, tmp_path):
    r = runner.invoke(app, [*FAST, "--method", f"noisy={data / 'noisy'}", "--out", str(tmp_path / "a")])
    assert "--reference" in _one_line_exit_2(r)
    (tmp_path / "empty").mkdir()
    r = runner.invoke(app, [*FAST, "--reference", str(tmp_path / "empty"), "--method", f"noisy={data / 'noisy'}",
                            "--out", str(tmp_path / "b")])
    assert "no volume" in _one_line_exit_2(r)
    r = runner.invoke(app, [*FAST, "--reference", str(data / "reference"), "--method", f"noisy={data / 'noisy'}",
                            "--metrics", "segmentation", "--out", str(tmp_path / "c")])
    assert r.exit_code == 0 and "no scored case" not in r.output, r.output
    assert json.loads((tmp_path / "c" / "metrics.json").read_text(encoding="utf-8"))["unscored_methods"] == []


def test_method_names_nfc_and_lookalikes():
    with pytest.raises(ConfigError, match="'TRACE' and 'ТRACE' look alike"):
        RunConfig(reference="r", methods={"TRACE": "a", "ТRACE": "b"})  # Cyrillic Т
    with pytest.raises(ConfigError, match="look alike"):
        RunConfig(reference="r", methods={"caf\u00e9": "a", "cafe\u0301": "b"})  # two spellings of é
    c = RunConfig(reference="r", methods={"cafe\u0301": "a"}, profiles={"cafe\u0301": "p.json"})
    assert list(c.methods) == ["caf\u00e9"] and list(c.profiles) == ["caf\u00e9"]


def test_reading_options_cli_and_toml_are_one_setting(data, tmp_path):
    from trace_bench.cli.run import build_config

    toml = tmp_path / "bench.toml"
    toml.write_text(f'reference = "{data / "reference"}"\n[methods.noisy]\npath = "{data / "noisy"}"\n'
                    'convention = "hu"\nspacing = "reference"\n', encoding="utf-8")
    a = build_config(toml)
    b = build_config(None, reference=str(data / "reference"), methods=[f"noisy={data / 'noisy'}"],
                     reads=["noisy.convention=hu", "noisy.spacing=reference"])
    assert a.methods == b.methods == {"noisy": {"path": str(data / "noisy"), "format": "nifti", "convention": "hu",
                                                "spacing": "reference"}}
    f = a.folders().methods["noisy"]
    assert f.read.uses_reference and f.format == "nifti"
    written = tmp_path / "written.toml"
    written.write_text(a.to_toml(), encoding="utf-8")
    assert "[methods.noisy]" in written.read_text(encoding="utf-8") and load_config(written) == a
    for bad, msg in ((["noisy.colour=red"], "NAME.KEY=VALUE"), (["other.convention=hu"], "no folder named 'other'"),
                     (["noisy.spacing=0,1,1"], "positive voxel sizes"), (["reference.spacing=reference"], "has none")):
        with pytest.raises(ConfigError, match=msg):
            build_config(None, reference=str(data / "reference"), methods=[f"noisy={data / 'noisy'}"], reads=bad)
    # a run with reading options records them (config.toml, manifest, provenance) and keys them
    out = tmp_path / "o"
    r = runner.invoke(app, _args(data, out, "--read", "noisy.convention=hu"))
    assert r.exit_code == 0, r.output
    assert load_config(out / "config.toml").methods["noisy"]["convention"] == "hu"
    assert json.loads((out / "provenance.json").read_text(encoding="utf-8"))["reading"]["noisy"] == {
        "format": "nifti", "convention": "hu"}


def test_slice_metrics_warn_on_a_different_z_spacing(data, tmp_path):
    thin = tmp_path / "thin"  # lung1 resliced: every slice twice at half the spacing (same extent)
    thin.mkdir()
    img = nib.load(str(data / "reference" / "lung1.nii.gz"))
    a = np.repeat(np.asarray(img.dataobj), 2, axis=2)
    aff = img.affine.copy()
    aff[:3, 2] *= 0.5
    nib.save(nib.Nifti1Image(a, aff), str(thin / "lung1.nii.gz"))
    out = tmp_path / "o"
    r = runner.invoke(app, [*FAST, "--reference", str(data / "reference"), "--method", f"thin={thin}",
                            "--metrics", "temporal_flickering", "--out", str(out)])
    assert r.exit_code == 0, r.output
    w = pd.read_csv(out / "warnings.csv")
    row = w[(w.method == "thin") & (w.stage == "spacing")]
    assert len(row) == 1 and "temporal_flickering" in row.warning.iloc[0] and row.case_id.iloc[0] == "lung1"


def test_python_m_ignores_modules_in_the_working_directory(tmp_path):
    marker = tmp_path / "imported"
    (tmp_path / "typer.py").write_text(f"open({str(marker)!r}, 'w').close()\nraise SystemExit(3)\n", encoding="utf-8")
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    p = subprocess.run([sys.executable, "-m", "trace_bench", "--help"], cwd=tmp_path, env=env, capture_output=True,
                       text=True, timeout=300)
    assert p.returncode == 0 and "run" in p.stdout, p.stderr
    assert not marker.exists()


@pytest.mark.parametrize("value", ["-1", "NaN", "1e400", "\"fast\""])
def test_profile_numbers_must_be_finite_and_non_negative(data, tmp_path, value):
    prof = tmp_path / "p.json"
    prof.write_text('{"fps": %s, "device": "cpu"}' % value, encoding="utf-8")
    r = runner.invoke(app, _args(data, tmp_path / "o", "--profile", f"noisy={prof}"))
    assert "fps" in _one_line_exit_2(r)
