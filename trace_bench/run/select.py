"""Which metrics a run computes: the registry of metric classes (with the user's plug-ins) and the
``--metrics`` vocabulary.

``--metrics`` takes a comma-separated list of:

* a metric name (``segmentation``, ``fid``, ...);
* an output column name, mapped to the metric that writes it (``dice``, ``jaccard``, ``hd95``,
  ``dice[lungs]`` -> ``segmentation``; ``fid_2p5d_axial`` -> ``fid_2p5d``);
* ``weight-free``: every metric of the default set that needs no weights file (no network): computable on any
  install (the expensive or opt-in weight-free metrics, e.g. ``frd``, ``paired_fidelity``, are named explicitly);
* ``available`` (the default): every metric whose weights are installed; the others are listed in
  the report as not computed, with the command that installs them;
* ``all``: every registered metric; missing weights stop the run in preflight unless
  ``--skip-unavailable``.
"""

from __future__ import annotations

import importlib
from typing import Iterable

from ..errors import ConfigError, did_you_mean
from ..metrics.base import METRICS, RunContext

KEYWORDS = {
    "available": "every metric whose weights are installed (default; the others are listed in the report), "
                 "except the expensive or opt-in ones (fid_2p5d, fid_maisi, fid_vlm3d, the 3D CT features, frd, "
                 "diversity, paired fidelity, anatomy): name them, or use all",
    "all": "every registered metric (missing weights stop the run unless --skip-unavailable)",
    "weight-free": "every metric of the default set that needs no weights file (no network)",
}


def load_metric_registry(plugins: Iterable[str] = ()) -> None:
    """Import every module that registers metrics, then the user's ``plugins``: ``"module"``
    (imported) or ``"module:function"`` (imported, then the function is called; it should register
    with ``overwrite=True`` so calling it twice is harmless)."""
    import trace_bench.metrics  # noqa: F401

    for item in plugins:
        mod, _, fn = str(item).partition(":")
        try:
            module = importlib.import_module(mod)
        except ImportError as e:
            raise ConfigError(f"plugins: cannot import {mod!r} ({e}); is it installed or on PYTHONPATH?") from None
        if fn:
            func = getattr(module, fn, None)
            if not callable(func):
                raise ConfigError(f"plugins: {mod!r} has no function {fn!r}")
            func()


def output_owners() -> dict[str, str]:
    """Output column name -> the metric that writes it."""
    owners: dict[str, str] = {}
    for name, cls in METRICS.items():
        for col in cls.outputs:
            owners.setdefault(col, name)
    return owners


def segmenter_choices() -> list[str]:
    from ..segmenters import SEGMENTERS

    return SEGMENTERS.names()


def resolve_metric_names(items: Iterable[str], plugins: Iterable[str] = (), ctx: RunContext | None = None) -> list[str]:
    """Expand keywords and output names into metric names (sorted, deduplicated). ``available``
    keeps every metric here: the preflight skips (and lists) those whose weights are missing."""
    load_metric_registry(plugins)
    ctx = ctx or RunContext()
    owners = output_owners()
    chosen: set[str] = set()
    for item in items:
        item = str(item).strip()
        if item == "all":
            chosen.update(METRICS.names())
        elif item == "available":
            chosen.update(n for n, cls in METRICS.items() if cls.in_default_set)
        elif item == "weight-free":
            chosen.update(n for n, cls in METRICS.items() if cls.in_default_set and not cls().required_weights(ctx))
        elif item in METRICS:
            chosen.add(item)
        elif item in owners:
            chosen.add(owners[item])
        elif item.split("[", 1)[0] in owners:
            chosen.add(owners[item.split("[", 1)[0]])
        else:
            vocab = list(KEYWORDS) + METRICS.names() + sorted(owners)
            hint = did_you_mean(item, vocab, n=3, quote=True)
            raise ConfigError(f"unknown metric {item!r}. Expected a metric ({', '.join(METRICS.names())}), an output "
                              f"column (e.g. dice, hd95) or one of {', '.join(KEYWORDS)}.{hint}")
    return sorted(chosen)
