"""The generated reference pages (docs/_ext/tb_reference.py) cover everything registered: every metric,
adapter, segmenter, weights entry and CLI command appears, with its columns and options; the internal-link
checker of `make docs` finds broken links; the docs' lists of settled / pending modules name real modules.
The Sphinx build itself runs in `make docs` (part of `make test`)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

from helpers.paths import ROOT

DOCS = ROOT / "docs"


def _load(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def ref():
    return _load("tb_reference", DOCS / "_ext" / "tb_reference.py")


def _anchors(text: str, kind: str) -> set[str]:
    return {line[len(f".. _tb-{kind}-"):-1] for line in text.splitlines() if line.startswith(f".. _tb-{kind}-")}


def test_every_metric_with_its_columns_and_options(ref):
    from trace_bench.metrics.base import METRICS

    text = ref.reference_text("metrics")
    entries = ref.metric_entries()
    assert {n for n, _ in entries} == set(METRICS.names()) and len(entries) >= 25
    assert _anchors(text, "metric") == {ref.label("metric", n)[len("tb-metric-"):] for n, _ in entries}
    for name, cls in entries:
        section = text.split(f".. _{ref.label('metric', name)}:")[1].split("\n.. _tb-metric-")[0]
        for column in cls.outputs:
            assert f"``{column}``" in section, (name, column)
        for option in cls.options:
            assert f"``{name}.{option.name}``" in section, (name, option.name)
        assert "**Protocol id**" in section, name


def test_every_adapter_segmenter_and_weights_entry(ref):
    from baselines.base import ADAPTERS
    from trace_bench.segmenters import SEGMENTERS
    from trace_bench.weights import WEIGHTS

    for kind, registry in (("adapters", ADAPTERS), ("segmenters", SEGMENTERS), ("weights", WEIGHTS)):
        label_kind = {"adapters": "adapter", "segmenters": "segmenter", "weights": "weights"}[kind]
        text = ref.reference_text(kind)
        names = registry.names()
        assert names, kind
        assert _anchors(text, label_kind) == {ref.label(label_kind, n)[len(f"tb-{label_kind}-"):] for n in names}


def test_every_cli_command_with_its_options(ref):
    text = ref.reference_text("cli")
    commands = ref.cli_commands()
    names = {full for full, _, _ in commands}
    # every top-level command and the sub-commands of the groups
    assert {"run", "demo", "metrics", "compare", "weights", "weights list", "study", "doctor"} <= names
    assert len(names) >= 25
    for full, cmd, _ in commands:
        assert f"trace-bench {full}\n" in text, full
        section = text.split(f".. _{ref.label('cli', full)}:")[1].split("\n.. _tb-cli-")[0]
        for p in cmd.params:
            if p.param_type_name == "option" and not getattr(p, "hidden", False):
                assert f"``{p.opts[0]}``" in section, (full, p.opts[0])


def test_a_new_metric_appears_without_an_edit(ref):
    """The reference is read from the registry: a metric registered now (a plug-in) is in it."""
    from trace_bench.metrics.base import METRICS, Metric, Option, Output, register_metric

    class DocsProbe(Metric):
        name = "docs_probe"
        outputs = {"docs_probe": Output(True, "Probe", digits=2)}
        options = (Option("axis", "z", "axis of the probe", choices=("z", "y")),)
        description = "a metric registered by tests/project/test_docs.py"

    register_metric(DocsProbe)
    try:
        text = ref.reference_text("metrics")
        assert ".. _tb-metric-docs-probe:" in text and "``docs_probe.axis``" in text
        assert "a metric registered by tests/project/test\\_docs.py" in text
    finally:
        METRICS.unregister("docs_probe")


def test_rst_text_escapes_markup(ref):
    assert ref.rst_text("a *b* |c| d_ `--x`") == "a \\*b\\* \\|c\\| d\\_ ``--x``"
    assert ref.literal("") == "(empty)"


def test_link_checker_reports_broken_internal_links(tmp_path):
    checker = _load("check_links", DOCS / "scripts" / "check_links.py")
    (tmp_path / "index.html").write_text(
        '<a href="page.html#here">ok</a> <a href="page.html#gone">bad id</a> <a href="missing.html">bad file</a>'
        '<a href="https://example.org/x">external</a> <a href="#id7">docutils problem</a> <p id="top"></p>'
        '<a href="#top">ok</a>', encoding="utf-8")
    (tmp_path / "page.html").write_text('<h1 id="here">x</h1>', encoding="utf-8")
    problems = checker.broken_links(tmp_path)
    assert len(problems) == 2, problems
    assert any("missing.html" in p for p in problems) and any("'gone'" in p for p in problems)
    assert checker.main([str(tmp_path)]) == 1


def test_settled_and_pending_module_lists_name_real_modules():
    conf = (DOCS / "conf.py").read_text(encoding="utf-8")
    namespace: dict = {}
    start = conf.index("\ntb_pending_modules") + 1
    exec(conf[start:], namespace)  # the two lists only (plain literals)
    for name in namespace["tb_pending_modules"] + namespace["tb_finished_modules"]:
        path = ROOT.joinpath(*name.split("."))
        assert path.with_suffix(".py").is_file() or (path / "__init__.py").is_file(), name
