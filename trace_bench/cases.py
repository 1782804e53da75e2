"""Discover volumes in folders and pair generated <-> reference <-> masks <-> prompt by case id.

Case id rules are those of :func:`baselines.base.generic_case_id` (file name without volume
extension; GenerateCT's ``sample-['name']`` wrapper removed), refined by each peer adapter.
Nothing is dropped silently: unpaired files, duplicate ids, unreadable entries, hidden volume files
(name starting with ``.``) and invalid case ids are returned as :class:`Problem` rows with a reason,
and the runner writes them to ``errors.csv``.

Case ids are data, never paths (:func:`case_id_problem`): an id must be non-empty, not ``.`` or ``..``,
and hold no path separator (``/``, ``\\``), control character (Unicode category Cc: NUL, newline, tab,
escape...), line or paragraph separator (U+2028, U+2029) or bidirectional override (U+202A-U+202E,
U+2066-U+2069). Files whose id breaks the rule are skipped with a problem row naming the file; the other
cases still run. :func:`case_file_stem` is the one place an id becomes a file name.

Hidden files: an entry whose name starts with ``.`` and ends with a volume suffix (``.lung3.nii.gz``,
macOS ``._lung1.nii.gz`` resource forks) is listed as skipped (``hidden file``), not read: such names are
mostly copies and artefacts of tools (AppleDouble files are not volumes at all), and reading them would
turn them into cases the user never meant; renaming the file scores it. Other hidden entries (``.DS_Store``,
``.git``) are ignored.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, field
from pathlib import Path

from .errors import ConfigError
from .inputs import InputError, check_input, detached_files, input_problem

#: bidirectional formatting characters that reorder displayed text (a case id could spoof another in reports)
_BIDI = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
#: an id longer than this many UTF-8 bytes is shortened for file names (:func:`case_file_stem`); file systems
#: allow 255 bytes per name, and record names add suffixes such as ``.segmentation.error.json``
MAX_STEM_BYTES = 100
#: bytes of the id kept before the hash in a shortened stem
STEM_PREFIX_BYTES = 48


def case_id_problem(case_id: str) -> str | None:
    """Why ``case_id`` cannot be a case id (module docstring), or None."""
    import unicodedata

    if not isinstance(case_id, str) or not case_id.strip():
        return "empty case id"
    if case_id in (".", ".."):
        return f"case id {case_id!r} is a path component"
    if "/" in case_id or "\\" in case_id:
        return f"case id {case_id!r} holds a path separator"
    for ch in case_id:
        cat = unicodedata.category(ch)
        if cat == "Cc" or ch in ("\u2028", "\u2029"):
            return f"case id {case_id!r} holds a control character (U+{ord(ch):04X})"
        if ch in _BIDI:
            return f"case id {case_id!r} holds a bidirectional override (U+{ord(ch):04X})"
    return None


def case_file_stem(case_id: str, max_bytes: int = MAX_STEM_BYTES) -> str:
    """The file-name stem of a case id's records and plots: the id itself when it is at most
    ``max_bytes`` (:data:`MAX_STEM_BYTES`) UTF-8 bytes and does not start with ``.``; otherwise its first
    :data:`STEM_PREFIX_BYTES` bytes (whole characters) + ``~`` + the first 16 hex digits of the id's
    sha256 (distinct ids keep distinct stems). Ids are validated first (:func:`case_id_problem`).
    ``max_bytes=0`` always gives the shortened form (:func:`trace_bench.results.layout.safe_name` uses it
    when percent-encoding makes a name too long)."""
    import hashlib

    why = case_id_problem(case_id)
    if why is not None:
        raise ConfigError(f"{why}; case ids must be data, not paths")
    raw = case_id.encode("utf-8")
    if len(raw) <= max_bytes and not case_id.startswith("."):
        return case_id
    prefix = raw[:STEM_PREFIX_BYTES].decode("utf-8", "ignore").lstrip(".")
    return f"{prefix}~{hashlib.sha256(raw).hexdigest()[:16]}"


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
    """Map case id -> file for every volume the adapter recognises in ``folder``.

    Every entry is first checked with :func:`trace_bench.inputs.check_input` (stat only; FIFOs,
    devices and sockets are never opened): dangling or looping symlinks, non-regular and unreadable
    entries become :class:`Problem` rows and are never handed to the adapter's ``is_candidate`` /
    ``detect`` / ``case_id``. The adapter's ``list_files`` enumerates the folder itself; the shipped
    adapters only look inside regular files (``is_file``), and whatever it returns is checked again.
    """
    from baselines import get_adapter

    folder = Path(folder)
    if not folder.is_dir():
        raise ConfigError(f"{label}: {folder} is not a folder")
    ad = get_adapter(adapter)
    problems: list[Problem] = []
    try:
        everything = sorted(folder.iterdir())
    except OSError as e:
        raise ConfigError(f"{label}: cannot list folder {folder} ({e.strerror or e})") from None
    from .io import VOLUME_SUFFIXES

    entries = [p for p in everything if not p.name.startswith(".")]
    for p in everything:
        if p.name.startswith(".") and p.name.lower().endswith(VOLUME_SUFFIXES):
            why = "hidden file (name starts with '.'): not read; rename it without the '.' to score it (skipped)"
            problems.append(Problem(label, _safe_case_id(ad, p), str(p), why))
    bad: set[Path] = set()
    for p in entries:
        try:
            check_input(p)
        except InputError as e:
            bad.add(p)
            problems.append(Problem(label, _safe_case_id(ad, p), str(e.path), f"{e.reason} (skipped)"))
    try:
        listed = ad.list_files(folder)
    except OSError as e:
        raise ConfigError(f"{label}: cannot list folder {folder} ({e.strerror or e})") from None
    found: dict[str, CaseFile] = {}
    dup_problems: list[Problem] = []
    for p in listed:
        if p in bad or p.parent in bad:
            continue  # already reported
        reason = input_problem(p)
        if reason is not None:
            bad.add(p)
            problems.append(Problem(label, _safe_case_id(ad, p), str(p), f"{reason} (skipped)"))
            continue
        cid = ad.case_id(p)
        bad_id = case_id_problem(cid)
        if bad_id is not None:
            problems.append(Problem(label, ascii(cid), str(p), f"{bad_id}: case ids are data, not paths; rename the "
                                                               "file (skipped)"))
            continue
        if cid in found:
            dup_problems.append(Problem(label, cid, str(p), f"duplicate case id {cid!r}: also {found[cid].path.name}; both skipped"))
            continue
        found[cid] = CaseFile(cid, p, ad.name)
    problems += dup_problems
    for cid in {pr.case_id for pr in dup_problems}:
        found.pop(cid, None)
    # label maps a peer writes beside its volumes (MAISI _label, MedSyn _lobe/...) are not problems
    companions = {Path(m).resolve() for cf in found.values() for m in ad.masks(cf.path).values()}
    for cf in found.values():  # NRRD / MetaImage data files belong to their header
        try:
            companions |= {f.resolve() for f in detached_files(cf.path)}
        except InputError:
            pass
    others = [p for p in entries if p not in bad and not ad.is_candidate(p)
              and p.resolve() not in companions and not p.name.endswith((".txt", ".json", ".csv", ".md"))]
    for p in others:
        problems.append(Problem(label, ad.case_id(p), str(p), f"not a volume the '{ad.name}' adapter reads (ignored)"))
    return found, problems


def _safe_case_id(ad: "object", path: Path) -> str:
    """The adapter's case id for a path it must not inspect (name rules only), else the generic rule."""
    from baselines.base import generic_case_id

    if getattr(ad, "name", "") == "auto":  # auto's case_id detects the writer, i.e. reads the file
        return generic_case_id(path)
    try:
        return ad.case_id(path)  # type: ignore[attr-defined]
    except Exception:  # peer rules are name based; any failure falls back to the generic rule
        return generic_case_id(path)


_PROMPT_FIX = ("expected a CSV with columns case_id,prompt (one row per case; wrap a prompt holding commas, "
               "quotes or line breaks in double quotes and double its inner quotes) or JSON "
               "{case_id: prompt} / [{\"case_id\": ..., \"prompt\": ...}]")


def load_prompts(path: str | Path) -> dict[str, str]:
    """Prompts from a CSV (columns ``case_id,prompt``) or JSON (``{case_id: prompt}`` or a list of rows).

    Text is UTF-8, with or without a byte-order mark (Excel's "CSV UTF-8" export). CSV is parsed
    strictly: an unterminated or stray quote, a row with a different number of fields than the
    header, an empty or repeated case id are refused. Every refusal is a one-line
    :class:`~trace_bench.errors.ConfigError` naming the file, the line and what to fix.
    """
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"prompts file {p} does not exist" if not p.exists() and not p.is_symlink()
                          else f"prompts file {p}: {input_problem(p) or 'not a regular file'}")
    reason = input_problem(p)
    if reason is not None:
        raise ConfigError(f"prompts file {p}: {reason}")
    raw = p.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise ConfigError(f"{p}: line {line}: not UTF-8 text (byte 0x{raw[e.start]:02x} at offset {e.start}); "
                          "re-save the file as UTF-8") from None
    if p.suffix.lower() == ".json":
        return _prompts_json(p, text)
    return _prompts_csv(p, text)


def _prompts_json(p: Path, text: str) -> dict[str, str]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise ConfigError(f"{p}: line {e.lineno} column {e.colno}: invalid JSON ({e.msg}); {_PROMPT_FIX}") from None
    if isinstance(data, dict):
        out = {}
        for k, v in data.items():
            if not isinstance(v, str):
                raise ConfigError(f"{p}: prompt of case {k!r} is {type(v).__name__}, expected a string; {_PROMPT_FIX}")
            out[str(k)] = v
        return out
    if isinstance(data, list):
        out = {}
        for i, r in enumerate(data):
            if not (isinstance(r, dict) and "case_id" in r and isinstance(r.get("prompt"), str)):
                raise ConfigError(f"{p}: row {i} is not an object with 'case_id' and a string 'prompt'; {_PROMPT_FIX}")
            cid = str(r["case_id"])
            if cid in out:
                raise ConfigError(f"{p}: row {i}: case id {cid!r} appears twice; keep one prompt per case")
            out[cid] = r["prompt"]
        return out
    raise ConfigError(f"{p}: JSON holds a {type(data).__name__}; {_PROMPT_FIX}")


def _prompts_csv(p: Path, text: str) -> dict[str, str]:
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    rows: list[tuple[int, list[str]]] = []
    start = 1
    try:
        for row in reader:
            if row:  # blank lines are skipped
                rows.append((start, row))
            start = reader.line_num + 1
    except csv.Error as e:
        raise ConfigError(f"{p}: line {start}: malformed CSV ({e}), e.g. an unterminated or stray quote; {_PROMPT_FIX}") from None
    if not rows:
        raise ConfigError(f"{p}: empty file; {_PROMPT_FIX}")
    header = [h.strip() for h in rows[0][1]]
    if not {"case_id", "prompt"} <= set(header):
        raise ConfigError(f"{p}: line {rows[0][0]}: header is {','.join(header)!r}; {_PROMPT_FIX}")
    i_id, i_prompt = header.index("case_id"), header.index("prompt")
    out: dict[str, str] = {}
    for line, row in rows[1:]:
        if len(row) != len(header):
            raise ConfigError(f"{p}: line {line}: {len(row)} field(s), the header has {len(header)}; {_PROMPT_FIX}")
        cid = row[i_id].strip()
        if not cid:
            raise ConfigError(f"{p}: line {line}: empty case_id; {_PROMPT_FIX}")
        if cid in out:
            raise ConfigError(f"{p}: line {line}: case id {cid!r} appears twice; keep one prompt per case")
        out[cid] = row[i_prompt]
    return out


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
        c.prompt = prompt_map.get(cid) or _sidecar_prompt(c, problems)
        cases.append(c)
    return Pairing(cases, problems)


def _mask_index(folder: str | Path, label: str, problems: list[Problem]) -> dict[str, Path]:
    found, pr = discover(folder, "nifti", label)
    problems += pr
    return {cid: cf.path for cid, cf in found.items()}


def _sidecar_prompt(case: Case, problems: list[Problem]) -> str | None:
    """The first sidecar ``.txt`` prompt beside the case's files; unreadable ones become problems."""
    from baselines import get_adapter

    files = ([("reference", case.reference)] if case.reference else []) + list(case.generated.items())
    for label, cf in files:
        try:
            txt = get_adapter(cf.adapter).prompt(cf.path)
        except InputError as e:
            problems.append(Problem(label, case.case_id, str(e.path), f"{e.reason} (case kept without this prompt)"))
            continue
        if txt:
            return txt
    return None
