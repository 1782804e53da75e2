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

    [methods.MyGen]                # or a table with reading options (trace_bench.read_options;
    path = "gen/mygen"             # CLI: --read MyGen.convention=unit); the same for [reference]
    format = "npy"                 # and [train_reference]
    convention = "unit"
    spacing = "reference"

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
``(``, not ending with a space or ``.``, and not ``GT`` (the reference); they are NFC-normalised and
two names that look alike (``TRACE`` and ``ТRACE`` with a Cyrillic ``Т``) are refused.

Every setting is declared once by its scope (:data:`SETTINGS`): ``values`` (changes per-case values:
part of the per-case cache keys, by the route it declares), ``run`` (changes the run's tables, not
the per-case records: part of the run fingerprint only) or ``local`` (changes no number: where and how
fast the run goes). The cache keys (:mod:`trace_bench.run.plan`), the run fingerprint
(:mod:`trace_bench.results.stamp`) and what shards may differ in (:mod:`trace_bench.run.merge`) are
derived from it.
"""

from __future__ import annotations

import dataclasses
import math
import re
import tomllib
import unicodedata
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Iterable, Mapping

from .device import parse_device
from .errors import ConfigError, did_you_mean
from .sharding import parse_shard  # noqa: F401 - re-exported (it lives with the other shard helpers)
from .folders import InputFolder, normalise_table, parse_folder
from .read_options import KEYS as READ_KEYS

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
    #: folder of reference (real) volumes, "DIR" or a table with reading options (trace_bench.folders);
    #: None with no methods = the shipped demo data
    reference: str | dict[str, Any] | None = None
    #: adapter reading the reference folder (when ``reference`` is a string or a table without format)
    reference_format: str = "nifti"
    #: generated folders: method name -> "DIR[:FORMAT]" or a table with reading options
    methods: dict[str, str | dict[str, Any]] = field(default_factory=dict)
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
    #: show the TRACE paper's published Table 1 / Table 2 rows beside ours, labelled "as published" (off by
    #: default: they are not this run's numbers; the demo turns it on)
    published: bool = False
    #: LaTeX layout of the report's tables: "auto" (the richest that fits ``tex_width`` at >= 8 pt), one of
    #: full, stacked, pm, compact, split, split3 (or split+pm, ...: trace_bench.results.table_model.LAYOUTS),
    #: or a table of table key -> layout (TOML ``[tex_layout]``, e.g. ``table1 = "compact"``)
    tex_layout: str | dict[str, str] = "auto"
    #: the page the LaTeX tables must fit: a template (lncs, ieee, ieee-wide, neurips:
    #: trace_bench.results.tex_pages.TEMPLATES) or a width in pt ("300pt", 300)
    tex_width: str | float = "lncs"
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
    #: "DIR[:FORMAT]" or a table: the training set of the audited generator; adds the memorization
    #: audit (OUT/audit/, a report section) against it, calibrated on the reference (held-out) set
    train_reference: str | dict[str, Any] | None = None
    #: use a non-empty --out folder that trace-bench did not write (its files are left alone; a file
    #: where the run writes one of its own is still refused)
    force: bool = False
    #: the downstream-utility protocols run after the scoring (TOML ``[utility]`` table; its settings are
    #: trace_bench.utility.config.UtilityConfig's, checked when the run starts): results in OUT/utility/ and
    #: the report. Empty = none
    utility: dict[str, Any] = field(default_factory=dict)

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
        _check_str("reference_format", self.reference_format)
        if isinstance(self.reference, Mapping):  # one format: the table's, else reference_format (kept equal)
            self.reference = {**self.reference, "format": self.reference.get("format") or self.reference_format}
        self.reference = _check_folder_value("reference", self.reference)
        if isinstance(self.reference, dict):
            self.reference_format = self.reference["format"]
        if not isinstance(self.methods, dict):
            raise ConfigError(f"methods: expected a table of NAME = \"DIR[:FORMAT]\" (or NAME tables), "
                              f"got {_got(self.methods)}")
        for k in self.methods:
            check_method_name(nfc(k))
        check_confusables(self.methods)
        self.methods = {nfc(k): _check_folder_value(f"methods.{k}", v, required=True) for k, v in self.methods.items()}
        _check_str_list("metrics", self.metrics)
        if not self.metrics:
            raise ConfigError("metrics: expected at least one metric name, 'all' or 'weight-free'")
        _check_str("segmenter", self.segmenter)
        if self.classes not in ("2", "3", "full"):
            raise ConfigError(f"classes: expected '2', '3' or 'full', got {self.classes!r}")
        _check_str("reference_masks", self.reference_masks, optional=True)
        _check_str_map("method_masks", self.method_masks, what="DIR")
        self.method_masks = {nfc(k): v for k, v in self.method_masks.items()}
        _check_str("prompts", self.prompts, optional=True)
        parse_device(self.device)
        _check_int("workers", self.workers, lo=1, hi=1024)
        _check_bool("skip_unavailable", self.skip_unavailable)
        _check_str_map("weights", self.weights, what="PATH")
        _check_str_map("profiles", self.profiles, what="FILE.json")
        self.profiles = {nfc(k): v for k, v in self.profiles.items()}
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
        self.tex_layout = _check_tex_layout(self.tex_layout)
        self.tex_width = _check_tex_width(self.tex_width)
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
        self.train_reference = _check_folder_value("train_reference", self.train_reference)
        _check_bool("fast", self.fast)
        _check_bool("force", self.force)
        if not isinstance(self.utility, dict) or not all(isinstance(k, str) for k in self.utility):
            raise ConfigError(f"utility: expected a [utility] table of settings (see `trace-bench utility --help`), "
                              f"got {_got(self.utility)}")
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

    def folders(self) -> "RunFolders":
        """The input folders parsed once (reference, methods, training reference): see :mod:`trace_bench.folders`."""
        ref = None if self.reference is None else parse_folder(
            "reference", self.reference, default_format=self.reference_format, where="reference", paired=False)
        methods = {name: parse_folder(name, spec, where=f"method {name}") for name, spec in self.methods.items()}
        train = None if self.train_reference is None else parse_folder(
            "train_reference", self.train_reference, where="train_reference", paired=False)
        return RunFolders(ref, methods, train)

    def to_toml(self) -> str:
        """TOML text that :func:`load_config` reads back into an equal config (None fields omitted;
        ``options`` as one ``[options.METRIC]`` table per metric)."""
        scalars, tables = [], []
        for f in fields(self):
            v = getattr(self, f.name)
            if v is None:
                continue
            if isinstance(v, dict):
                tables.append(_toml_table(f.name, v))
            else:
                scalars.append(f"{f.name} = {_toml_value(v)}")
        head = "# Effective configuration of this run (trace-bench run --config this-file repeats it)\n"
        return head + "\n".join(scalars) + "\n\n" + "\n".join(tables)


@dataclass(frozen=True)
class RunFolders:
    """A run's input folders, parsed once (:meth:`RunConfig.folders`)."""

    reference: InputFolder | None
    methods: dict[str, InputFolder]
    train_reference: InputFolder | None

    def all(self) -> list[InputFolder]:
        return ([self.reference] if self.reference else []) + list(self.methods.values()) + (
            [self.train_reference] if self.train_reference else [])


# ================================================================================ scope of every setting
VALUES, RUN, LOCAL = "values", "run", "local"
#: how a ``values`` setting reaches the per-case cache keys (trace_bench.run.plan builds each)
ROUTES = {
    "inputs": "input hashes of the files read, the folder's reading options and adapter, the prompt text",
    "protocol": "the metric's protocol id (which names every preprocessing choice it depends on)",
    "weights": "the sha256 of the weights files the metric uses (the paths themselves are local)",
    "entry": "the setting's value itself, in the keys of the entries it applies to",
}
#: which entries an ``entry``-route setting applies to
APPLIES = {
    "paired": "entries that compare a generated volume with its reference case (reference-based metrics, plots)",
}


@dataclass(frozen=True)
class Scope:
    """What a setting changes: ``values`` (per-case values: cache keys, by ``route``), ``run`` (the run's
    tables and report: fingerprint only) or ``local`` (no number)."""

    scope: str
    route: str = ""
    applies: str = ""


#: the one declaration of what every RunConfig field changes (checked against the fields at import)
SETTINGS: dict[str, Scope] = {
    "out": Scope(LOCAL),
    "reference": Scope(VALUES, "inputs"),
    "reference_format": Scope(VALUES, "inputs"),
    "methods": Scope(VALUES, "inputs"),
    "metrics": Scope(RUN),  # which entries exist
    "segmenter": Scope(VALUES, "protocol"),
    "classes": Scope(VALUES, "protocol"),
    "reference_masks": Scope(VALUES, "inputs"),
    "method_masks": Scope(VALUES, "inputs"),
    "prompts": Scope(VALUES, "inputs"),
    "device": Scope(LOCAL),
    "workers": Scope(LOCAL),
    "skip_unavailable": Scope(RUN),
    "weights": Scope(VALUES, "weights"),
    "profiles": Scope(RUN),
    "seed": Scope(VALUES, "protocol"),  # clip offsets / KID subsets (in their ids) and the bootstrap
    "bootstrap": Scope(RUN),
    "bootstrap_distribution": Scope(LOCAL),  # ignored
    "jackknife_groups": Scope(RUN),
    "confidence": Scope(RUN),
    "frame_size": Scope(VALUES, "protocol"),
    "hu_window": Scope(VALUES, "protocol"),
    "batch_size": Scope(RUN),
    "plot_case": Scope(RUN),
    "plots": Scope(RUN),
    "published": Scope(RUN),
    "tex_layout": Scope(RUN),  # the report's LaTeX only
    "tex_width": Scope(RUN),
    "progress": Scope(LOCAL),
    "prefetch": Scope(LOCAL),
    "shard": Scope(LOCAL),
    "plugins": Scope(RUN),  # which metric classes exist (the class path is in every key)
    "options": Scope(VALUES, "protocol"),
    "strict": Scope(LOCAL),
    "geometry": Scope(VALUES, "entry", "paired"),
    "relative_paths": Scope(LOCAL),
    "fast": Scope(VALUES, "protocol"),
    "train_reference": Scope(RUN),  # the memorization audit
    "force": Scope(LOCAL),
    "utility": Scope(RUN),  # OUT/utility/ and the report's utility section
}


def _check_declaration() -> None:
    names = [f.name for f in fields(RunConfig)]
    if list(SETTINGS) != names:
        missing = sorted(set(names) - set(SETTINGS)) or sorted(set(SETTINGS) - set(names))
        raise AssertionError(f"config.SETTINGS must declare every RunConfig field in order; differs at {missing}")
    for name, s in SETTINGS.items():
        ok = (s.scope in (RUN, LOCAL) and not s.route) or (s.scope == VALUES and s.route in ROUTES)
        if not ok or (s.route == "entry") != bool(s.applies) or (s.applies and s.applies not in APPLIES):
            raise AssertionError(f"config.SETTINGS[{name!r}]: bad scope declaration {s}")


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


def _check_tex_layout(value: Any) -> str | dict[str, str]:
    """``tex_layout``: "auto", a layout name, or a table key -> layout name (checked by the table model)."""
    from .results.table_model import LAYOUTS, TexLayout

    names = "auto, " + ", ".join(LAYOUTS) + " (or split+pm, split+compact, split+stacked)"

    def one(where: str, v: Any) -> str:
        if not isinstance(v, str) or not v.strip():
            raise ConfigError(f"{where}: expected a LaTeX layout ({names}), got {_got(v)}")
        v = v.strip().lower()
        if v != "auto":
            try:
                TexLayout.parse(v)
            except ValueError:
                raise ConfigError(f"{where}: expected a LaTeX layout ({names}), got {v!r}") from None
        return v

    if isinstance(value, Mapping):
        out = {}
        for k, v in value.items():
            if not isinstance(k, str) or not _OPTION_NAME.fullmatch(k):
                raise ConfigError(f"tex_layout: expected table keys (table1, table2, ...), got {_got(k)}")
            out[k] = one(f"tex_layout.{k}", v)
        return out
    return one("tex_layout", value)


def _check_tex_width(value: Any) -> str | float:
    """``tex_width``: a template name or a positive width in pt (a number, or text like "300pt")."""
    from .results.tex_pages import TEMPLATES, target_width

    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise ConfigError(f"tex_width: expected a template ({', '.join(TEMPLATES)}) or a width in pt, "
                          f"got {_got(value)}")
    try:
        w = target_width(value)
    except ValueError:
        w = float("nan")
    if not (math.isfinite(w) and 50.0 <= w <= 2000.0):
        raise ConfigError(f"tex_width: expected a template ({', '.join(TEMPLATES)}) or a width of 50..2000 pt, "
                          f"got {_got(value)}")
    return float(value) if isinstance(value, (int, float)) else value.strip().lower()


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


def _check_folder_value(name: str, value: Any, *, required: bool = False) -> str | dict[str, Any] | None:
    """A folder setting: None (unless required), a non-empty "DIR[:FORMAT]" string or a folder table
    (normalised: path + reading options, see :func:`trace_bench.folders.normalise_table`)."""
    if value is None and not required:
        return None
    if isinstance(value, Mapping):
        return normalise_table(value, name)
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{name}: expected a string \"DIR[:FORMAT]\" or a table with path = \"DIR\" and reading "
                          f"options ({', '.join(READ_KEYS)}), got {_got(value)}")
    return value


def nfc(name: Any) -> Any:
    """Unicode NFC form of a name (two spellings of ``é`` are one method)."""
    return unicodedata.normalize("NFC", name) if isinstance(name, str) else name


#: Latin look-alikes of Cyrillic and Greek letters (the single-letter entries of Unicode TR39
#: confusables.txt for these scripts); enough to tell ``TRACE`` from ``ТRACE`` without a dependency
_LOOKALIKE = str.maketrans({
    "А": "A", "В": "B", "Е": "E", "К": "K", "М": "M", "Н": "H", "О": "O", "Р": "P", "С": "C", "Т": "T",
    "Х": "X", "У": "Y", "Ѕ": "S", "І": "I", "Ј": "J", "Ԁ": "d", "Ԛ": "Q", "Ԝ": "W", "а": "a", "е": "e",
    "о": "o", "р": "p", "с": "c", "у": "y", "х": "x", "ѕ": "s", "і": "i", "ј": "j", "һ": "h", "ԁ": "d",
    "ԛ": "q", "ԝ": "w", "Α": "A", "Β": "B", "Ε": "E", "Ζ": "Z", "Η": "H", "Ι": "I", "Κ": "K", "Μ": "M",
    "Ν": "N", "Ο": "O", "Ρ": "P", "Τ": "T", "Υ": "Y", "Χ": "X", "ο": "o", "ν": "v", "α": "a", "ι": "i",
    "κ": "k", "ρ": "p", "τ": "t", "υ": "u", "χ": "x", "0": "O", "1": "l", "I": "l",
})


def skeleton(name: str) -> str:
    """What a name looks like: NFKC, look-alike letters mapped to Latin, case folded (``TRACE`` and
    ``ТRACE`` have one skeleton)."""
    return unicodedata.normalize("NFKC", name).translate(_LOOKALIKE).casefold().translate(_LOOKALIKE)


def check_confusables(names: Iterable[str]) -> None:
    """Refuse two method names that look alike (they would give two rows nobody can tell apart)."""
    seen: dict[str, str] = {skeleton("GT"): "GT"}
    for name in names:
        if not isinstance(name, str):
            continue  # refused by check_method_name
        sk = skeleton(name)
        other = seen.get(sk)
        if other is not None and other != name:
            cps = ", ".join(f"{c!r}=U+{ord(c):04X}" for c in name if ord(c) > 127) or "case only"
            raise ConfigError(f"methods: method names {other!r} and {name!r} look alike ({cps}); rename one")
        seen[sk] = name


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


def _toml_table(name: str, table: dict[str, Any]) -> str:
    """``[name]`` with its scalar entries, then one ``[name.KEY]`` sub-table per table value."""
    scalars = "".join(f"{_toml_key(k)} = {_toml_value(v)}\n" for k, v in table.items() if not isinstance(v, dict))
    subs = "".join(_toml_table(f"{name}.{_toml_key(k)}", v) for k, v in table.items() if isinstance(v, dict))
    return f"[{name}]\n{scalars}" + subs


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
            raise ConfigError(f"{source}: unknown setting {key!r}.{did_you_mean(name, _FIELD_TYPES)}")
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


# ================================================================================ reading options
def parse_read(text: str) -> tuple[str, str, Any]:
    """``"TRACE.convention=unit"`` -> ``("TRACE", "convention", "unit")`` (NAME: a method, ``reference``
    or ``train_reference``; KEY: a reading option of :mod:`trace_bench.read_options`)."""
    head, sep, raw = str(text).partition("=")
    name, dot, key = head.strip().rpartition(".")
    if not sep or not dot or not name or key not in READ_KEYS or not raw.strip():
        raise ConfigError(f"--read {text!r}: expected NAME.KEY=VALUE with NAME a method, reference or "
                          f"train_reference and KEY one of {', '.join(READ_KEYS)}, e.g. TRACE.convention=unit")
    return nfc(name), key, raw.strip()


def apply_reads(config: "RunConfig", items: Iterable[str]) -> "RunConfig":
    """``--read NAME.KEY=VALUE`` flags applied to the folder they name (a string spec becomes a table)."""
    folders = {"reference": config.reference, "train_reference": config.train_reference, **dict(config.methods)}
    seen: set[tuple[str, str]] = set()
    for item in items:
        name, key, value = parse_read(item)
        if (name, key) in seen:
            raise ConfigError(f"--read: {name}.{key} given twice")
        seen.add((name, key))
        spec = folders.get(name)
        if spec is None:
            known = ", ".join(config.methods) or "none"
            raise ConfigError(f"--read {item!r}: no folder named {name!r} (methods: {known}; or reference, "
                              "train_reference, once given)")
        if not isinstance(spec, dict):
            fmt = config.reference_format if name == "reference" else "nifti"
            parsed = parse_folder(name, spec, default_format=fmt, paired=name not in ("reference", "train_reference"))
            spec = {"path": str(parsed.path), "format": parsed.format}
        folders[name] = {**spec, key: value}
    methods = {k: folders[k] for k in config.methods}
    out = dataclasses.replace(config, reference=folders["reference"], train_reference=folders["train_reference"],
                              methods=methods)
    out.folders()  # parse once now: a bad value is refused here, naming the flag's folder
    return out


_check_declaration()
