"""Paths the tests share, defined once (tests import them as ``from helpers.paths import ...``).

Two different things were both called "demo" in the test files; they have two names here:

* :data:`DEMO_DIR` -- the shipped demo inputs, ``trace_bench/data/demo`` (``reference/``, ``tumour_masks/``,
  ``prompts.csv``: what ``make demo`` and TRACE's ``prepare`` read), found as the package finds it
  (:func:`trace_bench.demo.demo_data_dir`);
* :data:`DEMO_CTS` -- its ``reference/`` folder: the two shipped real chest CTs (:data:`DEMO_CT` = ``lung1``,
  :data:`DEMO_CT2` = ``lung2``) that most tests read or crop.

:data:`TEST_DATA` (``tests/data``) holds the tests' own files (the metric snapshot, pyradiomics' baseline), not
demo inputs.
"""

from __future__ import annotations

from pathlib import Path

from trace_bench.demo import demo_data_dir

#: the repository root (this file is tests/helpers/paths.py)
ROOT = Path(__file__).resolve().parents[2]
TESTS = ROOT / "tests"
TEST_DATA = TESTS / "data"
DEMO_DIR = demo_data_dir()
DEMO_CTS = DEMO_DIR / "reference"
DEMO_CT = DEMO_CTS / "lung1.nii.gz"
DEMO_CT2 = DEMO_CTS / "lung2.nii.gz"
