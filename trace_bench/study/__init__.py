"""Reader study kit (the paper's Table 3): blinded, randomised HTML packets for radiologists and the
scoring of their answers.

* :mod:`.criteria` -- the questions (the paper's eight 1..10 criteria + an optional real/generated question);
* :mod:`.packet` -- sampling, blinding, per-rater orders, pixel encoding, ``key.json`` and its SHA-256;
* :mod:`.viewer_html` -- the self-contained offline viewer each rater receives;
* :mod:`.score` -- unblinding, completeness, Table 3 (Markdown / LaTeX / CSV), detection rate;
* :mod:`.agreement` -- ICC(2,1) with its F-based interval, quadratic-weighted kappa, Wilson interval.

Submodules are imported where used (the CLI stays light).
"""
