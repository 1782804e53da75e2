"""Discover volumes in folders and pair generated <-> reference <-> masks <-> prompt by case id.

Case id rules are those of :func:`baselines.base.generic_case_id` (file name without volume
extension; GenerateCT's ``sample-['name']`` wrapper removed), refined by each peer adapter.
Nothing is dropped silently: unpaired files, duplicate ids and unreadable entries are returned as
:class:`Problem` rows with a reason, and the runner writes them to ``errors.csv``.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path

from .errors import ConfigError


@dataclass(frozen=True)
class CaseFile:
    case_id: str
    path: Path
    adapter: str


@dataclass(frozen=True)
class Problem:
    method: str  # method name, "reference", or "<method>:masks"
    case_id: str
    path: str
    reason: str


@dataclass
class Case:
    case_id: str
    reference: CaseFile | None = None
    generated: dict[str, CaseFile] = field(default_factory=dict)
    reference_mask: Path | None = None
    method_masks: dict[str, Path] = field(default_factory=dict)
    prompt: str | None = None


@dataclass
class Pairing:
    cases: list[Case]
    problems: list[Problem]

    def case(self, case_id: str) -> Case:
        for c in self.cases:
            if c.case_id == case_id:
                return c
        raise KeyError(case_id)


def discover(folder: str | Path, adapter: str = "nifti", label: str = "reference") -> tuple[dict[str, CaseFile], list[Problem]]:
    """Map case id -> file for every volume the adapter recognises in ``folder``."""
    from baselines import get_adapter

    folder = Path(folder)
    if not folder.is_dir():
        raise ConfigError(f"{label}: {folder} is not a folder")
    ad = get_adapter(adapter)
    found: dict[str, CaseFile] = {}
    problems: list[Problem] = []
    for p in ad.list_files(folder):
        cid = ad.case_id(p)
        if cid in found:
            problems.append(Problem(label, cid, str(p), f"duplicate case id {cid!r}: also {found[cid].path.name}; both skipped"))
            continue
        found[cid] = CaseFile(cid, p, ad.name)
    dups = {pr.case_id for pr in problems}
    for cid in dups:
        found.pop(cid, None)
    # label maps a peer writes beside its volumes (MAISI _label, MedSyn _lobe/...) are not problems
    companions = {Path(m).resolve() for cf in found.values() for m in ad.masks(cf.path).values()}
    others = [p for p in sorted(folder.iterdir()) if not p.name.startswith(".") and not ad.is_candidate(p)
              and p.resolve() not in companions and not p.name.endswith((".txt", ".json", ".csv", ".md"))]
    for p in others:
        problems.append(Problem(label, ad.case_id(p), str(p), f"not a volume the '{ad.name}' adapter reads (ignored)"))
    return found, problems


def load_prompts(path: str | Path) -> dict[str, str]:
    """Prompts from a CSV (columns ``case_id,prompt``) or JSON (``{case_id: prompt}`` or a list of rows)."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"prompts file {p} does not exist")
    if p.suffix.lower() == ".json":
        data = json.loads(p.read_text(encoding="utf-8"))
        if isinstance(data, dict):
            return {str(k): str(v) for k, v in data.items()}
        return {str(r["case_id"]): str(r["prompt"]) for r in data}
    with p.open(newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    if not rows or not {"case_id", "prompt"} <= set(rows[0]):
        raise ConfigError(f"{p}: expected a CSV with columns case_id,prompt")
    return {r["case_id"]: r["prompt"] for r in rows}


def pair_cases(reference: str | Path | None, methods: dict[str, tuple[str | Path, str]], *,
               reference_adapter: str = "nifti", reference_masks: str | Path | None = None,
               method_masks: dict[str, str | Path] | None = None, prompts: str | Path | dict[str, str] | None = None) -> Pairing:
    """Pair every method's files with the reference by case id.

    ``methods`` maps method name -> (folder, adapter name). A generated case with no reference, or
    a reference case missing from a method, is reported as a problem; the reference case is still
    scored as ``GT`` and the other methods still run.
    """
    problems: list[Problem] = []
    ref: dict[str, CaseFile] = {}
    if reference is not None:
        ref, pr = discover(reference, reference_adapter, "reference")
        problems += pr
    gens: dict[str, dict[str, CaseFile]] = {}
    for name, (folder, adapter) in methods.items():
        gens[name], pr = discover(folder, adapter, name)
        problems += pr
    ids = set(ref)
    for g in gens.values():
        ids |= set(g)
    prompt_map: dict[str, str] = {}
    if isinstance(prompts, dict):
        prompt_map = dict(prompts)
    elif prompts is not None:
        prompt_map = load_prompts(prompts)
    masks_ref = _mask_index(reference_masks, "reference:masks", problems) if reference_masks else {}
    masks_m = {m: _mask_index(d, f"{m}:masks", problems) for m, d in (method_masks or {}).items()}
    cases: list[Case] = []
    for cid in sorted(ids):
        c = Case(cid, reference=ref.get(cid))
        for name, g in gens.items():
            if cid in g:
                if reference is not None and cid not in ref:
                    problems.append(Problem(name, cid, str(g[cid].path), "no reference volume with this case id (unpaired)"))
                c.generated[name] = g[cid].__class__(cid, g[cid].path, g[cid].adapter)
            elif cid in ref:
                problems.append(Problem(name, cid, "", f"method {name!r} has no volume for reference case {cid!r}"))
        if cid in masks_ref:
            c.reference_mask = masks_ref[cid]
        for m, idx in masks_m.items():
            if cid in idx:
                c.method_masks[m] = idx[cid]
        c.prompt = prompt_map.get(cid) or _sidecar_prompt(c)
        cases.append(c)
    return Pairing(cases, problems)


def _mask_index(folder: str | Path, label: str, problems: list[Problem]) -> dict[str, Path]:
    found, pr = discover(folder, "nifti", label)
    problems += pr
    return {cid: cf.path for cid, cf in found.items()}


def _sidecar_prompt(case: Case) -> str | None:
    from baselines import get_adapter

    files = ([case.reference] if case.reference else []) + list(case.generated.values())
    for cf in files:
        txt = get_adapter(cf.adapter).prompt(cf.path)
        if txt:
            return txt
    return None
