"""How every table of this project writes numbers: the README's, the report's, the benchmark's
and the search's alike (so that one value never prints two ways).

- :func:`number`: 3 significant digits, whole numbers from 1000 up (no ``2e+03``);
- :func:`with_error`: the error to 2 significant digits and the value to the error's last
  decimal (``12.0023 ± 0.0017``), the convention of the Particle Data Group;
- :func:`markdown_table`: aligned Markdown columns that read in a terminal, in MLflow and in
  the README.

A missing or non-finite value prints as a dash. This module imports nothing heavy.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["DASH", "cell_text", "fixed", "grid_table", "markdown_table", "number",
           "with_error"]

DASH = "—"
ERROR_DIGITS = 2


def _missing(value: float | None) -> bool:
    return value is None or not math.isfinite(value)


def number(value: float | None, digits: int = 3) -> str:
    """``digits`` significant digits; whole numbers from 10**digits up."""
    if _missing(value):
        return DASH
    return f"{value:.0f}" if abs(value) >= 10**digits else f"{value:.{digits}g}"


def fixed(value: float | None, decimals: int) -> str:
    return DASH if _missing(value) else f"{value:.{decimals}f}"


def _error_decimals(error: float) -> int:
    """Decimals that show ``error`` to ERROR_DIGITS significant digits (0 for large errors)."""
    if error == 0:
        return 0
    return max(0, ERROR_DIGITS - 1 - math.floor(math.log10(abs(error))))


def with_error(value: float | None, error: float | None) -> str:
    """``value ± error``, both to the decimal of the error's second significant digit; just
    the value (3 significant digits) when there is no error."""
    if _missing(value):
        return DASH
    if _missing(error) or error == 0:
        return number(value)
    decimals = _error_decimals(error)
    return f"{value:.{decimals}f} ± {error:.{decimals}f}"


def cell_text(value: Any) -> str:
    """A table cell: numbers by :func:`number`, everything else as its text."""
    if value is None:
        return DASH
    if isinstance(value, float):
        return number(value)
    return str(value)


def grid_table(columns: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Texts (Markdown already: a ``|`` in a cell escaped) in aligned Markdown columns."""
    cells = [list(columns), *(list(row) for row in rows)]
    widths = [max(len(line[i]) for line in cells) for i in range(len(columns))]

    def line(values: Sequence[str]) -> str:
        return "| " + " | ".join(v.ljust(w) for v, w in zip(values, widths)) + " |"

    rule = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(cells[0]), rule, *map(line, cells[1:])])


def markdown_table(rows: Sequence[Mapping[str, Any]]) -> str:
    """Rows of equal keys (the first row's keys are the columns) as a Markdown table."""
    if not rows:
        return ""
    columns = list(rows[0])
    return grid_table(columns, [[cell_text(row.get(key)).replace("|", "\\|") for key in columns]
                                for row in rows])
