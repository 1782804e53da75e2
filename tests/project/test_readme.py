"""The README's "score your own folders" commands run as written (issues 26 and 29).

The commands are extracted from the README's quickstart block (the fenced block after the
``<!-- quickstart`` marker), not copied here, and run in a temporary working folder that holds a
``real/`` and a ``generated/`` folder made from crops of the shipped chest CTs (the generated volumes are
noised copies). ``trace-bench`` is run as ``python -m trace_bench`` of this checkout.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys

import numpy as np
import pytest

from helpers.paths import ROOT

README = ROOT / "README.md"


def quickstart_commands() -> list[list[str]]:
    """The ``trace-bench`` command lines of the README's quickstart block (comments dropped)."""
    text = README.read_text(encoding="utf-8")
    m = re.search(r"<!-- quickstart.*?-->\s*```bash\n(.*?)```", text, re.S)
    assert m, "README.md has no quickstart block (a ```bash block after '<!-- quickstart ... -->')"
    cmds = []
    for line in m.group(1).splitlines():
        words = shlex.split(line, comments=True)
        if words:
            assert words[0] == "trace-bench", f"quickstart line does not start with trace-bench: {line!r}"
            cmds.append(words[1:])
    return cmds


def test_readme_stays_one_screen_and_starts_with_the_two_commands():
    text = README.read_text(encoding="utf-8")
    assert len(text.splitlines()) <= 150
    first = re.search(r"```bash\n(.*?)```", text, re.S).group(1).splitlines()
    assert first[0].startswith("make demo") and first[1].startswith("make test")
    assert len(quickstart_commands()) >= 2


@pytest.fixture(scope="module")
def folders(tmp_path_factory, demo_volume):
    from trace_bench.io import write_nifti
    from trace_bench.volume import Volume

    root = tmp_path_factory.mktemp("readme")
    v = demo_volume
    rng = np.random.default_rng(0)
    for i, z in enumerate((14, 22)):
        arr = v.array[z:z + 10, 64:192, 64:192].copy()
        aff = v.affine.copy()
        aff[:3, 3] = v.affine[:3, :3] @ np.array([64, 64, z]) + v.affine[:3, 3]
        ref = Volume(arr, v.spacing, aff, {"convention": "hu"})
        write_nifti(ref, root / "real" / f"case{i}.nii.gz")
        noisy = (arr + rng.normal(0, 20, arr.shape)).astype(np.float32)
        write_nifti(Volume(noisy, v.spacing, aff, {"convention": "hu"}), root / "generated" / f"case{i}.nii.gz")
    return root


def test_quickstart_commands_run_as_written(folders):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "PYTHONUTF8": "1",
           "TRACE_BENCH_CACHE": str(folders / "cache")}
    for args in quickstart_commands():
        if args[0] == "run":  # keep the test light: weight-free metrics only (the default adds FID/KID/PRDC)
            args = [*args, "--metrics", "weight-free", "--no-plots", "--no-progress"]
        r = subprocess.run([sys.executable, "-m", "trace_bench", *args], cwd=folders, env=env, capture_output=True,
                           text=True, encoding="utf-8", errors="replace", timeout=600)
        assert r.returncode == 0, (args, r.stdout[-2000:], r.stderr[-2000:])
    out = folders / "results"
    assert (out / "report.html").is_file() and (out / "summary.csv").is_file()
    import pandas as pd

    s = pd.read_csv(out / "summary.csv")
    assert set(s.method) >= {"MyModel"} and pd.read_csv(out / "errors.csv").empty
