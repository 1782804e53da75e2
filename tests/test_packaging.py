"""Packaging: floors in pyproject.toml (no exact torch pin, no torchvision in the core, so an existing torch
2.x is kept), the optional extras that trace_bench.optional names exist and hold the package, the
constraints file pins every dependency, and a missing optional package is one clear line."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


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
        require("sklearn_not_installed_here.metrics", "the reader study")
    assert isinstance(e.value, TraceBenchError) and "\n" not in str(e.value)
    assert install_hint("sklearn.metrics") == "pip install 'trace-bench[study]'"
    assert install_hint("torchvision.models") == "pip install 'trace-bench[vbench]'"
    assert require("json", "a test").dumps([1]) == "[1]"
