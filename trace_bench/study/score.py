"""Unblind a reader study: read the raters' exported answers, check them against the key, and write
Table 3 (mean +- SD per criterion, rater and method, real volumes as the control row), the
inter-rater agreement per criterion and the real-vs-generated detection rate.

Checks before anything is computed (each a one-line :class:`~trace_bench.errors.ConfigError`):
the key's SHA-256 equals the one recorded at ``make`` time (:func:`.packet.load_key`); every answer
row carries that SHA-256, a known rater, item and criterion and a legal answer; a cell answered
twice with different answers is refused; and every rater answered every item x criterion (missing
ones are listed by item) unless ``allow_incomplete``.

Statistics: mean and sample standard deviation (``ddof = 1``, as usually reported as "mean +- SD")
of the scores of one rater for one method's items on one criterion; agreement and intervals in
:mod:`.agreement`. The detection rate is the share of detection answers that are right (``real``
for a reference volume, ``generated`` otherwise), with Wilson's interval, per rater and pooled
(the pooled interval treats the answers as independent).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..atomic import atomic_write_bytes
from ..errors import ConfigError
from ..results.escape import csv_value
from .agreement import icc_2_1, weighted_kappa, wilson_interval
from .packet import StudyPlan, load_key
from .tables import detection_markdown, study_texts
from .viewer_html import ANSWER_COLUMNS

#: at most this many items are named per rater in an "incomplete" error
_MAX_LISTED = 25


@dataclass(frozen=True)
class Answer:
    rater: str
    item_id: str
    criterion: str
    value: str
    timestamp: str
    source: str  # "file:line"


def read_answers(paths: Sequence[str | Path], plan: StudyPlan, key_sha256: str) -> dict[tuple[str, str, str], Answer]:
    """Every answer of every file, keyed by (rater, item id, criterion), validated against the key."""
    crit = {c.id: c for c in plan.criteria}
    out: dict[tuple[str, str, str], Answer] = {}
    if not paths:
        raise ConfigError("study score: no answers files given (the CSVs the raters exported)")
    for path in paths:
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"answers file {p} does not exist" if not p.exists() else f"answers file {p} is not a file")
        try:
            text = p.read_bytes().decode("utf-8-sig")
        except UnicodeDecodeError:
            raise ConfigError(f"{p}: not UTF-8 text; expected the CSV exported from a study packet") from None
        reader = csv.reader(io.StringIO(text, newline=""))
        try:
            rows = list(reader)
        except csv.Error as e:
            raise ConfigError(f"{p}: malformed CSV ({e})") from None
        rows = [r for r in rows if r]
        if not rows or [h.strip() for h in rows[0][:len(ANSWER_COLUMNS)]] != list(ANSWER_COLUMNS):
            raise ConfigError(f"{p}: header must be {','.join(ANSWER_COLUMNS)} (the CSV exported from a study packet)")
        for line, r in enumerate(rows[1:], start=2):
            where = f"{p}: line {line}"
            if len(r) < len(ANSWER_COLUMNS):
                raise ConfigError(f"{where}: {len(r)} fields, expected {len(ANSWER_COLUMNS)}")
            rater, iid, cid, value, ts, sha = (csv_value(v.strip()) for v in r[:len(ANSWER_COLUMNS)])
            if sha != key_sha256:
                raise ConfigError(f"{where}: answers belong to study key {sha[:12] or '(none)'}..., not to this study's "
                                  f"key {key_sha256[:12]}... (wrong packet, wrong study folder or a modified key)")
            if rater not in plan.orders:
                raise ConfigError(f"{where}: rater {rater!r} is not in the study ({', '.join(plan.orders)})")
            if iid not in plan.items:
                raise ConfigError(f"{where}: item {iid!r} is not in the study")
            if cid not in crit:
                raise ConfigError(f"{where}: criterion {cid!r} is not in the study ({', '.join(crit)})")
            if not crit[cid].valid(value):
                allowed = "|".join(crit[cid].choices) if crit[cid].kind == "choice" else f"{crit[cid].low}..{crit[cid].high}"
                raise ConfigError(f"{where}: {cid} = {value!r} is not a valid answer ({allowed})")
            a = Answer(rater, iid, cid, value, ts, where)
            prev = out.get((rater, iid, cid))
            if prev is not None and prev.value != value:
                raise ConfigError(f"{where}: rater {rater} item {iid} {cid} answered {value!r} here but {prev.value!r} at "
                                  f"{prev.source}; pass only the latest export of each rater")
            out[(rater, iid, cid)] = a
    return out


def missing_answers(answers: dict[tuple[str, str, str], Answer], plan: StudyPlan) -> dict[str, dict[str, list[str]]]:
    """rater -> item id -> criteria without an answer (only items with something missing)."""
    out: dict[str, dict[str, list[str]]] = {}
    for rater, order in plan.orders.items():
        for iid in order:
            miss = [c.id for c in plan.criteria if (rater, iid, c.id) not in answers]
            if miss:
                out.setdefault(rater, {})[iid] = miss
    return out


def describe_missing(missing: dict[str, dict[str, list[str]]], plan: StudyPlan) -> str:
    """One line naming the missing answers by rater and item."""
    parts = []
    nc = len(plan.criteria)
    for rater, items in missing.items():
        if len(items) == len(plan.items) and all(len(v) == nc for v in items.values()):
            parts.append(f"{rater}: no answers at all")
            continue
        shown = [f"{iid} ({'all ' + str(nc) + ' criteria' if len(v) == nc else ', '.join(v)})"
                 for iid, v in sorted(items.items())[:_MAX_LISTED]]
        more = f" and {len(items) - _MAX_LISTED} more items" if len(items) > _MAX_LISTED else ""
        parts.append(f"{rater}: {len(items)} item(s) incomplete: " + "; ".join(shown) + more)
    return "; ".join(parts)


@dataclass(frozen=True)
class CellStat:
    """One cell of Table 3: one rater's scores of one method's items on one criterion."""

    criterion: str
    group: str
    label: str
    rater: str
    method: str
    n: int
    mean: float
    sd: float


@dataclass(frozen=True)
class AgreementRow:
    criterion: str
    label: str
    n_items: int
    n_raters: int
    icc: float
    icc_low: float
    icc_high: float
    f: float
    df1: int
    df2: int
    p: float
    kappa: float
    kappa_low: float
    kappa_high: float
    kappa_resamples: int
    kappa_undefined: int


@dataclass(frozen=True)
class DetectionRow:
    rater: str  # a rater or "all"
    truth: str  # "all", "real" or "generated"
    n: int
    correct: int
    accuracy: float
    ci_low: float
    ci_high: float


def table3(answers: dict[tuple[str, str, str], Answer], plan: StudyPlan) -> list[CellStat]:
    """Mean and sample SD (ddof = 1) per scale criterion x rater x method (real volumes as ``REAL``)."""
    out = []
    methods = plan.methods
    for c in plan.criteria:
        if c.kind != "scale":
            continue
        for rater in plan.orders:
            for m in methods:
                v = np.array([int(answers[(rater, iid, c.id)].value) for iid in plan.items
                              if plan.method_of(iid) == m and (rater, iid, c.id) in answers], dtype=np.float64)
                mean = float(v.mean()) if len(v) else float("nan")
                sd = float(v.std(ddof=1)) if len(v) > 1 else float("nan")
                out.append(CellStat(c.id, c.group, c.label, rater, m, len(v), mean, sd))
    return out


def agreement(answers: dict[tuple[str, str, str], Answer], plan: StudyPlan, *, resamples: int = 1000, seed: int = 0,
              confidence: float = 0.95) -> list[AgreementRow]:
    """ICC(2,1) over all items (generated and real) answered by every rater, per scale criterion;
    quadratic-weighted kappa with a bootstrap interval when there are exactly two raters."""
    raters = list(plan.orders)
    rows = []
    nan = float("nan")
    for c in plan.criteria:
        if c.kind != "scale":
            continue
        ids = [iid for iid in plan.items if all((r, iid, c.id) in answers for r in raters)]
        x = np.array([[int(answers[(r, iid, c.id)].value) for r in raters] for iid in ids], dtype=np.float64)
        x = x.reshape(len(ids), len(raters))
        icc = icc_2_1(x, confidence)
        if len(raters) == 2 and len(ids) >= 2:
            kap = weighted_kappa(x[:, 0].astype(int), x[:, 1].astype(int), range(c.low, c.high + 1),
                                 resamples=resamples, seed=seed, confidence=confidence)
            kv = (kap.kappa, kap.ci_low, kap.ci_high, kap.resamples, kap.undefined_resamples)
        else:
            kv = (nan, nan, nan, 0, 0)
        rows.append(AgreementRow(c.id, c.label, len(ids), len(raters), icc.icc, icc.ci_low, icc.ci_high, icc.f,
                                 icc.df1, icc.df2, icc.p, *kv))
    return rows


def detection(answers: dict[tuple[str, str, str], Answer], plan: StudyPlan, *,
              confidence: float = 0.95) -> list[DetectionRow]:
    """Accuracy of the detection question per rater and pooled, overall and by truth (real /
    generated), with Wilson intervals; empty when the study has no detection question."""
    det = [c for c in plan.criteria if c.detection]
    if not det:
        return []
    cid = det[0].id
    rows = []
    for rater in list(plan.orders) + ["all"]:
        who = list(plan.orders) if rater == "all" else [rater]
        for truth in ("all", "real", "generated"):
            n = correct = 0
            for r in who:
                for iid, s in plan.items.items():
                    if truth != "all" and s.is_real != (truth == "real"):
                        continue
                    a = answers.get((r, iid, cid))
                    if a is None:
                        continue
                    n += 1
                    correct += (a.value == "real") == s.is_real
            lo, hi = wilson_interval(correct, n, confidence)
            rows.append(DetectionRow(rater, truth, n, correct, correct / n if n else float("nan"), lo, hi))
    return rows


@dataclass(frozen=True)
class StudyScores:
    """What :func:`score_study` computed and where it wrote it."""

    table: list[CellStat]
    agreement: list[AgreementRow]
    detection: list[DetectionRow]
    missing: dict[str, dict[str, list[str]]]
    files: dict[str, Path]
    key_sha256: str
    missing_text: str  # describe_missing(...) or ""


def score_study(study_dir: str | Path, answer_files: Sequence[str | Path], *, out: str | Path | None = None,
                allow_incomplete: bool = False, resamples: int = 1000, seed: int | None = None,
                confidence: float = 0.95, digits: int = 1) -> StudyScores:
    """Check the key and the answers, compute Table 3, agreement and detection, write
    ``table3.{md,tex,csv}``, ``agreement.{md,tex,csv}``, ``detection.csv`` and ``report.md`` into
    ``out`` (default ``STUDY/scores``). ``seed`` of the kappa bootstrap defaults to the study's seed."""
    if not 0.5 <= confidence < 1.0:
        raise ConfigError(f"--confidence {confidence}: expected a level in [0.5, 1)")
    plan, sha = load_key(study_dir)
    answers = read_answers(answer_files, plan, sha)
    missing = missing_answers(answers, plan)
    if missing and not allow_incomplete:
        raise ConfigError("answers incomplete: " + describe_missing(missing, plan)
                          + " (export again from the packet, or pass --allow-incomplete)")
    stats = table3(answers, plan)
    agr = agreement(answers, plan, resamples=resamples, seed=plan.seed if seed is None else seed, confidence=confidence)
    det = detection(answers, plan, confidence=confidence)
    d = Path(out) if out is not None else Path(study_dir) / "scores"
    texts = study_texts(stats, agr, det, plan, confidence=confidence, digits=digits)
    head = (f"Key SHA-256: `{sha}`; raters: {', '.join(plan.orders)}; "
            f"items: {len(plan.items)} ({plan.counts()}).")
    report = ["# Reader study results", "", head, ""]
    if missing:
        report += ["**Incomplete answers** (scored with what is there): " + describe_missing(missing, plan), ""]
    icc_note = ("ICC(2,1): two-way random effects, absolute agreement, single rater (Shrout & Fleiss 1979; McGraw & "
                "Wong 1996) over the items every rater scored, with the F-based interval. Quadratic-weighted Cohen's "
                f"kappa (two raters only) with a percentile bootstrap interval over items ({resamples} resamples).")
    report += [texts["table3.md"], "## Inter-rater agreement", "", icc_note, "", texts["agreement.md"]]
    if det:
        det_note = ("Share of correct answers to the detection question, with the Wilson score interval (pooled: all "
                    "raters' answers treated as independent).")
        report += ["## Real or generated?", "", det_note, "", detection_markdown(det, confidence)]
    texts["report.md"] = "\n".join(report)
    files = {name: atomic_write_bytes(d / name, text.encode("utf-8")) for name, text in texts.items()}
    return StudyScores(stats, agr, det, missing, files, sha, describe_missing(missing, plan) if missing else "")


__all__ = [
    "AgreementRow",
    "Answer",
    "CellStat",
    "DetectionRow",
    "StudyScores",
    "agreement",
    "describe_missing",
    "detection",
    "missing_answers",
    "read_answers",
    "score_study",
    "table3",
]
