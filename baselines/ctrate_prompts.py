"""CT-RATE prompts: the TRACE paper's text condition ``"{age} years old {sex}: {impression}"``.

Sources (read, not copied):

* reports CSV columns (``dataset/radiology_text_reports/{train,validation}_reports.csv`` of
  ``ibrahimhamamci/CT-RATE``): ``VolumeName, ClinicalInformation_EN, Technique_EN, Findings_EN,
  Impressions_EN`` (CT-CLIP ``scripts/data_inference_nii.py: load_accession_text`` reads
  ``VolumeName``, ``Findings_EN``, ``Impressions_EN``; the full header is quoted in several public
  CT-RATE loaders);
* metadata CSV columns ``PatientSex`` (``M`` / ``F``) and ``PatientAge`` (DICOM age string, e.g.
  ``036Y``), see :mod:`baselines.ctrate`;
* prompt format: the TRACE paper, "{age} years old {sex}: {impression}".

The template is a Python format string with named fields (:data:`FIELDS`): ``age`` (whole years),
``age_raw``, ``sex`` (``male`` / ``female``), ``sex_raw``, ``impression``, ``findings``,
``clinical_information``, ``technique``, ``volume_name``, ``case_id``. A case whose row is missing,
whose age is not in years, whose sex is not M/F, or whose impression is empty is refused with a
:class:`PromptError` naming the CSV: never an empty or defaulted prompt.
"""

from __future__ import annotations

import csv
import re
import string
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

from trace_bench.atomic import atomic_path
from trace_bench.errors import ConfigError, TraceBenchError

from .base import strip_volume_suffix
from .ctrate_tables import lookup, read_table

PAPER_TEMPLATE = "{age} years old {sex}: {impression}"
#: reports CSV columns used (official names) -> template field
REPORT_FIELDS = {"Impressions_EN": "impression", "Findings_EN": "findings",
                 "ClinicalInformation_EN": "clinical_information", "Technique_EN": "technique"}
FIELDS = ("age", "age_raw", "sex", "sex_raw", "impression", "findings", "clinical_information", "technique",
          "volume_name", "case_id")
SEX_WORDS = {"M": "male", "F": "female"}
_AGE = re.compile(r"^\s*(?P<n>\d{1,3})\s*(?P<unit>[DWMYdwmy]?)\s*$")
_UNITS = {"D": "days", "W": "weeks", "M": "months", "Y": "years"}


class PromptError(TraceBenchError):
    """A case's prompt cannot be built (missing row or value); one line naming the CSV."""

    def __init__(self, case_id: str, reason: str):
        self.case_id = case_id
        self.reason = " ".join(str(reason).split())
        super().__init__(f"{case_id}: {self.reason}")


def parse_age(text: str, *, where: str = "") -> int:
    """Whole years from a DICOM age string (``"062Y"`` -> 62; a bare number is years).

    Ages in days, weeks or months (``D``/``W``/``M``) are refused: the paper's prompt says
    "years old", and converting would change the text the model was trained on.
    """
    m = _AGE.match(text or "")
    if not m:
        raise PromptError(where, f"PatientAge {text!r} is not a DICOM age string like '062Y'")
    unit = (m.group("unit") or "Y").upper()
    if unit != "Y":
        raise PromptError(where, f"PatientAge {text!r} is in {_UNITS[unit]}, not years; the prompt's {{age}} is in "
                                 "years (write the prompt for this case by hand)")
    return int(m.group("n"))


def parse_sex(text: str, *, where: str = "") -> str:
    """``M`` -> ``male``, ``F`` -> ``female``; anything else is refused."""
    key = (text or "").strip().upper()
    if key not in SEX_WORDS:
        raise PromptError(where, f"PatientSex {text!r} is not M or F")
    return SEX_WORDS[key]


#: a field's format spec: at most alignment, sign, a width / precision of up to 3 digits and a type
#: (``{age:>3}``, ``{age:03d}``); a prompt is text, so nothing wider is useful and a huge width would
#: build a string of that size
_SPEC = re.compile(r"[<>=^]?[+\- ]?0?\d{0,3}(\.\d{1,3})?[sdfg]?")
#: control characters refused in a template (tab and newline are text)
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


def check_template(template: str) -> str:
    """Refuse (one-line :class:`ConfigError`) a template with a control character (NUL, ...), a field that
    is not one of :data:`FIELDS` by its plain name (no attribute or index access: ``{age.__class__}`` reads
    Python internals), a conversion other than ``!s`` / ``!r``, or a format spec beyond :data:`_SPEC`."""
    if not isinstance(template, str):
        raise ConfigError(f"prompt template: expected text, got {type(template).__name__}")
    m = _CONTROL.search(template)
    if m:
        raise ConfigError(f"prompt template {template!r}: control character {m.group()!r} at position {m.start()}")
    try:
        parts = [(f, conv, spec) for _, f, spec, conv in string.Formatter().parse(template) if f is not None]
    except ValueError as e:
        raise ConfigError(f"prompt template {template!r}: {e}") from None
    names = {f for f, _, _ in parts}
    bad = sorted(n for n in names if n not in FIELDS)
    if bad or "" in names:
        raise ConfigError(f"prompt template {template!r}: unknown field(s) {', '.join(bad) or '{}'} (plain names "
                          f"only); fields: {', '.join(FIELDS)}")
    for f, conv, spec in parts:
        if conv not in (None, "s", "r"):
            raise ConfigError(f"prompt template {template!r}: field {{{f}!{conv}}}: conversion must be !s or !r")
        if spec and not _SPEC.fullmatch(spec):
            raise ConfigError(f"prompt template {template!r}: field {{{f}:{spec}}}: format spec not allowed (at most "
                              "alignment, sign, a width of up to 3 digits and a type, e.g. {age:>3})")
    return template


def prompt_fields(report_row: dict[str, str], meta_row: dict[str, str], *, where: str = "") -> dict[str, object]:
    """Template fields of one case from its reports row and metadata row."""
    volume = (report_row.get("VolumeName") or meta_row.get("VolumeName") or "").strip()
    cid = strip_volume_suffix(volume)
    tag = f"{cid} ({where})" if where else cid
    age_raw = (meta_row.get("PatientAge") or "").strip()
    sex_raw = (meta_row.get("PatientSex") or "").strip()
    fields: dict[str, object] = {"age": parse_age(age_raw, where=tag), "age_raw": age_raw,
                                 "sex": parse_sex(sex_raw, where=tag), "sex_raw": sex_raw,
                                 "volume_name": volume, "case_id": cid}
    for col, name in REPORT_FIELDS.items():
        fields[name] = (report_row.get(col) or "").strip()
    if not fields["impression"]:
        raise PromptError(tag, "Impressions_EN is empty")
    return fields


def build_prompt(report_row: dict[str, str], meta_row: dict[str, str], template: str = PAPER_TEMPLATE, *,
                 where: str = "") -> str:
    """The prompt of one case: ``template`` filled from its reports and metadata rows."""
    return check_template(template).format(**prompt_fields(report_row, meta_row, where=where))


@dataclass
class PromptTable:
    prompts: dict[str, str]  # case_id -> prompt
    problems: list[str]  # one line per case without a prompt


def build_prompts(reports: Sequence[str | Path], metadata: Sequence[str | Path], *, template: str = PAPER_TEMPLATE,
                  cases: Iterable[str] | None = None) -> PromptTable:
    """Prompts for ``cases`` (case ids / volume names; default: every report row).

    A case without a report row, without a metadata row, or with an unusable value is listed in
    ``problems`` (one line each) and gets no prompt.
    """
    check_template(template)
    if not reports or not metadata:
        raise ConfigError("CT-RATE prompts need at least one --reports CSV and one --metadata CSV")
    rep_tables = [read_table(r, required=("VolumeName", "Impressions_EN"), kind="reports") for r in reports]
    meta_tables = [read_table(m, required=("VolumeName", "PatientSex", "PatientAge"), kind="metadata") for m in metadata]
    if cases is None:
        ids = sorted({cid for t in rep_tables for cid in t.rows})
    else:
        ids = [strip_volume_suffix(Path(str(c)).name) for c in cases]
    out: dict[str, str] = {}
    problems: list[str] = []
    for cid in ids:
        try:
            rep_row, rep_csv = lookup(Path(cid + ".nii.gz"), [t.path for t in rep_tables], kind="reports",
                                      required=("VolumeName", "Impressions_EN"))
            meta_row, meta_csv = lookup(Path(cid + ".nii.gz"), [t.path for t in meta_tables], kind="metadata",
                                        required=("VolumeName", "PatientSex", "PatientAge"))
            out[cid] = build_prompt(rep_row, meta_row, template, where=f"{rep_csv} / {meta_csv}")
        except PromptError as e:
            problems.append(str(e))
        except TraceBenchError as e:  # VolumeError of a missing row: "<name>.nii.gz: no row ... (csv)"
            problems.append(f"{cid}: {getattr(e, 'reason', e)}")
    return PromptTable(out, problems)


def write_prompts_csv(prompts: dict[str, str], out: str | Path) -> Path:
    """Write ``case_id,prompt`` rows (the format ``trace-bench run --prompts`` reads); atomic."""
    dst = Path(out)
    dst.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(dst, ".csv") as tmp:
        with open(tmp, "w", encoding="utf-8", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["case_id", "prompt"])
            for cid in sorted(prompts):
                w.writerow([cid, prompts[cid]])
    return dst


__all__ = ["FIELDS", "PAPER_TEMPLATE", "PromptError", "PromptTable", "REPORT_FIELDS", "build_prompt", "build_prompts",
           "check_template", "parse_age", "parse_sex", "prompt_fields", "write_prompts_csv"]
