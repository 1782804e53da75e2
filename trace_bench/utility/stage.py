"""The ``[utility]`` section of a run config (``trace-bench run --config FILE``): after the scoring, the
utility protocols run into ``OUT/utility/`` and the report is rendered again with their tables.

:func:`utility_config` checks the section before the run starts (a mistake there stops nothing that
ran); :func:`run_stage` runs it once the run has finished. The summary files it writes are named in the
run's stamp (:data:`trace_bench.results.utility_layout.SUMMARY_FILES`), so the cleanup of a later,
different run removes them like the run's other outputs; the training jobs (checkpoints) stay, as do
the files of a ``trace-bench utility`` command the run did not start.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..config import RunConfig
from ..errors import ConfigError, TraceBenchError
from ..results import utility_layout as layout
from ..results.stamp import add_to_stamp, stamp_outputs
from .config import UtilityConfig, utility_from_dict

__all__ = ["run_stage", "utility_config"]


def utility_config(config: RunConfig, *, distributed: bool = False) -> UtilityConfig | None:
    """The run's ``[utility]`` section, validated (None without one). Plain runs only: a torchrun job or a
    shard runs it afterwards with ``trace-bench utility --config``."""
    if not config.utility:
        return None
    cfg = utility_from_dict(config.utility, source="[utility]")
    if distributed or config.shard is not None:
        where = "under torchrun" if distributed else "with --shard"
        raise ConfigError(f"[utility]: not run {where} (the scoring is split there); remove the section and run "
                          "`trace-bench utility --config FILE --out OUT` once the run (or merge) is done")
    return cfg


def run_stage(out: Path, config: RunConfig, cfg: UtilityConfig, console=None) -> str | None:
    """Run the utility protocols of a finished run in ``out``, stamp their summary files, render the report
    again with their section. Returns None, or the one-line reason it failed (the run's outputs stay)."""
    from reports import render_report

    from ..run.pipeline import report_viewer_stacks
    from .run import run_utility

    def log(text: str) -> None:
        if console is not None and config.progress:
            console.print(text, highlight=False, markup=False)

    if console is not None and config.progress:
        console.print(f"[bold]utility[/bold]: {', '.join(cfg.protocols)} ({cfg.variant}) into {out / layout.FOLDER}")
    try:
        res = run_utility(config, cfg, out=out, progress=config.progress, log=log)
    except TraceBenchError as err:
        return f"utility: {err}"
    o = out.resolve()
    names = [Path(p).resolve().relative_to(o).as_posix() for p in res.files if Path(p).resolve().is_relative_to(o)]
    add_to_stamp(out, [n for n in names if Path(n).name in layout.SUMMARY_FILES])
    manifest: dict[str, Any] = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    render_report(out, plots=config.plots, published=config.published, tex_layout=config.tex_layout,
                  tex_width=config.tex_width, viewer_stacks=report_viewer_stacks(out, config, manifest, console))
    stamp_outputs(out)
    return None
