"""One source of defaults for ``trace-bench run`` (STYLE.md principle 8).

:class:`RunConfig` is used by the Python API (:func:`trace_bench.runner.run`), by the CLI (every
flag maps to one field, the flag's default is the field's default) and by TOML files
(``--config FILE``): a benchmark is one file under version control. Precedence: dataclass
defaults < config file < CLI flags. The effective configuration is written back into the
output directory as ``config.toml`` and ``trace-bench run --config OUT/config.toml`` repeats the run.

Example ``bench.toml``::

    out = "results/ckpt-42"
    reference = "data/ct-rate/valid"
    metrics = ["available"]        # or ["all"], ["weight-free"], names: ["temporal_flickering", "dice", "fid"]
    segmenter = "threshold"
    skip_unavailable = false

    [methods]                      # NAME = "DIR[:FORMAT]" (FORMAT = an adapter name, default nifti)
    TRACE = "gen/trace"
    GenerateCT = "gen/generatect:generatect"

    [profiles]                     # NAME = "profile.json" written by `trace-bench profile`
    TRACE = "profiles/trace.json"

    [options.fid]                  # metric options (CLI: --option fid.weights=inception-fid-pth)
    weights = "inception-fid-pth"

Every setting is validated when the config is built (:meth:`RunConfig.validate`); a wrong type or
value is one line, ``FILE: setting: expected ..., got ...``. Ranges: ``workers`` 1..1024,
``seed`` 0..2**63-1, ``bootstrap`` 0..10**7, ``bootstrap_distribution`` 0..10**6 (ignored), ``jackknife_groups`` 2..10**4, ``confidence`` in
(0, 1), ``frame_size`` 16..2048 pixels, ``hu_window`` two finite numbers lo < hi, ``batch_size``
1..65536, ``device`` "auto" | "cpu" | "cuda" | "cuda:N". Method names become folder names: 1..100
characters, letters, digits, space and ``_ - . + ( )``, starting with a letter, digit, ``_`` or
``(``, not ending with a space or ``.``, and not ``GT`` (the reference).
"""

from __future__ import annotations

import dataclasses
import math
import re
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Iterable

from .device import parse_device
from .errors import ConfigError
from .sharding import parse_shard  # noqa: F401 - re-exported (it lives with the other shard helpers)

DEFAULT_OUT = "trace-bench-out"
#: allowed ``frame_size`` (in-plane frame size in pixels): below 16 the backbones cannot run, above
#: 2048 one frame batch alone needs tens of GB (every case would fail allocating memory)
FRAME_SIZE_RANGE = (16, 2048)
#: longest method name (it becomes a folder name under OUT/cases/)
METHOD_NAME_MAX = 100
#: characters allowed in a method name besides letters and digits (Unicode letters included)
METHOD_NAME_EXTRA = " _-.+()"


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
    metrics: list[str] = field(default_factory=lambda: ["available"])
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
    #: "auto" (a GPU when one is visible, else the CPU), "cpu", "cuda" or "cuda:N"; the spelling is
    #: checked here, the device's existence in the run's preflight (trace_bench.device.check_device)
    device: str = "auto"
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
    #: deprecated and ignored (kept so older config.toml files load): distribution metrics get a
    #: two-sample jackknife interval over cases (``jackknife_groups``), not a bootstrap
    bootstrap_distribution: int = 100
    #: distribution metrics: at most this many leave-out groups of cases per set for the jackknife
    #: interval (one case per group when a set has fewer cases); each group recomputes the metric
    jackknife_groups: int = 20
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
    #: decode the next volume on a background thread while the current one is scored (serial runs;
    #: one more decoded volume in memory); None = auto: on when the run's device is a GPU (the CPU is
    #: then idle while the GPU computes; on a CPU run the cores are busy with the metrics already)
    prefetch: bool | None = None
    #: "I/N": score only shard I of N (1-based) of the cases, assigned by a stable hash of the case
    #: id; combine the N output folders with `trace-bench merge` (see trace_bench.shard)
    shard: str | None = None
    #: Python modules imported before planning, "module" or "module:function" (the function is
    #: called); they register extra metric plug-ins in worker processes, torchrun ranks and merge
    plugins: list[str] = field(default_factory=list)
    #: metric options: metric name -> {option: value} (TOML ``[options.fid]`` tables, CLI
    #: ``--option fid.weights=inception-fid-pth``); values are TOML scalars or lists of them
    options: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: exit non-zero when the run wrote any error row or a method has no scored case (the run itself
    #: still scores every case it can)
    strict: bool = False
    #: what to do when a generated volume's grid differs from its reference's: "refuse" (default),
    #: "refuse" (default), "warn" or "strict" (see trace_bench.geometry.GEOMETRY_POLICIES)
    geometry: str = "refuse"
    #: write paths relative to the output folder (config.toml, provenance) so OUT can be moved
    relative_paths: bool = False
    #: CPU-practical protocol for quick looks: each metric option's declared ``fast`` value (e.g. 16
    #: slices from the central 40% for FID/KID/PRDC, 2 clips for FVD); shows in every protocol id,
    #: never the default for published numbers
    fast: bool = False
    #: "DIR[:FORMAT]": the training set of the audited generator; adds the memorization audit
    #: (OUT/audit/, a report section) against it, calibrated on the reference (held-out) set
    train_reference: str | None = None

    # ------------------------------------------------------------------ validation
    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> "RunConfig":
        """Check every field's type and range; raise one-line :class:`ConfigError` naming the setting.

        Normalises in place: comma-separated ``metrics`` / ``plugins`` strings become lists,
        ``hu_window`` becomes two floats, ``confidence`` a float, ``classes`` 2 / 3 a string.
        """
        if isinstance(self.metrics, str):
            self.metrics = [m.strip() for m in self.metrics.split(",") if m.strip()]
        if isinstance(self.plugins, str):
            self.plugins = [m.strip() for m in self.plugins.split(",") if m.strip()]
        if isinstance(self.classes, int) and not isinstance(self.classes, bool) and self.classes in (2, 3):
            self.classes = str(self.classes)

        _check_str("out", self.out)
        _check_str("reference", self.reference, optional=True)
        _check_str("reference_format", self.reference_format)
        _check_str_map("methods", self.methods, what="DIR[:FORMAT]")
        for name in self.methods:
            check_method_name(name)
        _check_str_list("metrics", self.metrics)
        if not self.metrics:
            raise ConfigError("metrics: expected at least one metric name, 'all' or 'weight-free'")
        _check_str("segmenter", self.segmenter)
        if self.classes not in ("2", "3", "full"):
            raise ConfigError(f"classes: expected '2', '3' or 'full', got {self.classes!r}")
        _check_str("reference_masks", self.reference_masks, optional=True)
        _check_str_map("method_masks", self.method_masks, what="DIR")
        _check_str("prompts", self.prompts, optional=True)
        parse_device(self.device)
        _check_int("workers", self.workers, lo=1, hi=1024)
        _check_bool("skip_unavailable", self.skip_unavailable)
        _check_str_map("weights", self.weights, what="PATH")
        _check_str_map("profiles", self.profiles, what="FILE.json")
        _check_int("seed", self.seed, lo=0, hi=2**63 - 1)
        _check_int("bootstrap", self.bootstrap, lo=0, hi=10**7)
        _check_int("bootstrap_distribution", self.bootstrap_distribution, lo=0, hi=10**6)
        _check_int("jackknife_groups", self.jackknife_groups, lo=2, hi=10**4)
        self.confidence = _check_number("confidence", self.confidence)
        if not 0.0 < self.confidence < 1.0:
            raise ConfigError(f"confidence: expected a number in (0, 1), e.g. 0.95, got {self.confidence!r}")
        _check_int("frame_size", self.frame_size, lo=FRAME_SIZE_RANGE[0], hi=FRAME_SIZE_RANGE[1], unit=" pixels")
        self.hu_window = _check_hu_window(self.hu_window)
        _check_int("batch_size", self.batch_size, lo=1, hi=65536)
        _check_str("plot_case", self.plot_case, optional=True)
        _check_bool("plots", self.plots)
        _check_bool("published", self.published)
        _check_bool("progress", self.progress)
        if self.prefetch is not None:
            _check_bool("prefetch", self.prefetch)
        _check_str("shard", self.shard, optional=True)
        if self.shard is not None:
            parse_shard(self.shard)
        _check_str_list("plugins", self.plugins)
        self.options = _check_options(self.options)
        _check_bool("strict", self.strict)
        _check_str("geometry", self.geometry)
        from .geometry import GEOMETRY_POLICIES

        if self.geometry not in GEOMETRY_POLICIES:
            raise ConfigError(f"geometry: expected one of {', '.join(GEOMETRY_POLICIES)}, got {self.geometry!r}")
        _check_bool("relative_paths", self.relative_paths)
        _check_str("train_reference", self.train_reference, optional=True)
        _check_bool("fast", self.fast)
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
        """TOML text that :func:`load_config` reads back into an equal config (None fields omitted;
        ``options`` as one ``[options.METRIC]`` table per metric)."""
        scalars, tables = [], []
        for f in fields(self):
            v = getattr(self, f.name)
            if v is None:
                continue
            if f.name == "options":
                tables.append("[options]\n")
                for metric, opts in v.items():
                    body = "".join(f"{_toml_key(k)} = {_toml_value(x)}\n" for k, x in opts.items())
                    tables.append(f"[options.{_toml_key(metric)}]\n{body}")
            elif isinstance(v, dict):
                body = "\n".join(f"{_toml_key(k)} = {_toml_value(v[k])}" for k in v)
                tables.append(f"[{f.name}]\n{body}\n" if body else f"[{f.name}]\n")
            else:
                scalars.append(f"{f.name} = {_toml_value(v)}")
        head = "# Effective configuration of this run (trace-bench run --config this-file repeats it)\n"
        return head + "\n".join(scalars) + "\n\n" + "\n".join(tables)


# ================================================================================ field checks
def _got(value: Any) -> str:
    text = repr(value)
    if len(text) > 60:
        text = text[:57] + "..."
    return f"{text} ({type(value).__name__})"


def _check_str(name: str, value: Any, *, optional: bool = False) -> None:
    if value is None and optional:
        return
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{name}: expected a non-empty string, got {_got(value)}")


def _check_bool(name: str, value: Any) -> None:
    if not isinstance(value, bool):
        raise ConfigError(f"{name}: expected true or false, got {_got(value)}")


def _check_int(name: str, value: Any, *, lo: int, hi: int, unit: str = "") -> None:
    span = f"{lo}..{'2**63-1' if hi == 2**63 - 1 else hi}{unit}"
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{name}: expected an integer in {span}, got {_got(value)}")
    if not lo <= value <= hi:
        raise ConfigError(f"{name}: expected an integer in {span}, got {value}")


def _check_number(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{name}: expected a number, got {_got(value)}")
    return float(value)


def _check_str_list(name: str, value: Any) -> None:
    if not isinstance(value, (list, tuple)):
        raise ConfigError(f"{name}: expected a list of strings, got {_got(value)}")
    for item in value:
        if not isinstance(item, str) or not item.strip():
            raise ConfigError(f"{name}: expected a list of non-empty strings, got element {_got(item)}")


def _check_str_map(name: str, value: Any, *, what: str) -> None:
    if not isinstance(value, dict):
        raise ConfigError(f"{name}: expected a table of NAME = \"{what}\" strings, got {_got(value)}")
    for k, v in value.items():
        if not isinstance(k, str) or not k.strip():
            raise ConfigError(f"{name}: expected non-empty string names, got {_got(k)}")
        if not isinstance(v, str) or not v.strip():
            raise ConfigError(f"{name}.{k}: expected a non-empty string \"{what}\", got {_got(v)}")


def _check_hu_window(value: Any) -> list[float]:
    ok = (isinstance(value, (list, tuple)) and len(value) == 2
          and all(isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) for x in value))
    if not ok:
        raise ConfigError(f"hu_window: expected [lo, hi], two finite numbers in HU, got {_got(value)}")
    lo, hi = float(value[0]), float(value[1])
    if not lo < hi:
        raise ConfigError(f"hu_window: expected [lo, hi] with lo < hi, got {[lo, hi]}")
    return [lo, hi]


_OPTION_NAME = re.compile(r"[A-Za-z0-9_-]+")


def _option_value_ok(v: Any) -> bool:
    if isinstance(v, (str, bool, int, float)):
        return True
    return isinstance(v, list) and all(isinstance(x, (str, bool, int, float)) for x in v)


def _check_options(value: Any) -> dict[str, dict[str, Any]]:
    if not isinstance(value, dict):
        raise ConfigError(f"options: expected a table of [options.METRIC] tables, got {_got(value)}")
    out: dict[str, dict[str, Any]] = {}
    for metric, opts in value.items():
        if not isinstance(metric, str) or not _OPTION_NAME.fullmatch(metric):
            raise ConfigError(f"options: expected metric names of letters, digits, '_' or '-', got {_got(metric)}")
        if not isinstance(opts, dict):
            raise ConfigError(f"options.{metric}: expected a table of option = value, got {_got(opts)}")
        for k, v in opts.items():
            if not isinstance(k, str) or not _OPTION_NAME.fullmatch(k):
                raise ConfigError(f"options.{metric}: expected option names of letters, digits, '_' or '-', got {_got(k)}")
            if not _option_value_ok(v):
                raise ConfigError(f"options.{metric}.{k}: expected a string, number, boolean or a list of them, "
                                  f"got {_got(v)}")
        out[metric] = dict(opts)
    return out


def check_method_name(name: Any) -> str:
    """A method name becomes a folder under ``OUT/cases/``: refuse anything that is not a plain,
    portable folder name (see the module docstring for the rules)."""
    rules = (f"1..{METHOD_NAME_MAX} characters: letters, digits, space and '_-.+()', starting with a letter, "
             "digit, '_' or '(', not ending with a space or '.'")
    if not isinstance(name, str):
        raise ConfigError(f"methods: method name {_got(name)}: expected a string of {rules}")
    if name.upper() == "GT":
        raise ConfigError(f"methods: method name {name!r}: 'GT' is reserved for the reference")
    bad = [c for c in name if not (c.isalnum() or c in METHOD_NAME_EXTRA)]
    if (not name or len(name) > METHOD_NAME_MAX or bad or not (name[0].isalnum() or name[0] in "_(")
            or name[-1] in " ."):
        why = f" (contains {bad[0]!r})" if bad else (f" ({len(name)} characters)" if len(name) > METHOD_NAME_MAX else "")
        raise ConfigError(f"methods: method name {name!r}{why}: it becomes a folder name under OUT/cases/; expected {rules}")
    return name


def _toml_key(k: str) -> str:
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
#: fields that are tables of NAME = "string" (a list of "NAME=VALUE" strings is accepted too)
_STRING_MAPS = ("methods", "method_masks", "weights", "profiles")


def config_from_dict(data: dict[str, Any], *, base: RunConfig | None = None, source: str = "config") -> RunConfig:
    """Overlay ``data`` (TOML-shaped) on ``base`` (default: the dataclass defaults).

    Every error is one :class:`ConfigError` line starting with ``source`` (the TOML file) and naming
    the setting with the expected type or range."""
    cfg = dataclasses.replace(base) if base is not None else RunConfig()
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a table of settings, got {_got(data)}")
    changes: dict[str, Any] = {}
    for key, value in data.items():
        name = str(key).replace("-", "_")
        if name not in _FIELD_TYPES:
            import difflib

            close = difflib.get_close_matches(name, list(_FIELD_TYPES), n=2)
            hint = f" Did you mean {', '.join(close)}?" if close else ""
            raise ConfigError(f"{source}: unknown setting {key!r}.{hint}")
        if name in _STRING_MAPS and isinstance(value, list) and all(isinstance(v, str) for v in value):
            try:  # ["NAME=VALUE", ...] as on the command line
                value = parse_pairs(value, name)
            except ConfigError as e:
                raise ConfigError(f"{source}: {name}: {e}") from None
        elif name in ("metrics", "plugins") and isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        changes[name] = value
    try:
        return dataclasses.replace(cfg, **changes)
    except ConfigError as e:
        raise ConfigError(f"{source}: {e}") from None
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{source}: {' '.join(str(e).split())}") from None


def load_config(path: str | Path, *, base: RunConfig | None = None) -> RunConfig:
    """Read a TOML file into a :class:`RunConfig`; relative paths in it stay relative to the CWD."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file {p} does not exist" if not p.exists() else f"config file {p} is not a file")
    try:
        data = tomllib.loads(p.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{p}: invalid TOML: {' '.join(str(e).split())}") from None
    except UnicodeDecodeError as e:
        raise ConfigError(f"{p}: not UTF-8 text (byte {e.start}): is it a TOML file?") from None
    except OSError as e:
        raise ConfigError(f"{p}: cannot read: {e.strerror or e}") from None
    data.pop("toolkit", None)
    return config_from_dict(data, base=base, source=str(p))


def parse_option(text: str) -> tuple[str, str, Any]:
    """``"fid.weights=inception-fid-pth"`` -> ``("fid", "weights", "inception-fid-pth")``.

    The value is read as a TOML value when it is one (``8`` -> int, ``0.5`` -> float, ``true`` ->
    bool, ``"a b"`` -> str, ``[1, 2]`` -> list), otherwise it is the text itself (a string)."""
    head, sep, raw = str(text).partition("=")
    metric, dot, key = head.strip().partition(".")
    if not sep or not dot or not _OPTION_NAME.fullmatch(metric) or not _OPTION_NAME.fullmatch(key):
        raise ConfigError(f"--option {text!r}: expected METRIC.OPTION=VALUE, e.g. fid.weights=inception-fid-pth "
                          "(names of letters, digits, '_' or '-')")
    raw = raw.strip()
    if not raw:
        raise ConfigError(f"--option {text!r}: empty value (quote an empty string as \"\")")
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw
    if not _option_value_ok(value):  # dates, inline tables: keep the text
        value = raw
    return metric, key, value


def parse_options(items: Iterable[str] | None, base: dict[str, dict[str, Any]] | None = None) -> dict[str, dict[str, Any]]:
    """Repeated ``--option METRIC.OPTION=VALUE`` flags merged over ``base`` (flags win; an option
    given twice on the command line is refused)."""
    out = {m: dict(o) for m, o in (base or {}).items()}
    seen: set[tuple[str, str]] = set()
    for item in items or []:
        metric, key, value = parse_option(item)
        if (metric, key) in seen:
            raise ConfigError(f"--option: {metric}.{key} given twice")
        seen.add((metric, key))
        out.setdefault(metric, {})[key] = value
    return out


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
