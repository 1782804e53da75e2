"""The ``[utility]`` section of a run config: :class:`UtilityConfig`, its validation and TOML parsing.

A benchmark file holds the run's settings at top level (``reference``, ``methods``, ``reference_masks``,
``method_masks``, ``prompts``, ``out``, ``device``, ``weights``, ...: :class:`trace_bench.config.RunConfig`)
and the utility protocols' own settings in one table::

    reference = "data/real/train"            # the real volumes the generators were conditioned on
    reference_masks = "data/real/train_masks"
    out = "results/run-1"

    [methods]
    MAISI = "gen/maisi:maisi"

    [utility]
    protocols = ["seg-tstr", "probe"]
    variant = "full"                          # or "tiny" (CPU smoke runs)
    n_seeds = 3
    test_reference = "data/real/test"         # the held-out real test set (volumes ...)
    test_masks = "data/real/test_masks"       # ... and their label maps)
    labels = "data/ct-rate/multi_abnormality_labels.csv"
    feature_space = "astra"

``trace-bench utility --config FILE`` reads both (:func:`load_utility_config`); flags override them.
Every error is one line naming the file and the setting.
"""

from __future__ import annotations

import dataclasses
import math
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from ..config import RunConfig, config_from_dict
from ..device import parse_device
from ..errors import ConfigError, did_you_mean
from .protocol import PROTOCOLS, VARIANTS

ARMS = ("real", "method", "real+method")


@dataclass
class UtilityConfig:
    """Settings of ``trace-bench utility`` (TOML ``[utility]``); defaults < file < flags."""

    #: which protocols run: "seg-tstr", "probe"
    protocols: list[str] = field(default_factory=lambda: ["seg-tstr"])
    #: "full" (the published protocol) or "tiny" (CPU smoke runs and tests)
    variant: str = "full"
    #: seeds of the segmentation protocol: the protocol's seed, +1, ... (the spread is reported)
    n_seeds: int = 1
    #: training arms of seg-tstr / probe: "real" (always, the baseline), "method", "real+method"
    arms: list[str] = field(default_factory=lambda: list(ARMS))
    #: methods to evaluate ([] = every method of the run)
    methods: list[str] = field(default_factory=list)
    #: real training volumes "DIR[:FORMAT]" (or a folder table with reading options, as for the run's
    #: folders) and their label maps (default: the run's reference and reference_masks, i.e. the real cases
    #: whose masks conditioned the generators)
    train_reference: str | dict[str, Any] | None = None
    train_masks: str | None = None
    #: the held-out real test set: volumes "DIR[:FORMAT]" (or a folder table) + label maps (seg-tstr) ...
    test_reference: str | dict[str, Any] | None = None
    test_masks: str | None = None
    #: ... or this fraction of the real training cases, chosen by sha256 of the case id and removed
    #: from every training arm (when test_reference is not given)
    test_fraction: float | None = None
    #: probe: CSV of labels, a case-id column (case_id or VolumeName) + one 0/1 column per label
    labels: str | None = None
    #: probe: the label columns to use ([] = all)
    label_columns: list[str] = field(default_factory=list)
    #: probe: a feature space of the metric catalogue (astra, inception, i3d, clip, medicalnet, ctnet) and its options
    feature_space: str = "astra"
    feature_options: dict[str, Any] = field(default_factory=dict)
    #: seg-tstr: the label values trained and scored ([] = every non-zero label of the real training masks)
    seg_labels: list[int] = field(default_factory=list)
    #: steps between checkpoints (0 = the variant's default; does not change any number)
    checkpoint_every: int = 0
    #: cache of preprocessed pairs and features (default $TRACE_BENCH_CACHE/utility and .../features)
    cache_dir: str | None = None
    #: continue from OUT/utility/ (finished arms are kept, an interrupted one continues from its checkpoint)
    resume: bool = True
    #: "auto" | "cpu" | "cuda" | "cuda:N"; None = the run's device
    device: str | None = None
    #: torch CPU threads (None: 1, or OMP_NUM_THREADS / TRACE_BENCH_THREADS; see trace_model.runtime)
    threads: int | None = None

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> "UtilityConfig":
        """Check every field; one-line :class:`ConfigError` naming ``utility.<setting>``."""
        for name in ("protocols", "arms", "methods", "label_columns"):
            v = getattr(self, name)
            if isinstance(v, str):
                v = [x.strip() for x in v.split(",") if x.strip()]
                setattr(self, name, v)
            _str_list(name, v)
        if not self.protocols:
            raise ConfigError(f"utility.protocols: expected at least one of {', '.join(PROTOCOLS)}")
        for p in self.protocols:
            if p not in PROTOCOLS:
                raise ConfigError(f"utility.protocols: expected names among {', '.join(PROTOCOLS)}, got {p!r}")
        self.protocols = list(dict.fromkeys(self.protocols))
        if self.variant not in VARIANTS:
            raise ConfigError(f"utility.variant: expected one of {', '.join(VARIANTS)}, got {self.variant!r}")
        _int("n_seeds", self.n_seeds, 1, 100)
        for a in self.arms:
            if a not in ARMS:
                raise ConfigError(f"utility.arms: expected names among {', '.join(ARMS)}, got {a!r}")
        if "real" not in self.arms:
            raise ConfigError("utility.arms: 'real' is the baseline every other arm is compared with; keep it")
        self.arms = [a for a in ARMS if a in self.arms]
        for name in ("train_masks", "test_masks", "labels", "cache_dir"):
            _opt_str(name, getattr(self, name))
        for name in ("train_reference", "test_reference"):
            v = getattr(self, name)
            if v is not None and not isinstance(v, dict):
                _opt_str(name, v)
            if v is not None:  # parsed like the run's folders (reading options validated)
                from ..folders import parse_folder

                parse_folder(name, v, where=f"utility.{name}", paired=False)
        if (self.test_reference is None) != (self.test_masks is None) and "seg-tstr" in self.protocols:
            raise ConfigError("utility.test_reference / test_masks: seg-tstr needs both (the held-out real volumes "
                              "and their label maps), or neither (then test_fraction)")
        if self.test_fraction is not None:
            if isinstance(self.test_fraction, bool) or not isinstance(self.test_fraction, (int, float)) \
                    or not math.isfinite(self.test_fraction) or not 0.0 < float(self.test_fraction) < 1.0:
                raise ConfigError(f"utility.test_fraction: expected a number in (0, 1), e.g. 0.3, got "
                                  f"{self.test_fraction!r}")
            self.test_fraction = float(self.test_fraction)
            if self.test_reference is not None:
                raise ConfigError("utility.test_fraction: give either a held-out folder (test_reference) or a "
                                  "fraction of the real cases, not both")
        if not isinstance(self.feature_space, str) or not self.feature_space.strip():
            raise ConfigError(f"utility.feature_space: expected a feature space name, got {self.feature_space!r}")
        if not isinstance(self.feature_options, dict):
            raise ConfigError(f"utility.feature_options: expected a table of option = value, got "
                              f"{self.feature_options!r}")
        if not isinstance(self.seg_labels, list) or not all(
                isinstance(x, int) and not isinstance(x, bool) and 1 <= x <= 65535 for x in self.seg_labels):
            raise ConfigError(f"utility.seg_labels: expected a list of label values 1..65535, got {self.seg_labels!r}")
        self.seg_labels = sorted(set(self.seg_labels))
        _int("checkpoint_every", self.checkpoint_every, 0, 10**9)
        if not isinstance(self.resume, bool):
            raise ConfigError(f"utility.resume: expected true or false, got {self.resume!r}")
        if self.device is not None:
            parse_device(self.device, setting="utility.device")
        if self.threads is not None:
            _int("threads", self.threads, 0, 4096)
        if "probe" in self.protocols and self.labels is None:
            raise ConfigError("utility.labels: the probe protocol needs a labels CSV (case_id + one 0/1 column per "
                              "label, e.g. CT-RATE's multi_abnormality_labels.csv)")
        return self

    def replace(self, **changes: Any) -> "UtilityConfig":
        """A copy with the given fields changed (``None`` values are ignored, as for unset flags)."""
        clean = {k: v for k, v in changes.items() if v is not None}
        unknown = set(clean) - {f.name for f in fields(self)}
        if unknown:
            raise ConfigError(f"unknown utility setting(s): {', '.join(sorted(unknown))}")
        return dataclasses.replace(self, **clean)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _str_list(name: str, value: Any) -> None:
    if not isinstance(value, list) or not all(isinstance(x, str) and x.strip() for x in value):
        raise ConfigError(f"utility.{name}: expected a list of non-empty strings, got {value!r}")


def _opt_str(name: str, value: Any) -> None:
    if value is not None and (not isinstance(value, str) or not value.strip()):
        raise ConfigError(f"utility.{name}: expected a non-empty string, got {value!r}")


def _int(name: str, value: Any, lo: int, hi: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise ConfigError(f"utility.{name}: expected an integer in {lo}..{hi}, got {value!r}")


_FIELDS = {f.name for f in fields(UtilityConfig)}


def utility_from_dict(data: Any, *, base: UtilityConfig | None = None, source: str = "config") -> UtilityConfig:
    """Overlay a ``[utility]`` table on ``base`` (default: the dataclass defaults); errors name ``source``."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: [utility]: expected a table of settings, got {data!r}")
    changes: dict[str, Any] = {}
    for key, value in data.items():
        name = str(key).replace("-", "_")
        if name not in _FIELDS:
            raise ConfigError(f"{source}: [utility]: unknown setting {key!r}.{did_you_mean(name, sorted(_FIELDS))}")
        changes[name] = value
    try:
        return dataclasses.replace(base or UtilityConfig(), **changes)
    except ConfigError as e:
        raise ConfigError(f"{source}: {e}") from None
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{source}: [utility]: {' '.join(str(e).split())}") from None


def split_config(data: dict[str, Any], source: str) -> tuple[RunConfig, UtilityConfig]:
    """A parsed TOML document -> (its run settings, its ``[utility]`` settings)."""
    data = dict(data)
    util = data.pop("utility", {})
    data.pop("toolkit", None)
    return config_from_dict(data, source=source), utility_from_dict(util, source=source)


def load_utility_config(path: str | Path) -> tuple[RunConfig, UtilityConfig]:
    """Read a benchmark TOML file: top-level run settings and its ``[utility]`` table."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file {p} does not exist" if not p.exists() else f"config file {p} is not a file")
    try:
        data = tomllib.loads(p.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{p}: invalid TOML: {' '.join(str(e).split())}") from None
    except UnicodeDecodeError as e:
        raise ConfigError(f"{p}: not UTF-8 text (byte {e.start}): is it a TOML file?") from None
    return split_config(data, str(p))
