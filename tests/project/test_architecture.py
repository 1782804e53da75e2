"""The import structure described in ARCHITECTURE.md: no circles among the project's modules, no import
running up the floors (:data:`FLOORS`), ``reports`` reads runs through ``trace_bench.results`` only, no module
imports another's private names."""

from __future__ import annotations

import ast
from pathlib import Path

from helpers.paths import ROOT

PACKAGES = ("trace_bench", "reports", "baselines", "trace_model")


def _modules() -> dict[str, Path]:
    out = {}
    for pkg in PACKAGES:
        for p in (ROOT / pkg).rglob("*.py"):
            parts = list(p.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join(parts)] = p
    return out


MODULES = _modules()


def _resolve(name: str) -> str | None:
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def _imports(name: str, path: Path) -> list[tuple[str, list[str]]]:
    """(imported module, imported names) for every import statement, TYPE_CHECKING blocks excluded."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    base = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    found: list[tuple[str, list[str]]] = []

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and getattr(child.test, "id", getattr(child.test, "attr", "")) == "TYPE_CHECKING":
                continue
            if isinstance(child, ast.Import):
                found.extend((a.name, []) for a in child.names)
            elif isinstance(child, ast.ImportFrom):
                if child.level:
                    anchor = base[: len(base) - (child.level - 1)]
                    mod = ".".join(anchor + ([child.module] if child.module else []))
                else:
                    mod = child.module or ""
                found.append((mod, [a.name for a in child.names]))
            visit(child)

    visit(tree)
    return found


def _graph() -> dict[str, set[str]]:
    g: dict[str, set[str]] = {m: set() for m in MODULES}
    for name, path in MODULES.items():
        for mod, names in _imports(name, path):
            targets = {_resolve(f"{mod}.{n}") if f"{mod}.{n}" in MODULES else _resolve(mod) for n in names or [""]}
            # a package's __init__ re-exporting names is not a dependency of its submodules on the package
            g[name] |= {t for t in targets if t and t != name and not name.startswith(t + ".")}
    return g


#: the floors, lowest first: a module imports its own floor and the floors below, never one above (a module
#: not named here is on the bottom floor). Within a floor, the cycle test above keeps the order one way.
FLOORS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("core", ("trace_bench", "trace_bench.errors", "trace_bench.registry", "trace_bench.atomic", "trace_bench.volume",
              "trace_bench.intensity", "trace_bench.device", "trace_bench.weights", "trace_bench.weights_load",
              "trace_bench.protocol", "trace_bench.geometry", "trace_bench.cache", "trace_bench.io",
              "trace_bench.inputs", "trace_bench.read_options", "trace_bench.cases", "trace_bench.config",
              "trace_bench.results", "baselines")),
    ("networks", ("trace_bench.networks", "trace_bench.segmenters")),
    ("metrics", ("trace_bench.metrics",)),
    ("readers of runs", ("reports", "trace_bench.audit", "trace_bench.study", "trace_bench.profiling",
                         "trace_bench.report_inputs")),
    ("run core", ("trace_bench.run",)),
    ("applications", ("trace_bench.launch", "trace_bench.demo", "trace_bench.regress", "trace_model",
                      "trace_bench.utility")),
    ("cli", ("trace_bench.cli", "trace_bench.__main__")),
)


def floor(module: str) -> int:
    """The floor of a module: the one naming its longest prefix (0, the bottom, when none does)."""
    best, level = "", 0
    for i, (_, prefixes) in enumerate(FLOORS):
        for p in prefixes:
            if (module == p or module.startswith(p + ".")) and len(p) > len(best):
                best, level = p, i
    return level


def test_no_import_runs_up_the_floors():
    g = _graph()
    bad = [f"{a} ({FLOORS[floor(a)][0]}) imports {b} ({FLOORS[floor(b)][0]})"
           for a in sorted(g) for b in sorted(g[a]) if floor(b) > floor(a)]
    assert not bad, "imports running up the floors (ARCHITECTURE.md):\n" + "\n".join(bad)


def test_the_floor_rule_catches_an_upward_import():
    """Control: the edges the rule forbids are the ones the issue names (networks -> metrics, metrics -> run,
    run -> cli), and the module map places the packages as ARCHITECTURE.md draws them."""
    assert floor("trace_bench.networks.clip") < floor("trace_bench.metrics.spaces") < floor("trace_bench.run.plan")
    assert floor("trace_bench.run.plan") < floor("trace_bench.cli.run")
    assert floor("trace_bench.weights_load") == floor("trace_bench.results.tables") == 0
    assert {m for m in MODULES if m.startswith("trace_bench.networks.")} >= {"trace_bench.networks.inception",
                                                                              "trace_bench.networks.amt"}


def test_no_import_cycles():
    g = _graph()
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    cycles: list[list[str]] = []
    counter = [0]

    def strong(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in g[v]:
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                cycles.append(sorted(comp))

    import sys

    sys.setrecursionlimit(10000)
    for v in sorted(g):
        if v not in index:
            strong(v)
    assert not cycles, f"import cycles: {cycles}"


def test_reports_read_results_only():
    bad = [(name, mod) for name, path in MODULES.items() if name.split(".")[0] == "reports"
           for mod, _ in _imports(name, path) if mod.startswith("trace_bench") and not mod.startswith("trace_bench.results")]
    assert not bad, f"reports must import trace_bench.results only: {bad}"


def test_results_do_not_import_the_run_core_or_metrics():
    bad = [(name, mod) for name, path in MODULES.items() if name.startswith("trace_bench.results")
           for mod, _ in _imports(name, path) if mod.startswith(("trace_bench.run", "trace_bench.metrics"))]
    assert not bad, bad


def test_no_private_imports_across_modules():
    bad = []
    for name, path in MODULES.items():
        for mod, names in _imports(name, path):
            if _resolve(mod) is None or _resolve(mod) == name:
                continue
            bad += [f"{name}: from {mod} import {n}" for n in names if n.startswith("_") and not n.startswith("__")]
    assert not bad, "\n".join(bad)


def test_run_core_does_not_know_the_demo_or_the_cli():
    bad = [(name, mod) for name, path in MODULES.items() if name.startswith("trace_bench.run")
           for mod, _ in _imports(name, path)
           if mod.startswith(("trace_bench.demo", "trace_bench.cli", "trace_bench.launch"))]
    assert not bad, bad
