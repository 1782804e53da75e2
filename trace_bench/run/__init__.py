"""The run core: one file per job, one lifecycle.

* :mod:`.select`: which metrics (registry, plug-ins, the ``--metrics`` vocabulary);
* :mod:`.plan`: the frozen :class:`~.plan.Plan` (preflight, input hashes, cache keys, manifest);
* :mod:`.assign`: which cases a shard / torchrun rank scores;
* :mod:`.execute`: the per-case stage (worker pool; workers receive the plan);
* :mod:`.artifacts`: the report's per-case plot inputs (metric hooks);
* :mod:`.aggregate`: merged states, means, intervals -> the tables;
* :mod:`.provenance`: what produced the numbers;
* :mod:`.lock`: one run per output folder;
* :mod:`.pipeline`: :func:`~.pipeline.run` and the shared :func:`~.pipeline.finish`;
* :mod:`.distributed` (torchrun ranks) and :mod:`.merge` (shard folders) end in the same ``finish``.

The demo and the torchrun dispatch sit above this package (:mod:`trace_bench.launch`).
"""

from .aggregate import aggregate
from .plan import Plan, make_context, manifest_dict, plan_run
from .pipeline import RunResult, finish, run, strict_failures

__all__ = ["Plan", "RunResult", "aggregate", "finish", "make_context", "manifest_dict", "plan_run", "run",
           "strict_failures"]
