"""Shared fixtures (the shipped demo CT and small crops of it, one torch thread) and the test lanes (:data:`MARKS`).

Layout: one folder per component (``tests/<component>/test_*.py``, no ``__init__.py``, so every test file's
basename is unique); helper modules under ``tests/helpers/`` (no tests there), imported as ``helpers.<name>``
because this folder is put on ``sys.path`` once, here. Shared paths: :mod:`helpers.paths`."""

from __future__ import annotations

import locale
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))  # `from helpers.x import ...` in every test file

from helpers.paths import DEMO_CT  # noqa: E402


@pytest.fixture(autouse=True)
def keep_locale():
    """Restore the process locale after every test: GDCM's DICOM writer (SimpleITK, used by tests that
    write DICOM series) sets it to "C", after which subprocess output decoded with the locale's encoding
    (``text=True``) is ASCII and later tests fail unless PYTHONUTF8=1 (which `make` sets). trace-bench's
    own DICOM reader leaves the locale alone."""
    saved = locale.setlocale(locale.LC_ALL)
    yield
    if locale.setlocale(locale.LC_ALL) != saved:
        locale.setlocale(locale.LC_ALL, saved)


@pytest.fixture(scope="session")
def demo_ct_path() -> Path:
    return DEMO_CT


@pytest.fixture(scope="session")
def demo_volume():
    from trace_bench.io import read_volume

    return read_volume(DEMO_CT)


@pytest.fixture(scope="session")
def small_volume(demo_volume):
    """A 12 x 64 x 48 crop of the real chest CT (through the lungs), canonical LPS, float32 HU."""
    from trace_bench.volume import Volume

    v = demo_volume
    arr = v.array[18:30, 96:160, 100:148].copy()
    aff = v.affine.copy()
    # origin moves to the crop's first voxel: index (x=100, y=96, z=18)
    aff[:3, 3] = v.affine[:3, :3] @ np.array([100, 96, 18]) + v.affine[:3, 3]
    return Volume(arr, v.spacing, aff, {"path": "crop", "convention": "hu"})


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny networks gain nothing from a second intra-op thread; on a shared 2-core machine two threads
    per process oversubscribe the cores (measured here: tens of times slower). Restored afterwards."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


# ============================================================================= test lanes (marks)
# Marks are assigned here from one declared table rather than by decorators in the test files, so that a
# lane is chosen in one place. `make test-fast` runs `-m "not slow and not real_weights and not parity and
# not browser"` (the unit lane); `make test` runs everything. Patterns are fnmatch patterns on the test's
# node id (``tests/<component>/test_x.py::test_name[param]``; ``*`` also matches ``/``, so ``*/test_x.py``
# matches wherever the file lives); a test takes every mark whose pattern matches.
#   slow          end-to-end runs through the CLI, training / torchrun / shard tests, coverage simulations, whole
#                 demo volumes
#   real_weights  loads a published weights file (skipped where it is absent)
#   parity        compares with a reference implementation (vbench, pytorch-fid, torchmetrics, MONAI, prdc, frd-score,
#                 scikit-image, Merlin, pyiqa)
#   browser       opens a page in headless Chromium (skipped without chromium)
#   gpu           needs CUDA (skipped without a GPU)
MARKS: tuple[tuple[str, str], ...] = (
    # slow: whole runs, subprocess CLIs, training, sharding
    ("*/test_run_end_to_end.py::*", "slow"),
    ("*/test_demo_run.py::*", "slow"),
    ("*/test_console_output.py::*", "slow"),
    ("*/test_shard_merge.py::*", "slow"),
    ("*/test_shard_torchrun.py::*", "slow"),
    ("*/test_train_scale.py::*", "slow"),
    ("*/test_bad_input_runs.py::*", "slow"),
    ("*/test_run_keys.py::*", "slow"),
    ("*/test_run_safety.py::*", "slow"),
    ("*/test_prefetch.py::*", "slow"),
    ("*/test_report_inputs.py::*", "slow"),
    ("*/test_reports_paper.py::*", "slow"),
    ("*/test_compare_coverage.py::*", "slow"),
    ("*/test_profiling.py::*", "slow"),
    ("*/test_fast_paths_same_results.py::*", "slow"),
    # slow: single tests measured at 3 s of CPU or more (CLI subprocesses, whole demo CTs, simulations)
    ("*/test_cli_boundary.py::test_debug_shows_the_traceback", "slow"),
    ("*/test_cli_boundary.py::test_closed_pipe_is_silent", "slow"),
    ("*/test_cli_boundary.py::test_bad_config_is_one_line_exit_2", "slow"),
    ("*/test_compare_paired.py::test_signflip_gate_holds_its_level_under_the_null", "slow"),
    ("*/test_fvd_ctnet.py::test_orientation_follows_the_canonical_array_not_the_storage_order", "slow"),
    ("*/test_threshold_torch.py::test_demo_chest_ct_equal*", "slow"),
    ("*/test_io_bad_files.py::test_convert_and_segment_never_overwrite_their_input", "slow"),
    ("*/test_io_bad_files.py::test_segment_on_a_missing_gpu_is_one_line", "slow"),
    ("*/test_io_bad_files.py::test_fifo_given_to_commands_is_named_as_a_fifo", "slow"),
    ("*/test_hostile_strings.py::test_report_html_keeps_its_dom", "slow"),
    ("*/test_medicalnet.py::test_set_metrics_through_the_api_match_functional_twins", "slow"),
    ("*/test_medicalnet.py::test_load_strips_module_ignores_head_and_matches_hagan", "slow"),
    ("*/test_medicalnet.py::test_load_refuses_other_networks_and_pickles", "slow"),
    ("*/test_audit.py::test_order_batch_and_cache_independent", "slow"),
    ("*/test_astra_merlin_parity.py::test_features_equal_merlin_reference_end_to_end", "slow"),
    ("*/test_astra_merlin_parity.py::test_features_equal_merlin_reference_on_a_tie_volume", "slow"),
    ("*/test_astra_merlin_parity.py::test_noised_copy_closer_than_other_patient_full_size", "slow"),
    ("*/test_packaging.py::test_run_with_default_metrics_on_a_core_install", "slow"),
    ("*/test_utility.py::test_torchrun_two_ranks_compute_the_single_process_steps", "slow"),
    # slow: measured for the unit lane (--durations, 2 cores): CLI runs in a subprocess, runs + reports end to end,
    # training, coverage simulations, whole demo CTs -- each 1.5 s or more
    ("*/test_run_generator_formats.py::*", "slow"),
    ("*/test_weight_free_metrics_run.py::*", "slow"),
    ("*/test_run_integration.py::*", "slow"),
    ("*/test_stage_reuse.py::*", "slow"),
    ("*/test_hostile_strings.py::test_report_md_keeps_its_structure", "slow"),
    ("*/test_hostile_strings.py::test_report_tex_compiles", "slow"),
    ("*/test_hostile_strings.py::test_table_tabulars_compile_in_a_paper*", "slow"),
    ("*/test_hostile_strings.py::test_run_csvs_are_formula_safe_and_read_back", "slow"),
    ("*/test_hostile_strings.py::test_console_summary_lets_no_control_character_reach_the_terminal", "slow"),
    ("*/test_hostile_strings.py::test_leaderboard_keeps_its_dom", "slow"),
    ("*/test_hostile_strings.py::test_audit_markdown_and_montage", "slow"),
    ("*/test_utility.py::*", "slow"),
    ("*/test_doctor.py::test_the_printed_command_runs_and_reads_every_folder_right", "slow"),
    ("*/test_fid_vlm3d_squeezenet.py::test_run_end_to_end", "slow"),
    ("*/test_frd.py::test_run_end_to_end", "slow"),
    ("*/test_readme.py::test_quickstart_commands_run_as_written", "slow"),
    ("*/test_packaging.py::test_every_module_and_the_cli_import_without_optional_packages", "slow"),
    ("*/test_weights_safety.py::test_the_suggested_conversion_makes_a_loadable_file", "slow"),
    ("*/test_stats_intervals.py::test_jackknife_covers_the_expected_fid_*", "slow"),
    ("*/test_stats_intervals.py::test_jackknife_heavy_tailed_features_are_flagged*", "slow"),
    ("*/test_stats_intervals.py::test_fid_jackknife_interval_covers_the_true_value", "slow"),
    ("*/test_stats_intervals.py::test_half_vs_half_*", "slow"),
    ("*/test_kid_volumes.py::test_identical_generators_with_correlated_slices_cover_zero*", "slow"),
    ("*/test_utility_intervals.py::test_*_covers_the_true_*", "slow"),
    ("*/test_utility_probe.py::test_random_labels_give_auroc_near_half_and_a_carried_label_does_not", "slow"),
    ("*/test_fvd_ctnet.py::test_axes_windows_and_slice_triplets_on_an_analytic_volume", "slow"),
    ("*/test_gpu_paths.py::test_hd95_torch_equals_numpy_on_chest_ct_labels*", "slow"),
    ("*/test_seg_threshold_identity.py::test_shipped_chest_ct_*", "slow"),
    # real weights
    ("*/test_ct3d.py::test_real_*", "real_weights"),
    ("*/test_astra_merlin_parity.py::*", "real_weights"),
    ("*/test_fid_inception.py::*", "real_weights"),
    ("*/test_kid_prdc.py::test_kid_prdc_inception_share_fid_features", "real_weights"),
    ("*/test_kid_prdc.py::test_streaming_api", "real_weights"),
    ("*/test_medicalnet.py::test_real_*", "real_weights"),
    # parity with reference implementations
    ("*/test_vbench_*.py::*parity*", "parity"),
    ("*/test_vbench_motion.py::*", "parity"),
    ("*/test_vbench_overall.py::*", "parity"),
    ("*/test_vbench_quality.py::*", "parity"),
    ("*/test_vbench_consistency.py::*", "parity"),
    ("*/test_astra_merlin_parity.py::*", "parity"),
    ("*/test_frechet.py::test_parity_*", "parity"),
    ("*/test_kid_prdc.py::test_*_matches_*", "parity"),
    ("*/test_seg_metrics.py::test_parity_*", "parity"),
    ("*/test_fid_presets.py::*", "parity"),
    ("*/test_fvd_ctnet.py::*equals*", "parity"),
    ("*/test_medicalnet.py::*equal*", "parity"),
    ("*/test_medicalnet.py::*skimage*", "parity"),
    ("*/test_ct3d.py::test_inflated_net_equals_torchvision_resnet152*", "parity"),
    ("*/test_kid_prdc.py::test_prdc_equals_prdc_package*", "parity"),
    ("*/test_frd.py::test_*equal*", "parity"),
    # a browser
    ("*::test_*headless_chromium*", "browser"),
    # CUDA
    ("*/test_trace_cuda.py::*", "gpu"),
    ("*/test_gpu_paths.py::*cuda*", "gpu"),
)


def lane_marks(nodeid: str) -> list[str]:
    """The marks :data:`MARKS` gives the test with this node id (paths relative to the repository root)."""
    from fnmatch import fnmatchcase

    return sorted({mark for pattern, mark in MARKS if fnmatchcase(nodeid, pattern)})


def pytest_collection_modifyitems(config, items):
    root = Path(str(config.rootpath))
    for item in items:
        path = Path(str(item.path))
        rel = path.relative_to(root).as_posix() if path.is_relative_to(root) else path.as_posix()
        nodeid = rel + item.nodeid[item.nodeid.index("::"):] if "::" in item.nodeid else rel
        for mark in lane_marks(nodeid):
            item.add_marker(getattr(pytest.mark, mark))
