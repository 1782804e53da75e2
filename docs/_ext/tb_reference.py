"""Reference pages generated from the code at build time, so they cannot drift from it.

Each ``*_reference()`` function returns reStructuredText built from a registry or from the CLI itself:

* :func:`metric_reference` from the metric registry (``trace_bench.metrics.base.METRICS``): what each
  metric measures, its columns (unit, direction), options (defaults, ``--fast`` values), the parts of
  its protocol id with their meaning, its weights and its references;
* :func:`cli_reference` from the typer app (``trace_bench.cli.app``, through click's introspection);
* :func:`adapter_reference`, :func:`segmenter_reference`, :func:`weights_reference` from their
  registries.

The Sphinx directives ``tb-metrics``, ``tb-cli``, ``tb-adapters``, ``tb-segmenters`` and ``tb-weights``
insert them (``docs/reference/*.rst``); ``tests/project/test_docs.py`` checks that every registered name appears.
Nothing here loads a network: metrics are instantiated with their default options only (no ``setup``).
"""

from __future__ import annotations

import inspect
import re
from typing import Any, Callable, Iterable

# ---------------------------------------------------------------------------------------------- text helpers
_PROSE_SPECIAL = re.compile(r"([\\*|_`])")


def rst_text(text: str) -> str:
    """Plain help text (CLI help, registry descriptions) as reST: ```x``` becomes a literal, every other
    character that reST would read as markup is escaped, whitespace is collapsed to one line."""
    text = " ".join(str(text).split())
    out = []
    for i, part in enumerate(re.split(r"`([^`]+)`", text)):
        if i % 2:
            out.append(f"``{part}``" if "``" not in part else _PROSE_SPECIAL.sub(r"\\\1", part))
        else:
            out.append(_PROSE_SPECIAL.sub(r"\\\1", part))
    return "".join(out)


def literal(value: Any) -> str:
    """A value as an inline literal (never empty: reST refuses ````````)."""
    s = str(value)
    if s == "":
        return "(empty)"
    if "``" in s or s != s.strip():
        return rst_text(repr(s))
    return f"``{s}``"


def heading(text: str, char: str) -> list[str]:
    return [text, char * max(len(text), 3), ""]


def list_table(header: list[str], rows: Iterable[list[str]], widths: list[int] | None = None) -> list[str]:
    """A ``list-table`` directive (cells are reST already)."""
    rows = list(rows)
    lines = [".. list-table::", "   :header-rows: 1"]
    if widths:
        lines.append("   :widths: " + " ".join(str(w) for w in widths))
    lines.append("")
    for row in [header, *rows]:
        for j, cell in enumerate(row):
            cell = cell if str(cell).strip() else "\\-"
            lines.append(f"   {'*' if j == 0 else ' '} - {cell}")
    lines.append("")
    return lines


def label(kind: str, name: str) -> str:
    """The reST label of a registry entry (``tb-metric-fid``), for ``:ref:`` links between pages."""
    return f"tb-{kind}-" + re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def ref(kind: str, name: str) -> str:
    return f":ref:`{name} <{label(kind, name)}>`"


def docstring_of(obj: Any) -> str:
    """The object's own docstring (not inherited from a base class), dedented; '' when none."""
    doc = obj.__dict__.get("__doc__") if isinstance(obj, type) else getattr(obj, "__doc__", None)
    return inspect.cleandoc(doc) if doc else ""


# ---------------------------------------------------------------------------------------------- metrics
def _direction(higher: bool | None, closest: bool) -> str:
    if closest:
        return "closest to the reference (GT row) is best"
    return {True: "higher is better (↑)", False: "lower is better (↓)"}.get(higher, "no direction (·)")


def _protocol_parts(metric: Any, ctx: Any) -> tuple[list[tuple[str, str]], bool]:
    """The metric's protocol-id parts with their meaning: ``protocol_legend`` where the metric layer
    declares it, else the id split at ``|`` (meanings unknown). Returns (parts, has_meanings)."""
    legend = getattr(metric, "protocol_legend", None)
    if callable(legend):
        try:
            return [(str(t), str(m)) for t, m in legend(ctx)], True
        except Exception as e:  # noqa: BLE001 - a broken legend shows as such, never a failed build
            return [(metric.protocol_id(ctx), f"(protocol_legend failed: {type(e).__name__}: {e})")], False
    pid = metric.protocol_id(ctx)
    return [(p, "") for p in pid.split("|") if p], False


def _cost(cls: type) -> str:
    """The metric's declared cost (a ``cost`` class attribute: a string, or a mapping device -> text)."""
    cost = getattr(cls, "cost", None)
    if not cost:
        return ""
    if isinstance(cost, dict):
        return "; ".join(f"{k}: {v}" for k, v in cost.items())
    return str(cost)


def _references(cls: type) -> list[str]:
    refs = getattr(cls, "references", None)
    if not refs:
        return []
    return [refs] if isinstance(refs, str) else [str(r) for r in refs]


def metric_entries() -> list[tuple[str, type]]:
    """Every registered metric class, by name (the registry loaded the way a run loads it)."""
    from trace_bench.metrics.base import METRICS
    from trace_bench.run.select import load_metric_registry

    load_metric_registry(())
    return METRICS.items()


def metric_reference() -> list[tuple[str, list[str]]]:
    """reST blocks ``(source name, lines)``, one per metric plus an introduction. ``source name`` is
    where warnings about a block point (``docstring of trace_bench.metrics.fid.FID`` for a class
    docstring), so that the build can tell docstring problems from page problems."""
    from trace_bench.metrics.base import RunContext
    from trace_bench.run.select import KEYWORDS

    ctx = RunContext()
    entries = metric_entries()
    blocks: list[tuple[str, list[str]]] = []
    intro = ["Every registered metric, generated from the metric registry when these pages are built. "
             "Names go to ``--metrics``; options to ``--option METRIC.NAME=VALUE`` or a TOML "
             "``[options.METRIC]`` table. Besides names, ``--metrics`` accepts output column names "
             "(``dice`` selects ``segmentation``) and these keywords:", ""]
    intro += list_table(["keyword", "selects"], ([literal(k), rst_text(v)] for k, v in KEYWORDS.items()), [1, 4])
    intro += list_table(
        ["metric", "kind", "table", "columns", "weights", "default set"],
        ([ref("metric", n), c.kind, c.table, ", ".join(literal(o) for o in c.outputs),
          ", ".join(ref("weights", w) for w in c().required_weights()) or "none (weight-free)",
          "yes" if c.in_default_set else "only when named"] for n, c in entries), [3, 2, 2, 5, 4, 2])
    blocks.append(("metric reference (introduction)", intro))
    for name, cls in entries:
        m = cls()
        lines = [f".. _{label('metric', name)}:", ""] + heading(name, "-")
        lines += [rst_text(cls.description or "(no description declared)"), ""]
        needs = [w for w in ("the reference set (all its volumes)" if cls.kind == "distribution" else "",
                             "each case's reference volume" if cls.needs_reference else "",
                             "a prompt per case (``--prompts``)" if cls.needs_prompt else "") if w]
        facts = [("kind", f"``{cls.kind}`` ({'one value per case, averaged over cases' if cls.kind == 'case' else 'one value per method from all its cases'})"),
                 ("table", f"``{cls.table}``"),
                 ("needs", ", ".join(needs) or "the generated volumes only"),
                 ("in ``--metrics available``", "yes, when its weights are installed" if cls.in_default_set
                  else "no: name it (or use ``all``)"),
                 ("weights", ", ".join(ref("weights", w) for w in m.required_weights()) or "none (weight-free)"),
                 ("Python", f":class:`{cls.__module__}.{cls.__qualname__}`")]
        cost = _cost(cls)
        if cost:
            facts.append(("cost", rst_text(cost)))
        lines += [f":{k}: {v}" for k, v in facts] + [""]
        lines += ["**Columns**", ""]
        lines += list_table(
            ["column", "header", "unit", "direction", "decimals"],
            ([literal(c), rst_text(o.label or c), rst_text(o.unit or "-"),
              _direction(o.higher_is_better, bool(getattr(o, "closest_to_reference", False))),
              str(getattr(o, "digits", "")) or "-"] for c, o in cls.outputs.items()), [3, 3, 2, 4, 1])
        if cls.options:
            lines += ["**Options**", ""]
            lines += list_table(
                ["option", "default", "``--fast``", "accepts", "meaning"],
                ([literal(f"{name}.{o.name}"), _value(o.default),
                  _value(o.fast) if o.fast is not None else "-", _accepts(o), rst_text(o.help)]
                 for o in cls.options), [3, 2, 2, 3, 6])
        parts, meanings = _protocol_parts(m, ctx)
        lines += ["**Protocol id** (with the default options and run settings; every result row and cache key "
                  "carries it)", ""]
        if meanings:
            lines += list_table(["part", "meaning"], ([literal(t), rst_text(mn) or "-"] for t, mn in parts), [2, 5])
        else:
            lines += [f"``{m.protocol_id(ctx)}``" if "``" not in m.protocol_id(ctx) else rst_text(m.protocol_id(ctx)),
                      "", "Parts: " + ", ".join(literal(t) for t, _ in parts) + ". Their meanings are listed here "
                      "once the metric declares a protocol legend (``Metric.protocol_legend``).", ""]
        changed = " An option changed from its default is appended as ``|opt:NAME=VALUE``." if cls.options else ""
        lines += [f"Reports spell out each part in their protocol legend.{changed}", ""]
        refs = _references(cls)
        if refs:
            lines += ["**References**", ""] + [f"* {rst_text(r)}" for r in refs] + [""]
        blocks.append((f"metric reference: {name}", lines))
        doc = docstring_of(cls)
        if doc:
            blocks.append((f"docstring of {cls.__module__}.{cls.__qualname__}",
                           ["**Definition and references** (from the class docstring)", "", *doc.splitlines(), ""]))
        else:
            blocks[-1][1].extend([f"**Definition and references**: the docstring of :mod:`{cls.__module__}`.", ""])
    return blocks


def _value(v: Any) -> str:
    """An option value as it is written on the command line (strings bare, others as Python writes them)."""
    return literal(v if isinstance(v, str) else repr(v))


def _accepts(o: Any) -> str:
    if o.choices:
        return "one of " + ", ".join(literal(c) for c in o.choices)
    t = getattr(o.type, "__name__", str(o.type))
    bounds = []
    if o.minimum is not None:
        bounds.append(f">= {o.minimum:g}")
    if o.maximum is not None:
        bounds.append(f"<= {o.maximum:g}")
    special = (" or " + ", ".join(literal(s) for s in o.special)) if o.special else ""
    kind = "checked by its parser" if o.parser is not None else f"``{t}``"
    return kind + (f" ({', '.join(bounds)})" if bounds else "") + special


# ---------------------------------------------------------------------------------------------- weights
def weights_entries() -> list[tuple[str, Any]]:
    from trace_bench.weights import WEIGHTS

    return WEIGHTS.items()


def _mib(n: int | None) -> str:
    return "not pinned" if n is None else f"{n:,} bytes ({n / 2**20:.1f} MiB)"


def weights_reference() -> list[tuple[str, list[str]]]:
    lines = ["Every pretrained file trace-bench knows, generated from the weights registry "
             "(``trace_bench.weights``). ``trace-bench weights list`` says where each resolves on your machine.", ""]
    lines += list_table(["entry", "file", "format", "licence", "used by"],
                        ([ref("weights", n), literal(s.filename), literal(_field(s, "format", "-")),
                          rst_text(_field(s, "licence", "unknown")),
                          ", ".join(literal(u) for u in _field(s, "used_by", ())) or "-"] for n, s in weights_entries()),
                        [3, 4, 2, 2, 4])
    blocks = [("weights reference (introduction)", lines)]
    for name, s in weights_entries():
        env_var = _field(s, "env_var", "TRACE_BENCH_WEIGHTS_" + name.upper().replace("-", "_").replace(".", "_"))
        lines = [f".. _{label('weights', name)}:", ""] + heading(name, "-")
        lines += [rst_text(_field(s, "description", "") or "(no description)"), ""]
        url = _field(s, "url", "")
        how = [f"``trace-bench weights fetch {name}`` (download, verify, store in the cache)" if url else "",
               f"``trace-bench weights import {name} FILE`` (a file obtained elsewhere, checked first)",
               f"``--weights {name}=PATH`` or ``${env_var}``"]
        package = _field(s, "package_resource", None)
        if package:
            how.insert(0, f"ships inside the Python package ``{package[0]}`` (found with no download)")
        if _field(s, "provider", None):
            how.insert(0, "built from an installed package on first use (see the provenance below)")
        sha, prefix = _field(s, "sha256", None), _field(s, "sha256_prefix", None)
        facts = [("file", literal(s.filename)), ("format", literal(_field(s, "format", "-"))),
                 ("size", _mib(_field(s, "size", None))),
                 ("sha256", literal(sha) if sha else
                  (f"prefix {literal(prefix)} (from the published file name)" if prefix
                   else "not pinned: the run records the file's own sha256")),
                 ("licence", rst_text(_field(s, "licence", "unknown"))), ("URL", rst_text(url) if url else "-")]
        facts += [("mirror", rst_text(u)) for u in _field(s, "mirrors", ())]
        facts += [("used by", ", ".join(ref("metric", u) if _is_metric(u) else literal(u)
                                        for u in _field(s, "used_by", ())) or "-"),
                  ("environment variable", literal(env_var))]
        lines += [f":{k}: {v}" for k, v in facts] + [""]
        lines += ["**How to get it**", ""] + [f"* {h}" for h in how if h] + [""]
        if _field(s, "provenance", ""):
            lines += ["**Provenance of the pin**: " + rst_text(s.provenance), ""]
        blocks.append((f"weights reference: {name}", lines))
    return blocks


def _field(obj: Any, name: str, default: Any) -> Any:
    """A registry entry's field, or ``default`` where this version of the entry has none (the reference
    renders what the registry declares, whatever fields it has)."""
    value = getattr(obj, name, default)
    return default if value is None and default is not None else value


_METRIC_NAMES: set[str] | None = None


def _is_metric(name: str) -> bool:
    global _METRIC_NAMES
    if _METRIC_NAMES is None:
        _METRIC_NAMES = {n for n, _ in metric_entries()}
    return name in _METRIC_NAMES


# ---------------------------------------------------------------------------------------------- adapters
def adapter_entries() -> list[tuple[str, type]]:
    import baselines  # noqa: F401  (registers every adapter)
    from baselines.base import ADAPTERS

    return ADAPTERS.items()


def _mm(t: Any) -> str:
    return " x ".join(f"{x:g}" for x in t) + " mm" if t else "-"


def adapter_reference() -> list[tuple[str, list[str]]]:
    lines = ["Readers of other generators' outputs (``--method NAME=DIR:FORMAT``, ``--format``), generated from "
             "the adapter registry (``baselines.base.ADAPTERS``). ``trace-bench adapters`` prints the same.", ""]
    lines += list_table(["adapter", "convention", "geometry when the file has none"],
                        ([ref("adapter", n), literal(c.default_convention) if c.default_convention else "detected / "
                          "``--convention``", _geometry(c)] for n, c in adapter_entries()), [2, 2, 5])
    blocks = [("adapter reference (introduction)", lines)]
    for name, cls in adapter_entries():
        lines = [f".. _{label('adapter', name)}:", ""] + heading(name, "-")
        lines += [rst_text(cls.description or "(no description)"), ""]
        facts = [("intensity", (literal(cls.default_convention) if cls.default_convention else "detected, or "
                                "``--convention``") + (f": {rst_text(cls.convention_note)}" if cls.convention_note else "")),
                 ("geometry", _geometry(cls)),
                 ("Python", f":class:`{cls.__module__}.{cls.__qualname__}`")]
        if cls.mask_threshold is not None:
            facts.insert(2, ("soft masks", f"thresholded at {cls.mask_threshold:g}"))
        lines += [f":{k}: {v}" for k, v in facts] + [""]
        blocks.append((f"adapter reference: {name}", lines))
        doc = docstring_of(cls)
        if doc:
            blocks.append((f"docstring of {cls.__module__}.{cls.__qualname__}", [*doc.splitlines(), ""]))
    return blocks


def _geometry(cls: type) -> str:
    parts = []
    if cls.default_spacing:
        parts.append(f"spacing {_mm(cls.default_spacing)}")
    if cls.default_fov_mm:
        parts.append(f"field of view {_mm(cls.default_fov_mm)} / shape")
    if cls.geometry_note:
        parts.append(rst_text(cls.geometry_note))
    return "; ".join(parts) or "from the file (or ``--spacing``)"


# ---------------------------------------------------------------------------------------------- segmenters
def segmenter_entries() -> list[tuple[str, type]]:
    from trace_bench.segmenters import SEGMENTERS

    return SEGMENTERS.items()


def segmenter_reference() -> list[tuple[str, list[str]]]:
    from trace_bench.segmenters import CLASS_CHOICES

    lines = ["Segmenters turn a CT into a label map for the anatomical-fidelity metrics (``--segmenter``, "
             "``trace-bench segment``), generated from the segmenter registry "
             "(``trace_bench.segmenters.SEGMENTERS``). Granularity ``--classes``: "
             + ", ".join(literal(c) for c in CLASS_CHOICES) + ".", ""]
    lines += list_table(["segmenter", "weights", "what it is"],
                        ([ref("segmenter", n), ", ".join(ref("weights", w) for w in c.weights) or "none",
                          rst_text(c.description)] for n, c in segmenter_entries()), [2, 2, 6])
    blocks = [("segmenter reference (introduction)", lines)]
    for name, cls in segmenter_entries():
        lines = [f".. _{label('segmenter', name)}:", ""] + heading(name, "-")
        lines += [rst_text(cls.description or "(no description)"), ""]
        lines += [f":weights: {', '.join(ref('weights', w) for w in cls.weights) or 'none (weight-free)'}",
                  f":Python: :class:`{cls.__module__}.{cls.__qualname__}`", ""]
        blocks.append((f"segmenter reference: {name}", lines))
        mod = inspect.getmodule(cls)
        doc = docstring_of(mod) if mod is not None else ""
        if doc:
            blocks.append((f"docstring of {mod.__name__}", [*doc.splitlines(), ""]))
    return blocks


# ---------------------------------------------------------------------------------------------- CLI
def cli_group():
    """The click object behind ``trace-bench`` (built by typer from ``trace_bench.cli.app``)."""
    import typer.main

    from trace_bench.cli import app

    return typer.main.get_command(app)


def cli_commands() -> list[tuple[str, Any, Any]]:
    """``(full name, click command, click context)`` for every command and sub-command, depth first,
    in the order ``trace-bench --help`` lists them (hidden ones left out)."""
    root = cli_group()
    out: list[tuple[str, Any, Any]] = []

    def walk(group: Any, ctx: Any, prefix: str) -> None:
        for name in group.list_commands(ctx):
            cmd = group.commands.get(name)
            if cmd is None or getattr(cmd, "hidden", False):
                continue
            full = f"{prefix} {name}".strip()
            sub = cmd.context_class(cmd, info_name=name, parent=ctx)
            out.append((full, cmd, sub))
            if hasattr(cmd, "commands"):  # a group (typer ships its own copy of click: no isinstance)
                walk(cmd, sub, full)

    walk(root, root.context_class(root, info_name="trace-bench"), "")
    return out


def _param_row(p: Any, ctx: Any) -> list[str] | None:
    if getattr(p, "hidden", False):
        return None
    if p.param_type_name == "argument":
        name = (p.metavar or p.name or "").upper()
        req = "required" if p.required else "optional"
        many = ", repeatable" if getattr(p, "nargs", 1) == -1 or getattr(p, "multiple", False) else ""
        return [literal(name), f"argument ({req}{many})", "-", rst_text(getattr(p, "help", "") or "")]
    opts = " / ".join(literal(o) for o in [*p.opts, *p.secondary_opts])
    if p.is_flag:
        kind = "flag"
    else:
        metavar = p.metavar or p.display_type(ctx).strip("<>")
        kind = literal(metavar) + (", repeatable" if p.multiple else "")
    default = p.default
    if p.required:
        dflt = "required"
    elif default is None or default == () or callable(default) or p.show_default is False:
        dflt = "-"
    elif p.is_flag and p.secondary_opts:
        dflt = literal(p.opts[0] if default else p.secondary_opts[0])
    else:
        dflt = literal(default if not isinstance(default, (list, tuple)) else ",".join(map(str, default)))
    env = f" (environment: ``{p.envvar}``)" if getattr(p, "envvar", None) else ""
    return [opts, kind, dflt, rst_text(p.help or "") + env]


def cli_reference() -> list[tuple[str, list[str]]]:
    root = cli_group()
    lines = ["Every command of ``trace-bench``, generated from the command line itself (typer / click) when "
             "these pages are built: the same text as ``trace-bench COMMAND --help``. Root options: "
             + ", ".join(literal(o) for p in root.params for o in p.opts if not getattr(p, "hidden", False))
             + " (``--debug`` is accepted after the command too).", ""]
    cmds = cli_commands()
    lines += list_table(["command", "what it does"],
                        ([ref("cli", full), rst_text(cmd.get_short_help_str(limit=200))] for full, cmd, _ in cmds), [2, 6])
    blocks = [("CLI reference (introduction)", lines)]
    for full, cmd, ctx in cmds:
        lines = [f".. _{label('cli', full)}:", ""] + heading(f"trace-bench {full}", "-")
        usage = " ".join(cmd.collect_usage_pieces(ctx))
        lines += [".. code-block:: text", "", f"   trace-bench {full} {usage}".rstrip(), ""]
        help_text = inspect.cleandoc(cmd.help or "")
        for para in re.split(r"\n\s*\n", help_text):
            if para.strip():
                lines += [rst_text(para), ""]
        rows = [r for r in (_param_row(p, ctx) for p in cmd.params) if r is not None]
        if rows:
            lines += list_table(["option", "value", "default", "meaning"], rows, [3, 2, 2, 6])
        blocks.append((f"CLI reference: trace-bench {full}", lines))
    return blocks


# ---------------------------------------------------------------------------------------------- all of them
REFERENCES: dict[str, Callable[[], list[tuple[str, list[str]]]]] = {
    "metrics": metric_reference,
    "cli": cli_reference,
    "adapters": adapter_reference,
    "segmenters": segmenter_reference,
    "weights": weights_reference,
}


def reference_text(kind: str) -> str:
    """One generated reference as one reST string (what tests read)."""
    return "\n".join(line for _, block in REFERENCES[kind]() for line in block)
