"""Packaging: floors in pyproject.toml (no exact torch pin, no torchvision in the core, so an existing torch
2.x is kept), the optional extras that trace_bench.optional names exist and hold the package, the
constraints file pins every dependency, and a missing optional package is one clear line.

Optional packages stay optional: a static scan (no import statement of a non-core package anywhere in the
installed packages; every ``require()`` names a package with an extra), and, in a subprocess where every
optional package fails to import, every module and ``--help`` import and ``run`` with the default metrics
finishes, listing the metrics that need an extra with its install command. The demo's generated inputs are
stored as int16 HU (its output folder stays small)."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

from helpers.paths import ROOT


def _name(req: str) -> str:
    return re.split(r"[\[<>=!~ ;]", req, maxsplit=1)[0].strip().lower().replace("_", "-")


@pytest.fixture(scope="module")
def project() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]


def test_core_keeps_an_existing_torch(project):
    deps = {_name(d): d for d in project["dependencies"]}
    assert "torchvision" not in deps, "torchvision pins one torch release: it belongs in an extra"
    assert re.fullmatch(r"torch>=2\.\d+", deps["torch"].replace(" ", "")), deps["torch"]
    assert not [d for d in project["dependencies"] if "==" in d and _name(d) in ("torch", "numpy")]


def test_extras_named_by_the_code_exist_and_hold_the_package(project):
    from trace_bench.optional import EXTRAS

    extras = project["optional-dependencies"]
    for module, (dist, extra) in EXTRAS.items():
        assert extra in extras, (module, extra)
        assert dist.lower().replace("_", "-") in {_name(r) for r in extras[extra]}, (module, dist, extra)
    assert {"vbench", "ct3d", "study", "docs", "dev", "all"} <= set(extras)


def test_constraints_pin_every_dependency(project):
    pins = {}
    for line in (ROOT / "constraints.txt").read_text(encoding="utf-8").splitlines():
        if line and not line.startswith("#"):
            name, _, version = line.partition("==")
            assert version, f"constraints.txt: {line!r} is not an exact pin"
            pins[_name(name)] = version
    wanted = [*project["dependencies"], *(r for reqs in project["optional-dependencies"].values() for r in reqs)]
    for req in wanted:
        name = _name(req)
        if name != "trace-bench":
            assert name in pins, f"constraints.txt pins no version of {name}"


def test_missing_optional_package_is_one_line_naming_the_extra():
    from trace_bench.errors import TraceBenchError
    from trace_bench.optional import MissingDependency, install_hint, require

    with pytest.raises(MissingDependency) as e:
        require("skimage_not_installed_here.metrics", "paired fidelity")
    assert isinstance(e.value, TraceBenchError) and "\n" not in str(e.value)
    assert install_hint("skimage.metrics") == "pip install 'trace-bench[fidelity]'"
    assert install_hint("torchvision.models") == "pip install 'trace-bench[vbench]'"
    assert install_hint("torchvision.models", "ct3d") == "pip install 'trace-bench[ct3d]'"
    assert install_hint("not_an_extra_package") == "pip install not_an_extra_package"
    assert require("json", "a test").dumps([1]) == "[1]"


# ============================================================================= optional packages stay optional
#: the packages installed with trace-bench (their modules are scanned; they are what `pip install .` ships)
OWN = ("trace_bench", "trace_model", "baselines", "reports")


def _dist_key(name: str) -> str:
    return name.lower().replace("_", "-")


@pytest.fixture(scope="module")
def core_import_names(project: dict) -> set[str]:
    """The top-level import names of the core dependencies (from the installed distributions' file lists)."""
    import importlib.metadata as md

    core = {_name(d) for d in project["dependencies"]}
    owners = {mod: {_dist_key(d) for d in dists} for mod, dists in md.packages_distributions().items()}
    names = {mod for mod, dists in owners.items() if core & dists}
    missing = core - set().union(*(owners[m] for m in names))
    assert not missing, f"core dependencies not installed here, cannot map them to import names: {missing}"
    return names


def module_imports(path: Path) -> list[tuple[int, str]]:
    """(line, module) of every absolute import statement of a file, at any depth (functions, try blocks, ...)."""
    import ast

    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module and node.module != "__future__":
            out.append((node.lineno, node.module))
    return out


def require_calls(path: Path) -> list[tuple[int, str]]:
    """(line, module) of every ``require("module", ...)`` call with a literal module name."""
    import ast

    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if (isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", None)) == "require"
                and node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)):
            out.append((node.lineno, node.args[0].value))
    return out


def package_files() -> list[Path]:
    return sorted(p for pkg in OWN for p in (ROOT / pkg).rglob("*.py"))


def test_optional_packages_are_imported_only_through_require(core_import_names):
    """Static scan of every module that installs with trace-bench: an import statement (module level or inside a
    function) names only the standard library, trace-bench's own packages or a core dependency. Anything else
    goes through ``trace_bench.optional.require`` (one line naming the extra when it is missing), so a core
    install imports every module, and `run` with the default metrics never meets a bare ModuleNotFoundError."""
    import sys

    allowed = set(sys.stdlib_module_names) | set(OWN) | core_import_names
    bad = [f"{p.relative_to(ROOT)}:{line}: import {mod}"
           for p in package_files() for line, mod in module_imports(p) if mod.split(".")[0] not in allowed]
    assert not bad, ("not a core dependency: import it with trace_bench.optional.require() where it is needed (and "
                     "name its extra in optional.EXTRAS), or add it to the core dependencies:\n" + "\n".join(bad))


def test_every_required_package_names_its_extra(core_import_names):
    """Each ``require("pkg...")`` in the code names a package of :data:`trace_bench.optional.EXTRAS` (so its
    message says which extra installs it), none of which is a core dependency."""
    from trace_bench.optional import EXTRAS

    core = core_import_names
    calls = [(p, line, mod) for p in package_files() for line, mod in require_calls(p)]
    assert calls, "the scan found no require() call: is the scan broken?"
    bad = [f"{p.relative_to(ROOT)}:{line}: require({mod!r})" for p, line, mod in calls
           if mod.split(".")[0] not in EXTRAS]
    assert not bad, "require() of a package optional.EXTRAS does not know:\n" + "\n".join(bad)
    assert not set(EXTRAS) & core, f"optional.EXTRAS names core dependencies: {set(EXTRAS) & core}"
    assert {mod.split(".")[0] for _, _, mod in calls} == set(EXTRAS), "an EXTRAS entry no code requires (stale?)"


#: run in a subprocess: every import of an optional package (optional.EXTRAS) fails as on a core install
BLOCKER = """
import importlib.abc, sys
from trace_bench.optional import EXTRAS
class Blocked(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in EXTRAS:
            raise ModuleNotFoundError(f"No module named {name!r} (blocked: a core install)", name=name)
        return None
sys.meta_path.insert(0, Blocked())
"""


def _run_blocked(code: str, tmp_path: Path, timeout: int = 600):
    import os
    import subprocess
    import sys

    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "TRACE_BENCH_CACHE": str(tmp_path / "cache")}
    return subprocess.run([sys.executable, "-c", BLOCKER + code], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=timeout)


def test_every_module_and_the_cli_import_without_optional_packages(tmp_path):
    """With every optional package made unimportable, each module of trace-bench imports, the metric registry
    loads, and `trace-bench --help` prints."""
    code = """
import importlib, pkgutil
for top in ("trace_bench", "trace_model", "baselines", "reports"):
    pkg = importlib.import_module(top)
    for m in pkgutil.walk_packages(pkg.__path__, top + "."):
        if not m.name.endswith("__main__"):
            importlib.import_module(m.name)
from trace_bench.run.select import load_metric_registry
load_metric_registry()
from trace_bench.cli import main
sys.argv = ["trace-bench", "--help"]
try:
    main()
except SystemExit as e:
    assert e.code in (0, None), e.code
print("IMPORTED-ALL")
"""
    r = _run_blocked(code, tmp_path)
    assert r.returncode == 0 and "IMPORTED-ALL" in r.stdout, r.stderr[-3000:]


def test_run_with_default_metrics_on_a_core_install(tmp_path, small_volume):
    """`trace-bench run` with the default metric set (plus two metrics that need an extra) where no optional
    package imports: it finishes with no error row; the metrics that need an extra are listed as not computed
    with the command that installs them, exactly as a metric whose weights are missing."""
    import json

    import numpy as np

    from trace_bench.io import write_nifti

    rng = np.random.default_rng(0)
    for i in range(2):
        v = small_volume.with_array(np.roll(small_volume.array, 3 * i, axis=2))
        write_nifti(v, tmp_path / "ref" / f"c{i}.nii.gz")
        noisy = v.array + rng.normal(0, 30, v.shape).astype(np.float32)
        write_nifti(v.with_array(noisy), tmp_path / "gen" / f"c{i}.nii.gz")
    out = tmp_path / "out"
    code = f"""
from trace_bench.cli import main
sys.argv = ["trace-bench", "run", "-r", {str(tmp_path / 'ref')!r}, "-m", "gen={tmp_path / 'gen'}", "-o", {str(out)!r},
            "--metrics", "available,paired_fidelity,subject_consistency", "--skip-unavailable"]
main()
"""
    r = _run_blocked(code, tmp_path)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    errors = (out / "errors.csv").read_text(encoding="utf-8").strip().splitlines()
    assert errors == ["method,case_id,stage,error"], errors
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    assert {"segmentation", "temporal_flickering", "fid", "kid", "prdc"} <= set(manifest["metrics"])
    skipped = manifest["skipped"]
    assert "pip install 'trace-bench[fidelity]'" in skipped["paired_fidelity"], skipped
    assert not [k for k, v in skipped.items() if "ModuleNotFoundError" in v or "No module named" in v], skipped


def test_a_missing_package_stops_the_metric_at_setup(monkeypatch):
    """The metrics and networks that need an optional package meet it in ``setup`` (the preflight), before any
    weights file is read, with MissingDependency: a TraceBenchError and an ImportError naming the extra."""
    import builtins

    from trace_bench.errors import TraceBenchError
    from trace_bench.metrics.base import RunContext
    from trace_bench.metrics.paired_fidelity import PairedFidelity
    from trace_bench.metrics.vbench import ImagingQuality, OverallConsistency, SubjectConsistency
    from trace_bench.networks.ctnet import CTNet
    from trace_bench.networks.inception import build_fid_inception
    from trace_bench.networks.squeezenet import build_squeezenet
    from trace_bench.optional import MissingDependency

    real = builtins.__import__
    blocked = {"torchvision", "skimage", "pytorch_fid", "open_clip", "timm"}

    def no_optional(name, *a, **k):
        if name.split(".")[0] in blocked:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return real(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", no_optional)
    cases = [(lambda: PairedFidelity().setup(RunContext()), "fidelity"),
             (lambda: SubjectConsistency().setup(RunContext()), "vbench"),
             (lambda: ImagingQuality().setup(RunContext()), "vbench"),
             (lambda: OverallConsistency().setup(RunContext()), "vbench"),
             (CTNet, "ct3d"), (build_squeezenet, "vbench"), (build_fid_inception, "fid-pth")]
    for call, extra in cases:
        with pytest.raises(MissingDependency) as e:
            call()
        assert isinstance(e.value, TraceBenchError) and isinstance(e.value, ImportError)
        assert f"pip install 'trace-bench[{extra}]'" in str(e.value) and "\n" not in str(e.value), str(e.value)


# ============================================================================= the demo's output stays small
def test_demo_inputs_are_stored_as_int16_hu(tmp_path, small_volume):
    """The demo writes its generated volumes as int16 HU: the reader gets back exactly the rounded values, on the
    same grid, from a file smaller than the float32 one."""
    import nibabel as nib
    import numpy as np

    from trace_bench.demo import store_hu_int16, write_hu_int16
    from trace_bench.io import read_volume, write_nifti

    rng = np.random.default_rng(1)
    vol = small_volume.with_array(small_volume.array + rng.uniform(-0.5, 0.5, small_volume.shape).astype(np.float32))
    f32 = write_nifti(vol, tmp_path / "f32" / "a.nii.gz")
    size_f32 = f32.stat().st_size
    i16 = write_hu_int16(vol, tmp_path / "i16" / "a.nii.gz")
    store_hu_int16(f32.parent)  # the TRACE path: rewrite what the sampler wrote
    for p in (i16, f32):
        assert nib.load(str(p)).get_data_dtype() == np.int16
        back = read_volume(p)
        assert np.array_equal(back.array, np.rint(vol.array)) and np.allclose(back.affine, vol.affine)
    assert i16.stat().st_size < size_f32
