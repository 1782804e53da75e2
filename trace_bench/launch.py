"""What ``trace-bench run`` starts: the shipped demo when no inputs are named, one rank of a torchrun
job when started by torchrun, else a plain run (:func:`trace_bench.run.pipeline.run`). This is the
level above the run core: the core knows nothing of the demo or of process launchers."""

from __future__ import annotations

from .config import RunConfig
from .errors import ConfigError
from .run.pipeline import RunResult


def launch(config: RunConfig, *, console=None, report: bool = True) -> RunResult | None:
    """Run ``config`` (rank 0 of a torchrun job returns the result, other ranks None)."""
    from .run.console import stderr_console
    from .run.distributed import run_distributed, torchrun_env

    console = console or stderr_console()
    notes: tuple[str, ...] = ()
    extra_skipped: dict[str, str] = {}
    if config.uses_demo and config.shard is not None:
        raise ConfigError("--shard needs explicit inputs (--reference / --method): each demo run writes its own "
                          "demo inputs, so demo shards cannot be merged")
    distributed = torchrun_env()
    from .utility.stage import run_stage, utility_config

    utility = utility_config(config, distributed=distributed is not None)  # checked before anything runs
    if config.uses_demo:
        from .results.stamp import check_out_folder

        check_out_folder(config.out, force=config.force)  # before the demo writes its inputs into OUT
        config, notes, extra_skipped = _demo_config(config, console, distributed)
    if distributed is not None:
        return run_distributed(config, console=console, report=report, notes=notes, extra_skipped=extra_skipped)
    from .run.pipeline import run

    result = run(config, console=console, report=report, notes=notes, extra_skipped=extra_skipped)
    if utility is not None and report:
        failed = run_stage(result.out, config, utility, console)
        if failed:
            result.stats["utility_error"] = failed
    return result


def run_demo(out, *, seed: int = 0, workers: int = 1, progress: bool = True, console=None, **overrides):
    """``trace-bench demo --out OUT`` as a function; returns the :class:`~trace_bench.run.pipeline.RunResult`."""
    cfg = RunConfig(out=str(out), seed=seed, workers=workers, progress=progress).replace(**overrides)
    return launch(cfg, console=console)


def _demo_config(config: RunConfig, console, distributed) -> tuple[RunConfig, tuple[str, ...], dict[str, str]]:
    """The demo's inputs (under torchrun, rank 0 writes them and broadcasts the config)."""
    from .demo import prepare_demo

    if distributed is None:
        cfg, notes, skipped = prepare_demo(config, console=console)
        return cfg, tuple(notes), skipped
    import torch.distributed as dist

    from .run.distributed import check_ranks

    if not dist.is_initialized():
        import datetime
        import os

        timeout = datetime.timedelta(seconds=float(os.environ.get("TRACE_BENCH_DIST_TIMEOUT_S", 48 * 3600)))
        dist.init_process_group(backend=os.environ.get("TRACE_BENCH_DIST_BACKEND", "gloo"), timeout=timeout)
    box: list = [None]
    problem = None
    if dist.get_rank() == 0:
        try:
            cfg0, notes, skipped = prepare_demo(config, console=console)
            box = [(cfg0.to_dict(), notes, skipped)]
        except Exception as err:  # noqa: BLE001
            problem = f"rank 0: {type(err).__name__}: {err}"
    check_ranks(dist, problem)
    dist.broadcast_object_list(box, src=0)
    cfg_dict, notes, skipped = box[0]
    return RunConfig(**cfg_dict), tuple(notes), skipped
