"""The pages of the common paper templates that the report's LaTeX tables are sized for (standard library
only: :mod:`trace_bench.config` validates ``tex_width`` against them, :mod:`reports.tex_fit` fits tables)."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["TEMPLATES", "Template", "target_width"]


@dataclass(frozen=True)
class Template:
    """A paper template's page: ``name``, text width and column width in pt, body size in pt."""

    name: str
    textwidth: float
    columnwidth: float
    points: float = 10.0
    twocolumn: bool = False


#: the templates tables are sized for (``llncs.cls``: 12.2 cm; ``IEEEtran.cls`` 10 pt: 43 pc text, 1 pc
#: column gap; NeurIPS style: 5.5 in)
TEMPLATES: dict[str, Template] = {
    "lncs": Template("LNCS / MICCAI (llncs)", 347.12, 347.12),
    "ieee": Template("IEEE two-column (IEEEtran), one column", 516.0, 252.0, twocolumn=True),
    "ieee-wide": Template("IEEE two-column (IEEEtran), across both columns (table*)", 516.0, 516.0, twocolumn=True),
    "neurips": Template("NeurIPS", 397.48, 397.48),
}


def target_width(width: str | float) -> float:
    """A target in pt: a template name (its column width) or a number of pt ("300", "300pt", 300)."""
    if isinstance(width, (int, float)) and not isinstance(width, bool):
        return float(width)
    key = str(width).strip().lower()
    if key in TEMPLATES:
        return TEMPLATES[key].columnwidth
    try:
        return float(key.removesuffix("pt"))
    except ValueError:
        raise ValueError(f"LaTeX width {width!r}: expected one of {', '.join(TEMPLATES)} or a width in pt") from None
