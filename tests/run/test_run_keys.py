"""Every setting that changes numbers is declared once (``trace_bench.config.SETTINGS``) and the per-case
cache keys, the run fingerprint and what shards may differ in are derived from that declaration.

* For every ``values`` setting: changing it changes exactly the keys of the entries it affects (planned
  with ``setup=False``: files are hashed, no volume decoded), so exactly those records are recomputed.
* ``run`` settings change the fingerprint but no key; ``local`` ones change neither.
* A rerun in one folder after a change gives exactly what a fresh run gives (issue 25's defect: the
  geometry policy was missing from the key, so ``--geometry warn`` then ``refuse`` kept the warned Dice).

Data: crops of the shipped real chest CTs (tests/helpers/fake_metrics.make_small_dataset). ``prompt_words``
below is a small test plug-in (words of the prompt x mean HU / 1000) that exercises the prompt route."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path
from typing import Callable

import nibabel as nib
import numpy as np
import pytest
from typer.testing import CliRunner

from trace_bench.cli import app
from trace_bench.config import LOCAL, RUN, SETTINGS, VALUES, RunConfig
from trace_bench.metrics.base import METRICS, CaseData, Metric, Output, RunContext, register_metric
from trace_bench.results.stamp import fingerprint
from trace_bench.run.plan import KEY_ROUTES, manifest_dict, plan_run

from helpers.fake_metrics import make_small_dataset

runner = CliRunner()
METRIC_SET = ["temporal_flickering", "segmentation", "kid", "prompt_words"]


class PromptWords(Metric):
    name = "prompt_words"
    kind = "case"
    needs_prompt = True
    outputs = {"prompt_words": Output(True)}

    def case_values(self, data: CaseData, ctx: RunContext) -> dict[str, float]:
        return {"prompt_words": len(str(data.prompt).split()) * float(np.mean(data.volume.array)) / 1000.0}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = make_small_dataset(tmp_path_factory.mktemp("keys-data"))
    (root / "prompts.csv").write_text("case_id,prompt\nlung1,a chest CT\nlung2,another chest CT\n", encoding="utf-8")
    (root / "prompts2.csv").write_text("case_id,prompt\nlung1,a chest CT with a nodule\nlung2,another chest CT\n",
                                       encoding="utf-8")
    ref2 = root / "reference2"  # lung1 changed by one voxel, lung2 the same bytes
    ref2.mkdir()
    shutil.copy(root / "reference" / "lung2.nii.gz", ref2 / "lung2.nii.gz")
    img = nib.load(str(root / "reference" / "lung1.nii.gz"))
    a = np.asarray(img.dataobj).copy()
    a.flat[0] += 1
    nib.save(nib.Nifti1Image(a, img.affine, img.header), str(ref2 / "lung1.nii.gz"))
    return root


@pytest.fixture(scope="module", autouse=True)
def prompt_metric():
    register_metric(PromptWords, overwrite=True)
    yield
    METRICS.unregister("prompt_words")


def base_config(data: Path, out: Path) -> RunConfig:
    return RunConfig(out=str(out), reference=str(data / "reference"), methods={"noisy": str(data / "noisy")},
                     metrics=list(METRIC_SET), prompts=str(data / "prompts.csv"), frame_size=64, plot_case="lung1",
                     progress=False)


def keys(cfg: RunConfig) -> dict[tuple[str, str, str], str]:
    plan = plan_run(cfg, setup=False)
    return {(e.method, e.case_id, e.metric): e.key for e in plan.entries}


Pred = Callable[[tuple[str, str, str]], bool]
FRAMES = {"temporal_flickering", "kid", "prompt_words", "_plot"}
PAIRED = {"segmentation", "_plot"}


def _change(data: Path) -> dict[str, tuple[dict, Pred]]:
    """For every ``values`` setting: a change, and which entries (method, case, metric) it must invalidate."""
    return {
        "reference": ({"reference": str(data / "reference2")},
                      lambda k: k[1] == "lung1" and (k[0] == "GT" or k[2] in PAIRED)),
        "reference_format": ({"reference_format": "auto"}, lambda k: k[0] == "GT" or k[2] in PAIRED),
        "methods": ({"methods": {"noisy": {"path": str(data / "noisy"), "convention": "hu"}}},
                    lambda k: k[0] == "noisy"),
        "segmenter": ({"segmenter": "provided"}, lambda k: k[2] in ("segmentation", "_plot")),  # + label overlays
        "classes": ({"classes": "2"}, lambda k: k[2] in ("segmentation", "_plot")),
        "reference_masks": ({"reference_masks": str(data / "masks")}, lambda k: k[0] == "GT" or k[2] in PAIRED),
        "method_masks": ({"method_masks": {"noisy": str(data / "masks")}}, lambda k: k[0] == "noisy"),
        "prompts": ({"prompts": str(data / "prompts2.csv")}, lambda k: k[1] == "lung1" and k[2] == "prompt_words"),
        "weights": ({"weights": {}}, lambda k: False),  # paths only: the sha256 in the keys is the same
        "seed": ({"seed": 1}, lambda k: k[2] == "kid"),
        "frame_size": ({"frame_size": 48}, lambda k: k[2] in FRAMES),
        "hu_window": ({"hu_window": [-1024.0, 600.0]}, lambda k: k[2] in FRAMES),
        "options": ({"options": {"kid": {"subsets": 7}}}, lambda k: k[2] == "kid"),
        "geometry": ({"geometry": "warn"}, lambda k: k[0] != "GT" and k[2] in PAIRED),
        "fast": ({"fast": True}, lambda k: k[2] in {n for n in METRIC_SET if METRICS.get(n).fast_options()}),
    }


def test_declaration_covers_every_field_and_route():
    names = [f.name for f in dataclasses.fields(RunConfig)]
    assert list(SETTINGS) == names
    assert {s.route for s in SETTINGS.values() if s.scope == VALUES} <= set(KEY_ROUTES)
    assert {s.scope for s in SETTINGS.values()} == {VALUES, RUN, LOCAL}


def test_each_value_setting_invalidates_exactly_its_entries(data, tmp_path):
    base = base_config(data, tmp_path / "o")
    k0 = keys(base)
    assert {m for _, _, m in k0} == set(METRIC_SET) | {"_plot"}
    changes = _change(data)
    assert set(changes) == {n for n, s in SETTINGS.items() if s.scope == VALUES}, "a value setting without a test"
    for name, (kw, affected) in changes.items():
        k1 = keys(dataclasses.replace(base, **kw))
        assert set(k1) == set(k0), name
        changed = {k for k in k0 if k0[k] != k1[k]}
        want = {k for k in k0 if affected(k)}
        assert changed == want, (name, sorted(changed ^ want))
        if name != "weights":
            assert want, name  # the change must matter somewhere in this plan


def test_run_and_local_settings_keep_every_key(data, tmp_path):
    base = base_config(data, tmp_path / "o")
    plan0 = plan_run(base, setup=False)
    fp0 = fingerprint(manifest_dict(plan0))
    k0 = {(e.method, e.case_id, e.metric): e.key for e in plan0.entries}
    samples = {"out": str(tmp_path / "o2"), "metrics": METRIC_SET[:3], "device": "cpu", "workers": 2,
               "skip_unavailable": True, "bootstrap": 10, "bootstrap_distribution": 5, "jackknife_groups": 5,
               "confidence": 0.9, "batch_size": 4, "plot_case": "lung2", "plots": False, "published": False,
               "progress": True, "prefetch": True, "shard": "1/1", "strict": True, "relative_paths": True,
               "force": True, "plugins": ["trace_bench.metrics.temporal"], "profiles": {},
               "train_reference": str(data / "interp"), "tex_layout": "compact", "tex_width": "ieee",
               "utility": {"protocols": ["seg-tstr"], "variant": "tiny"}}
    assert set(samples) == {n for n, s in SETTINGS.items() if s.scope != VALUES}
    for name, value in samples.items():
        plan = plan_run(dataclasses.replace(base, **{name: value}), setup=False)
        k1 = {(e.method, e.case_id, e.metric): e.key for e in plan.entries}
        # the plot arrays depend on which metrics run (their plot hooks): a metric set's change redoes them
        same = {k for k in set(k0) & set(k1) if not (name == "metrics" and k[2] == "_plot")}
        assert all(k0[k] == k1[k] for k in same), name
        fp = fingerprint(manifest_dict(plan))
        if SETTINGS[name].scope == LOCAL and name != "shard":  # a shard plans other cases: another manifest
            assert fp == fp0, name
        elif name not in ("profiles",):  # an empty profile table is the default
            assert fp != fp0 or getattr(base, name) == value, name


def test_ctrate_metadata_row_is_in_the_key(data, tmp_path):
    folder = tmp_path / "ctrate"
    folder.mkdir()
    for c in ("lung1", "lung2"):
        shutil.copy(data / "noisy" / f"{c}.nii.gz", folder / f"{c}.nii.gz")
    meta = folder / "metadata.csv"

    def write(intercept: str) -> None:
        meta.write_text("VolumeName,RescaleSlope,RescaleIntercept,XYSpacing,ZSpacing\n"
                        f"lung1.nii.gz,1,{intercept},\"[0.75, 0.75]\",5\nlung2.nii.gz,1,-1024,\"[0.75, 0.75]\",5\n",
                        encoding="utf-8")

    write("-1024")
    cfg = dataclasses.replace(base_config(data, tmp_path / "o"), methods={"rate": f"{folder}:ctrate"},
                              metrics=["temporal_flickering"])
    k0 = keys(cfg)
    write("0")
    k1 = keys(cfg)
    assert {k for k in k0 if k0[k] != k1[k]} == {("rate", "lung1", "temporal_flickering"), ("rate", "lung1", "_plot")}


def _run(out: Path, *args: str):
    return runner.invoke(app, ["run", "--no-progress", "--no-plots", "--no-published", "--bootstrap", "20",
                               "--frame-size", "48", "--out", str(out), *args])


TABLES = ("per_case.csv", "summary.csv", "errors.csv", "warnings.csv")


@pytest.mark.parametrize("before,after", [
    (["--geometry", "warn"], ["--geometry", "refuse"]),
    (["--frame-size", "48"], ["--frame-size", "32"]),
    (["--read", "half.convention=hu"], []),
], ids=["geometry", "frame_size", "read_option"])
def test_rerun_after_a_change_equals_a_fresh_run(data, tmp_path, before, after):
    half = tmp_path / "half"  # a copy of lung1 with its z spacing halved in the header (FOV 50 %)
    half.mkdir()
    img = nib.load(str(data / "reference" / "lung1.nii.gz"))
    aff = img.affine.copy()
    aff[:3, 2] *= 0.5
    nib.save(nib.Nifti1Image(np.asarray(img.dataobj), aff, img.header), str(half / "lung1.nii.gz"))
    shutil.copy(data / "noisy" / "lung2.nii.gz", half / "lung2.nii.gz")
    args = ["--reference", str(data / "reference"), "--method", f"half={half}",
            "--metrics", "segmentation,temporal_flickering"]
    r = _run(tmp_path / "one", *args, *before)
    assert r.exit_code == 0, r.output
    r = _run(tmp_path / "one", *args, *after)
    assert r.exit_code == 0, r.output
    assert "0 computed" not in r.output
    fresh = _run(tmp_path / "fresh", *args, *after)
    assert fresh.exit_code == 0, fresh.output
    for name in TABLES:
        assert (tmp_path / "one" / name).read_bytes() == (tmp_path / "fresh" / name).read_bytes(), name
    if after == ["--geometry", "refuse"]:
        errors = (tmp_path / "one" / "errors.csv").read_text(encoding="utf-8")
        assert "half,lung1,geometry" in errors
        per_case = (tmp_path / "one" / "per_case.csv").read_text(encoding="utf-8")
        assert "half,lung1,dice," not in per_case
