"""Body mask, chest crop and the body-region / field-of-view checks of the 3D protocols
(trace_bench/networks/body.py; Astra's modes, CT-Net), and the path of a metric's warning to
``warnings.csv`` (``CaseData.warn`` -> the metric's record -> the aggregate stage).

Volumes: the shipped chest CTs, and phantoms built here with realistic air noise (-1000 HU +- 25): a head
(skull shell, brain, a small sinus), a chest (body, two lungs, spine) and a chest wider than Merlin's
336 mm field of view.
"""

from __future__ import annotations

import json
import re
import sys
import textwrap

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from trace_bench.metrics.base import METRICS, CaseData
from trace_bench.networks import astra as A
from trace_bench.networks import body as B
from trace_bench.networks import ctnet
from trace_bench.volume import Volume

from helpers.paths import DEMO_CTS


def _lps(arr: np.ndarray, spacing: tuple[float, float, float]) -> Volume:
    aff = np.diag([-spacing[2], -spacing[1], spacing[0], 1.0])
    return Volume(arr.astype(np.float32), spacing, aff, {"path": "phantom"})


def _grid(shape: tuple[int, int, int], spacing: tuple[float, float, float]):
    """Coordinates in mm from the centre, (z, y, x)."""
    return np.meshgrid(*[(np.arange(n) - (n - 1) / 2) * s for n, s in zip(shape, spacing)], indexing="ij")


def head_phantom(seed: int = 0) -> Volume:
    """A head: 150 x 190 mm skull (6 mm shell at 1000 HU), brain at 35 HU, a 20 mm sinus of air; 230 mm field of
    view, air with noise."""
    sp, shape = (2.5, 1.8, 1.8), (48, 128, 128)
    z, y, x = _grid(shape, sp)
    rng = np.random.default_rng(seed)
    a = -1000 + rng.normal(0, 25, shape)
    r = (x / 75) ** 2 + (y / 95) ** 2 + (z / 70) ** 2
    a[r < 1] = 1000
    inner = (x / 69) ** 2 + (y / 89) ** 2 + (z / 64) ** 2 < 1
    a[inner] = 35 + rng.normal(0, 10, int(inner.sum()))
    a[(x / 10) ** 2 + ((y + 70) / 10) ** 2 + (z / 10) ** 2 < 1] = -950
    return _lps(a, sp)


def chest_phantom(width_mm: float = 320.0, seed: int = 0) -> Volume:
    """A chest: elliptic body ``width_mm`` x 0.7 width at 40 HU, two lungs at -850 HU, a spine; air with noise."""
    sp, shape = (5.0, 1.5 * width_mm / 320, 1.5 * width_mm / 320), (40, 256, 256)
    z, y, x = _grid(shape, sp)
    rng = np.random.default_rng(seed)
    a = -1000 + rng.normal(0, 25, shape)
    w = width_mm / 2
    body = (x / w) ** 2 + (y / (0.7 * w)) ** 2 < 1
    a[body] = 40 + rng.normal(0, 15, int(body.sum()))
    for cx in (-0.45 * w, 0.45 * w):
        a[((x - cx) / (0.33 * w)) ** 2 + (y / (0.5 * w)) ** 2 < 1] = -850
    a[(x / 15) ** 2 + ((y - 0.55 * w) / 15) ** 2 < 1] = 400
    return _lps(a, sp)


@pytest.fixture(scope="module")
def lungs():
    from trace_bench.io import read_volume

    return [read_volume(DEMO_CTS / f"lung{i}.nii.gz") for i in (1, 2)]


# ============================================================================= the body and the crop
def test_body_box_ignores_air_noise_where_the_old_rule_keeps_everything():
    v = chest_phantom()
    ras, _ = A.to_ras(v)
    assert (ras > -1000).mean() > 0.3  # air noise above -1000 HU
    assert A.foreground_box(ras) == tuple(slice(0, n) for n in ras.shape)  # chest-v1's crop: nothing
    box = A.chest_box(ras)  # v2: the body
    assert box[1].stop - box[1].start < 0.8 * ras.shape[1] and box[2] == slice(0, ras.shape[2])
    # padding with more noisy air changes nothing in v2, everything in v1
    rng = np.random.default_rng(1)
    pad = ((0, 0), (20, 20), (30, 30))
    padded = _lps(np.pad(v.array, pad, constant_values=-1000) + np.pad(np.zeros(v.shape), pad, constant_values=1)
                  * rng.normal(0, 25, tuple(n + a + b for n, (a, b) in zip(v.shape, pad))), v.spacing)
    np.testing.assert_array_equal(A.preprocess(padded, "chest"), A.preprocess(v, "chest"))
    assert np.abs(A.preprocess(padded, "chest-v1") - A.preprocess(v, "chest-v1")).max() > 0.1


def test_enclosed_air_separates_chest_from_head(lungs):
    for v in lungs:
        assert 0.15 < B.enclosed_air_fraction(v.array, v.spacing) < 0.35  # measured: lung1 0.26, lung2 0.19
    assert B.enclosed_air_fraction(chest_phantom().array, (5.0, 1.5, 1.5)) > 0.15
    head = head_phantom()
    assert B.enclosed_air_fraction(head.array, head.spacing) < 0.01


# ============================================================================= the protocol checks
def test_astra_and_ctnet_checks(lungs):
    head = head_phantom()
    for mode in ("chest", "chest-v1"):
        w = A.protocol_warnings(head, mode)
        assert [s for s, _ in w][:1] == ["body-region"] and "expects a chest CT" in w[0][1]
        assert all("\n" not in t for _, t in w)
    assert A.protocol_warnings(lungs[0], "chest") == []
    # chest-v1 on a real CT: the HU > -1000 crop keeps the whole array
    w = A.protocol_warnings(lungs[0], "chest-v1")
    assert w == [("field-of-view", w[0][1])] and "keeps the whole array" in w[0][1]
    # merlin: a field of view of 336 x 336 x 480 mm; no region expectation (Merlin: chest and abdomen)
    assert A.protocol_warnings(head, "merlin") == [] and A.protocol_warnings(lungs[1], "merlin") == []
    wide = A.protocol_warnings(chest_phantom(width_mm=420.0), "merlin")
    assert [s for s, _ in wide] == ["field-of-view"] and re.search(r"\(x 42\d > 336 mm\)", wide[0][1])
    assert ctnet.protocol_warnings(head)[0][0] == "body-region" and ctnet.protocol_warnings(lungs[1]) == []


def test_checks_reach_the_case_even_from_the_feature_cache(monkeypatch):
    """``spaces.protocol_checks``: computed once per case, recorded for every metric that asks."""
    from trace_bench.metrics.spaces import protocol_checks

    calls = []
    data = CaseData("m", "head", head_phantom())

    def check():
        calls.append(1)
        return ctnet.protocol_warnings(data.volume)

    protocol_checks(data, "k", check)
    protocol_checks(data, "k", check)
    assert len(calls) == 1 and len(data.warnings) == 2 and data.warnings[0] == data.warnings[1]
    assert data.warnings[0].startswith("body-region: CT-Net (VLM3D) preprocessing expects a chest CT")


# ============================================================================= a run writes them
PLUGIN = '''
import numpy as np
from trace_bench.metrics.base import CaseData, Metric, Output, RunContext, register_metric
from trace_bench.metrics.spaces import protocol_checks
from trace_bench.networks import body, ctnet


@register_metric
class EnclosedAir(Metric):
    name = "enclosed_air_test"
    kind = "case"
    outputs = {"enclosed_air_test": Output(None, "enclosed air", value_range=(0.0, 1.0))}

    def case_values(self, data: CaseData, ctx: RunContext) -> dict[str, float]:
        protocol_checks(data, "ctnet", lambda: ctnet.protocol_warnings(data.volume))
        return {"enclosed_air_test": body.enclosed_air_fraction(data.volume.array, data.volume.spacing)}
'''


def test_a_metric_warning_reaches_warnings_csv(tmp_path, monkeypatch):
    from trace_bench.cli import app
    from trace_bench.io import write_nifti

    ref = tmp_path / "reference"
    write_nifti(head_phantom(), ref / "head.nii.gz")
    write_nifti(chest_phantom(), ref / "chest.nii.gz")
    (tmp_path / "plug").mkdir()
    (tmp_path / "plug" / "tb_enclosed_air.py").write_text(textwrap.dedent(PLUGIN), encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path / "plug"))
    try:
        r = CliRunner().invoke(app, ["run", "--no-progress", "--no-plots", "--no-published", "--bootstrap", "20",
                                     "--reference", str(ref), "--plugins", "tb_enclosed_air",
                                     "--metrics", "enclosed_air_test", "--out", str(tmp_path / "out")])
        assert r.exit_code == 0, r.output
    finally:
        METRICS.unregister("enclosed_air_test")
        sys.modules.pop("tb_enclosed_air", None)
    w = pd.read_csv(tmp_path / "out" / "warnings.csv")
    assert list(zip(w.case_id, w.stage)) == [("head", "body-region")]
    assert w.warning[0].startswith("CT-Net (VLM3D) preprocessing expects a chest CT")
    cols = json.loads((tmp_path / "out" / "metrics.json").read_text(encoding="utf-8"))["columns"]
    assert cols["enclosed_air_test"]["value_range"] == [0.0, 1.0]
