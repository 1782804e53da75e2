"""The utility protocols' declarations (pinned), the ``[utility]`` section, the held-out split, the labels CSV."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from trace_bench.errors import ConfigError
from trace_bench.utility.config import load_utility_config, utility_from_dict
from trace_bench.utility.data import hash_split
from trace_bench.utility.labels import read_labels
from trace_bench.utility.protocol import PROBE_FULL, PROBE_TINY, SEG_FULL, SEG_TINY

from helpers.paths import ROOT

#: a changed setting of a published protocol changes its numbers: bump its version, then update the pin here
PINNED = {
    "seg-tstr-v1": "832d6deabc724577be217513a192336f4493c6fa2814dd894abd9e8439c0adc2",
    "seg-tstr-tiny-v1": "37b683cd5f3af466226a4a7ba012ffafbd301eacb9ba213e17b8c7d2b767a9e4",
    "probe-v1": "248dfe26c5b5f8aaf9d7184e38c15abc6d1a62965f3e665720073539ed635713",
    "probe-tiny-v1": "1c801ca908ac051c3bc55b8ef9b14fb1fe0d462be399ae3d1fb8059a89531538",
}


def test_protocol_declarations_are_pinned_to_their_ids():
    got = {p.id: p.sha256 for p in (SEG_FULL, SEG_TINY, PROBE_FULL, PROBE_TINY)}
    assert got == PINNED, "a protocol's declaration changed without a version bump: " + json.dumps(got, indent=1)
    assert SEG_FULL.declaration()["patch"] == [96, 96, 96] and "tiny" in SEG_TINY.id and "tiny" in PROBE_TINY.id
    assert all(len(p) == 2 and p[1] for p in SEG_FULL.legend() + PROBE_FULL.legend())


def test_utility_section_errors_name_the_file_and_setting(tmp_path):
    p = tmp_path / "bench.toml"
    p.write_text('out = "o"\n[utility]\nvarient = "tiny"\n', encoding="utf-8")
    with pytest.raises(ConfigError, match=r"bench\.toml: \[utility\]: unknown setting 'varient'\. Did you mean"):
        load_utility_config(p)
    cases = [({"variant": "huge"}, "utility.variant"), ({"n_seeds": 0}, "utility.n_seeds"),
             ({"arms": ["method"]}, "'real' is the baseline"), ({"protocols": ["probe"]}, "utility.labels"),
             ({"test_fraction": 1.5}, "utility.test_fraction"),
             ({"test_reference": "x"}, "test_reference / test_masks"),
             ({"device": "gpu"}, "utility.device"), ({"seg_labels": [0]}, "utility.seg_labels")]
    for given, needle in cases:
        with pytest.raises(ConfigError, match=needle.replace(".", r"\.").replace("'", ".")):
            utility_from_dict(given, source="f.toml")
    run, cfg = load_utility_config(_write(tmp_path / "ok.toml", 'reference = "r"\n[utility]\nvariant = "tiny"\n'
                                                                 'protocols = ["seg-tstr", "probe"]\nlabels = "l.csv"\n'
                                                                 'test_fraction = 0.3\nn_seeds = 3\n'))
    assert run.reference == "r" and cfg.variant == "tiny" and cfg.n_seeds == 3 and cfg.arms == ["real", "method",
                                                                                                "real+method"]
    assert cfg.replace(variant="full", n_seeds=None).n_seeds == 3


def _write(p: Path, text: str) -> Path:
    p.write_text(text, encoding="utf-8")
    return p


def test_hash_split_is_stable_disjoint_and_sized():
    ids = [f"case{i:03d}" for i in range(50)]
    held = hash_split(ids, 0.3)
    assert len(held) == 15 and held == hash_split(list(reversed(ids)), 0.3) and set(held) <= set(ids)
    assert hash_split(ids[:2], 0.01) and len(hash_split(ids[:2], 0.99)) == 1  # at least 1, at most n - 1
    with pytest.raises(ConfigError, match="at least 2"):
        hash_split(ids[:1], 0.5)


def test_labels_csv_reads_ct_rate_volume_names_and_refuses_bad_cells(tmp_path):
    t = read_labels(_write(tmp_path / "l.csv", "VolumeName,Emphysema,Atelectasis\n"
                                               "train_1_a_1.nii.gz,1,0\ntrain_2_a_1.nii.gz,,true\n"))
    assert t.columns == ("Emphysema", "Atelectasis")
    m = t.matrix(["train_1_a_1", "train_2_a_1", "unknown"])
    assert m[0].tolist() == [1.0, 0.0] and np.isnan(m[1, 0]) and m[1, 1] == 1.0 and np.isnan(m[2]).all()
    assert read_labels(tmp_path / "l.csv", ["Atelectasis"]).columns == ("Atelectasis",)
    with pytest.raises(ConfigError, match=r"l2\.csv: line 2: column 'b' holds 'maybe'"):
        read_labels(_write(tmp_path / "l2.csv", "case_id,b\nc1,maybe\n"))
    with pytest.raises(ConfigError, match="no case id column"):
        read_labels(_write(tmp_path / "l3.csv", "id,b\nc1,1\n"))
    with pytest.raises(ConfigError, match="appears twice"):
        read_labels(_write(tmp_path / "l4.csv", "case_id,b\nc1,1\nc1,0\n"))


def test_utility_help_imports_no_torch():
    code = ("import sys, json\nsys.argv = ['trace-bench', 'utility', '--help']\nfrom trace_bench.cli import main\n"
            "try:\n    main()\nexcept SystemExit as e:\n    code = e.code\n"
            "print(json.dumps({'code': code, 'torch': 'torch' in sys.modules}), file=sys.stderr)\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=300)
    got = json.loads([x for x in r.stderr.splitlines() if x.strip()][-1])
    assert got == {"code": 0, "torch": False} and "--config" in r.stdout
