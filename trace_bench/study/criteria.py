"""The questions of a reader study: the paper's Table 3 criteria (``paper`` preset) or a team's own.

A criterion is either a *scale* (integer scores ``low..high``, with short text anchors for some
points; the paper uses 1..10) or a *choice* (one of a few labels). The one choice criterion the kit
knows about is the detection question, ``Which do you think this is? real / generated``, whose
answers :mod:`trace_bench.study.score` turns into a real-vs-generated detection rate.

Custom criteria come from a JSON file::

    {"criteria": [
      {"id": "sharpness", "label": "Sharpness", "group": "Image quality", "scale": [1, 5],
       "anchors": {"1": "blurred", "3": "acceptable", "5": "crisp"}},
      {"id": "detection", "label": "Which do you think this is?", "choices": ["real", "generated"],
       "detection": true}
    ]}

(a bare list of criteria is accepted too). Every problem is a one-line
:class:`~trace_bench.errors.ConfigError` naming the file and the criterion.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ConfigError

#: id of the optional real-or-generated question
DETECTION_ID = "detection"
#: the two answers of the detection question
DETECTION_CHOICES = ("real", "generated")
_ID = re.compile(r"[a-z][a-z0-9_]{0,39}")
_MAX_SCALE_POINTS = 101


@dataclass(frozen=True)
class Criterion:
    """One question asked of every item. ``kind`` is ``"scale"`` (integer ``low..high``) or
    ``"choice"`` (one of ``choices``); ``detection`` marks the real-or-generated question."""

    id: str
    label: str
    group: str = ""
    kind: str = "scale"
    low: int = 1
    high: int = 10
    anchors: dict[int, str] = field(default_factory=dict)
    choices: tuple[str, ...] = ()
    detection: bool = False

    def valid(self, answer: str) -> bool:
        """Whether ``answer`` (as written in an answers CSV) is a legal answer to this question."""
        if self.kind == "choice":
            return answer in self.choices
        try:
            v = int(answer)
        except ValueError:
            return False
        return str(v) == answer.strip() and self.low <= v <= self.high

    def to_json(self) -> dict[str, Any]:
        """The JSON form (the one :func:`load_criteria` reads back)."""
        d: dict[str, Any] = {"id": self.id, "label": self.label, "group": self.group}
        if self.kind == "choice":
            d["choices"] = list(self.choices)
            if self.detection:
                d["detection"] = True
        else:
            d["scale"] = [self.low, self.high]
            d["anchors"] = {str(k): v for k, v in sorted(self.anchors.items())}
        return d


def _scale(cid: str, label: str, group: str, a1: str, a5: str, a10: str) -> Criterion:
    return Criterion(cid, label, group, "scale", 1, 10, {1: a1, 5: a5, 10: a10})


#: Table 3 of the TRACE paper: eight criteria in three groups, scored 1..10 (anchors are ours).
PAPER_CRITERIA: tuple[Criterion, ...] = (
    _scale("structural_accuracy", "Structural accuracy", "Anatomical fidelity",
           "anatomy unrecognisable or grossly wrong", "main structures present, some misplaced or malformed",
           "all structures present, correctly shaped and placed"),
    _scale("tissue_contrast", "Tissue contrast", "Anatomical fidelity",
           "tissues cannot be told apart", "main tissues distinguishable, unnatural densities",
           "realistic densities and contrast of every tissue"),
    _scale("pathological_representation", "Pathological representation", "Anatomical fidelity",
           "findings absent or implausible", "findings suggested but unconvincing",
           "findings realistic and consistent with the case"),
    _scale("intra_slice_consistency", "Intra-slice consistency", "Spatiotemporal consistency",
           "slices internally incoherent (broken, patchy)", "minor local inconsistencies",
           "every slice coherent throughout"),
    _scale("inter_slice_continuity", "Inter-slice continuity", "Spatiotemporal consistency",
           "structures jump between neighbouring slices", "occasional discontinuities when scrolling",
           "smooth, continuous structures across slices"),
    _scale("temporal_artifacts", "Temporal artifacts", "Spatiotemporal consistency",
           "severe flicker, ghosting or banding along z", "noticeable but not disturbing artifacts",
           "no artifact along z"),
    _scale("overall_image_quality", "Overall image quality", "Overall diagnostic utility",
           "non-diagnostic", "diagnostic with limitations", "excellent, equal to clinical scans"),
    _scale("confidence", "Confidence level", "Overall diagnostic utility",
           "I could not read this volume with any confidence", "moderately confident reading",
           "fully confident reading"),
)

#: the optional question "Which do you think this is? real / generated"
DETECTION_CRITERION = Criterion(DETECTION_ID, "Which do you think this is?", "Real or generated", "choice",
                                choices=DETECTION_CHOICES, detection=True)


def paper_criteria(detection: bool = True) -> list[Criterion]:
    """The ``paper`` preset: Table 3's eight criteria, plus the detection question unless ``detection`` is False."""
    return list(PAPER_CRITERIA) + ([DETECTION_CRITERION] if detection else [])


def load_criteria(spec: str | Path = "paper", *, detection: bool = True) -> list[Criterion]:
    """``"paper"`` -> :func:`paper_criteria`; otherwise a JSON file of criteria (see the module
    docstring). ``detection=False`` drops the detection question whichever source it came from."""
    if str(spec) == "paper":
        return paper_criteria(detection)
    p = Path(spec)
    if not p.is_file():
        raise ConfigError(f"--criteria {p}: no such file (expected 'paper' or a JSON file of criteria)")
    try:
        data = json.loads(p.read_text(encoding="utf-8-sig"))
    except json.JSONDecodeError as e:
        raise ConfigError(f"{p}: invalid JSON ({e.msg}, line {e.lineno} column {e.colno})") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{p}: not UTF-8 text; expected a JSON file of criteria") from None
    out = criteria_from_json(data, source=str(p))
    return [c for c in out if detection or not c.detection]


def _common(d: Any, source: str, i: int) -> tuple[str, str, str]:
    """The id, label and group of criterion number ``i`` (from 0), checked (keys, id pattern, one-line texts)."""
    where = f"{source}: criterion {i + 1}"
    if not isinstance(d, dict):
        raise ConfigError(f"{where}: expected an object with id, label and scale or choices")
    unknown = set(d) - {"id", "label", "group", "scale", "anchors", "choices", "detection"}
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(sorted(unknown))} "
                          "(allowed: id, label, group, scale, anchors, choices, detection)")
    cid = d.get("id")
    if not isinstance(cid, str) or not _ID.fullmatch(cid):
        raise ConfigError(f"{where}: id {cid!r}: expected 1-40 lower-case letters, digits or '_', "
                          "starting with a letter")
    where = f"{source}: criterion {cid!r}"
    label = d.get("label")
    if not isinstance(label, str) or not label.strip() or "\n" in label:
        raise ConfigError(f"{where}: label must be a non-empty one-line string")
    group = d.get("group", "")
    if not isinstance(group, str) or "\n" in group:
        raise ConfigError(f"{where}: group must be a one-line string")
    if ("scale" in d) == ("choices" in d):
        raise ConfigError(f"{where}: give exactly one of 'scale' [low, high] or 'choices' [...]")
    return cid, label.strip(), group.strip()


def _choice_criterion(d: dict, cid: str, label: str, group: str, where: str) -> Criterion:
    ch = d["choices"]
    if (not isinstance(ch, list) or len(ch) < 2 or len(set(ch)) != len(ch)
            or not all(isinstance(c, str) and c.strip() and "," not in c for c in ch)):
        raise ConfigError(f"{where}: choices must be a list of at least two distinct non-empty strings without commas")
    if "anchors" in d:
        raise ConfigError(f"{where}: anchors apply to scales only")
    det = d.get("detection", False)
    if not isinstance(det, bool):
        raise ConfigError(f"{where}: detection must be true or false")
    if det and sorted(ch) != sorted(DETECTION_CHOICES):
        raise ConfigError(f"{where}: a detection question must have the choices 'real' and 'generated'")
    return Criterion(cid, label, group, "choice", choices=tuple(ch), detection=det)


def _scale_criterion(d: dict, cid: str, label: str, group: str, where: str) -> Criterion:
    if d.get("detection"):
        raise ConfigError(f"{where}: detection applies to a choices question ['real', 'generated'] only")
    sc = d["scale"]
    if (not isinstance(sc, list) or len(sc) != 2 or not all(isinstance(v, int) and not isinstance(v, bool) for v in sc)
            or sc[0] >= sc[1] or sc[1] - sc[0] + 1 > _MAX_SCALE_POINTS):
        raise ConfigError(f"{where}: scale must be [low, high], integers with low < high and at most "
                          f"{_MAX_SCALE_POINTS} points")
    return Criterion(cid, label, group, "scale", sc[0], sc[1], _anchors(d.get("anchors", {}), sc, where))


def _anchors(raw: Any, sc: list[int], where: str) -> dict[int, str]:
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: anchors must be an object {{\"1\": \"text\", ...}}")
    anchors: dict[int, str] = {}
    for k, v in raw.items():
        try:
            point = int(k)
        except (TypeError, ValueError):
            raise ConfigError(f"{where}: anchor key {k!r} is not an integer") from None
        if not sc[0] <= point <= sc[1]:
            raise ConfigError(f"{where}: anchor {point} is outside the scale {sc[0]}..{sc[1]}")
        if not isinstance(v, str) or not v.strip() or "\n" in v:
            raise ConfigError(f"{where}: anchor {point} must be a non-empty one-line string")
        anchors[point] = v.strip()
    return anchors


def criteria_from_json(data: Any, *, source: str = "criteria") -> list[Criterion]:
    """Validate and build criteria from parsed JSON (``{"criteria": [...]}`` or ``[...]``)."""
    items = data.get("criteria") if isinstance(data, dict) else data
    if not isinstance(items, list) or not items:
        raise ConfigError(f"{source}: expected {{\"criteria\": [...]}} with at least one criterion")
    out: list[Criterion] = []
    seen: set[str] = set()
    for i, d in enumerate(items):
        cid, label, group = _common(d, source, i)
        where = f"{source}: criterion {cid!r}"
        if cid in seen:
            raise ConfigError(f"{where}: id used twice")
        seen.add(cid)
        out.append(_choice_criterion(d, cid, label, group, where) if "choices" in d
                   else _scale_criterion(d, cid, label, group, where))
    if sum(c.detection for c in out) > 1:
        raise ConfigError(f"{source}: at most one detection question")
    return out
