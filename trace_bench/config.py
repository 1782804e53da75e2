"""One source of defaults for ``trace-bench run`` (STYLE.md principle 8).

:class:`RunConfig` is used by the Python API (:func:`trace_bench.runner.run`), by the CLI (every
flag maps to one field, the flag's default is the field's default) and by TOML files
(``--config FILE``): a benchmark is one file under version control. Precedence: dataclass
defaults < config file < CLI flags. The effective configuration is written back into the
output directory as ``config.toml`` and ``trace-bench run --config OUT/config.toml`` repeats the run.

Example ``bench.toml``::

    out = "results/ckpt-42"
    reference = "data/ct-rate/valid"
    metrics = ["all"]              # or ["weight-free"], or names: ["temporal_flickering", "fid"]
    segmenter = "threshold"
    skip_unavailable = false

    [methods]                      # NAME = "DIR[:FORMAT]" (FORMAT = an adapter name, default nifti)
    TRACE = "gen/trace"
    GenerateCT = "gen/generatect:generatect"

    [profiles]                     # NAME = "profile.json" written by `trace-bench profile`
    TRACE = "profiles/trace.json"
"""

from __future__ import annotations

import dataclasses
import math
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Iterable

from .errors import ConfigError

DEFAULT_OUT = "trace-bench-out"


@dataclass
class RunConfig:
    """Every setting of a benchmark run. Field names are the TOML keys; ``--flag-name`` on the CLI."""

    #: output directory (results, caches, reports)
    out: str = DEFAULT_OUT
    #: folder of reference (real) volumes; None with no methods = the shipped demo data
    reference: str | None = None
    #: adapter reading the reference folder
    reference_format: str = "nifti"
    #: generated folders: method name -> "DIR[:FORMAT]"
    methods: dict[str, str] = field(default_factory=dict)
    #: metric plug-in names, or "all" / "weight-free"
    metrics: list[str] = field(default_factory=lambda: ["all"])
    #: segmenter used by the segmentation metrics (registry ``trace_bench.segmenters.SEGMENTERS``)
    segmenter: str = "threshold"
    #: label granularity for segmentation metrics: "3", "2" or "full"
    classes: str = "3"
    #: folder of label maps for the reference volumes (paired by case id)
    reference_masks: str | None = None
    #: method name -> folder of label maps for that method's volumes
    method_masks: dict[str, str] = field(default_factory=dict)
    #: CSV (case_id,prompt) or JSON with the text prompt of every case
    prompts: str | None = None
    #: "cpu", "cuda" or "cuda:N"
    device: str = "cpu"
    #: parallel worker processes for the per-case stage (1 = in process)
    workers: int = 1
    #: run what is available and list the metrics whose weights/inputs are missing in the report
    skip_unavailable: bool = False
    #: explicit weights files: registry name -> path
    weights: dict[str, str] = field(default_factory=dict)
    #: profile JSON files from `trace-bench profile`: method name -> path (adds fps / vram rows)
    profiles: dict[str, str] = field(default_factory=dict)
    #: seed of every random choice (bootstrap resampling)
    seed: int = 0
    #: bootstrap resamples for CIs of per-case metrics
    bootstrap: int = 1000
    #: bootstrap resamples for CIs of distribution metrics (each resample recomputes the metric)
    bootstrap_distribution: int = 100
    #: confidence level of the intervals
    confidence: float = 0.95
    #: frame protocol: in-plane size of the frames (pixels) and the HU window
    frame_size: int = 256
    hu_window: list[float] = field(default_factory=lambda: [-1000.0, 1000.0])
    #: batch size passed to backbones
    batch_size: int = 32
    #: case shown in montages / per-slice curves / overlays (default: the first paired case)
    plot_case: str | None = None
    #: write plots (PNG) and embed them in the HTML report
    plots: bool = True
    #: show the paper's published Table 1 / Table 2 rows beside ours, labelled "as published"
    published: bool = True
    #: show progress bars on stderr
    progress: bool = True
    #: "I/N": score only shard I of N (1-based) of the cases, assigned by a stable hash of the case
    #: id; combine the N output folders with `trace-bench merge` (see trace_bench.shard)
    shard: str | None = None
    #: Python modules imported before planning, "module" or "module:function" (the function is
    #: called); they register extra metric plug-ins in worker processes, torchrun ranks and merge
    plugins: list[str] = field(default_factory=list)

    # ------------------------------------------------------------------ validation
    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> "RunConfig":
        if isinstance(self.metrics, str):
            self.metrics = [m.strip() for m in self.metrics.split(",") if m.strip()]
        if not self.metrics:
            raise ConfigError("metrics: expected at least one metric name, 'all' or 'weight-free'")
        if int(self.workers) < 1:
            raise ConfigError(f"workers: expected an integer >= 1, got {self.workers}")
        if int(self.bootstrap) < 0 or int(self.bootstrap_distribution) < 0:
            raise ConfigError("bootstrap / bootstrap_distribution: expected integers >= 0")
        if not 0.0 < float(self.confidence) < 1.0:
            raise ConfigError(f"confidence: expected a number in (0, 1), got {self.confidence}")
        if len(self.hu_window) != 2 or not float(self.hu_window[0]) < float(self.hu_window[1]):
            raise ConfigError(f"hu_window: expected [lo, hi] with lo < hi, got {self.hu_window}")
        if int(self.frame_size) < 16:
            raise ConfigError(f"frame_size: expected >= 16 pixels, got {self.frame_size}")
        if self.classes not in ("2", "3", "full"):
            raise ConfigError(f"classes: expected '2', '3' or 'full', got {self.classes!r}")
        if not str(self.device).startswith(("cpu", "cuda")):
            raise ConfigError(f"device: expected 'cpu', 'cuda' or 'cuda:N', got {self.device!r}")
        for name in self.methods:
            if not name or "/" in name or name.upper() == "GT":
                raise ConfigError(f"method name {name!r}: must be non-empty, without '/', and not 'GT' (reserved for the reference)")
        self.hu_window = [float(self.hu_window[0]), float(self.hu_window[1])]
        if isinstance(self.plugins, str):
            self.plugins = [m.strip() for m in self.plugins.split(",") if m.strip()]
        if self.shard is not None:
            parse_shard(self.shard)
        return self

    # ------------------------------------------------------------------ conversions
    @property
    def uses_demo(self) -> bool:
        """No reference and no methods given: run on the shipped demo data."""
        return self.reference is None and not self.methods

    def replace(self, **changes: Any) -> "RunConfig":
        """A copy with some fields changed (``None`` values are ignored, as for unset CLI flags)."""
        clean = {k: v for k, v in changes.items() if v is not None}
        unknown = set(clean) - {f.name for f in fields(self)}
        if unknown:
            raise ConfigError(f"unknown run setting(s): {', '.join(sorted(unknown))}")
        return dataclasses.replace(self, **clean)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_toml(self) -> str:
        """TOML text that :func:`load_config` reads back into an equal config (None fields omitted)."""
        scalars, tables = [], []
        for f in fields(self):
            v = getattr(self, f.name)
            if v is None:
                continue
            if isinstance(v, dict):
                body = "\n".join(f"{_toml_key(k)} = {_toml_value(v[k])}" for k in v)
                tables.append(f"[{f.name}]\n{body}\n" if body else f"[{f.name}]\n")
            else:
                scalars.append(f"{f.name} = {_toml_value(v)}")
        head = "# Effective configuration of this run (trace-bench run --config this-file repeats it)\n"
        return head + "\n".join(scalars) + "\n\n" + "\n".join(tables)


def parse_shard(spec: str) -> tuple[int, int]:
    """``"I/N"`` -> (I, N) with 1 <= I <= N (shards are numbered from 1, like SLURM ``--array=1-N``)."""
    text = str(spec).strip()
    head, sep, tail = text.partition("/")
    try:
        i, n = int(head), int(tail)
    except ValueError:
        i = n = 0
    if not sep or n < 1 or not 1 <= i <= n:
        raise ConfigError(f"shard {spec!r}: expected I/N with 1 <= I <= N, e.g. 1/4 ... 4/4 "
                          "(shards are numbered from 1; with SLURM use --array=1-N and ${SLURM_ARRAY_TASK_ID}/N)")
    return i, n


def _toml_key(k: str) -> str:
    import re

    return k if re.fullmatch(r"[A-Za-z0-9_-]+", k) else _toml_value(k)


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return repr(v)
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    raise ConfigError(f"cannot write {v!r} ({type(v).__name__}) to TOML")


_FIELD_TYPES = {f.name: f for f in fields(RunConfig)}


def config_from_dict(data: dict[str, Any], *, base: RunConfig | None = None, source: str = "config") -> RunConfig:
    """Overlay ``data`` (TOML-shaped) on ``base`` (default: the dataclass defaults)."""
    cfg = dataclasses.replace(base) if base is not None else RunConfig()
    changes: dict[str, Any] = {}
    for key, value in data.items():
        name = key.replace("-", "_")
        if name not in _FIELD_TYPES:
            import difflib

            close = difflib.get_close_matches(name, list(_FIELD_TYPES), n=2)
            hint = f" Did you mean {', '.join(close)}?" if close else ""
            raise ConfigError(f"{source}: unknown setting {key!r}.{hint}")
        default = getattr(RunConfig(), name)
        if isinstance(default, dict):
            if isinstance(value, list):  # ["NAME=VALUE", ...] as on the command line
                value = parse_pairs(value, name)
            if not isinstance(value, dict):
                raise ConfigError(f"{source}: {key} must be a table of name = value, got {value!r}")
            value = {str(k): str(v) for k, v in value.items()}
        elif isinstance(default, list) and isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        elif isinstance(default, bool) and not isinstance(value, bool):
            raise ConfigError(f"{source}: {key} must be true or false, got {value!r}")
        elif isinstance(default, int) and not isinstance(default, bool) and not isinstance(value, int):
            raise ConfigError(f"{source}: {key} must be an integer, got {value!r}")
        elif isinstance(default, float) and not isinstance(value, (int, float)):
            raise ConfigError(f"{source}: {key} must be a number, got {value!r}")
        changes[name] = value
    try:
        return dataclasses.replace(cfg, **changes)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{source}: {e}") from None


def load_config(path: str | Path, *, base: RunConfig | None = None) -> RunConfig:
    """Read a TOML file into a :class:`RunConfig`; relative paths in it stay relative to the CWD."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file {p} does not exist")
    try:
        data = tomllib.loads(p.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{p}: invalid TOML: {e}") from None
    data.pop("toolkit", None)
    return config_from_dict(data, base=base, source=str(p))


def parse_pairs(items: Iterable[str] | None, what: str) -> dict[str, str]:
    """``["A=x", "B=y"]`` -> ``{"A": "x", "B": "y"}`` (order kept); a missing ``=`` is refused."""
    out: dict[str, str] = {}
    for item in items or []:
        if "=" not in item:
            raise ConfigError(f"--{what.replace('_', '-')} {item!r}: expected NAME=VALUE")
        k, v = item.split("=", 1)
        k, v = k.strip(), v.strip()
        if not k or not v:
            raise ConfigError(f"--{what.replace('_', '-')} {item!r}: expected NAME=VALUE")
        if k in out:
            raise ConfigError(f"--{what.replace('_', '-')}: {k!r} given twice")
        out[k] = v
    return out


def split_method(spec: str) -> tuple[str, str]:
    """``"DIR[:FORMAT]"`` -> (DIR, FORMAT); FORMAT must be a registered adapter, default ``nifti``."""
    from baselines.base import ADAPTERS
    import baselines  # noqa: F401  (fills the registry)

    if ":" in spec:
        head, tail = spec.rsplit(":", 1)
        if tail in ADAPTERS:
            return head, tail
        if "/" not in tail and "\\" not in tail and head and not Path(spec).exists():
            ADAPTERS.get(tail)  # raises with the list of adapters and a suggestion
    return spec, "nifti"
