"""Which volumes and label maps each arm trains on, and which real cases are held out for testing.

Pairing is by case id (:func:`trace_bench.cases.discover`, the run's own rules); nothing is dropped
silently: a volume without its label map, an unreadable entry or a duplicate id is a
:class:`~trace_bench.cases.Problem` row, and a case removed because it is held out is listed in
``excluded``.

* **real** arm: the real training volumes (``[utility] train_reference``, default the run's
  ``reference``) with their label maps (``[utility] train_masks``, default the run's ``reference_masks``).
* **METHOD** arm: the method's generated volumes, each paired with its **conditioning mask**: the label
  map of the same case id in ``method_masks.METHOD`` when the run names one, else in the run's
  ``reference_masks`` (the rule of ``trace-bench regress``: a generator conditioned on the reference
  masks produced one volume per reference case id). The label map is the ground truth the generator
  was asked to draw, so (generated volume, conditioning mask) is a training pair.
* **real+METHOD** arm: both sets together.
* **test** set, real only: ``[utility] test_reference`` + ``test_masks`` (volumes and label maps of
  patients nobody trained on: the way to publish numbers), else ``test_fraction`` of the real
  training case ids, taken in the order of ``sha256(case id)``
  (:func:`trace_bench.sharding.case_hash`; ``k = round(f n)``, at least 1 and at most n - 1 cases).
  Every test case id is removed from every training arm, generated ones included: a generated volume
  drawn from a test case's mask would carry that test label into training.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from ..cases import Problem, discover
from ..config import RunConfig
from ..errors import ConfigError
from ..folders import InputFolder, parse_folder
from .config import UtilityConfig

if TYPE_CHECKING:
    from ..volume import Volume


@dataclass(frozen=True)
class Source:
    """One volume file: case id, path, its folder's reading options (:class:`trace_bench.read_options.ReadOptions`)
    and, for options that take the paired reference case's grid (``spacing`` / ``layout = "reference"``), that
    reference case's file."""

    case_id: str
    path: Path
    folder: InputFolder
    reference: "Source | None" = None

    @property
    def adapter(self) -> str:
        return self.folder.format

    def identity(self) -> tuple[str, ...]:
        """What the volume read from this source depends on: the file's sha256, the reading options and,
        when used, the reference case's identity."""
        from ..inputs import input_hash

        ref = self.reference.identity() if self.reference is not None else ()
        return (input_hash(self.path), json.dumps(self.folder.read.key(), sort_keys=True), *ref)

    def read(self) -> "Volume":
        """The canonical volume, read by the folder's adapter with its reading options, through the one call the
        run core and the report's viewer make (:func:`baselines.base.read_with_options`)."""
        from baselines.base import read_with_options

        read = self.folder.read
        ref = self.reference.read() if self.reference is not None and read.uses_reference else None
        return read_with_options(self.path, read, reference=ref)


@dataclass(frozen=True)
class Pair:
    """A volume and its label map (``mask`` None: the probe needs none)."""

    case_id: str
    volume: Source
    mask: Path | None = None


@dataclass
class Inputs:
    """The assembled sets: ``real`` training pairs, each method's pairs, the real ``test`` pairs."""

    real: list[Pair]
    methods: dict[str, list[Pair]]
    test: list[Pair]
    test_rule: str
    problems: list[Problem] = field(default_factory=list)
    #: (set, case id, why) of cases left out of a training arm on purpose (held out for testing)
    excluded: list[tuple[str, str, str]] = field(default_factory=list)


def hash_split(case_ids: list[str], fraction: float) -> list[str]:
    """The held-out case ids: the first ``round(fraction n)`` (clamped to 1 .. n - 1) of the ids in
    ``sha256(case id)`` order (:func:`trace_bench.sharding.case_hash`)."""
    from ..sharding import case_hash

    ids = sorted(set(case_ids), key=lambda c: (case_hash(c), c))
    if len(ids) < 2:
        raise ConfigError(f"utility.test_fraction: needs at least 2 real cases to hold some out, found {len(ids)}")
    k = min(len(ids) - 1, max(1, round(fraction * len(ids))))
    return sorted(ids[:k])


def _volumes(folder: InputFolder, label: str, problems: list[Problem],
             reference: dict[str, "Source"] | None = None) -> dict[str, Source]:
    """The volumes of a folder by case id; with reading options that use the paired reference case, each
    volume carries that case's reference source (a volume without one is a problem row)."""
    found, pr = discover(folder.path, folder.format, label)
    problems += pr
    out = {}
    for cid, cf in found.items():
        ref = None
        if folder.read.uses_reference:
            ref = (reference or {}).get(cid)
            if ref is None:
                problems.append(Problem(label, cid, str(cf.path), "reading options take the reference case's grid, "
                                                                  "but the run's reference has no such case (skipped)"))
                continue
        out[cid] = Source(cid, cf.path, folder, ref)
    return out


def utility_folder(name: str, spec: str | dict) -> InputFolder:
    """A ``[utility]`` folder setting (``"DIR[:FORMAT]"`` or a table with reading options) parsed like the
    run's own folders."""
    return parse_folder(name, spec, where=f"utility.{name}", paired=False)


def _masks(folder: str, label: str, problems: list[Problem]) -> dict[str, Path]:
    found, pr = discover(folder, "nifti", label)
    problems += pr
    return {cid: cf.path for cid, cf in found.items()}


def _pairs(vols: dict[str, Source], masks: dict[str, Path] | None, label: str, problems: list[Problem]) -> list[Pair]:
    out = []
    for cid in sorted(vols):
        if masks is None:
            out.append(Pair(cid, vols[cid]))
        elif cid in masks:
            out.append(Pair(cid, vols[cid], masks[cid]))
        else:
            problems.append(Problem(label, cid, str(vols[cid].path), "no label map with this case id (skipped)"))
    return out


def chosen_methods(run: RunConfig, cfg: UtilityConfig) -> dict[str, InputFolder]:
    """method name -> its parsed folder, for the methods to evaluate."""
    folders = run.folders().methods
    if not cfg.methods:
        return folders
    missing = [m for m in cfg.methods if m not in folders]
    if missing:
        have = ", ".join(folders) or "none"
        raise ConfigError(f"utility.methods: {', '.join(map(repr, missing))} not among the run's methods ({have})")
    return {m: folders[m] for m in cfg.methods}


def conditioning_masks(run: RunConfig, method: str) -> str | None:
    """The folder of a method's conditioning masks: ``method_masks[method]``, else ``reference_masks``."""
    return run.method_masks.get(method) or run.reference_masks


def assemble(run: RunConfig, cfg: UtilityConfig, *, masks: bool) -> Inputs:
    """Pair every set (module docstring). ``masks``: segmentation pairs (label maps required) or probe
    sets (volumes only)."""
    problems: list[Problem] = []
    run_ref = run.folders().reference
    real_folder = utility_folder("train_reference", cfg.train_reference) if cfg.train_reference else run_ref
    if real_folder is None:
        raise ConfigError("utility: no real training volumes: set `reference` (or [utility] train_reference)")
    real_vols = _volumes(real_folder, "utility:real", problems)
    ref_vols: dict[str, Source] | None = None

    def paired_reference() -> dict[str, Source]:
        nonlocal ref_vols
        if ref_vols is None:
            ref_vols = real_vols if real_folder is run_ref else (
                _volumes(run_ref, "reference", []) if run_ref is not None else {})
        return ref_vols
    real_masks = None
    if masks:
        mdir = cfg.train_masks or run.reference_masks
        if mdir is None:
            raise ConfigError("utility: seg-tstr needs the real training label maps: set `reference_masks` (or "
                              "[utility] train_masks)")
        real_masks = _masks(mdir, "utility:real:masks", problems)
    real = _pairs(real_vols, real_masks, "utility:real", problems)

    methods: dict[str, list[Pair]] = {}
    for name, folder in chosen_methods(run, cfg).items():
        vols = _volumes(folder, name, problems, paired_reference() if folder.read.uses_reference else None)
        mm = None
        if masks:
            mdir = conditioning_masks(run, name)
            if mdir is None:
                raise ConfigError(f"utility: no conditioning masks for method {name!r}: set method_masks.{name} or "
                                  "reference_masks (the label maps the generator was conditioned on)")
            mm = _masks(mdir, f"{name}:masks", problems)
        methods[name] = _pairs(vols, mm, name, problems)

    if cfg.test_reference is not None:
        test_vols = _volumes(utility_folder("test_reference", cfg.test_reference), "utility:test", problems)
        tm = _masks(cfg.test_masks, "utility:test:masks", problems) if masks and cfg.test_masks else None
        if masks and tm is None:
            raise ConfigError("utility.test_masks: seg-tstr needs the label maps of the test volumes")
        test = _pairs(test_vols, tm, "utility:test", problems)
        rule = f"held-out folder {utility_folder('test_reference', cfg.test_reference).path}"
    elif cfg.test_fraction is not None:
        held = set(hash_split([p.case_id for p in real], cfg.test_fraction))
        test = [p for p in real if p.case_id in held]
        rule = (f"{len(test)} of {len(real)} real cases ({cfg.test_fraction:g}) chosen by sha256(case id), held out "
                "of every training arm")
    else:
        raise ConfigError("utility: name a held-out real test set: [utility] test_reference (+ test_masks for "
                          "seg-tstr), or test_fraction")
    if not test:
        raise ConfigError(f"utility: the real test set ({rule}) has no usable case")

    held_out = {p.case_id for p in test}
    excluded: list[tuple[str, str, str]] = []

    def keep(pairs: list[Pair], label: str) -> list[Pair]:
        out = []
        for p in pairs:
            if p.case_id in held_out:
                excluded.append((label, p.case_id, "case id in the real test set: not used for training"))
            else:
                out.append(p)
        return out

    real = keep(real, "real")
    methods = {m: keep(ps, m) for m, ps in methods.items()}
    return Inputs(real, methods, test, rule, problems, excluded)
