"""The reader study's tables (Table 3: mean +- SD per criterion, method and rater; inter-rater
agreement; real-vs-generated detection) as :class:`~trace_bench.results.table_model.Table`, rendered
to Markdown, LaTeX (booktabs) and CSV through the shared table model and escaping
(:mod:`trace_bench.results.escape`): method names, criterion labels and groups are data.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import TYPE_CHECKING

from ..results.files import csv_text
from ..results.table_model import DASH, Cell, Column, Row, Table, to_latex, to_markdown
from .packet import StudyPlan

if TYPE_CHECKING:
    from .score import AgreementRow, CellStat, DetectionRow


def num(v: float) -> str:
    """A statistic in the CSVs: 6 significant digits, '' for NaN."""
    return "" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.6g}"


def mean_sd(s: CellStat, digits: int) -> str:
    """``mean ± SD`` of one Table 3 cell (``–`` without scores; ``n/a`` SD with one score)."""
    if s.n == 0:
        return DASH
    sd = "n/a" if math.isnan(s.sd) else f"{s.sd:.{digits}f}"
    return f"{s.mean:.{digits}f} ± {sd}"


def _interval(v: float, lo: float, hi: float) -> str:
    if math.isnan(v):
        return DASH
    return f"{v:.2f}" + ("" if math.isnan(lo) else f" [{lo:.2f}, {hi:.2f}]")


# ----------------------------------------------------------------------------- Table 3
def table3_table(stats: list[CellStat], plan: StudyPlan, digits: int = 1) -> Table:
    """Table 3: one row per scale criterion x method (the criterion's label shown on its first row, a
    heading row per criterion group), one column per rater."""
    raters = list(plan.orders)
    by = {(s.criterion, s.method, s.rater): s for s in stats}
    columns = [Column("method", "Method", align="l")] + [Column(f"rater:{r}", r, align="c") for r in raters]
    rows: list[Row] = []
    group = None
    for c in plan.criteria:
        if c.kind != "scale":
            continue
        if c.group and c.group != group:
            rows.append(Row(f"group:{c.group}", label=c.group, heading=True))
            group = c.group
        for i, m in enumerate(plan.methods):
            cells = {"method": Cell(m)}
            cells.update({f"rater:{r}": Cell(mean_sd(by[(c.id, m, r)], digits)) for r in raters})
            rows.append(Row(f"{c.id}:{m}", cells, label=c.label if i == 0 else ""))
    return Table("table3", "Table 3: reader scores, mean ± sample SD per rater", columns, rows, stub="Criterion")


def table3_markdown(stats: list[CellStat], plan: StudyPlan, digits: int = 1) -> str:
    return ("Table 3. Reader scores, mean ± SD (sample SD) per rater; items per method: " + plan.counts() + ".\n\n"
            + to_markdown(table3_table(stats, plan, digits), heading=False))


def table3_latex(stats: list[CellStat], plan: StudyPlan, digits: int = 1) -> str:
    return to_latex(table3_table(stats, plan, digits))


def table3_csv(stats: list[CellStat]) -> str:
    return csv_text(("criterion", "group", "label", "rater", "method", "n", "mean", "sd"),
                    ((s.criterion, s.group, s.label, s.rater, s.method, s.n, num(s.mean), num(s.sd)) for s in stats))


# ----------------------------------------------------------------------------- agreement
AGREEMENT_COLUMNS = ("criterion", "label", "n_items", "n_raters", "icc_2_1", "icc_ci_low", "icc_ci_high", "f", "df1",
                     "df2", "p", "kappa_quadratic", "kappa_ci_low", "kappa_ci_high", "kappa_resamples",
                     "kappa_undefined_resamples")


def agreement_table(rows: list[AgreementRow], confidence: float) -> Table:
    """ICC(2,1) with its interval, F test and quadratic kappa per criterion."""
    pct = f"{confidence * 100:g}%"
    columns = [Column("n", "n items"), Column("icc", f"ICC(2,1) [{pct} CI]"), Column("f", "F (df)"), Column("p", "p"),
               Column("kappa", f"quadratic κ [{pct} bootstrap CI]")]
    out = [Row(r.criterion, {"n": Cell(str(r.n_items), value=r.n_items),
                             "icc": Cell(_interval(r.icc, r.icc_low, r.icc_high), value=r.icc),
                             "f": Cell(DASH if math.isnan(r.f) else f"{r.f:.2f} ({r.df1}, {r.df2})", value=r.f),
                             "p": Cell(DASH if math.isnan(r.p) else f"{r.p:.3g}", value=r.p),
                             "kappa": Cell(_interval(r.kappa, r.kappa_low, r.kappa_high), value=r.kappa)},
               label=r.label) for r in rows]
    return Table("agreement", "Inter-rater agreement", columns, out, stub="Criterion")


def agreement_markdown(rows: list[AgreementRow], confidence: float) -> str:
    return to_markdown(agreement_table(rows, confidence), heading=False)


def agreement_latex(rows: list[AgreementRow], confidence: float) -> str:
    """The agreement table without the F test columns (a paper's usual width)."""
    t = agreement_table(rows, confidence)
    return to_latex(replace(t, columns=[c for c in t.columns if c.key in ("n", "icc", "kappa")]))


def agreement_csv(rows: list[AgreementRow]) -> str:
    return csv_text(AGREEMENT_COLUMNS, ((r.criterion, r.label, r.n_items, r.n_raters, num(r.icc), num(r.icc_low),
                                         num(r.icc_high), num(r.f), r.df1, r.df2, num(r.p), num(r.kappa),
                                         num(r.kappa_low), num(r.kappa_high), r.kappa_resamples, r.kappa_undefined)
                                        for r in rows))


# ----------------------------------------------------------------------------- detection
DETECTION_COLUMNS = ("rater", "truth", "n", "correct", "accuracy", "ci_low", "ci_high")


def detection_table(rows: list[DetectionRow], confidence: float) -> Table:
    """Share of right answers to the real-or-generated question with Wilson's interval."""
    columns = [Column("truth", "Items", align="l"), Column("n", "n"), Column("correct", "Correct"),
               Column("accuracy", f"Accuracy [{confidence * 100:g}% Wilson CI]")]
    def acc(r: DetectionRow) -> Cell:
        return Cell(DASH if r.n == 0 else _interval(r.accuracy, r.ci_low, r.ci_high), value=r.accuracy)

    out = [Row(f"{r.rater}:{r.truth}", {"truth": Cell(r.truth), "n": Cell(str(r.n), value=r.n),
                                        "correct": Cell(str(r.correct), value=r.correct), "accuracy": acc(r)},
               label=r.rater) for r in rows]
    return Table("detection", "Real or generated?", columns, out, stub="Rater")


def detection_markdown(rows: list[DetectionRow], confidence: float) -> str:
    return to_markdown(detection_table(rows, confidence), heading=False)


def detection_csv(rows: list[DetectionRow]) -> str:
    return csv_text(DETECTION_COLUMNS, ((r.rater, r.truth, r.n, r.correct, num(r.accuracy), num(r.ci_low),
                                         num(r.ci_high)) for r in rows))


def study_texts(stats: list[CellStat], agr: list[AgreementRow], det: list[DetectionRow], plan: StudyPlan, *,
                confidence: float, digits: int) -> dict[str, str]:
    """Every table file of ``study score``: ``table3.{md,tex,csv}``, ``agreement.{md,tex,csv}`` and
    ``detection.csv`` (with a detection question)."""
    texts = {"table3.md": table3_markdown(stats, plan, digits), "table3.tex": table3_latex(stats, plan, digits),
             "table3.csv": table3_csv(stats), "agreement.md": agreement_markdown(agr, confidence),
             "agreement.tex": agreement_latex(agr, confidence), "agreement.csv": agreement_csv(agr)}
    if det:
        texts["detection.csv"] = detection_csv(det)
    return texts


__all__ = ["AGREEMENT_COLUMNS", "DETECTION_COLUMNS", "agreement_csv", "agreement_latex", "agreement_markdown",
           "agreement_table", "detection_csv", "detection_markdown", "detection_table", "mean_sd", "num", "study_texts",
           "table3_csv", "table3_latex", "table3_markdown", "table3_table"]
