"""The import structure described in ARCHITECTURE.md: no circles among the project's modules,
``reports`` reads runs through ``trace_bench.results`` only, no module imports another's private names."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
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
