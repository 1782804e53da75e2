"""Downstream utility of generated volumes: does training on a generator's volumes help a real task?

Two protocols, each named and versioned (:mod:`.protocol`): ``seg-tstr`` (train a segmentation network
on synthetic (volume, conditioning mask) pairs, test on real) and ``probe`` (a linear probe on frozen
features, trained on synthetic volumes with their prompt-derived labels, AUROC on real volumes). The
API is :func:`trace_bench.utility.run.run_utility`; ``trace-bench utility`` is its command line; the
report's tables and plot come from :func:`reports.utility.render_utility`.

One job per module: ``config`` (the ``[utility]`` section), ``protocol`` (declarations), ``data`` (which
pairs each arm trains on, the held-out test set), ``labels`` (the probe's labels CSV), ``arrays`` (pairs
on the protocol grid, cached), ``seg`` (training and scoring), ``resume`` (checkpoints, finished jobs),
``probe`` (features, fits, AUROC intervals), ``summary`` (seg statistics), ``results`` (files), ``run`` (the
lifecycle), ``stage`` (the ``[utility]`` section of a run config, after the scoring). The file names are
:mod:`trace_bench.results.utility_layout`; the report's section is :mod:`reports.utility`.
"""
